"""Adapting a fitted meta-learner to tasks, and scoring it: ``adapt``, ``adapt_tasks``, ``score``.

:class:`AdaptationMixin` is part of every meta-learner (:class:`skmeta.base.BaseMetaLearner`).
Every task is adapted by the algorithm's inner loop (:meth:`skmeta.functional.Learner.run_inner`
through :func:`skmeta.functional.adapt`), exactly as in meta-training and meta-validation, and
the adapted weights become small models of their own (:mod:`skmeta.adapted`).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, validate_parameter_constraints
from sklearn.utils.validation import check_is_fitted
from torch import nn

from . import functional as F
from .adapted import copy_module
from .batching import MetaBatch
from .tasks import TaskSequence, _seed_from, check_task_arrays, group_by_shape

__all__ = ["AdaptationMixin"]

_UNSET: Any = object()
_EXPLODED = 1e4  # relative weight change above which adaptation is reported as diverged


@contextlib.contextmanager
def _mode(module: nn.Module, *, training: bool):
    """Set ``module``'s training mode for a block, then restore it."""
    before = module.training
    module.train(training)
    try:
        yield module
    finally:
        module.train(before)


def _finite_rows(tensors) -> torch.Tensor | None:
    """Per task (leading axis): whether every value of every tensor is finite."""
    rows = [torch.isfinite(t).flatten(1).all(1) for t in tensors]
    return torch.stack(rows).all(0) if rows else None


