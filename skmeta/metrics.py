"""Task-aware scorers: score a meta-learner by adapting to each task first."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.pipeline import Pipeline

__all__ = ["make_task_scorer", "get_task_scorer", "TASK_SCORERS", "check_scoring_context",
           "coverage_score", "mean_width_score", "gaussian_nll_score"]


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


def coverage_score(y_true, lower, upper) -> float:
    """The fraction of targets inside their intervals.

    Parameters
    ----------
    y_true, lower, upper : array-like of the same shape

    Returns
    -------
    coverage : float

    Examples
    --------
    >>> from skmeta.metrics import coverage_score
    >>> coverage_score([1.0, 5.0], [0.0, 0.0], [2.0, 2.0])
    0.5
    """
    y, lo, hi = (np.asarray(a, dtype=float) for a in (y_true, lower, upper))
    return float(np.mean((lo <= y) & (y <= hi)))


def mean_width_score(lower, upper) -> float:
    """The mean width of the intervals.

    Parameters
    ----------
    lower, upper : array-like of the same shape

    Returns
    -------
    width : float

    Examples
    --------
    >>> from skmeta.metrics import mean_width_score
    >>> mean_width_score([0.0, 1.0], [2.0, 2.0])
    1.5
    """
    return float(np.mean(np.asarray(upper, dtype=float) - np.asarray(lower, dtype=float)))


def gaussian_nll_score(y_true, y_mean, y_std) -> float:
    """The mean negative log-density of the targets under Gaussians ``N(y_mean, y_std ** 2)``.

    Parameters
    ----------
    y_true, y_mean, y_std : array-like of the same shape

    Returns
    -------
    nll : float
        Lower is better.

    Examples
    --------
    >>> from skmeta.metrics import gaussian_nll_score
    >>> round(gaussian_nll_score([0.0], [0.0], [1.0]), 4)  # log(2 pi) / 2
    0.9189
    """
    y, m, s = (np.asarray(a, dtype=float) for a in (y_true, y_mean, y_std))
    return float(np.mean(0.5 * ((y - m) / s) ** 2 + np.log(s) + 0.5 * np.log(2 * np.pi)))


#: scorers by name; :mod:`skmeta.intervals` adds ``"coverage"``, ``"neg_mean_width"`` and
#: ``"neg_gaussian_nll"`` (it is imported with skmeta)
TASK_SCORERS: dict[str, Any] = {
    "r2": make_task_scorer(skm.r2_score),
    "neg_mean_squared_error": make_task_scorer(skm.mean_squared_error, greater_is_better=False),
    "neg_mean_absolute_error": make_task_scorer(skm.mean_absolute_error,
                                                greater_is_better=False),
    "accuracy": make_task_scorer(skm.accuracy_score),
    "balanced_accuracy": make_task_scorer(skm.balanced_accuracy_score),
    # prediction intervals (skmeta.intervals.ConformalMetaRegressor, or ALPaCA's Gaussian
    # ones): each task adapted on k_shot rows, its other rows scored; mean over tasks
}


def get_task_scorer(name: str) -> _TaskScorer:
    """A task-aware scorer by name: one of ``TASK_SCORERS``.

    The task-aware counterpart of :func:`sklearn.metrics.get_scorer`, for
    ``scoring=`` in :class:`~sklearn.model_selection.GridSearchCV` and
    :func:`~sklearn.model_selection.cross_val_score` on tasks.

    Parameters
    ----------
    name : str
        ``"r2"``, ``"neg_mean_squared_error"``, ``"neg_mean_absolute_error"``,
        ``"accuracy"`` or ``"balanced_accuracy"``; for prediction intervals
        (:class:`skmeta.intervals.ConformalMetaRegressor`, or a meta-learner whose
        adapted models have a predictive distribution), ``"coverage"`` (the
        fraction of query targets inside their intervals), ``"neg_mean_width"``
        and ``"neg_gaussian_nll"`` (the Gaussian negative log-likelihood, with
        the model's predictive standard deviation, or the one implied by a
        calibrated interval). Interval scorers split each task at random into
        ``k_shot`` support rows and the rest (seed 0).

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y=None, groups=None)``: adapts to each task and scores
        its query set; the mean over tasks.

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


def _sklearn_scorers(scorer: Any) -> list:
    """The scikit-learn sample scorers inside a cross-validation ``scorer`` object."""
    from sklearn.metrics._scorer import _BaseScorer, _MultimetricScorer

    if isinstance(scorer, _MultimetricScorer):
        return [s for inner in scorer._scorers.values() for s in _sklearn_scorers(inner)]
    return [scorer] if isinstance(scorer, _BaseScorer) else []


def check_scoring_context(estimator: Any) -> None:
    """Refuse to be fitted by a cross-validation that scores with a sample scorer.

    ``GridSearchCV(meta_learner, grid, scoring="neg_mean_squared_error")`` hands
    the meta-learner's test tasks to a scikit-learn scorer, which predicts without
    adapting and fails (a ``TypeError`` per fit that ``error_score=nan`` hides,
    and a grid of NaN scores that silently picks the first candidate). Called at
    the start of ``fit``: when the caller is scikit-learn's ``_fit_and_score``
    with such a scorer, this raises at once, naming the task-aware scorer to use,
    so the search fails loudly before any meta-training.

    Parameters
    ----------
    estimator : meta-learner
        The estimator being fitted (named in the message).

    Returns
    -------
    None

    Raises
    ------
    ValueError
        If a scikit-learn sample scorer will score ``estimator``.

    Examples
    --------
    >>> from skmeta.metrics import check_scoring_context
    >>> check_scoring_context(object())  # not called from a cross-validation: nothing to do
    """
    frame = sys._getframe(1)
    for _ in range(40):
        if frame is None:
            return
        if frame.f_code.co_name == "_fit_and_score" and \
                frame.f_globals.get("__name__", "").startswith("sklearn.model_selection"):
            scorers = _sklearn_scorers(frame.f_locals.get("scorer"))
            if scorers:
                names = ", ".join(sorted({_scorer_name(s) for s in scorers}))
                raise ValueError(
                    f"{type(estimator).__name__} is being cross-validated with the scikit-learn "
                    f"scorer(s) {names}, which predict on a meta-learner without adapting it to "
                    "each task. Pass scoring=skmeta.metrics.get_task_scorer(name) (e.g. "
                    "get_task_scorer('neg_mean_squared_error')), a scorer made with "
                    "skmeta.metrics.make_task_scorer, or scoring=None for the estimator's own "
                    "score.")
            return
        frame = frame.f_back


def _scorer_name(scorer: Any) -> str:
    func = getattr(scorer, "_score_func", None)
    name = getattr(func, "__name__", type(scorer).__name__)
    sign = getattr(scorer, "_sign", 1)
    for key, known in _SKLEARN_NAMES.items():
        if known == (name, sign):
            return repr(key)
    return repr(name)


_SKLEARN_NAMES = {
    "r2": ("r2_score", 1),
    "neg_mean_squared_error": ("mean_squared_error", -1),
    "neg_mean_absolute_error": ("mean_absolute_error", -1),
    "accuracy": ("accuracy_score", 1),
    "balanced_accuracy": ("balanced_accuracy_score", 1),
}
