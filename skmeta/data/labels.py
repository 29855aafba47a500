"""Class labels of a task encoded as network outputs ``0 .. n_way - 1``."""

from __future__ import annotations

import numpy as np

from .checks import continuous_targets

__all__ = ["encode_labels"]


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
            continuous = continuous_targets(np.concatenate([y_support, y_query]), where)
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