class AdaptationMixin:
    """``adapt``, ``adapt_tasks``, ``score`` and ``score_tasks`` of a meta-learner."""

    def get_adaptation_module(self) -> nn.Module:
        """The network that ``adapt``, ``score`` and meta-validation fine-tune.

        The meta-learned module itself by default; an algorithm whose adaptation
        starts from another network (e.g. a fresh classification head) overrides it.
        """
        return self.module_

    def _evaluate(self, batch: MetaBatch, steps: int, inner_lr: float | None, *,
                  strict: bool, query: bool = True) -> tuple[list, list]:
        """Adapt on the support sets; per-task query losses and each group's predictions.

        ``strict`` raises when adapted weights or support predictions are not finite;
        otherwise tasks with non-finite weights or query predictions get NaN
        predictions. Returns ``(losses, outputs)``: a loss per task and, per group of
        ``batch``, its query predictions (padded as its query sets are); with
        ``query=False``, ``(None, fast weights per group)``.
        """
        module = self.get_adaptation_module()
        with self._functional_lock:
            learner = self.learner(module, inner_lr=inner_lr)
            with _mode(module, training=True):  # inner steps run as in meta-training
                fasts = self.engines_.run("adapt", module, len(batch), lambda e: [
                    F.adapt(learner, b, steps=steps, engine=e, chunk_size=self.chunk_size)
                    for b in batch.task_batches],
                    batched=functools.partial(self._batched, "adapt", module))
            finite = [_finite_rows(f.values()) for f in fasts]
            engine = self.engines_.last["adapt"]
            if strict:
                bad = not all(ok is None or bool(ok.all()) for ok in finite)
                with _mode(module, training=False):  # huge weights overflow later layers
                    bad = bad or not all(bool(torch.isfinite(F.predict(
                        learner, fast, b.X_support, step=max(steps - 1, 0), engine=engine,
                        chunk_size=self.chunk_size)).all()) for b, fast in
                        zip(batch.task_batches, fasts))
                if bad:
                    self._raise_diverged(steps, inner_lr, batch)
                if learner.rule.run is None:
                    self._warn_if_exploded(learner, fasts, steps, inner_lr)
            if not query:
                return None, fasts
            losses: list = [None] * len(batch)
            outputs = []  # one per group, padded like its query sets
            with _mode(module, training=False):
                for (positions, b), fast, ok in zip(batch.groups, fasts, finite):
                    out = F.predict(learner, fast, b.X_query, step=max(steps - 1, 0),
                                    engine=engine, chunk_size=self.chunk_size)
                    real = _finite_rows([out] if b.query_mask is None else
                                        [out.masked_fill(~b.query_mask.view(
                                            *b.query_mask.shape, *[1] * (out.dim() - 2)), 0)])
                    ok = real if ok is None else ok & real
                    out = torch.where(ok.view(-1, *[1] * (out.dim() - 1)), out, torch.nan)
                    outputs.append(out)
                    if b.query_mask is not None:  # padded: the criterion, without the padding
                        per_task = F.per_task_loss(self.criterion_, out, b.y_query, b.query_mask)
                    for j, pos in enumerate(positions):
                        losses[pos] = per_task[j] if b.query_mask is not None else \
                            self.get_task_loss(out[j], b.y_query[j])
        return losses, outputs

    def _rates(self, inner_lr: float | None) -> str:
        """The inner learning rate(s) adaptation uses, in words."""
        if len(list(self.inner_state_.parameters())):
            return f"the learned inner learning rates (initialised at inner_lr={self.inner_lr})"
        return f"inner_lr={self.inner_lr if inner_lr is None else inner_lr}"

    def _warn_if_exploded(self, learner, fasts: list, steps: int, inner_lr: float | None
                          ) -> None:
        """Warn when gradient steps moved some weights by many times their own size."""
        worst = 0.0
        for fast in fasts:
            for k, v in fast.items():
                phi = learner.params[k].detach()
                size = max(float(phi.norm()), 1e-3 * phi.numel() ** 0.5)
                worst = max(worst, float((v - phi).flatten(1).norm(dim=1).max()) / size)
        if worst > _EXPLODED:
            warnings.warn(f"Adaptation moved some weights by {worst:.3g} times their size after "
                          f"{steps} step(s) with {self._rates(inner_lr)}: it has probably "
                          "diverged (its predictions will be far off). Use a smaller inner_lr "
                          "or fewer adapt_steps.", RuntimeWarning, stacklevel=4)

    def _raise_diverged(self, steps: int, inner_lr: float | None, batch: MetaBatch):
        what = "this task" if len(batch) == 1 else "some tasks"
        raise FloatingPointError(
            f"Adaptation diverged on {what}: the adapted weights are not finite after "
            f"{steps} step(s) with {self._rates(inner_lr)}. Use a smaller inner_lr or fewer "
            "adapt_steps (and features of unit scale).")

    def _check_adapt_args(self, adapt_steps, inner_lr, steps, lr) -> tuple[int, float | None]:
        check_is_fitted(self, ["module_", "input_shape_"])
        for old, new, value in (("steps", "adapt_steps", steps), ("lr", "inner_lr", lr)):
            if value is not _UNSET:
                warnings.warn(f"The {old!r} keyword of adapt, adapt_tasks and adapt_pipeline is "
                              f"deprecated and will be removed in skmeta 0.3; use {new}=.",
                              FutureWarning, stacklevel=4)
        adapt_steps = steps if adapt_steps is None and steps is not _UNSET else adapt_steps
        inner_lr = lr if inner_lr is None and lr is not _UNSET else inner_lr
        adapt_steps = self._adapt_steps() if adapt_steps is None else adapt_steps
        validate_parameter_constraints(
            {"adapt_steps": [Interval(Integral, 0, None, closed="left")],
             "inner_lr": [Interval(Real, 0, None, closed="neither"), None]},
            {"adapt_steps": adapt_steps, "inner_lr": inner_lr},
            caller_name=f"{type(self).__name__}.adapt")
        return int(adapt_steps), None if inner_lr is None else float(inner_lr)

    def adapt(self, X_support, y_support, *, adapt_steps: int | None = None,
              inner_lr: float | None = None, steps=_UNSET, lr=_UNSET):
        """Adapt the meta-learned initialisation to one task.

        Runs the inner loop (``adapt_steps`` steps of the algorithm's inner rule,
        e.g. gradient steps of size ``inner_lr``) on the support set, from the
        meta-parameters. The meta-learner itself is left untouched.

        Parameters
        ----------
        X_support : array-like of shape (n_support, \\*input_shape)
            The task's support examples.
        y_support : array-like of shape (n_support,) or (n_support, n_targets)
            Their targets (any labels, for classifiers).
        adapt_steps : int, default=None
            Number of inner steps; None uses the estimator's ``adapt_steps``
            (itself ``inner_steps`` by default); 0 returns the meta-parameters as
            a model.
        inner_lr : float, default=None
            Step size; None uses the estimator's ``inner_lr`` (algorithms with
            learned inner learning rates refuse an override).
        steps, lr : deprecated
            Old names of ``adapt_steps`` and ``inner_lr``.

        Returns
        -------
        adapted : AdaptedRegressor or AdaptedClassifier
            A small, picklable, fitted estimator for this task.

        Raises
        ------
        FloatingPointError
            If the adapted weights are not finite (``inner_lr`` too large).
        """
        check_is_fitted(self, ["module_", "input_shape_"])
        X_support, y_support = check_task_arrays(
            X_support, y_support, where="the support set (X_support, y_support)",
            classification=self._classification)
        return self.adapt_tasks([(X_support, y_support)], adapt_steps=adapt_steps,
                                inner_lr=inner_lr, steps=steps, lr=lr)[0]

    def adapt_tasks(self, tasks, *, adapt_steps: int | None = None,
                    inner_lr: float | None = None, steps=_UNSET, lr=_UNSET) -> list:
        """Adapt to many tasks at once (vectorised when shapes agree).

        Parameters
        ----------
        tasks : sequence of (X_support, y_support) pairs or of :class:`~skmeta.Task`
            Only the support sets are used.
        adapt_steps, inner_lr, steps, lr : see :meth:`adapt`

        Returns
        -------
        adapted : list of AdaptedRegressor or AdaptedClassifier
        """
        adapt_steps, inner_lr = self._check_adapt_args(adapt_steps, inner_lr, steps, lr)
        seq = TaskSequence(list(tasks), classification=self._classification)
        single = len(seq) == 1
        split, classes, y_ndims = [], [], []
        for i in range(len(seq)):
            Xs, ys = seq[i][0], seq[i][1]  # a Task's support set, or an (X, y) pair
            where = "y_support" if single else f"task {i}"
            self._check_input_shape(Xs, "X_support" if single else f"task {i}: X_support")
            if not self._classification:
                n_targets = 1 if np.ndim(ys) == 1 else np.shape(ys)[1]
                if n_targets != self.n_outputs_:
                    raise ValueError(f"{where} has {n_targets} target(s) but "
                                     f"{type(self).__name__} was fitted on {self.n_outputs_}.")
            cls, ys_enc, _ = self._encode_targets(ys, None, rng=None, where=where)
            split.append((Xs, ys_enc, None, None))
            classes.append(cls)
            y_ndims.append(np.ndim(ys))
        out: list = [None] * len(split)
        module = self.get_adaptation_module()
        label = "learned" if len(list(self.inner_state_.parameters())) else \
            (self.inner_lr if inner_lr is None else inner_lr)
        for positions, (Xs, ys, _, _) in group_by_shape(split):
            batch = MetaBatch([(list(range(len(positions))),
                                F.TaskBatch(self._to_tensor(Xs), self._to_tensor(ys, True)))],
                              None, positions)
            _, (fast,) = self._evaluate(batch, adapt_steps, inner_lr, strict=True, query=False)
            with self._functional_lock:  # copying must not see another call's swapped tensors
                params = dict(module.named_parameters())
                for j, pos in enumerate(positions):
                    copied = copy_module(module, {**params, **{k: v[j] for k, v in fast.items()}})
                    out[pos] = self._make_adapted(copied.eval(), classes[pos], y_ndims[pos],
                                                  adapt_steps, label)
            if adapt_steps > 0:
                self.finish_adapted([out[p] for p in positions], batch.task_batches[0])
        return out

    def finish_adapted(self, adapted: list, support: F.TaskBatch) -> None:
        """Complete the models adapted to tasks of one shape (hook; nothing by default).

        An algorithm with more to say than the adapted weights stores it here, e.g. a
        posterior for ``predict(X, return_std=True)`` (``AdaptedRegressor.predictive_``).

        Parameters
        ----------
        adapted : list of AdaptedRegressor or AdaptedClassifier
            The models, in the order of the tasks of ``support``.
        support : skmeta.functional.TaskBatch
            Their support sets (encoded targets), with a leading task axis.
        """

    def _check_input_shape(self, X: np.ndarray, what: str) -> None:
        if tuple(X.shape[1:]) != tuple(self.input_shape_):
            raise ValueError(f"{what} has input shape {tuple(X.shape[1:])} but "
                             f"{type(self).__name__} was fitted on {self.input_shape_}.")

    def _make_adapted(self, module: nn.Module, classes, y_ndim: int, steps: int, label):
        adapted = self._adapted_class()._from_meta(self, module, classes, y_ndim,
                                                   adapt_steps=steps, inner_lr=label)
        if not isinstance(self.module, nn.Module):  # rebuildable from its class (safe format)
            kwargs = self.get_module_kwargs()
            if "n_outputs" in kwargs:
                kwargs["n_outputs"] = self._adapted_n_outputs(classes)
            adapted.module_class_ = self.module
            adapted.module_kwargs_ = kwargs
        return adapted

    def _adapted_n_outputs(self, classes) -> int:
        """Output size of an adapted network (to rebuild it from its class); ``classes`` are
        the task's labels (None for regressors)."""
        return int(self._n_outputs())

    def _score(self, X, y, groups, metric) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        check_is_fitted(self, ["module_", "input_shape_"])
        self._check_params()
        tasks = self._as_tasks(X, y, groups)
        seed = self.seed_ if self.random_state is None else _seed_from(self.random_state)
        rng = np.random.default_rng([seed, 3])
        per_task: list = []  # (score, numerator, denominator) of every task, in order
        for start in range(0, len(tasks), 256):
            batch = self.get_meta_batch(tasks, np.arange(start, min(start + 256, len(tasks))),
                                        rng, training=False)
            _, outputs = self._evaluate(batch, self._adapt_steps(), None, strict=False)
            found: list = [None] * len(batch)
            for (positions, b), pred in zip(batch.groups, outputs):
                classes = None if batch.classes is None else [batch.classes[p] for p in positions]
                if metric is None:  # vectorised over the group
                    for j, values in enumerate(zip(*self._group_scores(
                            b.y_query, pred, classes, b.query_mask))):
                        found[positions[j]] = values
                    continue
                for j, pos in enumerate(positions):  # the task's real query rows
                    rows = slice(None) if b.query_mask is None else b.query_mask[j]
                    found[pos] = (self._task_score(b.y_query[j][rows], pred[j][rows],
                                                   None if classes is None else classes[j],
                                                   metric), 0, 0)
            per_task.extend(found)
        scores, nums, dens = (np.asarray(v, dtype=float) for v in zip(*per_task))
        if not np.isfinite(scores).all():
            warnings.warn(f"Adaptation diverged on {int((~np.isfinite(scores)).sum())} of "
                          f"{len(scores)} "
                          f"task(s) (non-finite adapted weights or predictions after "
                          f"{self._adapt_steps()} step(s) with {self._rates(None)}); their "
                          "score is NaN. Use a smaller inner_lr or fewer adapt_steps.",
                          RuntimeWarning, stacklevel=3)
        return scores, nums, dens

    def score(self, X, y=None, groups=None, sample_weight=None):
        """The score after adaptation: pooled R² (regressors) or mean accuracy (classifiers).

        Each task is adapted on its support set (``k_shot`` examples, per class
        for classifiers, drawn with ``random_state``) and predicts its query set.
        Regressors report the R² of the query predictions pooled over tasks
        (``1 - sum of squared errors / sum over tasks of the squared deviations
        from each task's query mean``), which ranks models as their squared error
        does; classifiers the accuracy averaged over tasks. Accepts the task forms
        of :meth:`fit`. Per-task scores: :meth:`score_tasks`.

        Parameters
        ----------
        X, y, groups : see :meth:`fit`
        sample_weight : None
            Must be None: every task counts equally.

        Returns
        -------
        score : float
            NaN (with a RuntimeWarning) if adaptation diverged on some task.
        """
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__}.score weighs tasks, not examples; "
                             "per-example sample_weight is not supported.")
        scores, num, den = self._score(X, y, groups, None)
        return float("nan") if not np.isfinite(scores).all() else self._summarise(scores, num,
                                                                                  den)

    def score_tasks(self, X, y=None, groups=None, *, metric=None) -> np.ndarray:
        """Per-task scores after adaptation.

        Parameters
        ----------
        X, y, groups : see :meth:`fit`
        metric : callable, default=None
            ``metric(y_true, y_pred)`` on the query set; R² (regressors) or
            accuracy (classifiers) by default.

        Returns
        -------
        scores : ndarray of shape (n_tasks,)
            NaN (with a RuntimeWarning) for tasks on which adaptation diverged.
        """
        return self._score(X, y, groups, metric)[0]

    def predict(self, X):
        """Not available on the meta-learner: adapt first.

        Raises
        ------
        TypeError
            Always; use ``adapt(X_support, y_support).predict(X)``
            (``adapt_steps=0`` predicts with the meta-parameters themselves).
        """
        raise TypeError(f"{type(self).__name__}.predict needs a task: call "
                        "adapt(X_support, y_support) and predict with the adapted model it "
                        "returns (adapt(..., adapt_steps=0) predicts with the meta-parameters). "
                        "For GridSearchCV/cross_val_score scoring, use the default (score) or "
                        "skmeta.metrics.get_task_scorer(...) instead of a scikit-learn "
                        "scoring string.")

    def predict_proba(self, X):
        """Not available on the meta-learner: adapt first (see :meth:`predict`)."""
        self.predict(X)
