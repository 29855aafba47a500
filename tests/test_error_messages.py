"""Error messages for common mistakes name the mistake and the fix."""

import numpy as np
import pytest

from skmeta import EpisodeSampler, MAMLClassifier, ReptileClassifier, Task

FAST = dict(max_epochs=1, verbose=0, random_state=0)


@pytest.mark.parametrize("estimator", [MAMLClassifier, ReptileClassifier])
def test_continuous_pool_given_to_a_classifier(estimator):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 3)), rng.normal(size=200)
    with pytest.raises(ValueError) as info:
        estimator(**FAST).fit(X, y)
    message = str(info.value)
    assert "the pool: y looks continuous (200 distinct float values among 200" in message
    assert "MAMLRegressor" in message and "groups=" in message
    assert "0 classes" not in message


def test_continuous_tasks_given_to_a_classifier():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 3)), rng.normal(size=200)
    with pytest.raises(ValueError, match="y looks continuous .*MAMLRegressor"):
        MAMLClassifier(n_way=2, k_shot=1, n_query=1, **FAST).fit(X, y, groups=np.arange(200) % 10)
    fixed = [Task(X[:5], y[:5], X[5:10], y[5:10])]
    with pytest.raises(ValueError, match="y looks continuous .*regressor"):
        MAMLClassifier(n_way=2, k_shot=1, n_query=1, **FAST).fit(fixed)


def test_float_class_labels_are_still_classes():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 6).astype(float)  # whole numbers as floats
    X = rng.normal(size=(60, 3)) + y[:, None]
    EpisodeSampler(X, y, n_way=2, k_shot=2, n_query=2, random_state=0)
    halves = y + 0.5  # few distinct values, repeated: class labels, not targets
    sampler = EpisodeSampler(X, halves, n_way=2, k_shot=2, n_query=2, random_state=0)
    assert sampler.classes_.tolist() == (np.arange(10) + 0.5).tolist()
    few = [0, 1, 2, 6, 7, 8]  # two classes of 3 examples: too small, but classes
    with pytest.raises(ValueError, match="The pool has 0 classes"):  # the usual message
        EpisodeSampler(X[few], halves[few], n_way=2, k_shot=2, n_query=2)
