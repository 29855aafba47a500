"""Prediction intervals for a new task, calibrated across tasks (split conformal prediction).

A meta-learner predicts a new task's targets after adapting to a few of its
rows; :class:`ConformalMetaRegressor` adds an interval around each prediction
that contains the target with a stated probability. It is calibrated on tasks
held out of meta-training: each calibration task is adapted on a support set
of ``k_shot`` rows, exactly as a new task will be, and the residuals of its
query rows (divided by the model's predictive standard deviation where it has
one, e.g. :class:`~skmeta.ALPaCARegressor`) are the conformity scores. The
interval's half-width is a quantile of those scores in which every calibration
task weighs the same, whatever its number of query rows.

The guarantee, and its limits (read more in :doc:`/user_guide/uncertainty`):
if the calibration tasks and the new task are exchangeable (drawn from the
same population of tasks, e.g. schools sampled alike) and a new task's support
and query rows are exchangeable within it, a random query row of the new task
is covered with probability about ``confidence_level`` on average over new
tasks. This is the "CDF pooling" method of Dunn, Wasserman and Ramdas (JASA
2023, arXiv:1809.07441): its coverage is guaranteed as the number of
calibration tasks grows, and the ``(1 + 1 / n_tasks)`` correction used here
makes it conservative with few tasks; their repeated-subsampling method, with
an exact finite-sample guarantee and wider intervals, is not implemented.
Coverage is *marginal*: some tasks (noisy ones) are covered less often and
others more; nothing holds for a new task unlike the calibration tasks, nor for
support sets of another size than ``k_shot``.

Names follow MAPIE (``confidence_level``, ``conformalize``,
``predict_interval``).
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
from scipy.stats import norm
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .data import Task, as_tasks
from .metrics import TASK_SCORERS, coverage_score, gaussian_nll_score, mean_width_score

__all__ = ["ConformalMetaRegressor", "conformal_quantile", "split_tasks", "interval_predictions"]


def conformal_quantile(scores: list, confidence_level: float) -> float:
    """The split-conformal quantile of scores grouped by task, every task weighing the same.

    The smallest score ``q`` such that the mixture of the tasks' empirical
    distributions puts at least ``confidence_level * (1 + 1 / n_tasks)`` of its
    mass at or below ``q`` (the finite-sample correction of split conformal
    prediction, with tasks as the exchangeable units).

    Parameters
    ----------
    scores : list of array-like
        The conformity scores of each calibration task's query rows.
    confidence_level : float
        In (0, 1).

    Returns
    -------
    quantile : float
        ``inf`` when there are too few tasks for the level (fewer than about
        ``1 / (1 - confidence_level)``).

    Examples
    --------
    >>> from skmeta.intervals import conformal_quantile
    >>> conformal_quantile([[1.0, 2.0], [3.0], [4.0, 5.0, 6.0, 7.0]], 0.5)
    3.0
    """
    scores = [np.asarray(s, dtype=float).ravel() for s in scores if np.size(s)]
    if not scores:
        raise ValueError("conformal_quantile needs the scores of at least one task.")
    level = confidence_level * (1 + 1 / len(scores))
    if level > 1:
        return float("inf")
    values = np.concatenate(scores)
    weights = np.concatenate([np.full(len(s), 1 / (len(s) * len(scores))) for s in scores])
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    i = int(np.searchsorted(cumulative, level - 1e-12))
    return float(values[order][min(i, len(values) - 1)])


def split_tasks(X: Any, y: Any = None, groups: Any = None, *, k_shot: int,
                random_state: Any = None) -> list[Task]:
    """Split every task into a support set of ``k_shot`` rows and a query set of the rest.

    Tasks given as :class:`~skmeta.Task` with a query set keep their split; the
    others are split at random (with ``random_state``).

    Parameters
    ----------
    X, y, groups : task forms
        As a meta-learner's ``fit`` accepts them (regression).
    k_shot : int
        The number of support rows.
    random_state : int, Generator or None, default=None

    Returns
    -------
    tasks : list of Task
        With their query sets.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.intervals import split_tasks
    >>> X, y = np.arange(20.0)[:, None], np.arange(20.0)
    >>> tasks = split_tasks(X, y, groups=np.repeat([0, 1], 10), k_shot=3, random_state=0)
    >>> [(len(t.X_support), len(t.X_query)) for t in tasks]
    [(3, 7), (3, 7)]
    """
    seq = as_tasks(X, y, groups, classification=False)
    rng = np.random.default_rng(random_state)
    out = []
    for i in range(len(seq)):
        item = seq[i]
        if isinstance(item, Task) and item.X_query is not None:
            out.append(item)
            continue
        Xt, yt = np.asarray(item[0]), np.asarray(item[1])
        if len(Xt) <= k_shot:
            raise ValueError(f"Task {i} has {len(Xt)} rows; with k_shot={k_shot} support rows "
                             "it has none left to predict. Use a smaller k_shot or drop the "
                             "task.")
        order = rng.permutation(len(Xt))
        s, q = order[:k_shot], order[k_shot:]
        out.append(Task(Xt[s], yt[s], Xt[q], yt[q]))
    return out


def _has_std(model: Any) -> bool:
    return getattr(model, "predictive_", None) is not None


class ConformalMetaRegressor(MetaEstimatorMixin, BaseEstimator):
    """Prediction intervals for any meta-learned regressor, calibrated on held-out tasks.

    Split conformal prediction with tasks as the exchangeable units (see
    :mod:`skmeta.intervals` for the guarantee and its limits). ``fit`` meta-trains
    a clone of ``estimator`` on part of the tasks and calibrates on the others
    (``conformalize_size``); with ``prefit=True``, ``estimator`` is already
    meta-trained and :meth:`conformalize` calibrates it. Models returned by
    :meth:`adapt` then answer ``predict_interval(X)``.

    Parameters
    ----------
    estimator : meta-learned regressor
        Any skmeta regressor (MAML, Meta-SGD, ANIL, MAML++, R2-D2, Reptile,
        pre-training, ALPaCA, or a plugin's).
    confidence_level : float, default=0.9
        The probability that an interval contains its target (marginally).
    conformity_score : {"auto", "absolute", "normalized"}, default="auto"
        ``"absolute"``: the absolute residual, so every interval of a
        calibration has the same width; ``"normalized"``: the absolute residual
        divided by the adapted model's predictive standard deviation
        (``predict(X, return_std=True)``), so intervals are wider where the model
        is less sure; ``"auto"`` uses ``"normalized"`` when the model has a
        predictive standard deviation.
    conformalize_size : float or int, default=0.25
        With ``fit``: the fraction (float) or number (int) of tasks held out of
        meta-training for calibration.
    prefit : bool, default=False
        ``estimator`` is already meta-trained: ``fit`` is not used; call
        :meth:`conformalize`.
    k_shot : int or None, default=None
        The support-set size of calibration (and, for the guarantee, of every
        later ``adapt``); None uses the estimator's ``k_shot``.
    random_state : int, Generator or None, default=None
        Seeds the held-out tasks and the support/query splits.

    Attributes
    ----------
    estimator_ : meta-learned regressor
        The meta-trained estimator.
    quantile_ : float
        The calibrated half-width (``"absolute"``) or multiple of the predictive
        standard deviation (``"normalized"``).
    conformity_score_ : str
        ``"absolute"`` or ``"normalized"``.
    n_conformalize_tasks_ : int
        The number of calibration tasks.

    Examples
    --------
    >>> from skmeta import R2D2Regressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> from skmeta.intervals import ConformalMetaRegressor
    >>> tasks = make_sinusoid_tasks(n_tasks=200, n_samples=20, random_state=0)
    >>> est = R2D2Regressor(k_shot=5, max_epochs=1, verbose=0, random_state=0)
    >>> conformal = ConformalMetaRegressor(est, confidence_level=0.9, random_state=0)
    >>> conformal = conformal.fit(tasks)
    >>> X, y = tasks[0]
    >>> y_pred, y_pis = conformal.adapt(X[:5], y[:5]).predict_interval(X[5:])
    >>> y_pis.shape  # lower and upper bounds, for one confidence level
    (15, 2, 1)
    """

    _parameter_constraints = {
        "estimator": [object],
        "confidence_level": [Interval(Real, 0, 1, closed="neither")],
        "conformity_score": [StrOptions({"auto", "absolute", "normalized"})],
        "conformalize_size": [Interval(Real, 0, 1, closed="neither"),
                              Interval(Integral, 1, None, closed="left")],
        "prefit": ["boolean"],
        "k_shot": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator, *, confidence_level: float = 0.9,
                 conformity_score: str = "auto", conformalize_size: float | int = 0.25,
                 prefit: bool = False, k_shot: int | None = None, random_state=None):
        self.estimator = estimator
        self.confidence_level = confidence_level
        self.conformity_score = conformity_score
        self.conformalize_size = conformalize_size
        self.prefit = prefit
        self.k_shot = k_shot
        self.random_state = random_state

    def _k_shot(self) -> int:
        return int(self.k_shot if self.k_shot is not None else self.estimator.k_shot)

    def fit(self, X, y=None, groups=None):
        """Meta-train a clone of ``estimator`` on some tasks; calibrate on the others.

        Parameters
        ----------
        X, y, groups : task forms
            As the estimator's ``fit`` accepts them.

        Returns
        -------
        self : ConformalMetaRegressor
        """
        self._validate_params()
        if self.prefit:
            raise ValueError("prefit=True: the estimator is already meta-trained; call "
                             "conformalize(X, y, groups) on held-out tasks instead of fit.")
        seq = as_tasks(X, y, groups, classification=False)
        rng = np.random.default_rng(self.random_state)
        n = len(seq)
        n_cal = int(round(self.conformalize_size * n)) if isinstance(
            self.conformalize_size, float) else int(self.conformalize_size)
        if not 1 <= n_cal < n:
            raise ValueError(f"conformalize_size={self.conformalize_size!r} leaves {n_cal} of "
                             f"{n} tasks for calibration; it must leave at least one task for "
                             "each of meta-training and calibration.")
        order = rng.permutation(n)
        train = [seq[i] for i in np.sort(order[n_cal:])]
        held_out = [seq[i] for i in np.sort(order[:n_cal])]
        self.estimator_ = clone(self.estimator).fit(train)
        return self._conformalize(held_out, rng)

    def conformalize(self, X, y=None, groups=None):
        """Calibrate on tasks held out of meta-training (with ``prefit=True``, or again).

        Each task is adapted on ``k_shot`` of its rows (its support set, for a
        :class:`~skmeta.Task`) and scored on the others.

        Parameters
        ----------
        X, y, groups : task forms
            Tasks not used in meta-training, from the population of new tasks.

        Returns
        -------
        self : ConformalMetaRegressor
        """
        self._validate_params()
        if not hasattr(self, "estimator_"):
            if not self.prefit:
                raise ValueError("Call fit first, or pass prefit=True with a meta-trained "
                                 "estimator.")
            check_is_fitted(self.estimator, ["module_"])
            self.estimator_ = self.estimator
        return self._conformalize(as_tasks(X, y, groups, classification=False),
                                  np.random.default_rng(self.random_state))

    def _conformalize(self, tasks, rng) -> ConformalMetaRegressor:
        split = split_tasks(tasks, k_shot=self._k_shot(), random_state=rng)
        adapted = self.estimator_.adapt_tasks([(t.X_support, t.y_support) for t in split])
        kind = self.conformity_score
        if kind == "auto":
            kind = "normalized" if all(_has_std(a) for a in adapted) else "absolute"
        if kind == "normalized" and not all(_has_std(a) for a in adapted):
            raise ValueError(f"conformity_score='normalized' needs a predictive standard "
                             f"deviation, which {type(self.estimator_).__name__}'s adapted "
                             "models do not have; use 'absolute'.")
        scores = []
        for model, t in zip(adapted, split):
            if kind == "normalized":
                mean, std = model.predict(t.X_query, return_std=True)
                scores.append(np.abs(np.asarray(t.y_query) - mean) / std)
            else:
                scores.append(np.abs(np.asarray(t.y_query) - model.predict(t.X_query)))
        self.quantile_ = conformal_quantile(scores, self.confidence_level)
        if not np.isfinite(self.quantile_):
            warnings.warn(f"{len(split)} calibration task(s) are too few for confidence_level="
                          f"{self.confidence_level}: the intervals are infinite. Hold out at "
                          f"least {int(np.ceil(1 / (1 - self.confidence_level)))} tasks.",
                          RuntimeWarning, stacklevel=3)
        self.conformity_score_ = kind
        self.n_conformalize_tasks_ = len(split)
        return self

    def _interval(self) -> dict:
        check_is_fitted(self, ["quantile_"])
        return {"confidence_level": float(self.confidence_level),
                "quantile": float(self.quantile_),
                "scaled": self.conformity_score_ == "normalized"}

    def adapt(self, X_support, y_support, **kwargs):
        """Adapt to one task; the model answers ``predict_interval(X)``.

        Parameters
        ----------
        X_support, y_support : array-like
            The task's support set (``k_shot`` rows, for the guarantee).
        **kwargs
            Passed to the estimator's ``adapt``.

        Returns
        -------
        adapted : AdaptedRegressor
            With the calibration in ``interval_``.
        """
        return self.adapt_tasks([(X_support, y_support)], **kwargs)[0]

    def adapt_tasks(self, tasks, **kwargs) -> list:
        """Adapt to many tasks (see :meth:`adapt`).

        Parameters
        ----------
        tasks : sequence of (X_support, y_support) pairs or of Task
        **kwargs
            Passed to the estimator's ``adapt_tasks``.

        Returns
        -------
        adapted : list of AdaptedRegressor
        """
        interval = self._interval()
        out = self.estimator_.adapt_tasks(tasks, **kwargs)
        for model in out:
            model.interval_ = dict(interval)
        return out

    def score(self, X, y=None, groups=None):
        """The estimator's score after adaptation (pooled R²); see its ``score``."""
        check_is_fitted(self, ["estimator_"])
        return self.estimator_.score(X, y, groups)

    def score_tasks(self, X, y=None, groups=None, *, metric=None) -> np.ndarray:
        """The estimator's per-task scores; see its ``score_tasks``."""
        check_is_fitted(self, ["estimator_"])
        return self.estimator_.score_tasks(X, y, groups, metric=metric)


def interval_predictions(estimator: Any, X: Any, y: Any = None, groups: Any = None, *,
                         random_state: Any = 0) -> list[tuple]:
    """Adapt to each task and predict its query rows with intervals and a standard deviation.

    For a :class:`ConformalMetaRegressor`, its calibrated intervals and the
    standard deviation of the Gaussian with the same central interval; for a
    meta-learner whose adapted models have a predictive distribution (ALPaCA),
    its Gaussian intervals at 90% and its predictive standard deviation.

    Parameters
    ----------
    estimator : ConformalMetaRegressor or meta-learned regressor
    X, y, groups : task forms
    random_state : int, Generator or None, default=0
        Seeds the support/query splits (``k_shot`` support rows).

    Returns
    -------
    predictions : list of tuple
        Per task, ``(y_query, y_pred, lower, upper, std)``.

    Examples
    --------
    >>> from skmeta import ALPaCARegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> from skmeta.intervals import interval_predictions
    >>> tasks = make_sinusoid_tasks(n_tasks=30, n_samples=15, random_state=0)
    >>> est = ALPaCARegressor(k_shot=5, max_epochs=1, verbose=0, random_state=0).fit(tasks)
    >>> y, y_pred, lower, upper, std = interval_predictions(est, tasks[:2])[0]
    >>> y.shape, bool((lower < y_pred).all() and (y_pred < upper).all())
    ((10,), True)
    """
    k_shot = estimator._k_shot() if isinstance(estimator, ConformalMetaRegressor) \
        else int(estimator.k_shot)
    split = split_tasks(X, y, groups, k_shot=k_shot, random_state=random_state)
    adapted = estimator.adapt_tasks([(t.X_support, t.y_support) for t in split])
    out = []
    for model, t in zip(adapted, split):
        if model.interval_ is None and model.predictive_ is None:
            raise TypeError(f"{type(estimator).__name__}'s adapted models have no intervals: "
                            "wrap the estimator in skmeta.intervals.ConformalMetaRegressor.")
        y_pred, pis = model.predict_interval(t.X_query)
        lower, upper = pis[..., 0, 0], pis[..., 1, 0]
        if model.interval_ is None:
            std = model.predict(t.X_query, return_std=True)[1]
        else:  # the Gaussian with the calibrated interval
            level = model.interval_["confidence_level"]
            std = (upper - lower) / (2 * norm.ppf(0.5 + level / 2))
        out.append((np.asarray(t.y_query, dtype=float), y_pred, lower, upper, std))
    return out


class _IntervalScorer:
    """A task-aware scorer of prediction intervals or of a predictive distribution."""

    def __init__(self, name: str, sign: int):
        self._name, self._sign = name, sign

    def _metric(self, y, y_pred, lower, upper, std) -> float:
        if self._name == "coverage_score":
            return coverage_score(y, lower, upper)
        if self._name == "mean_width_score":
            return mean_width_score(lower, upper)
        return gaussian_nll_score(y, y_pred, std)

    def __call__(self, estimator: Any, X: Any, y: Any = None, groups: Any = None) -> float:
        if isinstance(estimator, Pipeline):
            raise TypeError("Interval scorers take a ConformalMetaRegressor or a meta-learner "
                            "with a predictive distribution, not a Pipeline.")
        per_task = [self._metric(*p) for p in interval_predictions(estimator, X, y, groups)]
        return self._sign * float(np.mean(per_task))

    def __repr__(self) -> str:
        sign = "" if self._sign > 0 else ", greater_is_better=False"
        return f"make_interval_scorer({self._name}{sign})"


# the interval scorers, by name, beside the point scorers of skmeta.metrics
TASK_SCORERS.update({
    "coverage": _IntervalScorer("coverage_score", 1),
    "neg_mean_width": _IntervalScorer("mean_width_score", -1),
    "neg_gaussian_nll": _IntervalScorer("gaussian_nll_score", -1),
})
