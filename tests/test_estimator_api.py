"""The estimators: fitting, adapting, scoring, every task form, determinism."""

import pickle
import re

import joblib
import numpy as np
import pytest
import torch
from torch import nn

from skmeta import (
    AdaptedClassifier,
    AdaptedRegressor,
    EpisodeSampler,
    MAMLClassifier,
    MAMLRegressor,
    ReptileClassifier,
    ReptileRegressor,
    Task,
)
from skmeta import functional as F
from skmeta.data import as_tasks
from skmeta.datasets import make_sinusoid_tasks
from skmeta.modules import MLP

FAST = dict(max_epochs=1, verbose=0, random_state=0)


def _params(est):
    return {k: v.detach().clone() for k, v in est.module_.named_parameters()}


@pytest.mark.slow
def test_maml_learns_sinusoid():
    tasks = make_sinusoid_tasks(n_tasks=500, n_samples=20, random_state=0)
    test = make_sinusoid_tasks(n_tasks=100, n_samples=20, random_state=1)
    from sklearn.metrics import mean_squared_error

    maml = MAMLRegressor(k_shot=10, batch_size=10, lr=3e-3, max_epochs=10, verbose=0,
                         random_state=0)
    untrained = -np.mean(maml.set_params(max_epochs=0).fit(tasks).score_tasks(
        test, metric=mean_squared_error)) * -1
    maml.set_params(max_epochs=10).fit(tasks)
    trained = np.mean(maml.score_tasks(test, metric=mean_squared_error))
    assert trained < 0.6 * untrained
    assert maml.history[-1, "train_loss"] < maml.history[0, "train_loss"]


def test_adapt_equals_functional_inner_loop_and_leaves_meta_model_untouched(sinusoid_tasks):
    maml = MAMLRegressor(k_shot=10, inner_steps=2, inner_lr=0.05, **FAST).fit(sinusoid_tasks)
    before = _params(maml)
    X, y = sinusoid_tasks[3]
    adapted = maml.adapt(X[:10], y[:10])
    for k, v in _params(maml).items():
        assert torch.equal(v, before[k])
    params = dict(maml.module_.named_parameters())
    learner = F.Learner(maml.module_, before, {}, nn.MSELoss(), F.sgd(0.05))
    fast = learner.run_inner(torch.as_tensor(X[:10]), torch.as_tensor(y[:10]).reshape(-1, 1),
                             steps=2, engine="loop")[-1]
    expected = F.forward(maml.module_, fast, {}, torch.as_tensor(X[10:])).detach().numpy().ravel()
    np.testing.assert_allclose(adapted.predict(X[10:]), expected, rtol=1e-5, atol=1e-6)
    assert isinstance(adapted, AdaptedRegressor)
    for p in adapted.module_.parameters():
        assert p.grad_fn is None and not p.requires_grad
    assert params  # the meta-learner still holds its parameters


def test_adapt_steps_and_lr_overrides(sinusoid_tasks):
    maml = MAMLRegressor(k_shot=10, **FAST).fit(sinusoid_tasks)
    X, y = sinusoid_tasks[0]
    zero = maml.adapt(X[:10], y[:10], adapt_steps=0)
    meta_pred = F.forward(maml.module_, dict(maml.module_.named_parameters()), {},
                          torch.as_tensor(X)).detach().numpy().ravel()
    np.testing.assert_allclose(zero.predict(X), meta_pred, rtol=1e-6)
    one = maml.adapt(X[:10], y[:10], adapt_steps=1, inner_lr=0.5).predict(X)
    two = maml.adapt(X[:10], y[:10], adapt_steps=3, inner_lr=0.5).predict(X)
    assert not np.allclose(one, two)
    with pytest.raises(ValueError, match="'adapt_steps' parameter"):
        maml.adapt(X[:10], y[:10], adapt_steps=-1)
    with pytest.raises(ValueError, match="'inner_lr' parameter"):
        maml.adapt(X[:10], y[:10], inner_lr=0)


