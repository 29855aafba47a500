"""From tasks to meta-batches: validation splits, meta-batches and the epoch iterator.

A :class:`MetaBatch` holds the tasks of one meta-update, each split into a
support and a query set and stacked by shape into :class:`~skmeta.functional.TaskBatch`
tensors. :func:`make_meta_batch` builds one; :class:`MetaBatchIterator` yields the
meta-batches of an epoch; :class:`TaskSplit` holds out tasks for meta-validation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch

from ..functional import TaskBatch
from .checks import check_task_size
from .split import split_task

__all__ = ["TaskSplit", "MetaBatch", "MetaBatchIterator", "make_meta_batch"]


class TaskSplit:
    """Hold out a share of the *tasks* for meta-validation (never stratified).

    skmeta's counterpart of :class:`skorch.dataset.ValidSplit`: pass it as
    ``train_split``; each epoch the meta-learner adapts to every validation task's
    support set and records the mean query loss as ``valid_loss``, so
    :class:`skorch.callbacks.EarlyStopping` and checkpoints work over tasks.

    Parameters
    ----------
    cv : int or float, default=5
        An int ``k`` holds out one task in ``k``; a float in (0, 1) is the share
        of tasks held out.
    random_state : int or None, default=None
        ``None`` holds out the first tasks (no shuffling); an int shuffles.

    Examples
    --------
    >>> from skmeta import TaskSplit
    >>> train, valid = TaskSplit(5)(list(range(10)))
    >>> len(train), len(valid)
    (8, 2)
    """

    def __init__(self, cv: int | float = 5, random_state: int | None = None):
        self.cv = cv
        self.random_state = random_state

    def __call__(self, tasks: Sequence, y: Any = None, **kwargs: Any):
        n = len(tasks)
        cv = self.cv
        if isinstance(cv, Integral) and not isinstance(cv, bool) and cv >= 2:
            n_valid = n // cv
        elif isinstance(cv, Real) and 0 < cv < 1:
            n_valid = int(np.ceil(n * cv))
        else:
            raise ValueError(f"The 'cv' parameter of TaskSplit must be an int >= 2 or a float in "
                             f"(0, 1). Got {cv!r} instead.")
        if n_valid < 1 or n_valid >= n:
            raise ValueError(f"TaskSplit(cv={cv!r}) cannot split {n} task(s) into non-empty "
                             "training and validation sets.")
        idx = np.arange(n)
        if self.random_state is not None:
            idx = np.random.default_rng(self.random_state).permutation(n)
        return _Subset(tasks, idx[n_valid:]), _Subset(tasks, idx[:n_valid])

    def __repr__(self) -> str:
        return f"TaskSplit(cv={self.cv!r}, random_state={self.random_state!r})"


class _Subset(Sequence):
    def __init__(self, tasks: Sequence, indices: np.ndarray):
        self.tasks, self.indices = tasks, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        return self.tasks[int(self.indices[i])]


class MetaBatch:
    """A meta-batch: tasks split into support/query sets, grouped by shape.

    Parameters
    ----------
    groups : list of (positions, TaskBatch)
        Equally shaped tasks stacked as tensors; ``positions`` are the tasks'
        places in the meta-batch.
    classes : list of ndarray or None
        Classifiers: each task's original labels (output ``i`` is ``classes[t][i]``).
    indices : list of int
        The tasks' indices in the task sequence.

    Examples
    --------
    >>> import torch
    >>> from skmeta.data.metabatch import MetaBatch
    >>> from skmeta.functional import TaskBatch
    >>> batch = MetaBatch([([0, 1], TaskBatch(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1)))],
    ...                   None, [7, 9])
    >>> len(batch), len(batch.shard(1, 2)), batch.shard(1, 2).indices
    (2, 1, [9])
    """

    def __init__(self, groups: list, classes: list | None, indices: list[int]):
        self.groups = groups
        self.classes = classes
        self.indices = indices

    @property
    def task_batches(self) -> list[TaskBatch]:
        """The stacked tasks of every group."""
        return [b for _, b in self.groups]

    def __len__(self) -> int:
        return len(self.indices)

    def shard(self, start: int, stop: int) -> MetaBatch:
        """The tasks at positions ``start`` to ``stop - 1``, as a meta-batch of their own."""
        groups = []
        for positions, b in self.groups:
            keep = [j for j, p in enumerate(positions) if start <= p < stop]
            if not keep:
                continue
            if keep == list(range(keep[0], keep[-1] + 1)):  # contiguous: views, no copy
                sub = b.slice(keep[0], keep[-1] + 1)
            else:
                idx = torch.as_tensor(keep, device=b.X_support.device)
                sub = TaskBatch(*(None if t is None else t.index_select(0, idx) for t in b))
            groups.append(([positions[j] - start for j in keep], sub))
        classes = None if self.classes is None else self.classes[start:stop]
        return MetaBatch(groups, classes, self.indices[start:stop])


def make_meta_batch(tasks: Sequence, indices: Any, rng: np.random.Generator, *, k_shot: int,
                    n_query: int | None, classification: bool, encode: Callable,
                    to_tensor: Callable, training: bool, need_query: bool = True,
                    pad_queries: bool = False) -> MetaBatch:
    """Split tasks ``indices`` into support and query sets and stack them by shape.

    Parameters
    ----------
    tasks : sequence of tasks
        A :class:`~skmeta.data.TaskSequence`.
    indices : array-like of int
        Which tasks.
    rng : numpy.random.Generator
        Draws the support/query splits (and, when ``training``, label permutations).
    k_shot, n_query : int, int or None
        Support examples per task (per class for classifiers) and query examples.
    classification : bool
        Whether targets are labels.
    encode : callable
        ``encode(y_support, y_query, rng=, where=) -> (classes, y_support, y_query)``.
    to_tensor : callable
        ``to_tensor(array, target: bool) -> Tensor`` on the estimator's device.
    training : bool
        Meta-training (labels permuted) or evaluation.
    need_query : bool, default=True
        Whether every task must have a query set.
    pad_queries : bool, default=False
        Stack tasks whose query sets differ only in length together, padding the
        shorter ones (``TaskBatch.query_mask`` marks the real rows), instead of one
        group per length: much faster for tables whose groups differ in size.

    Returns
    -------
    batch : MetaBatch
    """
    stacked = None if classification else getattr(tasks, "stacked", lambda: None)()
    if stacked is not None:  # equally sized regression tasks: one vectorised draw
        idx = np.asarray(indices, dtype=np.int64)
        n = stacked[0].shape[1]
        check_task_size(n, k_shot=k_shot, n_query=n_query, need_query=need_query,
                        where=_every_task(stacked[0].shape[0]))  # equally sized: all or none
        perms = np.argsort(rng.random((len(idx), n)), axis=1)  # one permutation per task
        template = to_tensor(np.zeros(0, dtype=np.float32), False)
        X_all, y_all = tasks.stacked_tensors(template.dtype, template.device)
        rows = torch.as_tensor(idx[:, None], device=X_all.device)
        cols = torch.as_tensor(perms, device=X_all.device)
        X, y = X_all[rows, cols], y_all[rows, cols]
        if y.dim() == 2:
            y = y.unsqueeze(-1)
        q_end = n if n_query is None else k_shot + n_query
        batch = TaskBatch(X[:, :k_shot], y[:, :k_shot], X[:, k_shot:q_end], y[:, k_shot:q_end])
        return MetaBatch([(list(range(len(idx))), batch)], None, idx.tolist())
    split, classes = [], []
    for i in indices:
        i = int(i)
        where = tasks.describe(i) if hasattr(tasks, "describe") else f"task {i}"
        Xs, ys, Xq, yq = split_task(tasks[i], k_shot=k_shot, n_query=n_query, rng=rng,
                                    classification=classification, where=where,
                                    need_query=need_query)
        cls, ys, yq = encode(ys, yq, rng=rng if training else None, where=where)
        split.append((Xs, ys, Xq, yq))
        classes.append(cls)
    grouped = group_by_shape(split, pad_queries=pad_queries and need_query)
    groups = []
    for positions, (Xs, ys, Xq, yq, mask) in grouped:
        if mask is not None:
            mask = torch.as_tensor(mask, device=to_tensor(np.zeros(0, np.float32), False).device)
        groups.append((positions, TaskBatch(to_tensor(Xs, False), to_tensor(ys, True),
                                            to_tensor(Xq, False), to_tensor(yq, True), mask)))
    return MetaBatch(groups, classes if classification else None, [int(i) for i in indices])


_EPOCH_BLOCK = 1 << 22  # elements gathered at once when an epoch's meta-batches are assembled


def stacked_epoch(tasks: Sequence, order: np.ndarray, rng: np.random.Generator, *,
                  batch_size: int, k_shot: int, n_query: int | None,
                  to_tensor: Callable) -> Iterator[MetaBatch] | None:
    """The meta-batches of one epoch of equally sized regression tasks, assembled together.

    The same meta-batches, in the same order and with the same splits, as
    :func:`make_meta_batch` called on ``order[i:i + batch_size]`` one after another
    with ``rng``: one random draw, one sort and one gather serve a block of
    meta-batches (blocks of at most about four million values), and each meta-batch is
    a view of its block. None when ``tasks`` are not equally sized (X, y) pairs.

    Parameters
    ----------
    tasks : TaskSequence
    order : array of int
        The tasks of the epoch, in order.
    rng : numpy.random.Generator
        Draws the support/query splits.
    batch_size, k_shot, n_query : int, int, int or None
    to_tensor : callable
        As for :func:`make_meta_batch`.

    Returns
    -------
    batches : iterator of MetaBatch, or None
    """
    stacked = getattr(tasks, "stacked", lambda: None)()
    if stacked is None:
        return None
    n = stacked[0].shape[1]
    check_task_size(n, k_shot=k_shot, n_query=n_query, need_query=True,
                    where=_every_task(stacked[0].shape[0]))
    template = to_tensor(np.zeros(0, dtype=np.float32), False)
    X_all, y_all = tasks.stacked_tensors(template.dtype, template.device)
    per_task = n * (int(np.prod(X_all.shape[2:])) + int(np.prod(y_all.shape[2:])))
    block = max(1, _EPOCH_BLOCK // max(per_task, 1) // batch_size) * batch_size
    q_end = n if n_query is None else k_shot + n_query

    def batches() -> Iterator[MetaBatch]:
        for first in range(0, len(order), block):
            idx = np.asarray(order[first:first + block], dtype=np.int64)
            perms = np.argsort(rng.random((len(idx), n)), axis=1)  # one permutation per task
            rows = torch.as_tensor(idx[:, None], device=X_all.device)
            cols = torch.as_tensor(perms, device=X_all.device)
            X, y = X_all[rows, cols], y_all[rows, cols]
            if y.dim() == 2:
                y = y.unsqueeze(-1)
            for start in range(0, len(idx), batch_size):
                Xb, yb = X[start:start + batch_size], y[start:start + batch_size]
                part = TaskBatch(Xb[:, :k_shot], yb[:, :k_shot], Xb[:, k_shot:q_end],
                                 yb[:, k_shot:q_end])
                ids = idx[start:start + batch_size]
                yield MetaBatch([(list(range(len(ids))), part)], None, ids.tolist())

    return batches()


def _padded(a: np.ndarray, length: int) -> np.ndarray:
    return np.concatenate([a, np.zeros((length - len(a), *a.shape[1:]), a.dtype)])


def _every_task(n: int) -> str:
    return "task 0" if n == 1 else f"every task (task 0 to task {n - 1})"


_SHUFFLE_LIMIT = 10_000_000  # above this many tasks, an epoch samples tasks with replacement


class MetaBatchIterator:
    """The meta-batches of one epoch, from what the estimator passes explicitly.

    Parameters
    ----------
    tasks : sequence of tasks
    batch_size : int
        Tasks per meta-batch.
    rng : numpy.random.Generator
        The random stream of the splits (and, when ``training``, of the task order).
    make_batch : callable
        ``make_batch(tasks, indices, rng, *, training)``: one meta-batch
        (the estimator's ``get_meta_batch``).
    training : bool
        Shuffle the tasks (training), or take them in order (validation: the estimator
        passes a stream seeded the same every epoch, so the splits are the same).
    epoch_batches : callable or None, default=None
        ``epoch_batches(tasks, order, rng, *, training)``: the epoch's meta-batches at
        once, or None where they must be drawn one by one (the same batches and stream).
    """

    def __init__(self, tasks: Sequence, *, batch_size: int, rng: np.random.Generator,
                 make_batch: Any, training: bool, epoch_batches: Any = None):
        self.tasks, self.batch_size, self.rng = tasks, int(batch_size), rng
        self.make_batch, self.training, self.epoch_batches = make_batch, training, epoch_batches

    def __len__(self) -> int:
        return int(np.ceil(len(self.tasks) / self.batch_size))

    def __iter__(self) -> Iterator[MetaBatch]:
        rng, n, size = self.rng, len(self.tasks), self.batch_size
        if self.training:
            if n > _SHUFFLE_LIMIT:  # a huge lazy sequence: sample, never list every index
                for _ in range(len(self)):
                    yield self.make_batch(self.tasks, rng.integers(0, n, size=size), rng,
                                          training=True)
                return
            order = rng.permutation(n)
        else:
            order = np.arange(n)
        batches = None if self.epoch_batches is None else self.epoch_batches(
            self.tasks, order, rng, training=self.training)  # all at once, where it can
        if batches is not None:
            yield from batches
            return
        for start in range(0, len(order), size):
            yield self.make_batch(self.tasks, order[start:start + size], rng,
                                  training=self.training)


def group_by_shape(split_tasks: Sequence[tuple], *, pad_queries: bool = False
                   ) -> list[tuple[list[int], tuple]]:
    """Group split tasks by array shapes and stack each group along a new task axis.

    Parameters
    ----------
    split_tasks : sequence of (X_support, y_support, X_query, y_query)
        ``X_query`` and ``y_query`` may be None (no query sets).
    pad_queries : bool, default=False
        Let tasks that differ only in the length of their query sets share a group:
        their query sets are padded to the longest, and ``mask`` marks the real rows.

    Returns
    -------
    groups : list of (positions, (Xs, ys, Xq, yq, mask))
        Stacked arrays (None for absent query sets); ``mask`` is None when no task of
        the group needed padding.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.data import group_by_shape
    >>> tasks = [(np.zeros((2, 1)), np.zeros(2), np.zeros((n, 1)), np.zeros(n)) for n in (3, 5)]
    >>> [(p, a[2].shape) for p, a in group_by_shape(tasks)]
    [([0], (1, 3, 1)), ([1], (1, 5, 1))]
    >>> [(p, a[2].shape, a[4].sum(1).tolist())
    ...  for p, a in group_by_shape(tasks, pad_queries=True)]
    [([0, 1], (2, 5, 1), [3, 5])]
    """
    def key(t):
        shapes = [None if a is None else (a.shape, a.dtype.str) for a in t]
        if pad_queries and t[2] is not None:  # the query length may differ
            shapes[2:] = [(a.shape[1:], a.dtype.str) for a in t[2:]]
        return tuple(shapes)

    buckets: dict[tuple, list[int]] = {}
    for i, t in enumerate(split_tasks):
        buckets.setdefault(key(t), []).append(i)
    out = []
    for positions in buckets.values():
        first = split_tasks[positions[0]]
        if first[2] is None:
            out.append((positions, (*(np.stack([split_tasks[i][j] for i in positions])
                                      for j in (0, 1)), None, None, None)))
            continue
        lengths = [len(split_tasks[i][2]) for i in positions]
        longest = max(lengths)
        stacked = [np.stack([split_tasks[i][j] for i in positions]) for j in (0, 1)]
        stacked += [np.stack([_padded(split_tasks[i][j], longest) for i in positions])
                    for j in (2, 3)]
        mask = None if min(lengths) == longest else \
            np.arange(longest)[None, :] < np.asarray(lengths)[:, None]
        out.append((positions, (*stacked, mask)))
    return out
