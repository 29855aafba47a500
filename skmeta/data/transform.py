"""Preprocessing of task lists: a scikit-learn transformer fitted on the pooled tasks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from .task import Task, is_task_sequence

__all__ = ["TaskTransformer"]


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
    >>> from skmeta.data import TaskTransformer
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
