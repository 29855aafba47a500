"""Meta-training runs: divergence, interruption, resumption, threads, memory and streaming."""

import gc
import pickle
import resource
import threading

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from skmeta import MAMLRegressor, ReptileRegressor

FAST = dict(max_epochs=1, verbose=0, random_state=0)


def _params(est):
    return [p.detach().clone() for p in est.module_.parameters()]


@pytest.mark.parametrize("kw", [dict(inner_lr=1e6, inner_steps=3), dict(lr=1e12)])
def test_divergence_stops_with_a_clear_error_and_keeps_finite_parameters(kw, sinusoid_tasks):
    class Record(Callback):
        def on_train_begin(self, net, **kwargs):
            self.last = _params(net)

        def on_batch_end(self, net, **kwargs):
            self.last = _params(net)

    rec = Record()
    est = MAMLRegressor(k_shot=10, batch_size=5, max_epochs=20, optimizer=torch.optim.SGD,
                        verbose=0, random_state=0, callbacks=[rec], **kw)
    with pytest.raises(FloatingPointError, match="inner_lr.*lr|lr"):
        est.fit(sinusoid_tasks)
    for p, q in zip(_params(est), rec.last):
        assert torch.isfinite(p).all()
        assert torch.equal(p, q)  # the parameters of the last completed (finite) update


def test_keyboard_interrupt_keeps_last_completed_update_and_training_continues(
        sinusoid_tasks):
    class Interrupt(Callback):
        def __init__(self, after):
            self.after, self.seen = after, 0

        def on_batch_end(self, net, **kwargs):
            self.seen += 1
            self.params = _params(net)
            if self.seen == self.after:
                raise KeyboardInterrupt

    stop = Interrupt(after=2)
    est = MAMLRegressor(k_shot=10, batch_size=5, max_epochs=3, verbose=0, random_state=0,
                        callbacks=[stop]).fit(sinusoid_tasks)  # returns normally
    for p, q in zip(_params(est), stop.params):
        assert torch.equal(p, q)
    X, y = sinusoid_tasks[0]
    assert est.adapt(X, y).predict(X).shape == (20,)
    stop.after = -1  # no more interruptions
    est.partial_fit(sinusoid_tasks)
    assert len(est.history) >= 2


def test_resuming_from_a_pickle_reproduces_an_uninterrupted_run(sinusoid_tasks):
    full = MAMLRegressor(k_shot=10, max_epochs=4, verbose=0, random_state=5).fit(sinusoid_tasks)
    half = MAMLRegressor(k_shot=10, max_epochs=2, verbose=0, random_state=5).fit(sinusoid_tasks)
    resumed = pickle.loads(pickle.dumps(half))  # e.g. written at the end of a job
    resumed.partial_fit(sinusoid_tasks)  # two more epochs
    for p, q in zip(_params(full), _params(resumed)):
        assert torch.equal(p, q)


class CrashAfter(Callback):
    """Interrupt training after two epochs (e.g. the job was killed)."""

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == 2:
            raise KeyboardInterrupt


def test_skorch_checkpoint_with_pickle_resumes_exactly(sinusoid_tasks, tmp_path):
    from skorch.callbacks import Checkpoint

    full = MAMLRegressor(k_shot=10, max_epochs=4, verbose=0, random_state=5).fit(sinusoid_tasks)
    cp = Checkpoint(dirname=str(tmp_path), monitor=None, f_params=None, f_optimizer=None,
                    f_criterion=None, f_history=None, f_pickle="net.pkl")
    MAMLRegressor(k_shot=10, max_epochs=4, verbose=0, random_state=5,
                  callbacks=[cp, CrashAfter()]).fit(sinusoid_tasks)
    with open(tmp_path / "net.pkl", "rb") as f:
        resumed = pickle.load(f)
    assert len(resumed.history) == 2
    resumed.set_params(callbacks=None, max_epochs=2)
    resumed.initialize_callbacks()
    resumed.partial_fit(sinusoid_tasks)
    for p, q in zip(_params(full), _params(resumed)):
        assert torch.equal(p, q)