def test_old_adapt_keywords_still_work_with_a_future_warning(sinusoid_tasks):
    maml = MAMLRegressor(k_shot=10, **FAST).fit(sinusoid_tasks)
    X, y = sinusoid_tasks[0]
    new = maml.adapt(X[:10], y[:10], adapt_steps=2, inner_lr=0.3).predict(X)
    with pytest.warns(FutureWarning) as record:
        old = maml.adapt(X[:10], y[:10], steps=2, lr=0.3).predict(X)
    messages = [str(w.message) for w in record]
    assert any(re.search("'steps' keyword .* use adapt_steps=", m) for m in messages), messages
    assert any(re.search("'lr' keyword .* use inner_lr=", m) for m in messages), messages
    np.testing.assert_array_equal(old, new)
    with pytest.warns(FutureWarning, match="'lr' keyword .* use inner_lr="):
        maml.adapt_tasks([(X[:10], y[:10])], lr=0.3)


def test_adapt_tasks_batch_equals_single_adapt(sinusoid_tasks):
    maml = MAMLRegressor(k_shot=10, **FAST).fit(sinusoid_tasks)
    support = [(X[:10], y[:10]) for X, y in sinusoid_tasks[:5]] + [
        (sinusoid_tasks[5][0][:7], sinusoid_tasks[5][1][:7])]  # an unequal size
    many = maml.adapt_tasks(support)
    for (X, y), adapted in zip(support, many):
        np.testing.assert_allclose(adapted.predict(X), maml.adapt(X, y).predict(X), rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.parametrize("Est", [MAMLRegressor, ReptileRegressor])
def test_random_state_makes_fits_reproducible(Est, sinusoid_tasks):
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002 (checking the legacy global)
    a = Est(k_shot=10, max_epochs=2, verbose=0, random_state=7, lr=1e-2).fit(sinusoid_tasks)
    b = Est(k_shot=10, max_epochs=2, verbose=0, random_state=7, lr=1e-2).fit(sinusoid_tasks)
    c = Est(k_shot=10, max_epochs=2, verbose=0, random_state=8, lr=1e-2).fit(sinusoid_tasks)
    for k, v in _params(a).items():
        assert torch.equal(v, _params(b)[k])
    assert not all(torch.equal(v, _params(c)[k]) for k, v in _params(a).items())
    assert a.score(sinusoid_tasks) == b.score(sinusoid_tasks)
    # the global RNGs were left alone
    assert torch.equal(torch.random.get_rng_state(), state)
    assert np.array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002


@pytest.mark.parametrize("engine", ["vmap", "loop", "batched"])
def test_engines_give_the_same_fit(engine, sinusoid_tasks):
    ref = MAMLRegressor(k_shot=10, engine="loop", **FAST).fit(sinusoid_tasks)
    est = MAMLRegressor(k_shot=10, engine=engine, **FAST).fit(sinusoid_tasks)
    for k, v in _params(ref).items():
        torch.testing.assert_close(_params(est)[k], v, atol=1e-5, rtol=1e-4)


def test_auto_engine_times_both_and_records_choice(sinusoid_tasks):
    est = MAMLRegressor(k_shot=10, batch_size=5, **FAST).fit(sinusoid_tasks)
    assert est.engine_["train"] in {"batched", "loop"}  # batched runs an MLP: vmap is not timed
    timings = est.engines_.timings["train/second"]
    assert set(timings) == {"batched", "loop"}
    assert len(timings["batched"]) >= 2 and len(timings["loop"]) >= 2
    assert est.engines_.chosen["train/second"] == est.engine_["train"]


def test_auto_engine_uses_loop_for_native_batch_norm(sinusoid_tasks):
    class BNNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(1, 8), nn.BatchNorm1d(8), nn.ReLU(),
                                      nn.Linear(8, 1))

        def forward(self, X):
            return self.body(X)

    est = MAMLRegressor(module=BNNet, k_shot=10, **FAST).fit(sinusoid_tasks)
    assert est.engine_["train"] == "loop"
    with pytest.raises(ValueError, match="running statistics"):
        MAMLRegressor(module=BNNet, k_shot=10, engine="vmap", **FAST).fit(sinusoid_tasks)


