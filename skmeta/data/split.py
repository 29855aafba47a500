"""Splitting one task into its support and query sets."""

from __future__ import annotations

import numpy as np

from .checks import check_task_size, continuous_targets, n_needed
from .task import Task

__all__ = ["split_task"]


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
        needed = n_needed(k_shot, n_query) if need_query else k_shot
        if len(members) < needed:
            continuous = continuous_targets(y, where)
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
