"""Task-aware scorers: score a meta-learner by adapting to each task first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.pipeline import Pipeline

__all__ = ["make_task_scorer", "get_task_scorer", "TASK_SCORERS"]


class _TaskScorer:
    def __init__(self, score_func: Callable, sign: int, kwargs: dict, name: str):
        self._score_func, self._sign, self._kwargs, self._name = score_func, sign, kwargs, name

    def _metric(self, y_true, y_pred) -> float:
        return self._score_func(y_true, y_pred, **self._kwargs)

    def __call__(self, estimator: Any, X: Any, y: Any = None, groups: Any = None) -> float:
        if isinstance(estimator, Pipeline):
            for _, step in estimator.steps[:-1]:
                if step is not None and step != "passthrough":
                    X = step.transform(X)
            estimator = estimator.steps[-1][1]
        if not hasattr(estimator, "score_tasks"):
            raise TypeError(f"A task scorer needs a skmeta meta-learner (or a Pipeline ending in "
                            f"one); got {type(estimator).__name__}.")
        scores = estimator.score_tasks(X, y, groups, metric=self._metric)
        return self._sign * float(np.mean(scores))

    def __repr__(self) -> str:
        sign = "" if self._sign > 0 else ", greater_is_better=False"
        return f"make_task_scorer({self._name}{sign})"


def make_task_scorer(score_func: Callable, *, greater_is_better: bool = True,
                     **kwargs: Any) -> _TaskScorer:
    """Make a scorer that adapts to each task before scoring its query set.

    Use it as ``scoring=`` in :class:`~sklearn.model_selection.GridSearchCV` or
    :func:`~sklearn.model_selection.cross_val_score` with task sequences: for each
    task the meta-learner adapts on the support set, ``score_func(y_query,
    y_pred)`` is computed on the query set and the mean over tasks is returned
    (negated when ``greater_is_better=False``, as scikit-learn expects).

    Parameters
    ----------
    score_func : callable
        ``score_func(y_true, y_pred, **kwargs)``, e.g. ``mean_squared_error``.
    greater_is_better : bool, default=True
    **kwargs
        Passed to ``score_func``.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y=None, groups=None)``.

    Examples
    --------
    >>> from sklearn.metrics import mean_squared_error
    >>> from skmeta.metrics import make_task_scorer
    >>> neg_mse = make_task_scorer(mean_squared_error, greater_is_better=False)
    >>> neg_mse
    make_task_scorer(mean_squared_error, greater_is_better=False)
    """
    name = getattr(score_func, "__name__", repr(score_func))
    return _TaskScorer(score_func, 1 if greater_is_better else -1, kwargs, name)


TASK_SCORERS: dict[str, _TaskScorer] = {
    "r2": make_task_scorer(skm.r2_score),
    "neg_mean_squared_error": make_task_scorer(skm.mean_squared_error, greater_is_better=False),
    "neg_mean_absolute_error": make_task_scorer(skm.mean_absolute_error,
                                                greater_is_better=False),
    "accuracy": make_task_scorer(skm.accuracy_score),
    "balanced_accuracy": make_task_scorer(skm.balanced_accuracy_score),
}


def get_task_scorer(name: str) -> _TaskScorer:
    """A task-aware scorer by name: one of ``TASK_SCORERS``.

    Examples
    --------
    >>> from skmeta.metrics import get_task_scorer
    >>> get_task_scorer("neg_mean_squared_error")
    make_task_scorer(mean_squared_error, greater_is_better=False)
    """
    try:
        return TASK_SCORERS[name]
    except KeyError:
        raise ValueError(f"Unknown task scorer {name!r}; choose one of "
                         f"{sorted(TASK_SCORERS)} or build one with make_task_scorer.") from None
