"""Adapting a fitted meta-learner to tasks, and scoring it: the :class:`Adapter` service.

The estimator hands an :class:`Adapter` everything adaptation needs, explicitly: the
network adaptation starts from, the learner (its parameters, inner rule and learned
state), the engine chooser, the per-task loss, the target strategy and the lock that
serialises swaps of tensors into the network. Every task is adapted by the
algorithm's inner loop (:meth:`skmeta.functional.Learner.run_inner` through
:func:`skmeta.functional.adapt`), exactly as in meta-training and meta-validation,
and the adapted weights become small models of their own
(:mod:`skmeta.estimator.adapted`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import functional as F
from ..data import MetaBatch, group_by_shape
from .adapted import copy_module
from .engines import EngineChooser
from .targets import Targets

__all__ = ["Adapter", "AdaptationContext", "EXPLODED"]

#: relative weight change above which adaptation is reported as diverged
EXPLODED = 1e4


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


@dataclasses.dataclass
class AdaptationContext:
    """What adaptation needs from a fitted meta-learner, passed explicitly.

    Attributes
    ----------
    owner : str
        The estimator's class name, for messages.
    module : nn.Module
        The network adaptation starts from (see ``get_adaptation_module``).
    learner : skmeta.functional.Learner
        ``module`` with its parameters, the inner rule and its learned state.
    rates : str
        The inner learning rate(s), in words, for messages.
    engines : EngineChooser
        Chooses (and times) the engine of each kind of work.
    batched : callable
        ``batched() -> (ok, reason)``: whether the batched engine can run the work.
    loss : callable
        ``loss(y_pred, y_true)`` of one task's predictions.
    targets : Targets
        How targets are encoded, which model adaptation returns, how tasks are scored.
    to_tensor : callable
        ``to_tensor(array, target=False)`` on the estimator's device and dtype.
    lock : threading.RLock
        Serialises calls that swap tensors into ``module``.
    chunk_size : int or None
        Tasks per vectorised call.
    """

    owner: str
    module: nn.Module
    learner: F.Learner
    rates: str
    engines: EngineChooser
    batched: Callable[[], tuple[bool, str]]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    targets: Targets
    to_tensor: Callable[..., Any]
    lock: threading.RLock
    chunk_size: int | None = None


class Adapter:
    """Adapts a meta-learner's network to tasks and evaluates it (see the module docstring).

    Parameters
    ----------
    context : AdaptationContext
    """

    def __init__(self, context: AdaptationContext):
        self.context = context

    # ----------------------------------------------------------------- adapting

    def evaluate(self, batch: MetaBatch, steps: int, *, strict: bool, query: bool = True
                 ) -> tuple[list | None, list]:
        """Adapt on the support sets; per-task query losses and each group's predictions.

        ``strict`` raises when adapted weights or support predictions are not finite;
        otherwise tasks with non-finite weights or query predictions get NaN
        predictions. Returns ``(losses, outputs)``: a loss per task and, per group of
        ``batch``, its query predictions (padded as its query sets are); with
        ``query=False``, ``(None, fast weights per group)``.
        """
        ctx = self.context
        module, learner, step = ctx.module, ctx.learner, max(steps - 1, 0)
        with ctx.lock:
            with _mode(module, training=True):  # inner steps run as in meta-training
                fasts = ctx.engines.run("adapt", module, len(batch), lambda e: [
                    F.adapt(learner, b, steps=steps, engine=e, chunk_size=ctx.chunk_size)
                    for b in batch.task_batches], batched=ctx.batched)
            finite = [_finite_rows(f.values()) for f in fasts]
            engine = ctx.engines.last["adapt"]
            if strict:
                bad = not all(ok is None or bool(ok.all()) for ok in finite)
                with _mode(module, training=False):  # huge weights overflow later layers
                    bad = bad or not all(bool(torch.isfinite(F.predict(
                        learner, fast, b.X_support, step=step, engine=engine,
                        chunk_size=ctx.chunk_size)).all())
                        for b, fast in zip(batch.task_batches, fasts))
                if bad:
                    self._raise_diverged(steps, batch)
            if strict or not query:
                self._warn_if_exploded(fasts, steps, finite)
            if not query:
                return None, fasts
            losses: list = [None] * len(batch)
            outputs, kept = [], []  # per group: predictions (padded like its query sets),
            # and which tasks did not diverge
            with _mode(module, training=False):
                for (positions, b), fast, ok in zip(batch.groups, fasts, finite):
                    out = F.predict(learner, fast, b.X_query, step=step, engine=engine,
                                    chunk_size=ctx.chunk_size)
                    real = _finite_rows([out] if b.query_mask is None else
                                        [out.masked_fill(~b.query_mask.view(
                                            *b.query_mask.shape, *[1] * (out.dim() - 2)), 0)])
                    ok = real if ok is None else ok & real
                    out = torch.where(ok.view(-1, *[1] * (out.dim() - 1)), out, torch.nan)
                    outputs.append(out)
                    kept.append(ok)
                    if b.query_mask is not None:  # padded: the criterion, without the padding
                        per_task = F.per_task_loss(ctx.loss, out, b.y_query, b.query_mask)
                    for j, pos in enumerate(positions):
                        losses[pos] = per_task[j] if b.query_mask is not None else \
                            ctx.loss(out[j], b.y_query[j])
        if not strict:  # finite but far off (diverged tasks are reported apart, as NaN)
            self._warn_if_exploded(fasts, steps, kept)
        return losses, outputs

    def adapt(self, supports: Sequence[tuple[np.ndarray, np.ndarray]], steps: int,
              make_model: Callable[..., Any],
              finish: Callable[[list, F.TaskBatch], None] | None = None) -> list:
        """Adapt to every support set ``(X, y)`` (stacked by shape); one model each.

        ``make_model(module, classes, y_ndim)`` turns a network holding one task's
        adapted weights into the model ``adapt`` returns; ``finish(models, support)``
        then completes the models of each group of equally shaped tasks (e.g. with a
        posterior), given their encoded support sets.
        """
        ctx = self.context
        encoded, classes, y_ndims = [], [], []
        for i, (Xs, ys) in enumerate(supports):
            where = "y_support" if len(supports) == 1 else f"task {i}"
            cls, ys_enc, _ = ctx.targets.encode(ys, None, rng=None, where=where)
            encoded.append((Xs, ys_enc, None, None))
            classes.append(cls)
            y_ndims.append(np.ndim(ys))
        out: list = [None] * len(encoded)
        for positions, (Xs, ys, *_) in group_by_shape(encoded):
            batch = MetaBatch([(list(range(len(positions))),
                                F.TaskBatch(ctx.to_tensor(Xs), ctx.to_tensor(ys, True)))],
                              None, positions)
            _, (fast,) = self.evaluate(batch, steps, strict=True, query=False)
            with ctx.lock:  # copying must not see another call's swapped tensors
                params = dict(ctx.module.named_parameters())
                for j, pos in enumerate(positions):
                    copied = copy_module(ctx.module,
                                         {**params, **{k: v[j] for k, v in fast.items()}})
                    out[pos] = make_model(copied.eval(), classes[pos], y_ndims[pos])
            if finish is not None and steps > 0:
                finish([out[p] for p in positions], batch.task_batches[0])
        return out

    # ------------------------------------------------------------------ scoring

    def score(self, batches: Iterable[MetaBatch], steps: int, metric: Callable | None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per task of every meta-batch: ``(score, numerator, denominator)`` after adaptation.

        With ``metric=None`` the target strategy's own score (its parts pool into the
        estimator's ``score``); otherwise ``metric(y_true, y_pred)`` per task. Tasks on
        which adaptation diverged score NaN, with one warning.
        """
        targets = self.context.targets
        per_task: list = []
        for batch in batches:
            _, outputs = self.evaluate(batch, steps, strict=False)
            found: list = [None] * len(batch)
            for (positions, b), pred in zip(batch.groups, outputs):
                classes = None if batch.classes is None else [batch.classes[p] for p in positions]
                if metric is None:  # vectorised over the group
                    for j, values in enumerate(zip(*targets.group_scores(
                            b.y_query, pred, classes, b.query_mask))):
                        found[positions[j]] = values
                    continue
                for j, pos in enumerate(positions):  # the task's real query rows
                    rows = slice(None) if b.query_mask is None else b.query_mask[j]
                    if not bool(torch.isfinite(pred[j][rows]).all()):  # diverged: NaN, as
                        found[pos] = (float("nan"), 0, 0)  # without metric (warned below)
                        continue
                    found[pos] = (targets.task_score(b.y_query[j][rows], pred[j][rows],
                                                     None if classes is None else classes[j],
                                                     metric), 0, 0)
            per_task.extend(found)
        scores, nums, dens = (np.asarray(v, dtype=float) for v in zip(*per_task))
        if not np.isfinite(scores).all():
            warnings.warn(f"Adaptation diverged on {int((~np.isfinite(scores)).sum())} of "
                          f"{len(scores)} task(s) (non-finite adapted weights or predictions "
                          f"after {steps} step(s) with {self.context.rates}); their score is "
                          "NaN. Use a smaller inner_lr or fewer adapt_steps.",
                          RuntimeWarning, stacklevel=4)
        return scores, nums, dens

    # ------------------------------------------------------------------ messages

    def _warn_if_exploded(self, fasts: list, steps: int, keep: list) -> None:
        """Warn when the inner loop moved some weights by many times their own size (over the
        tasks ``keep`` marks, per group; None: all)."""
        params, worst = self.context.learner.params, 0.0
        for fast, ok in zip(fasts, keep):
            for k, v in fast.items():
                if ok is not None:
                    v = v[ok]
                phi = params[k].detach()
                if v.shape[1:] != phi.shape:  # a layer solved anew per task (another shape)
                    continue
                size = max(float(phi.norm()), 1e-3 * phi.numel() ** 0.5)
                moved = (v - phi).flatten(1).norm(dim=1)
                moved = moved[torch.isfinite(moved)]  # diverged tasks are reported apart
                if moved.numel():
                    worst = max(worst, float(moved.max()) / size)
        if worst > EXPLODED:
            warnings.warn(f"Adaptation moved some weights by {worst:.3g} times their size after "
                          f"{steps} step(s) with {self.context.rates}: it has probably "
                          "diverged (its predictions will be far off). Use a smaller inner_lr "
                          "or fewer adapt_steps.", RuntimeWarning, stacklevel=5)

    def _raise_diverged(self, steps: int, batch: MetaBatch):
        what = "this task" if len(batch) == 1 else "some tasks"
        raise FloatingPointError(
            f"Adaptation diverged on {what}: the adapted weights are not finite after "
            f"{steps} step(s) with {self.context.rates}. Use a smaller inner_lr or fewer "
            "adapt_steps (and features of unit scale).")