def test_first_order_changes_the_meta_gradient(sinusoid_tasks):
    a = MAMLRegressor(k_shot=10, inner_lr=0.1, **FAST).fit(sinusoid_tasks)
    b = MAMLRegressor(k_shot=10, inner_lr=0.1, first_order=True, **FAST).fit(sinusoid_tasks)
    assert not all(torch.equal(v, _params(b)[k]) for k, v in _params(a).items())


def test_reptile_moves_phi_toward_adapted_weights(sinusoid_tasks):
    tasks = sinusoid_tasks[:8]
    est = ReptileRegressor(k_shot=10, inner_steps=3, inner_lr=0.02, lr=0.5, batch_size=8,
                           max_epochs=0, verbose=0, random_state=0).fit(tasks)
    phi = _params(est)
    # reproduce the epoch's support sets: same rng stream as the estimator's first epoch
    rng = np.random.default_rng([est.seed_, 0])
    order = rng.permutation(len(tasks))
    batch = est.get_meta_batch(as_tasks(tasks, classification=False), order, rng,
                               training=True)
    fast = F.adapt(est.learner(), batch.task_batches[0], steps=3)
    W_mean = {k: v.mean(0) for k, v in fast.items()}
    est.set_params(max_epochs=1).partial_fit(tasks)
    for k, v in _params(est).items():
        torch.testing.assert_close(v, phi[k] + 0.5 * (W_mean[k] - phi[k]), atol=1e-6,
                                   rtol=1e-5)
        assert (v - W_mean[k]).norm() <= (phi[k] - W_mean[k]).norm() + 1e-7


# ----------------------------------------------------------------- task forms


class LazyTasks:
    """A lazy sequence of sinusoid tasks, made on access."""

    def __init__(self, n):
        self.n = n
        self.accessed = set()

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        self.accessed.add(i)
        return make_sinusoid_tasks(1, 20, random_state=int(i))[0]


def test_every_regression_task_form(sinusoid_tasks):
    kw = dict(k_shot=10, **FAST)
    as_list = MAMLRegressor(**kw).fit(sinusoid_tasks)
    as_tuple = MAMLRegressor(**kw).fit(tuple(sinusoid_tasks))
    obj = np.empty(len(sinusoid_tasks), dtype=object)
    obj[:] = sinusoid_tasks
    as_array = MAMLRegressor(**kw).fit(obj)
    for other in (as_tuple, as_array):
        for k, v in _params(as_list).items():
            assert torch.equal(v, _params(other)[k])
    lazy = LazyTasks(30)
    MAMLRegressor(**kw).fit(lazy)
    assert lazy.accessed == set(range(30))
    fixed = [Task(X[:10], y[:10], X[10:], y[10:]) for X, y in sinusoid_tasks]
    est = MAMLRegressor(**kw).fit(fixed)
    assert np.isfinite(est.score(fixed))
    X = np.concatenate([t[0] for t in sinusoid_tasks])
    y = np.concatenate([t[1] for t in sinusoid_tasks])
    groups = np.repeat(np.arange(len(sinusoid_tasks)), 20)
    long = MAMLRegressor(**kw).fit(X, y, groups=groups)
    assert np.isfinite(long.score(X, y, groups=groups))


def test_fixed_split_tasks_are_used_as_given(sinusoid_tasks):
    fixed = [Task(X[:10], y[:10], X[10:], y[10:]) for X, y in sinusoid_tasks[:5]]
    est = MAMLRegressor(k_shot=3, **FAST).fit(fixed)  # k_shot ignored for fixed splits
    scores = est.score_tasks(fixed)
    for t, s in zip(fixed, scores):
        adapted = est.adapt(t.X_support, t.y_support)
        assert s == pytest.approx(adapted.score(t.X_query, t.y_query), rel=1e-5, abs=1e-5)


