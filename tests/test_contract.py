"""The contract every skmeta estimator honours: every registered estimator, every check."""


import numpy as np
import pytest
import torch

import skmeta
from skmeta import MAMLRegressor, PretrainedClassifier, PretrainedRegressor
from skmeta.datasets import make_sinusoid_tasks
from skmeta.registry import all_estimators
from skmeta.utils.estimator_checks import parametrize_with_checks, yield_checks

ESTIMATORS = [cls for _, cls in all_estimators(plugins=False)]
FAST = dict(max_epochs=1, verbose=0, random_state=0)


def test_every_public_estimator_is_in_the_registry():
    public = {getattr(skmeta, n) for n in skmeta.__all__}
    learners = {c for c in public if isinstance(c, type) and hasattr(c, "get_meta_gradient")}
    assert learners == set(ESTIMATORS)
    assert len(ESTIMATORS) >= 12


@parametrize_with_checks([Est() for Est in ESTIMATORS])
def test_contract(estimator, check):
    check(estimator)


def test_the_checker_catches_a_broken_estimator(sinusoid_tasks):
    class Forgetful(MAMLRegressor):
        """MAML whose adapt changes the meta-learner (a bug the contract must catch)."""

        def adapt_tasks(self, tasks, **kwargs):
            with torch.no_grad():
                next(self.module_.parameters()).add_(1.0)
            return super().adapt_tasks(tasks, **kwargs)

    with pytest.raises(AssertionError, match="check_adapt: adapt changed the meta-learner"):
        for check in yield_checks(Forgetful()):
            if check.__name__ == "check_adapt":
                check_estimator_one(Forgetful(), check)


def check_estimator_one(estimator, check):
    try:
        check(estimator)
    except AssertionError as exc:
        raise AssertionError(f"{check.__name__}: {exc}") from exc


def test_pretrained_classifier_adapts_with_a_fresh_n_way_head(pool):
    X, y = pool
    pre = PretrainedClassifier(n_way=3, k_shot=2, n_query=3, n_episodes=30, adapt_steps=0,
                               **FAST).fit(X, y)
    assert pre.module_.layers[-1].out_features == 20
    adapted = pre.adapt(X[y < 3], y[y < 3])
    assert adapted.module_.layers[-1].out_features == 3
    # a zero head before any step: uniform probabilities
    np.testing.assert_allclose(adapted.predict_proba(X[:4]), 1 / 3, rtol=1e-6)
    stepped = pre.adapt(X[y < 3], y[y < 3], adapt_steps=20, inner_lr=0.5)
    assert (stepped.predict(X[y < 3]) == y[y < 3]).mean() > 0.8


def test_pretrained_regressor_fits_the_pooled_data():
    tasks = make_sinusoid_tasks(n_tasks=100, n_samples=20, random_state=0)
    pre = PretrainedRegressor(k_shot=10, max_epochs=5, lr=1e-2, verbose=0, random_state=0)
    pre.fit(tasks)
    # joint training converges toward the mean wave (about -1.6 cos x for phases in [0, pi])
    X = np.linspace(-5, 5, 50, dtype=np.float32)[:, None]
    assert np.abs(pre.adapt(X[:5], np.zeros(5), adapt_steps=0).predict(X)).mean() < 1.5
    assert pre.history[-1, "train_loss"] < pre.history[0, "train_loss"]
