"""Tasks: containers, support/query splitting, episode sampling and input checks.

A *task* is a small supervised problem. skmeta accepts tasks in four forms, and
this module is the one place that turns each of them into tasks:

1. a sequence of ``(X, y)`` pairs (list, tuple, 1-D object array or any lazy
   sequence with ``__len__`` and ``__getitem__``): support and query sets are
   drawn afresh from each task every epoch;
2. a sequence of :class:`Task` objects with a fixed support/query split;
3. long format ``X, y, groups``: one row per example, each group a task;
4. classifiers only: a labelled pool ``X, y`` from which :class:`EpisodeSampler`
   draws ``n_way``-way ``k_shot``-shot episodes.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

__all__ = ["Task", "EpisodeSampler", "TaskTransformer", "tasks_from_groups"]

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


# ---------------------------------------------------------------------------
# validation of one task's arrays


def check_features(X: Any, *, where: str = "X") -> np.ndarray:
    """Validate and convert a feature array (numeric, finite, at least 2-D).

    Accepts what ``fit`` accepts (arrays, lists, DataFrames); the result is a
    C-contiguous, writable array (copied when ``X`` is read-only or strided, e.g.
    ``X[:, ::-1]``), which PyTorch takes without a warning.
    """
    return _check_X(X, where)


def _check_X(X: Any, where: str) -> np.ndarray:
    if X is None:
        raise TypeError(f"{where}: X is None; pass an array-like of shape (n_samples, "
                        "n_features), e.g. a NumPy array or a DataFrame.")
    if hasattr(X, "toarray") and hasattr(X, "nnz"):
        raise TypeError(f"{where}: sparse X is not supported; pass X.toarray().")
    try:
        X = np.asarray(X)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise ValueError(f"{where}: X could not be converted to an array ({exc}).") from exc
    if X.dtype == object:
        try:
            X = X.astype(np.float64)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{where}: X must be numeric; got an object array that does not "
                            "convert to float.") from exc
    if X.dtype.kind == "b":
        X = X.astype(np.float32)
    elif X.dtype.kind in "iu":
        X = X.astype(np.float32 if X.dtype.itemsize <= 2 else np.float64)
    elif X.dtype.kind == "f":
        if X.dtype.itemsize < 4:
            X = X.astype(np.float32)
    else:
        raise TypeError(f"{where}: X must be numeric (bool, int or float); got dtype "
                        f"{X.dtype}. Encode text or categorical features first.")
    if X.ndim < 2:
        raise ValueError(f"{where}: X must have shape (n_samples, n_features) or "
                         f"(n_samples, *input_shape); got shape {X.shape}. Use "
                         "X.reshape(-1, 1) for a single feature.")
    if X.shape[1:] and min(X.shape[1:]) == 0:
        raise ValueError(f"{where}: X has 0 features (shape {X.shape}).")
    if not np.isfinite(X).all():
        raise ValueError(f"{where}: X contains NaN or infinity.")
    return np.require(X, requirements=["C", "W"])  # no negative strides, no read-only views


def _check_y(y: Any, n: int, where: str, classification: bool) -> np.ndarray:
    if y is None:
        raise TypeError(f"{where}: y is None; pass the targets, one per row of X.")
    y = np.asarray(y)
    if classification:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(f"{where}: y must be 1-D for classification; got shape {y.shape}.")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError(f"{where}: y contains NaN or infinity.")
        if y.dtype == object:
            try:
                np.unique(y)
            except TypeError as exc:
                kinds = sorted({type(v).__name__ for v in y})
                raise TypeError(f"{where}: y mixes label types ({', '.join(kinds)}) that cannot "
                                "be ordered; use labels of one type (e.g. all str).") from exc
    else:
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{where}: y must be numeric for regression; got dtype {y.dtype}.")
        if y.ndim not in (1, 2):
            raise ValueError(f"{where}: y must be 1-D or 2-D; got shape {y.shape}.")
        y = y.astype(np.float64 if y.dtype == np.float64 else np.float32)
        if not np.isfinite(y).all():
            raise ValueError(f"{where}: y contains NaN or infinity.")
    if len(y) != n:
        raise ValueError(f"{where}: X and y have different numbers of samples ({n} and {len(y)}).")
    return y


def _continuous_targets(y: np.ndarray, where: str) -> str | None:
    """Why ``y``, given as class labels, looks like regression targets (None if it does not).

    Like scikit-learn's ``type_of_target(y) == "continuous"`` (floats that are not all
    whole numbers), and with more than half of the values distinct, so that float
    labels that repeat (a few classes) are left alone.
    """
    y = np.asarray(y)
    if y.dtype.kind != "f" or y.size < 2:
        return None
    finite = y[np.isfinite(y)]
    if np.all(finite == np.round(finite)):
        return None
    distinct = np.unique(finite)
    if len(distinct) <= len(y) / 2:
        return None
    examples = ", ".join(f"{v:.4g}" for v in finite[:3])
    return (f"{where}: y looks continuous ({len(distinct)} distinct "
            f"float values among {len(y)}, e.g. {examples}), but a classifier needs class "
            "labels. For regression tasks use a regressor such as MAMLRegressor, with "
            "fit(X, y, groups=task_ids) or a list of (X, y) pairs, one per task.")


def check_task_arrays(X: Any, y: Any, *, where: str = "task",
                      classification: bool) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert one task's ``X`` and ``y`` (numeric, finite, same length)."""
    X = _check_X(X, where)
    y = _check_y(y, X.shape[0], where, classification)
    if X.shape[0] == 0:
        raise ValueError(f"{where} is empty (no samples).")
    return X, y


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
    >>> from skmeta.tasks import tasks_from_groups
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
        raise ValueError(f"groups has no task id (NaN or None) in {_count(len(rows), 'row')} "
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


# ---------------------------------------------------------------------------
# support / query splits


def _n_needed(k_shot: int, n_query: int | None) -> int:
    return k_shot + (1 if n_query is None else n_query)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def check_task_size(n: int, *, k_shot: int, n_query: int | None, need_query: bool = True,
                    where: str = "task") -> None:
    """Refuse a regression task of ``n`` samples that is too small for its split."""
    needed = _n_needed(k_shot, n_query) if need_query else k_shot
    if n < needed:
        query = ("" if not need_query else
                 f" + {'at least 1' if n_query is None else n_query} query")
        raise ValueError(f"{where} has "
                         f"{_count(n, 'sample')} but k_shot={k_shot} support{query} "
                         f"sample(s) need {needed}. Lower k_shot/n_query or drop small tasks.")


def split_task(task, *, k_shot: int, n_query: int | None, rng: np.random.Generator,
               classification: bool, where: str = "task", need_query: bool = True):
    """Draw a support set and a query set from one validated task.

    Fixed-split tasks (:class:`Task`) are returned as they are. For ``(X, y)``
    pairs, regression draws ``k_shot`` support and ``n_query`` query examples
    (``None``: all the rest) without replacement; classification does so per class.

    Returns
    -------
    X_support, y_support, X_query, y_query : ndarray
    """
    if isinstance(task, Task):
        if need_query and task.X_query is None:
            raise ValueError(f"{where} has no query set (X_query, y_query); it can be adapted "
                             "to but not used for meta-training or scoring.")
        return task.X_support, task.y_support, task.X_query, task.y_query
    X, y = task
    if not classification:
        n = len(X)
        check_task_size(n, k_shot=k_shot, n_query=n_query, need_query=need_query, where=where)
        perm = rng.permutation(n)
        q_end = n if n_query is None else k_shot + n_query
        s, q = perm[:k_shot], perm[k_shot:q_end]
        return X[s], y[s], X[q], y[q]
    classes, y_idx = np.unique(y, return_inverse=True)
    support, query = [], []
    for c in range(len(classes)):
        members = np.flatnonzero(y_idx == c)
        needed = _n_needed(k_shot, n_query) if need_query else k_shot
        if len(members) < needed:
            continuous = _continuous_targets(y, where)
            if continuous:
                raise ValueError(continuous)
            label = classes[c].item() if isinstance(classes[c], np.generic) else classes[c]
            raise ValueError(f"{where}: class {label!r} has {len(members)} examples but "
                             f"k_shot={k_shot} support + "
                             f"{'at least 1' if n_query is None else n_query} query examples "
                             f"per class need {needed}.")
        members = rng.permutation(members)
        support.append(members[:k_shot])
        query.append(members[k_shot:len(members) if n_query is None else k_shot + n_query])
    s, q = np.concatenate(support), np.concatenate(query)
    return X[s], y[s], X[q], y[q]


def encode_labels(y_support: np.ndarray, y_query: np.ndarray | None, *, n_way: int,
                  where: str = "task", permutation: np.ndarray | None = None):
    """Map a classification task's labels to network outputs ``0 .. n_way - 1``.

    The i-th class of ``np.unique(y_support)`` goes to output ``i`` (or to
    ``permutation[i]`` when given, which meta-training uses so that no output is
    tied to a class).

    Returns
    -------
    classes : ndarray
        The task's original labels, sorted.
    ys, yq : ndarray of int64
    """
    classes, ys = np.unique(y_support, return_inverse=True)
    if len(classes) > n_way:
        if y_query is not None:  # support and query together: enough values to judge
            continuous = _continuous_targets(np.concatenate([y_support, y_query]), where)
            if continuous:
                raise ValueError(continuous)
        raise ValueError(f"{where} has {len(classes)} classes but n_way={n_way}; raise n_way "
                         "(the network's output size) or split the task.")
    yq = None
    if y_query is not None:
        yq = np.searchsorted(classes, y_query)
        yq_clipped = np.minimum(yq, len(classes) - 1)
        missing = classes[yq_clipped] != y_query
        if np.any(missing):
            raise ValueError(f"{where}: the query set has label(s) "
                             f"{np.unique(np.asarray(y_query)[missing]).tolist()} that the "
                             "support set lacks; every class needs support examples.")
        yq = yq.astype(np.int64)
    ys = ys.astype(np.int64)
    if permutation is not None:
        ys = permutation[ys]
        yq = None if yq is None else permutation[yq]
    return classes, ys, yq


def group_by_shape(split_tasks: Sequence[tuple]) -> list[tuple[list[int], tuple]]:
    """Group split tasks by array shapes and stack each group along a new task axis.

    Returns ``[(positions, (Xs, ys, Xq, yq)), ...]`` with stacked arrays (``None``
    for absent query sets).
    """
    buckets: dict[tuple, list[int]] = {}
    for i, t in enumerate(split_tasks):
        key = tuple(None if a is None else (a.shape, a.dtype.str) for a in t)
        buckets.setdefault(key, []).append(i)
    out = []
    for positions in buckets.values():
        arrays = tuple(
            None if split_tasks[positions[0]][j] is None
            else np.stack([split_tasks[i][j] for i in positions])
            for j in range(4))
        out.append((positions, arrays))
    return out


# ---------------------------------------------------------------------------
# episodes from a labelled pool


def _seed_from(random_state: Any) -> int:
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    raise ValueError(f"random_state must be None, an int, a numpy RandomState or Generator; "
                     f"got {random_state!r}.")


class EpisodeSampler(Sequence):
    """A lazy, seeded sequence of few-shot episodes drawn from a labelled pool.

    Episode ``i`` picks ``n_way`` classes, then ``k_shot`` support and ``n_query``
    query examples of each, without replacement. It is computed when read, from
    ``(random_state, i)`` alone, so the same index always gives the same episode
    and nothing is materialised. Episodes keep the pool's original labels.

    Parameters
    ----------
    X : array-like of shape (n_samples, \\*input_shape)
    y : array-like of shape (n_samples,)
        Class label of each example.
    n_way : int, default=5
        Classes per episode.
    k_shot : int, default=1
        Support examples per class.
    n_query : int, default=15
        Query examples per class.
    n_episodes : int, default=1000
        Length of the sequence.
    groups : array-like of shape (n_samples,), default=None
        A group per example (e.g. Omniglot alphabets), used with ``within_groups``.
    within_groups : bool, default=False
        Draw all classes of an episode from one group (Lake et al.'s harder
        within-alphabet protocol); needs ``groups``.
    random_state : int, RandomState instance or None, default=None
        Seed of the episodes. ``None`` draws one seed at construction.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.tasks import EpisodeSampler
    >>> X, y = np.random.default_rng(0).normal(size=(100, 3)), np.repeat(np.arange(10), 10)
    >>> episodes = EpisodeSampler(X, y, n_way=3, k_shot=2, n_query=4, n_episodes=50,
    ...                           random_state=0)
    >>> len(episodes), episodes[0].X_support.shape, episodes[0].X_query.shape
    (50, (6, 3), (12, 3))
    >>> np.array_equal(episodes[7].y_query, episodes[7].y_query)
    True
    """

    def __init__(self, X: Any, y: Any, *, n_way: int = 5, k_shot: int = 1, n_query: int = 15,
                 n_episodes: int = 1000, groups: Any = None, within_groups: bool = False,
                 random_state: Any = None):
        for name, value, low in (("n_way", n_way, 1), ("k_shot", k_shot, 1),
                                 ("n_query", n_query, 0), ("n_episodes", n_episodes, 1)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
                raise ValueError(f"The '{name}' parameter of EpisodeSampler must be an int >= "
                                 f"{low}. Got {value!r} instead.")
        self.X, self.y = check_task_arrays(X, y, where="the pool", classification=True)
        continuous = _continuous_targets(self.y, "the pool")
        if continuous:
            raise ValueError(continuous)
        self.n_way, self.k_shot, self.n_query = int(n_way), int(k_shot), int(n_query)
        self.n_episodes = int(n_episodes)
        self.within_groups = bool(within_groups)
        self.seed = _seed_from(random_state)
        classes, y_idx, counts = np.unique(self.y, return_inverse=True, return_counts=True)
        self.classes_ = classes
        eligible = np.flatnonzero(counts >= self.k_shot + self.n_query)
        self._members = {c: np.flatnonzero(y_idx == c) for c in eligible}
        if within_groups:
            if groups is None:
                raise ValueError("within_groups=True needs groups (e.g. the alphabet of each "
                                 "example).")
            groups = np.asarray(groups)
            if len(groups) != len(self.y):
                raise ValueError("groups must have one entry per example of the pool.")
            first = {c: groups[m[0]] for c, m in self._members.items()}
            by_group: dict[Any, list[int]] = {}
            for c, g in first.items():
                by_group.setdefault(g, []).append(c)
            self._pools = [np.array(cs) for _, cs in sorted(by_group.items(), key=lambda kv:
                                                               str(kv[0]))
                           if len(cs) >= self.n_way]
            if not self._pools:
                raise ValueError(f"No group has n_way={self.n_way} classes with at least "
                                 f"k_shot + n_query = {self.k_shot + self.n_query} examples.")
        else:
            if len(eligible) < self.n_way:
                raise ValueError(f"The pool has {len(eligible)} classes with at least k_shot + "
                                 f"n_query = {self.k_shot + self.n_query} examples; n_way="
                                 f"{self.n_way} needs {self.n_way}.")
            self._pools = [eligible]
        small = np.flatnonzero(counts < self.k_shot + self.n_query)
        if len(small):  # after the errors: a pool that cannot be used is refused instead
            named = ", ".join(f"{label!r} ({n})" for label, n in
                              zip(classes[small[:10]].tolist(), counts[small[:10]].tolist()))
            more = f" and {len(small) - 10} more" if len(small) > 10 else ""
            one = len(small) == 1
            warnings.warn(f"{len(small)} class{'' if one else 'es'} of the pool "
                          f"ha{'s' if one else 've'} fewer than k_shot + n_query = "
                          f"{self.k_shot + self.n_query} examples and "
                          f"{'is' if one else 'are'} left out of every episode: {named}{more} "
                          "(examples in parentheses). Lower k_shot or n_query to use them, or "
                          "drop them to silence this.", UserWarning, stacklevel=2)

    def __len__(self) -> int:
        return self.n_episodes

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += self.n_episodes
        if not 0 <= i < self.n_episodes:
            raise IndexError(f"episode index {i} out of range for {self.n_episodes} episodes")
        rng = np.random.default_rng([self.seed, i])
        pool = self._pools[rng.integers(len(self._pools))] if len(self._pools) > 1 \
            else self._pools[0]
        chosen = rng.choice(pool, size=self.n_way, replace=False)
        support, query = [], []
        for c in chosen:
            m = rng.choice(self._members[c], size=self.k_shot + self.n_query, replace=False)
            support.append(m[:self.k_shot])
            query.append(m[self.k_shot:])
        s, q = np.concatenate(support), np.concatenate(query)
        return _CheckedTask(self.X[s], self.y[s], self.X[q], self.y[q])

    def __iter__(self) -> Iterator[Task]:
        for i in range(len(self)):
            yield self[i]


# ---------------------------------------------------------------------------
# preprocessing of task lists


class TaskTransformer(TransformerMixin, BaseEstimator):
    """Apply a scikit-learn transformer to every task of a task list.

    The transformer is fitted once on the pooled ``X`` of all tasks (support and
    query sets), then transforms each task's ``X``; targets are left as they are.
    Given a plain array instead of tasks, ``transform`` transforms the array, so
    a pipeline ending in a meta-learner can transform a new task's support set.

    Parameters
    ----------
    transformer : transformer
        E.g. ``StandardScaler()``; cloned before fitting.

    Attributes
    ----------
    transformer_ : transformer
        The fitted clone.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skmeta.tasks import TaskTransformer
    >>> tasks = [(np.array([[0.0], [2.0]]), np.zeros(2)), (np.array([[4.0], [6.0]]), np.ones(2))]
    >>> scaled = TaskTransformer(StandardScaler()).fit_transform(tasks)
    >>> np.round(scaled[1][0].ravel(), 3).tolist()
    [0.447, 1.342]
    """

    def __init__(self, transformer: Any):
        self.transformer = transformer

    @staticmethod
    def _pooled(tasks: Sequence) -> np.ndarray:
        parts = []
        for t in tasks:
            if isinstance(t, Task):
                parts.append(np.asarray(t.X_support))
                if t.X_query is not None:
                    parts.append(np.asarray(t.X_query))
            else:
                parts.append(np.asarray(t[0]))
        return np.concatenate(parts)

    def fit(self, X: Any, y: Any = None) -> TaskTransformer:
        """Fit the transformer on the pooled features of all tasks (or on ``X``)."""
        data = self._pooled(X) if is_task_sequence(X) else X
        self.transformer_ = clone(self.transformer).fit(data)
        return self

    def transform(self, X: Any) -> Any:
        """Transform every task's features (or the array ``X``)."""
        check_is_fitted(self)
        tf = self.transformer_.transform
        if not is_task_sequence(X):
            return tf(X)
        out = []
        for t in X:
            if isinstance(t, Task):
                out.append(Task(tf(t.X_support), t.y_support,
                                None if t.X_query is None else tf(t.X_query), t.y_query))
            else:
                out.append((tf(t[0]), t[1]))
        return out


#: features whose root mean square exceeds this (or that reach 100 times it) make a fixed
#: inner step explode: a gradient step's effect on the output grows with the square of the
#: features' size (features of 20 to 80, such as ages, already need scaling)
SCALE_LIMIT = 10.0


def warn_on_scale(X: np.ndarray) -> None:
    """Warn when features are far from unit scale or do not vary: gradient steps misbehave.

    A gradient step on a first layer moves the output by about ``inner_lr`` times
    the squared size of the features, so features around 1e3 (or 1e2 with offsets,
    e.g. ``X * 1000 + 5000``) make a fixed ``inner_lr`` diverge. Checked on the
    first task: its root mean square above :data:`SCALE_LIMIT` or its largest value
    above 100 times that, or every feature constant (or varying by less than 1e-4).
    """
    X = np.asarray(X, dtype=np.float64)
    X = X.reshape(len(X), -1) if X.ndim > 1 else X.reshape(-1, 1)
    X = X[np.isfinite(X).all(1)]
    if not X.size:
        return
    biggest = float(np.abs(X).max())
    rms = float(np.sqrt(np.mean(X ** 2)))
    spread = float(X.std(axis=0).max()) if len(X) > 1 else 1.0
    advice = ("Consider StandardScaler (long format in a Pipeline) or "
              "skmeta.TaskTransformer(StandardScaler()) for task lists.")
    if rms > SCALE_LIMIT or biggest > 100 * SCALE_LIMIT:
        warnings.warn(f"The features of the first task have a root mean square of {rms:.3g} and "
                      f"reach {biggest:.3g}; fixed inner step sizes work on features of unit "
                      "scale (a gradient step's effect grows with the square of the features' "
                      "size, so adaptation may diverge silently to huge predictions). "
                      + advice, UserWarning, stacklevel=4)
    elif spread < 1e-4:
        what = "constant" if spread == 0 else f"nearly constant (largest standard deviation " \
            f"{spread:.3g})"
        warnings.warn(f"Every feature of the first task is {what}: a task's examples cannot be "
                      "told apart, and fixed inner step sizes work on features of unit scale. "
                      "Check the feature columns; " + advice[0].lower() + advice[1:],
                      UserWarning, stacklevel=4)