def test_multi_output_regression():
    rng = np.random.default_rng(0)
    tasks = []
    for _ in range(20):
        X = rng.normal(size=(12, 3)).astype(np.float32)
        tasks.append((X, X[:, :2] * rng.normal(size=2)))
    est = MAMLRegressor(k_shot=6, **FAST).fit(tasks)
    assert est.module_.layers[-1].out_features == 2
    assert est.adapt(*tasks[0]).predict(tasks[0][0]).shape == (12, 2)


def test_classifier_pool_form_with_string_labels(pool):
    X, y = pool
    labels = np.array([f"c{i * 3}" for i in range(20)])[y]  # strings, non-contiguous
    clf = MAMLClassifier(n_way=4, k_shot=2, n_query=4, n_episodes=40, inner_lr=0.3, **FAST)
    clf.fit(X, labels)
    Xs, ys = X[labels == "c3"][:3], labels[labels == "c3"][:3]
    Xs = np.concatenate([Xs, X[labels == "c9"][:3]])
    ys = np.concatenate([ys, labels[labels == "c9"][:3]])
    adapted = clf.adapt(Xs, ys)
    assert isinstance(adapted, AdaptedClassifier)
    assert adapted.classes_.tolist() == ["c3", "c9"]
    assert set(adapted.predict(X[:10])) <= {"c3", "c9"}
    proba = adapted.predict_proba(X[:10])
    assert proba.shape == (10, 2)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert 0 <= clf.score(X, labels) <= 1


def test_classifier_learns_and_beats_chance(pool):
    X, y = pool
    train = np.isin(y, np.arange(14))
    clf = MAMLClassifier(n_way=3, k_shot=1, n_query=5, n_episodes=200, batch_size=10,
                         inner_lr=0.5, lr=3e-3, max_epochs=3, verbose=0, random_state=0)
    clf.fit(X[train], y[train])
    test = EpisodeSampler(X[~train], y[~train], n_way=3, k_shot=1, n_query=5, n_episodes=60,
                          random_state=1)
    assert clf.score(test) > 0.6  # chance is 1/3


@pytest.mark.parametrize("Est", [MAMLClassifier, ReptileClassifier])
def test_classifier_task_list_and_episode_forms(Est, pool):
    X, y = pool
    episodes = EpisodeSampler(X, y, n_way=3, k_shot=2, n_query=3, n_episodes=20, random_state=0)
    est = Est(n_way=3, k_shot=2, inner_lr=0.1, **FAST).fit(episodes)
    assert 0 <= est.score(episodes) <= 1
    pairs = [(np.concatenate([t.X_support, t.X_query]), np.concatenate([t.y_support, t.y_query]))
             for t in episodes]
    est.fit(pairs)
    assert len(est.score_tasks(pairs)) == 20
    groups = np.repeat(np.arange(20), 15)
    Xl = np.concatenate([p[0] for p in pairs])
    yl = np.concatenate([p[1] for p in pairs])
    est.fit(Xl, yl, groups=groups)
    assert 0 <= est.score(Xl, yl, groups=groups) <= 1


def test_classifier_tasks_with_fewer_classes_than_n_way(pool):
    X, y = pool
    tasks = [(X[np.isin(y, [a, a + 1])], y[np.isin(y, [a, a + 1])]) for a in range(0, 18, 2)]
    clf = MAMLClassifier(n_way=5, k_shot=3, **FAST).fit(tasks)
    adapted = clf.adapt(*tasks[0])
    assert adapted.predict_proba(tasks[0][0]).shape == (24, 2)


