"""The forms tasks come in, turned into one :class:`~skmeta.data.TaskSequence`.

1. a sequence of ``(X, y)`` pairs (list, tuple, 1-D object array or any lazy
   sequence with ``__len__`` and ``__getitem__``): support and query sets are
   drawn afresh from each task every epoch;
2. a sequence of :class:`~skmeta.Task` objects with a fixed support/query split;
3. long format ``X, y, groups``: one row per example, each group a task;
4. classifiers only: a labelled pool ``X, y`` from which
   :class:`~skmeta.EpisodeSampler` draws ``n_way``-way ``k_shot``-shot episodes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .checks import check_task_arrays, count
from .episodes import EpisodeSampler
from .task import ACCEPTED_FORMS, TaskSequence, is_task_sequence

__all__ = ["as_tasks", "tasks_from_groups"]


def tasks_from_groups(X: Any, y: Any, groups: Any, *, classification: bool = False) -> list:
    """Split long-format data into one ``(X, y)`` task per group.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_targets)
    groups : array-like of shape (n_samples,)
        Task identifier of each row. Tasks come in the order of ``np.unique(groups)``.
    classification : bool, default=False

    Returns
    -------
    tasks : list of (X, y) tuples

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.data import tasks_from_groups
    >>> X = np.arange(6.0).reshape(6, 1)
    >>> tasks = tasks_from_groups(X, X.ravel(), groups=[0, 0, 1, 1, 1, 0])
    >>> [t[0].ravel().tolist() for t in tasks]
    [[0.0, 1.0, 5.0], [2.0, 3.0, 4.0]]
    """
    X, y = check_task_arrays(X, y, where="X, y", classification=classification)
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) != len(X):
        raise ValueError(f"groups must be 1-D with one task id per row of X ({len(X)}); got "
                         f"shape {groups.shape}.")
    missing = _missing_ids(groups)
    if missing.any():
        rows = np.flatnonzero(missing)
        raise ValueError(f"groups has no task id (NaN or None) in {count(len(rows), 'row')} "
                         f"(rows {', '.join(map(str, rows[:5].tolist()))}"
                         f"{', ...' if len(rows) > 5 else ''}): every row needs the id of its "
                         "task. Drop those rows or fill in their ids.")
    try:
        keys, inverse = np.unique(groups, return_inverse=True)
    except TypeError as exc:
        kinds = sorted({type(g).__name__ for g in groups})
        raise TypeError(f"groups mixes id types ({', '.join(kinds)}) that cannot be ordered; "
                        "use task ids of one type.") from exc
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(keys)))[:-1]
    return GroupedTasks([(X[idx], y[idx]) for idx in np.split(order, bounds)],
                        labels=keys.tolist())


def _missing_ids(groups: np.ndarray) -> np.ndarray:
    if groups.dtype.kind == "f":
        return np.isnan(groups)
    if groups.dtype == object:
        return np.array([g is None or (isinstance(g, float) and g != g) for g in groups],
                        dtype=bool)
    return np.zeros(len(groups), dtype=bool)


class GroupedTasks(list):
    """The tasks of long-format data (a list of ``(X, y)``), with each task's group label
    in ``labels``, so that messages name the group rather than an internal index."""

    def __init__(self, tasks: list, *, labels: list):
        super().__init__(tasks)
        self.labels = labels


def as_tasks(X: Any, y: Any = None, groups: Any = None, *, classification: bool,
             pool_sampler: Any = None) -> TaskSequence:
    """Turn any accepted input form into a validated :class:`TaskSequence`.

    ``pool_sampler(X, y)`` builds the episodes of form 4 (classifiers); when it is
    None, a 2-D ``X`` without ``groups`` is refused with a list of accepted forms.
    """
    if isinstance(X, (TaskSequence, EpisodeSampler)):
        if y is not None or groups is not None:
            raise ValueError("y and groups must be None when X is a sequence of tasks.")
        return X if isinstance(X, TaskSequence) else TaskSequence(X, classification=classification)
    if is_task_sequence(X):
        if y is not None:
            raise ValueError("y must be None when X is a sequence of tasks (each task carries "
                             "its own y). " + ACCEPTED_FORMS)
        if groups is not None:
            raise ValueError("groups must be None when X is a sequence of tasks.")
        return TaskSequence(X, classification=classification)
    if y is None:
        raise TypeError(f"Could not read {type(X).__name__} as tasks. " + ACCEPTED_FORMS)
    if groups is not None:
        return TaskSequence(tasks_from_groups(X, y, groups, classification=classification),
                            classification=classification)
    if pool_sampler is None:
        raise ValueError("Got X, y without groups: a regressor needs to know which rows form a "
                         "task. Pass groups=<task id per row>. " + ACCEPTED_FORMS)
    return TaskSequence(pool_sampler(X, y), classification=classification)
