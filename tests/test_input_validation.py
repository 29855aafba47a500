"""Bad input gets a clear error naming the parameter or the task, and the fix."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from skmeta import EpisodeSampler, MAMLClassifier, MAMLRegressor, ReptileRegressor, Task
from skmeta.modules import MLP

FAST = dict(max_epochs=1, verbose=0, random_state=0)


@pytest.mark.parametrize("param, value, match", [
    ("inner_lr", -1, "The 'inner_lr' parameter of MAMLRegressor must be a float in the range "
                     r"\(0.0, inf\)"),
    ("inner_lr", 0, "inner_lr"),
    ("inner_steps", 0, "The 'inner_steps' parameter of MAMLRegressor must be an int in the range"),
    ("k_shot", 0, "k_shot"),
    ("n_query", 0, "n_query"),
    ("adapt_steps", -1, "adapt_steps"),
    ("batch_size", 0, "batch_size"),
    ("lr", -0.1, "'lr'"),
    ("engine", "gpu", "engine"),
    ("first_order", "yes", "first_order"),
    ("chunk_size", 0, "chunk_size"),
    ("random_state", "seed", "random_state"),
])
def test_invalid_hyper_parameters(param, value, match, sinusoid_tasks):
    est = MAMLRegressor(**{**FAST, param: value})  # accepted at construction (sklearn rule)
    with pytest.raises(InvalidParameterError, match=match):
        est.fit(sinusoid_tasks)
    assert isinstance(InvalidParameterError("x"), ValueError)


def test_classifier_only_parameters_are_validated(pool):
    with pytest.raises(InvalidParameterError, match="n_way"):
        MAMLClassifier(n_way=1, **FAST).fit(*pool)
    with pytest.raises(InvalidParameterError, match="n_episodes"):
        MAMLClassifier(n_episodes=0, **FAST).fit(*pool)


def test_unknown_parameter_suggests_the_right_name(sinusoid_tasks):
    with pytest.raises(ValueError, match="inner_stepz.*Did you mean 'inner_steps'"):
        MAMLRegressor(inner_stepz=2, **FAST).fit(sinusoid_tasks)
    with pytest.raises(ValueError, match="did you mean module__hidden"):
        MAMLRegressor(module_hidden=2, **FAST).fit(sinusoid_tasks)
    with pytest.raises(ValueError, match="Invalid parameter 'inner_stepz'"):
        MAMLRegressor().set_params(inner_stepz=3)


def test_tasks_with_different_feature_counts():
    rng = np.random.default_rng(0)
    tasks = [(rng.normal(size=(20, 2)), rng.normal(size=20)),
             (rng.normal(size=(20, 3)), rng.normal(size=20))]
    with pytest.raises(ValueError, match="task 1: X has input shape"):
        MAMLRegressor(**FAST).fit(tasks)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values(bad):
    X, y = np.ones((20, 2)), np.ones(20)
    Xb = X.copy()
    Xb[3, 1] = bad
    with pytest.raises(ValueError, match="task 1: X contains NaN or infinity"):
        MAMLRegressor(**FAST).fit([(X, y), (Xb, y)])
    yb = y.copy()
    yb[0] = bad
    with pytest.raises(ValueError, match="task 0: y contains NaN or infinity"):
        MAMLRegressor(**FAST).fit([(X, yb), (X, y)])


def test_empty_and_too_small_tasks():
    X, y = np.random.default_rng(0).normal(size=(20, 2)), np.ones(20)
    with pytest.raises(ValueError, match="task 1 is empty"):
        MAMLRegressor(**FAST).fit([(X, y), (X[:0], y[:0])])
    with pytest.raises(ValueError, match=r"task \d+ has 5 samples but k_shot=5"):
        MAMLRegressor(k_shot=5, **FAST).fit([(X, y), (X[:5], y[:5])])
    with pytest.raises(ValueError, match="No tasks"):
        MAMLRegressor(**FAST).fit([])


def test_classification_task_errors(pool):
    X, y = pool
    six = np.isin(y, np.arange(6))
    with pytest.raises(ValueError, match="has 6 classes but n_way=5"):
        MAMLClassifier(n_way=5, k_shot=1, **FAST).fit([(X[six], y[six])] * 3)
    small = np.concatenate([np.flatnonzero(y == 0)[:2], np.flatnonzero(y == 1)])
    with pytest.raises(ValueError, match="class 0 has 2 examples but k_shot=2"):
        MAMLClassifier(n_way=2, k_shot=2, **FAST).fit([(X[small], y[small])] * 2)
    missing = Task(X[y == 0][:3], y[y == 0][:3], X[y < 2][:20], y[y < 2][:20])
    with pytest.raises(ValueError, match="query set has label.*support set lacks"):
        MAMLClassifier(n_way=2, **FAST).fit([missing])


def test_dtypes_are_cast_sensibly():
    rng = np.random.default_rng(0)
    tasks = [(rng.integers(0, 5, size=(20, 2)), rng.integers(0, 3, size=20)) for _ in range(5)]
    est = MAMLRegressor(**FAST).fit(tasks)  # ints become floats
    assert est.adapt(*tasks[0]).predict(tasks[0][0]).dtype == np.float32
    MAMLRegressor(**FAST).fit([(X.astype(np.float16), y) for X, y in tasks])
    MAMLRegressor(**FAST).fit([(X > 2, y) for X, y in tasks])
    with pytest.raises(TypeError, match="task 0: X must be numeric"):
        MAMLRegressor(**FAST).fit([(np.full((20, 2), "a"), np.ones(20))] * 2)
    with pytest.raises(TypeError, match="y must be numeric for regression"):
        MAMLRegressor(**FAST).fit([(np.ones((20, 2)), np.full(20, "a"))] * 2)


def test_shapes():
    with pytest.raises(ValueError, match="X.reshape"):
        MAMLRegressor(**FAST).fit([(np.ones(20), np.ones(20))] * 2)
    with pytest.raises(ValueError, match="different numbers of samples"):
        MAMLRegressor(**FAST).fit([(np.ones((20, 1)), np.ones(19))] * 2)


def test_accepted_forms_are_listed_for_unreadable_input():
    X, y = np.ones((40, 2)), np.ones(40)
    with pytest.raises(ValueError, match="Pass groups=.*skmeta accepts tasks as"):
        MAMLRegressor(**FAST).fit(X, y)
    with pytest.raises(TypeError, match="generator"):
        MAMLRegressor(**FAST).fit((X, y) for _ in range(3))
    with pytest.raises(ValueError, match="y must be None"):
        MAMLRegressor(**FAST).fit([(X, y)] * 3, y)
    with pytest.raises(TypeError, match="task 1 is a str"):
        MAMLRegressor(**FAST).fit([(X, y), "task"])
    with pytest.raises(ValueError, match="groups must be 1-D"):
        MAMLRegressor(**FAST).fit(X, y, groups=np.ones((40, 2)))


def test_use_before_fit():
    X, y = np.ones((20, 2)), np.ones(20)
    with pytest.raises(NotFittedError):
        MAMLRegressor().adapt(X, y)
    with pytest.raises(NotFittedError):
        MAMLRegressor().score([(X, y)])
    with pytest.raises(TypeError, match="adapt"):
        MAMLRegressor().predict(X)


def test_adapt_with_wrong_features(sinusoid_tasks):
    est = ReptileRegressor(k_shot=10, **FAST).fit(sinusoid_tasks)
    with pytest.raises(ValueError, match="input shape"):
        est.adapt(np.ones((5, 3)), np.ones(5))
    adapted = est.adapt(*sinusoid_tasks[0])
    with pytest.raises(ValueError, match="input shape"):
        adapted.predict(np.ones((5, 2)))
    with pytest.raises(TypeError, match="adapt"):
        adapted.fit(np.ones((5, 1)), np.ones(5))


def test_module_output_size_mismatch(pool):
    X, y = pool
    with pytest.raises(ValueError, match=r"needs shape \(4, 5\).*n_way=5"):
        MAMLClassifier(module=MLP(4, 3), n_way=5, k_shot=1, n_query=2, **FAST).fit(X, y)
    with pytest.raises(ValueError, match="one per target"):
        MAMLRegressor(module=nn.Linear(4, 2), **FAST).fit(
            [(X[:20], X[:20, 0])] * 3)


def test_episode_sampler_pool_too_small(pool):
    X, y = pool
    with pytest.raises(ValueError, match="classes with at least"):
        EpisodeSampler(X, y, n_way=30, k_shot=1, n_query=1)
    with pytest.raises(ValueError, match="'k_shot' parameter of EpisodeSampler"):
        EpisodeSampler(X, y, k_shot=0)


def test_sample_weight_is_refused_clearly(sinusoid_tasks):
    est = MAMLRegressor(k_shot=10, **FAST).fit(sinusoid_tasks)
    with pytest.raises(ValueError, match="sample_weight"):
        est.score(sinusoid_tasks, sample_weight=np.ones(3))


def test_zero_features_and_sparse_input():
    with pytest.raises(ValueError, match="0 features"):
        MAMLRegressor(k_shot=2, **FAST).fit([(np.zeros((5, 0)), np.zeros(5))] * 3)
    from scipy import sparse

    with pytest.raises(TypeError, match="sparse"):
        MAMLRegressor(k_shot=2, **FAST).fit([(sparse.csr_matrix(np.ones((5, 2))),
                                              np.zeros(5))] * 3)