def test_threads_adapt_and_predict_like_sequential_calls(sinusoid_tasks):
    est = MAMLRegressor(k_shot=10, inner_steps=3, **FAST).fit(sinusoid_tasks)
    before = _params(est)
    expected = [est.adapt(X[:10], y[:10]).predict(X) for X, y in sinusoid_tasks[:16]]
    results = [None] * 16
    errors = []

    def work(i):
        try:
            for _ in range(3):
                X, y = sinusoid_tasks[i]
                results[i] = est.adapt(X[:10], y[:10]).predict(X)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r, e in zip(results, expected):
        # equal up to float32 rounding: kernels may pick other code paths in other threads
        np.testing.assert_allclose(r, e, rtol=1e-6, atol=1e-7)
    for p, q in zip(before, _params(est)):
        assert torch.equal(p, q)


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.slow
def test_many_adapt_calls_do_not_grow_memory(sinusoid_tasks):
    est = MAMLRegressor(k_shot=10, inner_steps=2, **FAST).fit(sinusoid_tasks)
    X, y = sinusoid_tasks[0]
    for _ in range(300):  # warm up allocator caches
        est.adapt(X, y).predict(X)
    gc.collect()
    start = _rss_mb()
    for _ in range(10_000):
        adapted = est.adapt(X, y)
        adapted.predict(X)
    gc.collect()
    assert _rss_mb() - start < 30  # no retained graphs: nothing accumulates
    assert all(p.grad_fn is None for p in adapted.module_.parameters())


class MillionTasks:
    """A lazy sequence of a million tasks; counts what is read."""

    def __init__(self, n=1_000_000):
        self.n, self.reads = n, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.reads += 1
        rng = np.random.default_rng(i)
        X = rng.uniform(-5, 5, size=(20, 1)).astype(np.float32)
        return X, (rng.uniform(0.1, 5) * np.sin(X[:, 0])).astype(np.float32)


def test_lazy_million_tasks_stream(sinusoid_tasks):
    tasks = MillionTasks()

    class StopAfter(Callback):
        def on_batch_end(self, net, **kwargs):
            if len(net.history[-1, "batches"]) >= 5:
                raise KeyboardInterrupt

    est = ReptileRegressor(k_shot=10, batch_size=10, verbose=0, random_state=0,
                           callbacks=[StopAfter()]).fit(tasks)
    # only the tasks of 5 meta-batches, and the first task thrice (form, shapes, output check)
    assert tasks.reads <= 5 * 10 + 3
    assert np.isfinite(est.history[-1, "batches", -1, "train_loss"])


def test_numerical_edge_cases(pool):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2)).astype(np.float32)
    constant = [(X, np.full(20, 3.0, dtype=np.float32))] * 4
    est = MAMLRegressor(k_shot=5, **FAST).fit(constant)
    assert np.isfinite(est.score(constant))
    duplicated = [(np.repeat(X[:5], 4, axis=0), np.repeat(X[:5, 0], 4))] * 4
    assert np.isfinite(MAMLRegressor(k_shot=5, **FAST).fit(duplicated).score(duplicated))
    from skmeta import MAMLClassifier

    Xp, yp = pool
    two_per_class = [(Xp[np.isin(yp, [a, a + 1])][[0, 1, 12, 13]],
                      yp[np.isin(yp, [a, a + 1])][[0, 1, 12, 13]]) for a in range(0, 18, 2)]
    clf = MAMLClassifier(n_way=2, k_shot=1, **FAST).fit(two_per_class)  # 1 example per class
    adapted = clf.adapt(two_per_class[0][0][[0, 2]], two_per_class[0][1][[0, 2]])
    assert adapted.predict_proba(Xp[:3]).shape == (3, 2)


@pytest.mark.parametrize("scale", [1e6, 1e-7])
def test_badly_scaled_features_get_a_warning(scale):
    rng = np.random.default_rng(0)
    tasks = [(rng.normal(size=(20, 2)) * scale + (5 if scale < 1 else 0), rng.normal(size=20))
             for _ in range(4)]
    with pytest.warns(UserWarning, match="StandardScaler"):
        try:
            MAMLRegressor(k_shot=5, **FAST).fit(tasks)
        except FloatingPointError as exc:  # huge features may also diverge: said clearly
            assert "scale" in str(exc)


def test_huge_lazy_sequence_is_sampled_not_enumerated():
    tasks = MillionTasks(n=10**12)

    class StopAfter(Callback):
        def on_batch_end(self, net, **kwargs):
            raise KeyboardInterrupt

    est = MAMLRegressor(k_shot=10, batch_size=4, verbose=0, random_state=0,
                        callbacks=[StopAfter()]).fit(tasks)  # returns at once
    assert tasks.reads <= 4 + 3
    assert len(est.history[-1, "batches"]) == 1
