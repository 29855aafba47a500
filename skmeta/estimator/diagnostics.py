"""Warnings about a training run that learned nothing."""

from __future__ import annotations

import math
import warnings
from typing import Any

#: meta-updates after which a loss still at chance is worth a warning
MIN_UPDATES = 50
#: a last-epoch loss above this fraction of ln(n_outputs) counts as "at chance" (Reptile
#: measured 0.977 of it on a pool where it learned: small logits, right argmax)
AT_CHANCE = 0.99


def warn_if_loss_at_chance(estimator: Any) -> None:
    """Warn (RuntimeWarning) when a classifier's training loss is still ln(n_outputs).

    A network whose outputs are uniform has a cross-entropy of exactly
    ln(number of outputs): a training loss that stays there after
    :data:`MIN_UPDATES` meta-updates or more means nothing was learned, and every
    score will be at chance.
    """
    history = getattr(estimator, "history_", None)
    if not history:
        return
    losses = [e.get("train_loss") for e in history if e.get("train_loss") is not None]
    updates = sum(len(e.get("batches", [])) for e in history)
    n_outputs = estimator.get_targets().n_outputs() or getattr(estimator, "n_way", None)
    if not losses or updates < MIN_UPDATES or not n_outputs or n_outputs < 2:
        return
    chance = math.log(n_outputs)
    last = float(losses[-1])
    if math.isfinite(last) and last >= AT_CHANCE * chance:
        warnings.warn(
            f"{type(estimator).__name__}'s training loss is still at chance after {updates} "
            f"meta-updates (last epoch {last:.3f}, ln({n_outputs}) = {chance:.3f}): the "
            f"network learned nothing that adaptation can use (inner_lr={estimator.inner_lr}, "
            f"inner_steps={estimator.inner_steps}). Try a larger inner_lr or more inner_steps, "
            "more epochs, or features of unit scale; on features where classes are compact, "
            "a nearest-centroid model may be the better tool (see the FAQ).",
            RuntimeWarning, stacklevel=2)
