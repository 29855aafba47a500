"""Feature names, as scikit-learn records and checks them (``feature_names_in_``).

A meta-learner fitted on DataFrames (long format, or tasks whose ``X`` are
DataFrames) records their column names; ``adapt``, ``score`` and an adapted
model's ``predict`` refuse columns that are reordered, renamed or missing, with
scikit-learn's own wording (:func:`sklearn.utils.validation._check_feature_names`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.validation import _check_feature_names

from ..data import Task

__all__ = ["record_feature_names", "check_feature_names", "frames_of", "note_features"]


def _x_of(task: Any) -> Any:
    if isinstance(task, Task):
        return task.X_support
    if isinstance(task, (tuple, list)) and len(task) == 2:
        return task[0]
    return None


def frames_of(X: Any, *, every: bool = True) -> list:
    """The feature arrays of ``X`` whose names are checked: ``X`` itself (long format
    or a pool), or each task's ``X`` in a list of tasks (the first only, unless
    ``every``, and only for lists and tuples: a lazy sequence is not read here)."""
    if hasattr(X, "columns") or hasattr(X, "shape"):
        return [X]
    if isinstance(X, (list, tuple)) and X:
        tasks = X if every else X[:1]
        found = []
        for t in tasks:
            found.append(_x_of(t))
            if isinstance(t, Task) and t.X_query is not None:
                found.append(t.X_query)
        return [f for f in found if f is not None]
    return []


def record_feature_names(estimator: Any, X: Any) -> None:
    """Set (or clear) ``estimator.feature_names_in_`` from the first feature array of ``X``."""
    frames = frames_of(X, every=False)
    if frames:
        _check_feature_names(estimator, frames[0], reset=True)


def check_feature_names(estimator: Any, X: Any) -> None:
    """Check every feature array of ``X`` against ``estimator.feature_names_in_``.

    Raises scikit-learn's ValueError for reordered, renamed or missing columns, and
    warns (as scikit-learn does) when names are given to an estimator fitted
    without them or missing for one fitted with them.
    """
    fitted = getattr(estimator, "feature_names_in_", None)
    for frame in frames_of(X):
        if fitted is None and not hasattr(frame, "columns"):
            continue  # names on neither side: nothing to check (and no per-task cost)
        _check_feature_names(estimator, frame, reset=False)


def note_features(estimator: Any, X: Any, *, reset: bool) -> None:
    """At ``fit``: record the names of ``X``'s features (``reset``, or first fit) or check
    them (warm start, ``partial_fit``); set ``n_features_in_`` from ``input_shape_``."""
    if reset or not hasattr(estimator, "n_features_in_"):
        record_feature_names(estimator, X)
    else:
        check_feature_names(estimator, X)
    estimator.n_features_in_ = int(np.prod(estimator.input_shape_))
