"""Choosing the engine (vectorised or loop) for each kind of work, by rule or by timing.

``engine="vmap"``, ``"batched"`` or ``"loop"`` is used as given (``"vmap"`` and
``"batched"`` refuse work they cannot run exactly). ``engine="auto"`` picks the
loop where the vectorised engines would be wrong
(:func:`skmeta.functional.vmap_support`) or are known to be slow (convolutions on a
CPU); otherwise it times the loop against the batched engine (for networks it runs,
:func:`skmeta.functional.batchable`) or the vmap engine, on the first meta-batches of
each kind of work, and keeps the faster.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..functional import ENGINES, NotBatchable, vmap_support

__all__ = ["EngineChooser"]

_WARMUP = 1  # the first call of each engine is not timed
_TRIALS = 1  # timed calls of each engine before choosing


def _NOT_BATCHED() -> tuple[bool, str]:  # noqa: N802 - a constant function
    return False, "not offered"


def _key(kind: str, second_order: bool) -> str:
    return f"{kind}/{'second' if second_order else 'first'}"


class EngineChooser:
    """Engine choice and timing for one fitted meta-learner.

    Kinds of work are ``"train"`` (meta-gradients) and ``"adapt"`` (adaptation,
    meta-validation, scoring); each is decided separately, and meta-training with
    and without second-order gradients are decided separately too (switching
    ``first_order`` never reuses a choice made for the other order).

    Parameters
    ----------
    engine : {"auto", "vmap", "loop"}
        The estimator's ``engine`` parameter.
    device : str or torch.device or None
        Where the work runs (times are synchronised on CUDA).
    announce : callable or None, default=None
        Called once with a message when ``"auto"`` starts timing.

    Attributes
    ----------
    chosen : dict
        ``{"kind/order": engine}`` decided so far (order is ``"first"`` or
        ``"second"``).
    timings : dict
        Seconds measured per kind and engine while deciding.

    Examples
    --------
    >>> from torch import nn
    >>> from skmeta.estimator.engines import EngineChooser
    >>> chooser = EngineChooser("auto", "cpu")
    >>> chooser.engine_for("adapt", nn.Linear(2, 1), n_tasks=1)  # nothing to time
    'vmap'
    >>> chooser.engine_for("train", nn.Conv2d(1, 2, 3), n_tasks=8)  # convolutions on a CPU
    'loop'
    """

    def __init__(self, engine: str, device: Any, announce: Callable[[str], None] | None = None):
        self.engine = engine
        self.device = device
        self.announce = announce
        self.chosen: dict[str, str] = {}
        self.timings: dict[str, dict[str, list[float]]] = {}
        self.last: dict[str, str] = {}
        self.not_batched: dict[str, str] = {}

    def state(self) -> dict[str, dict]:
        """What was decided and measured, as plain data (saved with the estimator)."""
        return {"chosen": dict(self.chosen), "timings": {k: {e: list(t) for e, t in v.items()}
                                                         for k, v in self.timings.items()}}

    def restore(self, state: dict) -> None:
        """Take back what :meth:`state` returned (from a file: checked, never trusted).

        Raises
        ------
        ValueError
            If ``state`` is not what :meth:`state` returns.
        """
        ok = isinstance(state, dict) and all(isinstance(state.get(k, {}), dict)
                                             for k in ("chosen", "timings"))
        ok = ok and all(isinstance(k, str) and v in ENGINES
                        for k, v in state.get("chosen", {}).items())
        if not ok:
            raise ValueError(f"bad engine choices {state!r}")
        self.chosen.update(state.get("chosen", {}))
        self.timings.update(state.get("timings", {}))

    def summary(self) -> dict[str, str]:
        """``{kind: engine}``: the engine decided (or, while timing, last used) per kind; with
        ``engine="auto"``, ``"batched"``: why the batched engine was not used, if it was not."""
        out = dict(self.last)
        for key, engine in self.chosen.items():
            out.setdefault(key.split("/")[0], engine)
        if self.not_batched and "batched" not in out.values():
            out["batched"] = "not used: " + "; ".join(
                dict.fromkeys(self.not_batched.values()))
        return out

    def _refused(self, kind: str, reason: str) -> None:
        """Record (and say once, in the fit log) why the batched engine does not run ``kind``."""
        if kind in self.not_batched:
            return
        self.not_batched[kind] = reason
        if self.announce is not None:
            self.announce(f"engine='auto': the batched engine cannot run this {kind} work "
                          f"({reason}); the vmap or loop engine runs it.")

    def engine_for(self, kind: str, module: nn.Module, *, n_tasks: int,
                   second_order: bool = False,
                   batched: Callable[[], tuple[bool, str]] = _NOT_BATCHED) -> str:
        """The engine to run ``kind`` with on a meta-batch of ``n_tasks`` tasks.

        ``batched()`` says whether the batched engine can run this work (and why
        not); it is called only while the engine is being decided.
        """
        key = _key(kind, second_order)
        if self.engine == "loop":
            return "loop"
        if key in self.chosen:
            return self.chosen[key]
        if self.engine == "batched":
            ok, reason = batched()
            if not ok:
                raise ValueError(f"engine='batched' cannot run this {kind} work: {reason}. "
                                 "Use engine='auto', 'vmap' or 'loop'.")
            return self._decide(key, "batched")
        ok, reason = vmap_support(module, second_order=second_order)
        if self.engine == "vmap":
            if not ok:
                raise ValueError(f"engine='vmap' cannot run this module: {reason}. Use "
                                 "engine='loop' or 'auto', or skmeta.modules.BatchNorm.")
            return "vmap"
        ok_batched, why = batched() if kind not in self.not_batched else (False, "")
        if not ok_batched and batched is not _NOT_BATCHED:
            self._refused(kind, why)
        if ok_batched:  # it computes what vmap computes, with less overhead
            fast = "batched"
        elif not ok:
            return self._decide(key, "loop")
        else:
            fast = "vmap"
        on_cpu = torch.device(self.device or "cpu").type == "cpu"
        if on_cpu and any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules()):
            # measured on CPU: vmapped convolutions run grouped, 3-6x slower than the loop
            return self._decide(key, "loop")
        if n_tasks < 2:
            return fast
        trials = self.timings.setdefault(key, {fast: [], "loop": []})
        if not trials[fast] and self.announce is not None:
            self.announce(f"engine='auto': timing the {fast} and loop engines on the first "
                          f"{_WARMUP + _TRIALS} {kind} meta-batches each, then keeping the "
                          "faster (set engine to one of them to skip this).")
        return fast if len(trials[fast]) <= len(trials["loop"]) else "loop"

    def _decide(self, key: str, engine: str) -> str:
        self.chosen[key] = engine
        return engine

    def run(self, kind: str, module: nn.Module, n_tasks: int, fn: Callable[[str], Any], *,
            second_order: bool = False,
            batched: Callable[[], tuple[bool, str]] = _NOT_BATCHED) -> Any:
        """``fn(engine)`` with the engine for ``kind``, timed while ``"auto"`` decides."""
        engine = self.engine_for(kind, module, n_tasks=n_tasks, second_order=second_order,
                                 batched=batched)
        if engine == "batched" and self.engine == "auto":
            try:
                return self._run(kind, engine, n_tasks, fn, second_order)
            except NotBatchable as e:  # found only when running (e.g. a tensor used as index)
                self._refused(kind, str(e))
                self.timings.pop(_key(kind, second_order), None)
                self.chosen.pop(_key(kind, second_order), None)
                return self.run(kind, module, n_tasks, fn, second_order=second_order,
                                batched=batched)
        return self._run(kind, engine, n_tasks, fn, second_order)

    def _run(self, kind: str, engine: str, n_tasks: int, fn: Callable[[str], Any],
             second_order: bool) -> Any:
        self.last[kind] = engine
        key = _key(kind, second_order)
        if self.engine != "auto" or key in self.chosen or n_tasks < 2:
            return fn(engine)
        cuda = torch.device(self.device or "cpu").type == "cuda"
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn(engine)
        if cuda:
            torch.cuda.synchronize()
        trials = self.timings[key]
        trials[engine].append(time.perf_counter() - t0)
        if all(len(times) >= _WARMUP + _TRIALS for times in trials.values()):
            self._decide(key, min(trials, key=lambda e: min(trials[e][_WARMUP:])))
        return out
