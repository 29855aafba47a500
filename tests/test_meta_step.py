"""The meta-step's shell: meta-batches assembled per epoch are those drawn one by one."""

import numpy as np
import torch

from skmeta import MAMLRegressor, ReptileRegressor
from skmeta.data import as_tasks
from skmeta.estimator import BaseMetaLearner


class OneByOne(MAMLRegressor):
    """The same estimator, assembling each meta-batch on its own (the reference)."""

    def _epoch_meta_batches(self, tasks, order, rng, *, training):
        return None


def test_epoch_assembly_gives_the_meta_batches_drawn_one_by_one(sinusoid_tasks):
    kw = dict(k_shot=7, n_query=5, batch_size=8, max_epochs=0, random_state=3)
    a, b = MAMLRegressor(**kw).fit(sinusoid_tasks), OneByOne(**kw).fit(sinusoid_tasks)
    seq = as_tasks(sinusoid_tasks, classification=False)
    for training in (True, False):
        got = list(a.get_iterator(seq, training))
        want = list(b.get_iterator(seq, training))
        assert len(got) == len(want) == 8  # 60 tasks, the last meta-batch short
        for x, y in zip(got, want):
            assert x.indices == y.indices and len(x.groups) == len(y.groups) == 1
            for s, t in zip(x.task_batches[0], y.task_batches[0]):
                assert (s is None and t is None) or torch.equal(s, t)
    assert a.rng_.random() == b.rng_.random()  # the stream is where it would be


def test_fits_are_unchanged_by_the_lighter_meta_step(sinusoid_tasks):
    for cls in (MAMLRegressor, ReptileRegressor):
        class Reference(cls):
            def _epoch_meta_batches(self, tasks, order, rng, *, training):
                return None

        kw = dict(k_shot=10, batch_size=8, max_epochs=2, random_state=0)
        fast, ref = cls(**kw).fit(sinusoid_tasks), Reference(**kw).fit(sinusoid_tasks)
        for (k, p), q in zip(fast.module_.state_dict().items(), ref.module_.state_dict().values()):
            assert torch.equal(p, q), k
        np.testing.assert_array_equal(fast.history_[:, "train_loss"],
                                      ref.history_[:, "train_loss"])


def test_an_overridden_get_meta_batch_is_still_called():
    calls = []

    class Watched(MAMLRegressor):
        def get_meta_batch(self, tasks, indices, rng, **kwargs):
            calls.append(len(indices))
            return super().get_meta_batch(tasks, indices, rng, **kwargs)

    from skmeta.datasets import make_sinusoid_tasks

    Watched(k_shot=5, batch_size=4, max_epochs=1).fit(make_sinusoid_tasks(n_tasks=12,
                                                                           random_state=0))
    assert calls[:3] == [4, 4, 4]
    assert BaseMetaLearner.get_meta_batch is not Watched.get_meta_batch
