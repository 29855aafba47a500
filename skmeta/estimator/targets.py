"""What regression and classification change in a meta-learner: targets, outputs, scores.

A *target strategy* says how a task's targets become tensors, how many outputs the
network needs, which model ``adapt`` returns and how predictions are scored. The
shell holds one (:meth:`skmeta.estimator.BaseMetaLearner.get_targets`) and calls
only its methods; an algorithm picks one by name with its ``targets`` class
attribute (e.g. ``targets = "one-hot"`` for R2-D2's ridge targets) and never
overrides the shell's encoders. The built-in strategies are:

* ``"regression"`` (:class:`RegressionTargets`): real-valued targets, one output per target;
* ``"labels"`` (:class:`LabelTargets`): ``n_way`` class labels per task, one logit each;
* ``"one-hot"`` (:class:`OneHotTargets`): labels as one-hot rows (targets of a
  regression head solved per task), any number of classes at adaptation;
* ``"pooled-labels"`` (:class:`PooledLabelTargets`): the training tasks' labels as one
  global label space (pre-training), the task's own ``n_way`` labels at adaptation.

:func:`register_targets` adds more. :class:`MetaRegressorMixin` and
:class:`MetaClassifierMixin` are mixed in before an algorithm's base class and
need nothing from it: they set scikit-learn's tags, the kind's hyper-parameters and
the default strategy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from numbers import Integral
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.utils import ClassifierTags, RegressorTags
from sklearn.utils._param_validation import Interval
from torch import nn

from ..data import encode_labels
from .adapted import AdaptedClassifier, AdaptedRegressor
from .parameters import Param

__all__ = ["MetaRegressorMixin", "MetaClassifierMixin", "Targets", "RegressionTargets",
           "LabelTargets", "OneHotTargets", "PooledLabelTargets", "TARGETS", "register_targets"]


def _r2(ss_res: torch.Tensor, ss_tot: torch.Tensor) -> torch.Tensor:
    """1 - SSE/SST, with scikit-learn's convention for constant targets (1 if exact, else 0)."""
    r2 = 1 - ss_res / torch.where(ss_tot > 0, ss_tot, torch.ones_like(ss_tot))
    return torch.where(ss_tot > 0, r2, (ss_res == 0).to(r2.dtype))