def test_score_is_pooled_r2_and_score_tasks_per_task_r2(sinusoid_tasks):
    est = MAMLRegressor(k_shot=10, **FAST).fit(sinusoid_tasks)
    tasks = sinusoid_tasks[:40]
    # predictions of every task's query set, with the splits score draws
    sse = sst = 0.0
    per_task = []
    scores = est.score_tasks(tasks)
    rng = np.random.default_rng([0, 3])
    batch = est.get_meta_batch(as_tasks(tasks, classification=False), np.arange(len(tasks)), rng,
                               training=False)
    _, (preds,) = est._adapter().evaluate(batch, 1, strict=True)
    (positions, b), = batch.groups
    for j in positions:
        y, p = b.y_query[j].numpy().ravel(), preds[j].numpy().ravel()
        sse += ((y - p) ** 2).sum()
        sst += ((y - y.mean()) ** 2).sum()
        per_task.append(1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    np.testing.assert_allclose(scores, per_task, atol=1e-5)
    assert est.score(tasks) == pytest.approx(1 - sse / sst, abs=1e-5)


def test_meta_learner_predict_says_to_adapt(sinusoid_tasks):
    est = MAMLRegressor(k_shot=10, **FAST).fit(sinusoid_tasks)
    with pytest.raises(TypeError, match="adapt"):
        est.predict(sinusoid_tasks[0][0])


def test_module_instance_is_used(sinusoid_tasks):
    net = MLP(1, 1, hidden=(8,))
    est = MAMLRegressor(module=net, k_shot=10, **FAST).fit(sinusoid_tasks)
    assert est.module_ is net


def test_module_kwargs_are_routed(sinusoid_tasks):
    est = MAMLRegressor(k_shot=10, module__hidden=(16, 8), **FAST).fit(sinusoid_tasks)
    assert [m.out_features for m in est.module_.layers if isinstance(m, nn.Linear)] == [16, 8, 1]


def test_float64_module(sinusoid_tasks):
    class Net(MLP):
        def __init__(self, in_features=None, n_outputs=None):
            super().__init__(in_features, n_outputs)
            self.double()

    est = MAMLRegressor(module=Net, k_shot=10, **FAST).fit(sinusoid_tasks)
    assert next(est.module_.parameters()).dtype == torch.float64
    assert est.adapt(*sinusoid_tasks[0]).predict(sinusoid_tasks[0][0]).dtype == np.float64


# -------------------------------------------------------------- pickling


def _roundtrip_pickle(obj):
    return pickle.loads(pickle.dumps(obj))


def _roundtrip_joblib(obj, tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump(obj, path)
    return joblib.load(path)


def test_adapted_models_pickle_and_predict_identically(sinusoid_tasks, pool, tmp_path):
    est = MAMLRegressor(k_shot=10, **FAST).fit(sinusoid_tasks)
    X, y = sinusoid_tasks[0]
    adapted = est.adapt(X[:10], y[:10])
    for loaded in (_roundtrip_pickle(adapted), _roundtrip_joblib(adapted, tmp_path)):
        np.testing.assert_array_equal(loaded.predict(X), adapted.predict(X))
    assert len(pickle.dumps(adapted)) < 100_000
    Xp, yp = pool
    clf = MAMLClassifier(n_way=3, k_shot=2, n_query=2, n_episodes=10, **FAST).fit(Xp, yp)
    a = clf.adapt(Xp[yp < 3], yp[yp < 3])
    b = _roundtrip_pickle(a)
    np.testing.assert_array_equal(a.predict_proba(Xp), b.predict_proba(Xp))
    assert b.classes_.tolist() == [0, 1, 2]


def test_meta_learner_pickles_with_instance_module(sinusoid_tasks):
    est = MAMLRegressor(module=MLP(1, 1), k_shot=10, **FAST).fit(sinusoid_tasks)
    loaded = _roundtrip_pickle(est)
    X, y = sinusoid_tasks[0]
    np.testing.assert_array_equal(loaded.adapt(X, y).predict(X), est.adapt(X, y).predict(X))
    assert loaded.module_ is loaded.module  # identity kept
    loaded.partial_fit(sinusoid_tasks)  # and it can continue training


def test_cuda_request_without_cuda_fails_clearly(sinusoid_tasks):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    with pytest.raises(ValueError, match="CUDA is not available"):
        MAMLRegressor(device="cuda", **FAST).fit(sinusoid_tasks)
    with pytest.raises(ValueError, match="device"):
        MAMLRegressor(device="gpu0", **FAST).fit(sinusoid_tasks)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_adapt_and_load_on_cpu(sinusoid_tasks):
    est = MAMLRegressor(k_shot=10, device="cuda", **FAST).fit(sinusoid_tasks)
    X, y = sinusoid_tasks[0]
    adapted = est.adapt(X, y)
    assert adapted.module_.layers[0].weight.is_cuda
    state = pickle.dumps(adapted)
    loaded = pickle.loads(state)
    np.testing.assert_allclose(loaded.predict(X), adapted.predict(X), rtol=1e-5)
    cpu = MAMLRegressor(k_shot=10, device="cpu", **FAST).fit(sinusoid_tasks)
    ref = MAMLRegressor(k_shot=10, device="cuda", engine="loop", **FAST).fit(sinusoid_tasks)
    for k, v in _params(cpu).items():
        torch.testing.assert_close(_params(ref)[k].cpu(), v, atol=1e-4, rtol=1e-3)


def test_vectorised_default_scores_equal_sklearn_metrics(sinusoid_tasks, pool):
    from sklearn.metrics import accuracy_score, r2_score

    tasks = [Task(X[:10], y[:10], X[10:], y[10:]) for X, y in sinusoid_tasks]
    X0 = sinusoid_tasks[0][0]
    tasks.append(Task(X0[:10], np.ones(10), X0[10:], np.full(10, 2.0)))  # constant query y
    est = MAMLRegressor(k_shot=10, **FAST).fit(tasks)
    np.testing.assert_allclose(est.score_tasks(tasks), est.score_tasks(tasks, metric=r2_score),
                               atol=1e-5)
    X, y = pool
    clf_tasks = [(X[np.isin(y, [a, a + 1, a + 2])], y[np.isin(y, [a, a + 1, a + 2])])
                 for a in range(0, 18, 3)]
    clf = MAMLClassifier(n_way=5, k_shot=2, **FAST).fit(clf_tasks)  # 3 classes of 5 outputs
    np.testing.assert_array_equal(clf.score_tasks(clf_tasks),
                                  clf.score_tasks(clf_tasks, metric=accuracy_score))


def test_stacked_fast_path_draws_disjoint_support_and_query(sinusoid_tasks):
    est = MAMLRegressor(k_shot=7, n_query=9, **FAST).fit(sinusoid_tasks)
    seq = as_tasks(sinusoid_tasks, classification=False)
    assert seq.stacked() is not None
    batch = est.get_meta_batch(seq, [4, 2], np.random.default_rng(0), training=True)
    (_, b), = batch.groups
    assert b.X_support.shape == (2, 7, 1) and b.X_query.shape == (2, 9, 1)
    for t, i in enumerate([4, 2]):
        rows = {float(v) for v in sinusoid_tasks[i][0].ravel()}
        s = {float(v) for v in b.X_support[t].ravel()}
        q = {float(v) for v in b.X_query[t].ravel()}
        assert s <= rows and q <= rows and not s & q
        # targets travel with their inputs
        lookup = dict(zip(sinusoid_tasks[i][0].ravel().tolist(),
                          sinusoid_tasks[i][1].tolist()))
        assert [lookup[v] for v in b.X_support[t].ravel().tolist()] == pytest.approx(
            b.y_support[t].ravel().tolist())


def test_adapted_module_is_independent_of_the_meta_module(sinusoid_tasks):
    est = MAMLRegressor(k_shot=10, **FAST).fit(sinusoid_tasks)
    adapted = est.adapt(*sinusoid_tasks[0])
    before = _params(est)
    with torch.no_grad():
        for p in adapted.module_.parameters():
            p.add_(1.0)
    adapted.module_.register_forward_hook(lambda *args: None)
    assert all(torch.equal(a, b) for a, b in zip(before.values(), _params(est).values()))
    assert not est.module_._forward_hooks
    assert est.module_.training != adapted.module_.training or not est.module_.training
