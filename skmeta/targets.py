"""What regression and classification change in a meta-learner: targets, outputs, scores.

:class:`MetaRegressorMixin` and :class:`MetaClassifierMixin` are mixed in before an
algorithm's base class (``class MAMLRegressor(MetaRegressorMixin, _BaseMAML)``).
They say how a task's targets become tensors, how many outputs the network needs,
which model ``adapt`` returns, and how predictions are scored.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
from sklearn.utils import ClassifierTags, RegressorTags
from sklearn.utils._param_validation import Interval
from torch import nn

from ._diagnostics import warn_if_loss_at_chance
from .adapted import AdaptedClassifier, AdaptedRegressor
from .parameters import Param
from .tasks import EpisodeSampler, encode_labels

__all__ = ["MetaRegressorMixin", "MetaClassifierMixin"]


def _r2(ss_res: torch.Tensor, ss_tot: torch.Tensor) -> torch.Tensor:
    """1 - SSE/SST, with scikit-learn's convention for constant targets (1 if exact, else 0)."""
    r2 = 1 - ss_res / torch.where(ss_tot > 0, ss_tot, torch.ones_like(ss_tot))
    return torch.where(ss_tot > 0, r2, (ss_res == 0).to(r2.dtype))


class MetaRegressorMixin:
    """Regression: real-valued targets, one network output per target.

    ``score`` is the R² of the query predictions pooled over tasks,
    ``1 - sum_t SSE_t / sum_t SST_t`` with ``SST_t`` the squared deviations of task
    ``t``'s query targets from their own mean: it ranks models as their squared
    error does, whereas a mean of per-task R² lets tasks with tiny variance
    dominate. Per-task R² are available from ``score_tasks``.
    """

    _classification = False
    _skmeta_kind = "regressor"
    _params = {"criterion": Param(nn.MSELoss, "torch loss class",
                                  "The loss of a task's predictions, for inner and outer updates.")}
    _doc_variables = {"per_class": ""}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "regressor"
        tags.regressor_tags = RegressorTags()
        return tags

    def _set_target_info(self, y0: np.ndarray) -> None:
        self.n_outputs_ = 1 if y0.ndim == 1 else int(y0.shape[1])

    def _n_outputs(self) -> int | None:
        return getattr(self, "n_outputs_", None)

    def _pool_sampler(self):
        return None

    def _encode_targets(self, ys, yq, *, rng, where):
        def two_d(a):
            return None if a is None else (a.reshape(-1, 1) if a.ndim == 1 else a)

        return None, two_d(ys), two_d(yq)

    def _task_score(self, y_true: torch.Tensor, pred: torch.Tensor, classes, metric) -> float:
        return float(metric(y_true.detach().cpu().numpy(), pred.detach().cpu().numpy()))

    def _group_scores(self, y_query: torch.Tensor, pred: torch.Tensor, classes,
                      mask: torch.Tensor | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    def _summarise(scores: np.ndarray, num: np.ndarray, den: np.ndarray) -> float:
        """Pooled R²: per target over all tasks, averaged over targets."""
        pooled = _r2(torch.as_tensor(np.sum(num, 0)), torch.as_tensor(np.sum(den, 0)))
        return float(pooled.mean())

    def _adapted_class(self):
        return AdaptedRegressor


class MetaClassifierMixin:
    """Few-shot classification: ``n_way`` labels per task, one output (logit) per class.

    Each task's labels map to outputs in sorted order at adaptation (randomly
    permuted during meta-training, so no output is tied to a class). ``score`` is
    the accuracy on the query sets, averaged over tasks.
    """

    _classification = True
    _skmeta_kind = "classifier"
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

    def _set_target_info(self, y0: np.ndarray) -> None:
        self.n_outputs_ = int(self.n_way)

    def on_train_end(self, net, **kwargs):
        super().on_train_end(net, **kwargs)
        warn_if_loss_at_chance(self)  # a loss still at ln(n_way) learned nothing

    def _n_outputs(self) -> int | None:
        return int(self.n_way)

    def _pool_sampler(self):
        def sampler(X, y):
            return EpisodeSampler(X, y, n_way=self.n_way, k_shot=self.k_shot,
                                  n_query=15 if self.n_query is None else self.n_query,
                                  n_episodes=self.n_episodes,
                                  random_state=self._shared_random_state())

        return sampler

    def _encode_targets(self, ys, yq, *, rng, where, n_way=None):
        n_way = self.n_way if n_way is None else n_way
        perm = None if rng is None else rng.permutation(n_way)
        return encode_labels(ys, yq, n_way=n_way, where=where, permutation=perm)

    def _task_score(self, y_true: torch.Tensor, pred: torch.Tensor, classes, metric) -> float:
        y_true = classes[y_true.cpu().numpy()]
        y_pred = classes[pred[:, :len(classes)].argmax(-1).cpu().numpy()]
        return float(metric(y_true, y_pred))

    def _group_scores(self, y_query: torch.Tensor, pred: torch.Tensor, classes,
                      mask: torch.Tensor | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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

    @staticmethod
    def _summarise(scores: np.ndarray, num: np.ndarray, den: np.ndarray) -> float:
        return float(np.mean(scores))

    def _adapted_class(self):
        return AdaptedClassifier
