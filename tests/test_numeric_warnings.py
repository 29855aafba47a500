"""No silent numbers: what makes a score or a model meaningless is said, not hidden."""

import warnings

import numpy as np
import pytest
from sklearn.metrics import mean_squared_error

from skmeta import EpisodeSampler, MAMLClassifier, MAMLRegressor
from skmeta.datasets import make_sinusoid_tasks

FAST = dict(max_epochs=1, verbose=0, random_state=0)


@pytest.fixture(scope="module")
def tasks():
    return make_sinusoid_tasks(n_tasks=20, n_samples=20, random_state=0)


@pytest.fixture(scope="module")
def maml(tasks):
    return MAMLRegressor(k_shot=10, **FAST).fit(tasks)


def test_score_tasks_with_a_metric_gives_nan_for_diverged_tasks(maml, tasks):
    diverging = maml.set_params(inner_lr=1e30)
    try:
        with pytest.warns(RuntimeWarning, match="diverged on 20 of 20 task"):
            with_metric = diverging.score_tasks(tasks, metric=mean_squared_error)
        with pytest.warns(RuntimeWarning, match="diverged on 20 of 20 task"):
            without = diverging.score_tasks(tasks)
    finally:
        maml.set_params(inner_lr=0.01)
    assert np.isnan(with_metric).all() and np.isnan(without).all()
    finite = maml.score_tasks(tasks, metric=mean_squared_error)
    assert np.isfinite(finite).all() and (finite >= 0).all()


def test_score_warns_when_weights_explode_but_stay_finite(maml, tasks):
    maml.set_params(inner_lr=1e6)
    try:
        for method in (maml.score, maml.score_tasks):
            with pytest.warns(RuntimeWarning, match=r"inner_lr=1000000\.0: it has probably "
                                                    "diverged"):
                method(tasks)
    finally:
        maml.set_params(inner_lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        maml.score(tasks)


@pytest.mark.parametrize("transform", [lambda X: X * 1000 + 5000, lambda X: X * 100 + 500,
                                       lambda X: X * 30 + 50])
def test_features_far_from_unit_scale_are_caught(tasks, transform):
    scaled = [(transform(X), y) for X, y in tasks]
    with pytest.warns(UserWarning, match="root mean square of .*StandardScaler"):
        try:
            MAMLRegressor(k_shot=10, **FAST).fit(scaled)
        except FloatingPointError:
            pass  # diverging in training is said too


def test_unit_scale_features_are_not_flagged(tasks):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        MAMLRegressor(k_shot=10, **FAST).fit(tasks)  # sine inputs in [-5, 5]


def test_constant_features_are_flagged(tasks):
    constant = [(np.full_like(X, 3.0), y) for X, y in tasks]
    with pytest.warns(UserWarning, match="Every feature of the first task is constant"):
        MAMLRegressor(k_shot=10, **FAST).fit(constant)


def test_classes_too_small_for_an_episode_are_named():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(6), [8, 8, 8, 8, 3, 1])
    X = rng.normal(size=(len(y), 2))
    with pytest.warns(UserWarning, match=r"2 classes of the pool have fewer than k_shot \+ "
                                         r"n_query = 4 examples .*: 4 \(3\), 5 \(1\)"):
        EpisodeSampler(X, y, n_way=2, k_shot=2, n_query=2, n_episodes=5, random_state=0)
    labels = np.array(["a", "b", "c", "d", "e", "f"])[y]
    with pytest.warns(UserWarning, match=r"'f' \(1\)"):
        MAMLClassifier(n_way=2, k_shot=1, n_query=1, n_episodes=4, **FAST).fit(X, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        EpisodeSampler(X, y, n_way=2, k_shot=1, n_query=0, n_episodes=5, random_state=0)


def test_a_training_loss_stuck_at_chance_is_reported():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 10)
    noise = rng.normal(size=(100, 4))  # features that say nothing about the class
    params = dict(n_way=5, k_shot=2, n_query=2, n_episodes=60, batch_size=1,
                  module__hidden=(8,), **FAST)
    with pytest.warns(RuntimeWarning, match=r"training loss is still at chance after 60 "
                                            r"meta-updates .*ln\(5\) = 1\.609"):
        MAMLClassifier(**params).fit(noise, y)
    separable = noise + 4 * y[:, None] % 3 + 3 * (y[:, None] // 3 == np.arange(4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        MAMLClassifier(**{**params, "inner_lr": 0.4}).fit(separable, y)
    with warnings.catch_warnings():  # too short a run to judge: no warning
        warnings.simplefilter("error", RuntimeWarning)
        MAMLClassifier(**{**params, "n_episodes": 10}).fit(noise, y)


def test_classifier_defaults_are_the_measured_ones():
    """The defaults of the classifiers are those docs/user_guide/algorithms.rst measured."""
    import re
    from pathlib import Path

    import skmeta

    guide = (Path(__file__).resolve().parents[1] / "docs" / "user_guide" / "algorithms.rst"
             ).read_text()
    table = guide[guide.index("Classifier defaults, measured"):]
    expected = {"MAMLClassifier": 0.4, "ANILClassifier": 0.4, "MetaSGDClassifier": 0.4,
                "MAMLPlusPlusClassifier": 0.1, "ReptileClassifier": 0.1,
                "PretrainedClassifier": 0.01}
    for name, rate in expected.items():
        assert getattr(skmeta, name)().inner_lr == rate, name
        row = re.search(rf"\* - {name}\n((?:     - .*\n)+)", table)
        assert row and f"inner_lr={rate}" in row.group(1), name
    assert MAMLRegressor().inner_lr == 0.01  # regressors keep theirs