class Targets:
    """A target strategy (see the module docstring): built from the estimator's ``n_way``
    and the fitted attributes it names in ``fitted_attributes``.

    Parameters
    ----------
    n_way : int or None
        Classes per task (classifiers); None for regressors.
    fitted : mapping, default=None
        The estimator's fitted attributes named by ``fitted_attributes`` (absent before
        :meth:`fit`).
    """

    name: ClassVar[str] = ""
    classification: ClassVar[bool] = False
    adapted_class: ClassVar[type] = AdaptedRegressor
    fitted_attributes: ClassVar[tuple[str, ...]] = ("n_outputs_",)

    def __init__(self, n_way: int | None = None, fitted: Mapping[str, Any] | None = None):
        self.n_way = n_way
        self.fitted = dict(fitted or {})

    def fit(self, tasks, y0: np.ndarray) -> dict[str, Any]:
        """The fitted attributes learned from the training tasks at ``fit`` (``y0``: the
        first task's targets, already read)."""
        raise NotImplementedError

    def n_outputs(self) -> int | None:
        """The network's output size (None while it depends on data not yet seen)."""
        return self.fitted.get("n_outputs_")

    def adapted_n_outputs(self, classes) -> int:
        """The output size of a network adapted to a task with these ``classes``."""
        return int(self.n_outputs())

    def encode(self, ys, yq, *, rng: np.random.Generator | None, where: str):
        """``(classes, ys, yq)``: the task's targets as network targets (``rng`` during
        meta-training, None at adaptation and scoring)."""
        raise NotImplementedError

    def task_score(self, y_true: torch.Tensor, pred: torch.Tensor, classes, metric) -> float:
        """``metric(y_true, y_pred)`` of one task, in the user's terms."""
        raise NotImplementedError

    def group_scores(self, y_query: torch.Tensor, pred: torch.Tensor, classes,
                     mask: torch.Tensor | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per task of a stacked group: ``(score, numerator, denominator)`` of ``score``."""
        raise NotImplementedError

    @staticmethod
    def summarise(scores: np.ndarray, num: np.ndarray, den: np.ndarray) -> float:
        """The estimator's ``score`` from the per-task scores and their parts."""
        return float(np.mean(scores))


class RegressionTargets(Targets):
    """Real-valued targets, one network output per target; ``score`` is the pooled R².

    The R² of the query predictions pooled over tasks, ``1 - sum_t SSE_t / sum_t SST_t``
    with ``SST_t`` the squared deviations of task ``t``'s query targets from their own
    mean, ranks models as their squared error does, whereas a mean of per-task R² lets
    tasks with tiny variance dominate. Per-task R² come from ``score_tasks``.
    """

    name = "regression"

    def fit(self, tasks, y0) -> dict[str, Any]:
        y0 = np.asarray(y0)
        return {"n_outputs_": 1 if y0.ndim == 1 else int(y0.shape[1])}

    def encode(self, ys, yq, *, rng, where):
        def two_d(a):
            return None if a is None else (a.reshape(-1, 1) if a.ndim == 1 else a)

        return None, two_d(ys), two_d(yq)

    def task_score(self, y_true, pred, classes, metric) -> float:
        return float(metric(y_true.detach().cpu().numpy(), pred.detach().cpu().numpy()))

    def group_scores(self, y_query, pred, classes, mask=None):
        """Per-task R² (as sklearn's r2_score), and per-task, per-target SSE and SST, over the
        real query rows (``mask``)."""
        y = y_query.to(torch.float64)
        p = pred.to(torch.float64).reshape(y.shape)
        m = torch.ones_like(y[..., :1]) if mask is None else mask[..., None].to(y.dtype)
        mean = (y * m).sum(1, keepdim=True) / m.sum(1, keepdim=True)
        ss_res = (((y - p) ** 2) * m).sum(1)
        ss_tot = (((y - mean) ** 2) * m).sum(1)
        return (_r2(ss_res, ss_tot).mean(-1).cpu().numpy(), ss_res.cpu().numpy(),
                ss_tot.cpu().numpy())

    @staticmethod
    def summarise(scores, num, den) -> float:
        """Pooled R²: per target over all tasks, averaged over targets."""
        pooled = _r2(torch.as_tensor(np.sum(num, 0)), torch.as_tensor(np.sum(den, 0)))
        return float(pooled.mean())


class LabelTargets(Targets):
    """``n_way`` class labels per task, one output (logit) per class; ``score`` is accuracy.

    Each task's labels map to outputs in sorted order at adaptation (randomly
    permuted during meta-training, so no output is tied to a class).
    """

    name = "labels"
    classification = True
    adapted_class = AdaptedClassifier
    fitted_attributes = ()

    def fit(self, tasks, y0) -> dict[str, Any]:
        return {"n_outputs_": int(self.n_way)}

    def n_outputs(self) -> int | None:
        return int(self.n_way)

    def encode(self, ys, yq, *, rng, where, n_way: int | None = None):
        n_way = self.n_way if n_way is None else n_way
        perm = None if rng is None else rng.permutation(n_way)
        return encode_labels(ys, yq, n_way=n_way, where=where, permutation=perm)

    def task_score(self, y_true, pred, classes, metric) -> float:
        y_true = classes[y_true.cpu().numpy()]
        y_pred = classes[pred[:, :len(classes)].argmax(-1).cpu().numpy()]
        return float(metric(y_true, y_pred))

    def group_scores(self, y_query, pred, classes, mask=None):
        """Per-task accuracy among each task's own classes, correct counts and query sizes,
        over the real query rows (``mask``)."""
        n_cls = torch.tensor([len(c) for c in classes], device=pred.device)
        outside = torch.arange(pred.shape[-1], device=pred.device) >= n_cls[:, None, None]
        logits = pred.masked_fill(outside, float("-inf"))
        correct = (logits.argmax(-1) == y_query).to(torch.float64)
        diverged = torch.isnan(pred).any(-1)  # NaN predictions count as NaN, not as wrong
        correct = correct.masked_fill(diverged, float("nan"))
        m = torch.ones_like(correct) if mask is None else mask.to(correct.dtype)
        hits, n = (correct * m).sum(1), m.sum(1)
        return (hits / n).cpu().numpy(), hits.cpu().numpy(), n.cpu().numpy()


class OneHotTargets(LabelTargets):
    """Class labels as one-hot rows: the targets of a head solved per task by regression.

    At adaptation a task may have any number of classes (at least ``n_way`` outputs);
    the adapted network has one output per class of its task.
    """

    name = "one-hot"

    def encode(self, ys, yq, *, rng, where, n_way=None):
        n_way = self.n_way if rng is not None else max(self.n_way, len(np.unique(ys)))
        classes, ys, yq = super().encode(ys, yq, rng=rng, where=where, n_way=n_way)
        return classes, np.eye(n_way if rng is not None else len(classes),
                               dtype=np.int64)[ys], yq

    def adapted_n_outputs(self, classes) -> int:
        return len(classes)


class PooledLabelTargets(LabelTargets):
    """The training tasks' labels as one label space (pre-training), ``n_way`` per task after.

    At ``fit`` the classes of all training tasks are pooled (``pretrain_classes_``) and
    the network has one output per pooled class; adaptation uses a task's own
    ``n_way`` labels, as :class:`LabelTargets`, on a fresh ``n_way`` head.
    """

    name = "pooled-labels"
    fitted_attributes = ("pretrain_classes_",)

    def fit(self, tasks, y0) -> dict[str, Any]:
        classes = tasks.classes()
        return {"pretrain_classes_": classes, "n_outputs_": int(self.n_way)}

    def n_outputs(self) -> int | None:
        classes = self.fitted.get("pretrain_classes_")
        return None if classes is None else len(classes)

    def adapted_n_outputs(self, classes) -> int:
        return int(self.n_way)  # adaptation uses a fresh n_way head

    def encode(self, ys, yq, *, rng, where, n_way=None):
        if rng is None:  # adaptation / evaluation: the task's own n_way labels
            return super().encode(ys, yq, rng=None, where=where)
        pooled = self.fitted["pretrain_classes_"]

        def glob(a):
            if a is None:
                return None
            idx = np.minimum(np.searchsorted(pooled, a), len(pooled) - 1)
            if np.any(pooled[idx] != a):
                raise ValueError(f"{where} has labels outside the pre-training classes.")
            return idx.astype(np.int64)

        return None, glob(ys), glob(yq)


#: name -> target strategy class (see :func:`register_targets`)
TARGETS: dict[str, type[Targets]] = {}


def register_targets(cls: type[Targets]) -> type[Targets]:
    """Make a :class:`Targets` subclass available by its ``name`` (usable as a decorator).

    Examples
    --------
    >>> from skmeta.estimator.targets import TARGETS, RegressionTargets, register_targets
    >>> @register_targets
    ... class LogTargets(RegressionTargets):
    ...     name = "log-regression"
    >>> TARGETS["log-regression"] is LogTargets
    True
    >>> del TARGETS["log-regression"]
    """
    if not (isinstance(cls, type) and issubclass(cls, Targets) and cls.name):
        raise TypeError("register_targets takes a Targets subclass with a non-empty name.")
    TARGETS[cls.name] = cls
    return cls


for _cls in (RegressionTargets, LabelTargets, OneHotTargets, PooledLabelTargets):
    register_targets(_cls)


def make_targets(name: str, n_way: int | None, fitted_from: Callable[[str], Any]) -> Targets:
    """The strategy called ``name``, with the fitted attributes it needs (``fitted_from(attr)``
    returns an attribute's value, or raises AttributeError when it is not fitted yet)."""
    try:
        cls = TARGETS[name]
    except KeyError:
        raise ValueError(f"Unknown target strategy {name!r}; known: {sorted(TARGETS)} "
                         "(skmeta.estimator.targets.register_targets adds one).") from None
    fitted = {}
    for attr in cls.fitted_attributes:
        try:
            fitted[attr] = fitted_from(attr)
        except AttributeError:
            pass
    return cls(n_way, fitted)


class MetaRegressorMixin:
    """Regression: real-valued targets (strategy ``"regression"``), scikit-learn's regressor
    tags, and the ``criterion`` default (mean squared error)."""

    _classification = False
    _skmeta_kind = "regressor"
    targets = "regression"
    _params = {"criterion": Param(nn.MSELoss, "torch loss class",
                                  "The loss of a task's predictions, for inner and outer updates.")}
    _doc_variables = {"per_class": ""}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "regressor"
        tags.regressor_tags = RegressorTags()
        return tags


class MetaClassifierMixin:
    """Few-shot classification: ``n_way`` labels per task (strategy ``"labels"``),
    scikit-learn's classifier tags, and the ``criterion``, ``n_way`` and ``n_episodes``
    parameters."""

    _classification = True
    _skmeta_kind = "classifier"
    targets = "labels"
    _params = {
        "criterion": Param(nn.CrossEntropyLoss, "torch loss class",
                           "The loss of a task's predictions, for inner and outer updates."),
        "n_way": Param(5, "int", "Classes per task: the network's output size. Each task's "
                       "labels map to outputs in sorted order at adaptation (randomly permuted "
                       "during meta-training, so no output is tied to a class).",
                       [Interval(Integral, 2, None, closed="left")]),
        "n_episodes": Param(1000, "int", "Episodes per epoch when fitting on a labelled pool "
                            "``fit(X, y)``.", [Interval(Integral, 1, None, closed="left")]),
    }
    _doc_variables = {"per_class": " per class"}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags()
        return tags
