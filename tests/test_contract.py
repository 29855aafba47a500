"""The contract every skmeta estimator must honour (add new algorithms to ESTIMATORS)."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone, is_classifier
from sklearn.utils._param_validation import InvalidParameterError

import skmeta
from skmeta import (
    AdaptedClassifier,
    AdaptedRegressor,
    MAMLClassifier,
    MAMLRegressor,
    PretrainedClassifier,
    PretrainedRegressor,
    ReptileClassifier,
    ReptileRegressor,
)
from skmeta.datasets import make_sinusoid_tasks

ESTIMATORS = [MAMLRegressor, MAMLClassifier, ReptileRegressor, ReptileClassifier,
              PretrainedRegressor, PretrainedClassifier]
FAST = dict(max_epochs=1, verbose=0, random_state=0)


def test_every_public_estimator_is_under_contract():
    public = {getattr(skmeta, n) for n in skmeta.__all__}
    learners = {c for c in public if isinstance(c, type) and hasattr(c, "get_meta_gradient")}
    assert learners == set(ESTIMATORS)


def _data(Est, pool):
    if is_classifier(Est()):
        X, y = pool
        return [(X[np.isin(y, [a, a + 1, a + 2])], y[np.isin(y, [a, a + 1, a + 2])])
                for a in range(0, 18, 3)]
    return make_sinusoid_tasks(n_tasks=30, n_samples=20, random_state=0)


def _params(est):
    return [p.detach().clone() for p in est.module_.parameters()]


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_contract(Est, pool):
    tasks = _data(Est, pool)
    kw = dict(n_way=3, k_shot=2) if is_classifier(Est()) else dict(k_shot=10)
    est = Est(**kw, **FAST)
    assert clone(est).get_params(deep=False).keys() == est.get_params(deep=False).keys()
    est.fit(tasks)
    # reproducible
    twin = Est(**kw, **FAST).fit(tasks)
    assert all(torch.equal(a, b) for a, b in zip(_params(est), _params(twin)))
    # history records a finite training loss per epoch
    assert np.isfinite(est.history[-1, "train_loss"])
    # adapt leaves the meta-learner untouched and returns a picklable fitted model
    before = _params(est)
    X, y = tasks[0]
    adapted = est.adapt(X[: 2 * kw["k_shot"]], y[: 2 * kw["k_shot"]])
    assert all(torch.equal(a, b) for a, b in zip(before, _params(est)))
    assert isinstance(adapted, AdaptedClassifier if is_classifier(est) else AdaptedRegressor)
    loaded = pickle.loads(pickle.dumps(adapted))
    np.testing.assert_array_equal(loaded.predict(X), adapted.predict(X))
    assert set(np.unique(adapted.predict(X))) <= set(np.unique(y)) or not is_classifier(est)
    # scores are finite and in range
    score = est.score(tasks)
    assert np.isfinite(score) and (score <= 1)
    # the meta-learner pickles and continues training
    again = pickle.loads(pickle.dumps(est))
    again.partial_fit(tasks)
    assert len(again.history) == 2
    # hyper-parameters are validated at fit
    with pytest.raises(InvalidParameterError, match="inner_lr"):
        Est(inner_lr=-1, **FAST).fit(tasks)


def test_pretrained_classifier_adapts_with_a_fresh_n_way_head(pool):
    X, y = pool
    pre = PretrainedClassifier(n_way=3, k_shot=2, n_query=3, n_episodes=30, adapt_steps=0,
                               **FAST).fit(X, y)
    assert pre.module_.layers[-1].out_features == 20
    adapted = pre.adapt(X[y < 3], y[y < 3])
    assert adapted.module_.layers[-1].out_features == 3
    # a zero head before any step: uniform probabilities
    np.testing.assert_allclose(adapted.predict_proba(X[:4]), 1 / 3, rtol=1e-6)
    stepped = pre.adapt(X[y < 3], y[y < 3], steps=20, lr=0.5)
    assert (stepped.predict(X[y < 3]) == y[y < 3]).mean() > 0.8


def test_pretrained_regressor_fits_the_pooled_data():
    tasks = make_sinusoid_tasks(n_tasks=100, n_samples=20, random_state=0)
    pre = PretrainedRegressor(k_shot=10, max_epochs=5, lr=1e-2, verbose=0, random_state=0)
    pre.fit(tasks)
    # joint training converges toward the mean wave (about -1.6 cos x for phases in [0, pi])
    X = np.linspace(-5, 5, 50, dtype=np.float32)[:, None]
    assert np.abs(pre.adapt(X[:5], np.zeros(5), steps=0).predict(X)).mean() < 1.5
    assert pre.history[-1, "train_loss"] < pre.history[0, "train_loss"]
