"""The task: its container, the forms it comes in, and the validated sequence of them.

A *task* is a small supervised problem. skmeta accepts tasks in four forms
(:data:`ACCEPTED_FORMS`); :func:`skmeta.data.as_tasks` turns each into a
:class:`TaskSequence`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from .checks import check_task_arrays

__all__ = ["Task", "TaskSequence", "ACCEPTED_FORMS", "is_task_sequence"]


ACCEPTED_FORMS = (
    "skmeta accepts tasks as: (1) a sequence of (X, y) pairs, one per task; (2) a sequence of "
    "skmeta.Task(X_support, y_support, X_query, y_query); (3) long format fit(X, y, groups=...) "
    "with X of shape (n_samples, n_features) and one group id per row; (4) for classifiers, a "
    "labelled pool fit(X, y) from which n_way-way k_shot-shot episodes are drawn."
)


class Task(NamedTuple):
    """A task with a fixed split into a support set and a query set.

    Parameters
    ----------
    X_support : array-like of shape (n_support, \\*input_shape)
    y_support : array-like of shape (n_support,) or (n_support, n_targets)
    X_query : array-like of shape (n_query, \\*input_shape), default=None
        May be omitted for tasks that are only adapted to, never scored.
    y_query : array-like of shape (n_query,) or (n_query, n_targets), default=None

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta import Task
    >>> task = Task(np.zeros((5, 2)), np.zeros(5), np.ones((10, 2)), np.ones(10))
    >>> task.X_query.shape
    (10, 2)
    """

    X_support: Any
    y_support: Any
    X_query: Any = None
    y_query: Any = None


class _Pair(NamedTuple):
    X: np.ndarray
    y: np.ndarray


def _looks_like_task(item: Any) -> bool:
    if isinstance(item, Task):
        return True
    if isinstance(item, (tuple, list)) and len(item) == 2:
        try:
            return np.ndim(item[0]) >= 1 and np.ndim(item[1]) >= 1
        except (ValueError, TypeError):
            return False
    return False


def is_task_sequence(X: Any) -> bool:
    """True when ``X`` is a sequence of tasks rather than a data array."""
    if isinstance(X, np.ndarray):
        return X.dtype == object and X.ndim == 1 and (len(X) == 0 or _looks_like_task(X[0]))
    if isinstance(X, (str, bytes, Mapping)) or hasattr(X, "shape"):
        return False
    if hasattr(X, "__len__") and hasattr(X, "__getitem__"):
        return len(X) == 0 or _looks_like_task(X[0])
    return False


class TaskSequence(Sequence):
    """Validated view of the tasks the user gave (internal).

    Items are :class:`Task` (fixed split) or ``_Pair(X, y)`` (split drawn at use).
    Eager sequences (lists, tuples, arrays) are checked once, when built; lazy ones
    are checked as each task is read, so a lazy million-task sequence is never
    materialised.
    """

    def __init__(self, tasks: Any, *, classification: bool):
        if not (hasattr(tasks, "__len__") and hasattr(tasks, "__getitem__")):
            raise TypeError("tasks must be a sequence with len() and indexing (a list of (X, y) "
                            f"pairs, of skmeta.Task, or a lazy sequence); got {type(tasks)!r}. "
                            "Wrap a generator in list(). " + ACCEPTED_FORMS)
        if len(tasks) == 0:
            raise ValueError("No tasks were given (an empty sequence).")
        self.classification = classification
        self.labels = getattr(tasks, "labels", None)  # long format: the group ids
        self._raw = tasks
        self._eager = isinstance(tasks, (list, tuple, np.ndarray, TaskSequence))
        self.input_shape: tuple[int, ...] | None = None
        if self._eager:
            if not self._check_stacked(tasks):
                self._items = [self._check(i, t) for i, t in enumerate(tasks)]

    def _check_stacked(self, tasks) -> bool:
        """Validate equally shaped numeric (X, y) array pairs in one vectorised pass.

        Returns False (and the caller checks task by task, with task-indexed
        messages) unless every task is such a pair and all values are finite.
        """
        if isinstance(tasks, TaskSequence):
            return False
        first = tasks[0]
        if not (isinstance(first, (tuple, list)) and len(first) == 2
                and isinstance(first[0], np.ndarray) and isinstance(first[1], np.ndarray)):
            return False
        X0, y0 = first
        if (X0.ndim < 2 or min(X0.shape[1:]) == 0 or X0.dtype.kind != "f" or X0.dtype.itemsize < 4
                or y0.dtype.kind not in "fiu" or y0.ndim not in (1, 2)
                or len(X0) != len(y0) or len(X0) == 0
                or (self.classification and y0.ndim != 1)
                or (not self.classification and y0.dtype.kind != "f")):
            return False
        for t in tasks:
            if not (isinstance(t, (tuple, list)) and len(t) == 2
                    and isinstance(t[0], np.ndarray) and isinstance(t[1], np.ndarray)
                    and t[0].shape == X0.shape and t[1].shape == y0.shape
                    and t[0].dtype == X0.dtype and t[1].dtype == y0.dtype):
                return False
        X, y = np.stack([t[0] for t in tasks]), np.stack([t[1] for t in tasks])
        if not (np.isfinite(X).all() and (y.dtype.kind != "f" or np.isfinite(y).all())):
            return False
        if not self.classification and y.dtype != np.float64:
            y = y.astype(np.float32, copy=False)
        self.input_shape = X0.shape[1:]
        self._items = [_CheckedPair(X[i], y[i]) for i in range(len(X))]
        self._stacked = (X, y)
        return True

    def __len__(self) -> int:
        return len(self._raw)

    def stacked(self) -> tuple[np.ndarray, np.ndarray] | None:
        """All tasks as two stacked arrays, when they are equally shaped (X, y) pairs.

        Computed once (for eager sequences only) and used to draw meta-batches
        without a Python loop over tasks; None otherwise.
        """
        if not self._eager:
            return None
        if not hasattr(self, "_stacked"):
            items = self._items
            first = items[0]
            same = all(isinstance(t, _CheckedPair) for t in items) and all(
                t.X.shape == first.X.shape and t.y.shape == first.y.shape
                and t.X.dtype == first.X.dtype and t.y.dtype == first.y.dtype for t in items)
            self._stacked = ((np.stack([t.X for t in items]), np.stack([t.y for t in items]))
                             if same else None)
        return self._stacked

    def stacked_tensors(self, dtype: Any, device: Any) -> tuple[Any, Any] | None:
        """:meth:`stacked` as tensors of ``dtype`` on ``device`` (converted once, then cached)."""
        import torch

        stacked = self.stacked()
        if stacked is None:
            return None
        cache = self.__dict__.setdefault("_tensors", {})
        key = (dtype, str(device))
        if key not in cache:
            cache.clear()  # one copy at a time
            cache[key] = tuple(torch.as_tensor(a, dtype=dtype, device=device) for a in stacked)
        return cache[key]

    def classes(self) -> np.ndarray:
        """Every class label of the tasks, sorted (a pool's classes, or all tasks' labels read
        once); for pooling the tasks into one label space.

        Examples
        --------
        >>> import numpy as np
        >>> from skmeta.data import TaskSequence
        >>> tasks = TaskSequence([(np.zeros((2, 1)), np.array(["b", "a"])),
        ...                       (np.zeros((2, 1)), np.array(["c", "a"]))], classification=True)
        >>> tasks.classes().tolist()
        ['a', 'b', 'c']
        """
        if hasattr(self._raw, "classes_"):  # an EpisodeSampler knows its pool's classes
            return np.asarray(self._raw.classes_)
        labels = []
        for i in range(len(self)):
            t = self[i]
            labels.append(np.asarray(t[1]))
            if len(t) == 4 and t[3] is not None:
                labels.append(np.asarray(t[3]))
        kinds = {("str" if a.dtype.kind in "USO" else "number") for a in labels}
        if len(kinds) > 1:
            raise TypeError("The tasks' labels mix types (str and numbers); pooling them into "
                            "one label space needs labels of one type.")
        return np.unique(np.concatenate(labels))

    def __getitem__(self, i: int):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if self._eager:
            return self._items[i]
        return self._check(i, self._raw[i])

    def _check_targets(self, y: np.ndarray, where: str) -> None:
        if self.classification:
            return
        n_targets = 1 if y.ndim == 1 else y.shape[1]
        if getattr(self, "n_targets", None) is None:
            self.n_targets = n_targets
        elif n_targets != self.n_targets:
            raise ValueError(f"{where}: y has {n_targets} target(s) but the first task has "
                             f"{self.n_targets}; all tasks need the same targets.")

    def _check_shape(self, X: np.ndarray, where: str) -> None:
        if self.input_shape is None:
            self.input_shape = X.shape[1:]
        elif X.shape[1:] != self.input_shape:
            raise ValueError(f"{where}: X has input shape {X.shape[1:]} but the first task has "
                             f"{self.input_shape}; all tasks need the same features.")

    def describe(self, i: int) -> str:
        """How messages name task ``i``: by its group id for long-format data."""
        if self.labels is not None and 0 <= i < len(self.labels):
            return f"group {self.labels[i]!r} (task {i})"
        return f"task {i}"

    def _check(self, i: int, task: Any):
        where = self.describe(i)
        if isinstance(task, TaskSequence._ITEM_TYPES):
            return task  # already validated
        if isinstance(task, Task):
            Xs, ys = check_task_arrays(task.X_support, task.y_support, where=f"{where} (support)",
                                       classification=self.classification)
            self._check_shape(Xs, where)
            self._check_targets(ys, where)
            if (task.X_query is None) != (task.y_query is None):
                raise ValueError(f"{where}: give both X_query and y_query, or neither.")
            Xq = yq = None
            if task.X_query is not None:
                Xq, yq = check_task_arrays(task.X_query, task.y_query, where=f"{where} (query)",
                                           classification=self.classification)
                self._check_shape(Xq, where)
                self._check_targets(yq, where)
                if ys.ndim != yq.ndim:
                    raise ValueError(f"{where}: y_support and y_query differ in dimensions.")
            return _CheckedTask(Xs, ys, Xq, yq)
        if not _looks_like_task(task):
            raise TypeError(f"{where} is a {type(task).__name__}, not an (X, y) pair or a "
                            "skmeta.Task. " + ACCEPTED_FORMS)
        X, y = check_task_arrays(task[0], task[1], where=where, classification=self.classification)
        self._check_shape(X, where)
        self._check_targets(y, where)
        return _CheckedPair(X, y)


class _CheckedTask(Task):
    """A Task whose arrays were validated."""


class _CheckedPair(_Pair):
    """An (X, y) pair whose arrays were validated."""


TaskSequence._ITEM_TYPES = (_CheckedTask, _CheckedPair)
