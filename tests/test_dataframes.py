"""DataFrames are handled as scikit-learn handles them: names recorded, then checked."""

import warnings

import numpy as np
import pandas as pd
import pytest

import skmeta
from skmeta import MAMLClassifier, MAMLRegressor
from skmeta.datasets import make_sinusoid_tasks

FAST = dict(max_epochs=1, verbose=0, random_state=0)


@pytest.fixture(scope="module")
def long_format():
    tasks = make_sinusoid_tasks(n_tasks=12, n_samples=20, random_state=0)
    X = np.concatenate([t[0] for t in tasks])[:, 0]
    frame = pd.DataFrame({"x": X, "x2": X ** 2 / 10})
    y = np.concatenate([t[1] for t in tasks])
    groups = np.repeat([f"g{i}" for i in range(12)], 20)
    return frame, y, groups


@pytest.fixture(scope="module")
def maml(long_format):
    X, y, groups = long_format
    return MAMLRegressor(k_shot=10, **FAST).fit(X, y, groups=groups)


def test_feature_names_are_recorded(maml, long_format):
    assert maml.feature_names_in_.tolist() == ["x", "x2"] and maml.n_features_in_ == 2
    X, y, _ = long_format
    adapted = maml.adapt(X[:10], y[:10])
    assert adapted.feature_names_in_.tolist() == ["x", "x2"] and adapted.n_features_in_ == 2
    tasks = [(t[0], t[1]) for t in make_sinusoid_tasks(n_tasks=4, random_state=0)]
    plain = MAMLRegressor(k_shot=10, **FAST).fit(tasks)
    assert not hasattr(plain, "feature_names_in_") and plain.n_features_in_ == 1


@pytest.mark.parametrize("columns, words", [
    (["x2", "x"], "Feature names must be in the same order as they were in fit"),
    (["x", "z"], "Feature names unseen at fit time:\n- z"),
    (["x"], "Feature names seen at fit time, yet now missing:\n- x2"),
])
def test_reordered_renamed_or_missing_columns_are_refused(maml, long_format, columns, words):
    X, y, groups = long_format
    other = X.rename(columns={"x2": "z"}) if "z" in columns else X
    other = other[columns]
    with pytest.raises(ValueError, match="The feature names should match") as info:
        maml.adapt(other[:10], y[:10])
    assert words in str(info.value)
    with pytest.raises(ValueError, match="The feature names should match"):
        maml.score(other, y, groups=groups)
    with pytest.raises(ValueError, match="The feature names should match"):
        maml.adapt_tasks([(other[:10], y[:10])])
    adapted = maml.adapt(X[:10], y[:10])
    with pytest.raises(ValueError, match="The feature names should match"):
        adapted.predict(other)


def test_names_survive_the_safe_format(maml, long_format, tmp_path):
    X, y, _ = long_format
    maml.save(tmp_path / "m.skmeta")
    maml.adapt(X[:10], y[:10]).save(tmp_path / "a.skmeta")
    for name in ("m", "a"):
        loaded = skmeta.load(tmp_path / f"{name}.skmeta")
        assert loaded.feature_names_in_.tolist() == ["x", "x2"]
    with pytest.raises(ValueError, match="same order"):
        skmeta.load(tmp_path / "a.skmeta").predict(X[["x2", "x"]])


def test_adapted_predict_takes_any_array_that_fit_takes(maml, long_format):
    X, y, _ = long_format
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adapted = maml.adapt(X[:10], y[:10])
        np.testing.assert_allclose(adapted.predict(X), adapted.predict(X.copy()))
    plain = MAMLRegressor(k_shot=10, **FAST).fit(
        [(np.c_[t[0], t[0] ** 2 / 10], t[1]) for t in make_sinusoid_tasks(n_tasks=6,
                                                                          random_state=0)])
    A = X.to_numpy().copy()
    adapted = plain.adapt(A[:10], y[:10])
    expected = adapted.predict(A)
    flipped = A[:, ::-1]  # negative strides
    readonly = A.copy()
    readonly.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(adapted.predict(flipped[:, ::-1]), expected)
        np.testing.assert_allclose(plain.adapt(flipped[:10, ::-1], y[:10]).predict(A), expected)
        np.testing.assert_allclose(adapted.predict(readonly), expected)
        np.testing.assert_allclose(adapted.predict(A.tolist()), expected)
        adapted.predict(flipped)  # any layout: the model's own business what it predicts
    with pytest.warns(UserWarning, match="X has feature names, but AdaptedRegressor was "
                                         "fitted without feature names"):
        adapted.predict(X)  # scikit-learn's own warning


def test_long_format_errors_name_the_group():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(25, 2))
    y = rng.normal(size=25)
    groups = np.array(["a"] * 12 + ["b"] * 12 + ["tiny"])
    with pytest.raises(ValueError, match="group 'tiny' .task 2. has 1 sample"):
        MAMLRegressor(k_shot=5, **FAST).fit(X, y, groups=groups)
    with_nan = np.r_[np.zeros(12), np.ones(12), np.nan]
    with pytest.raises(ValueError, match=r"groups has no task id \(NaN or None\) in 1 row "
                                         r"\(rows 24\)"):
        MAMLRegressor(k_shot=5, **FAST).fit(X, y, groups=with_nan)
    with pytest.raises(ValueError, match="no task id"):
        MAMLRegressor(k_shot=5, **FAST).fit(X, y, groups=np.r_[["a"] * 24, [None]].astype(object))


def test_classifier_pool_from_a_dataframe():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(6), 8)
    X = pd.DataFrame(rng.normal(size=(48, 3)) + y[:, None], columns=["a", "b", "c"])
    clf = MAMLClassifier(n_way=2, k_shot=2, n_query=2, n_episodes=6, **FAST).fit(X, y)
    assert clf.feature_names_in_.tolist() == ["a", "b", "c"]
    adapted = clf.adapt(X[y < 2], y[y < 2])
    with pytest.raises(ValueError, match="same order"):
        adapted.predict(X[["c", "b", "a"]])
