"""The per-task hook of an algorithm: the two-argument contract and the older form.

An algorithm defines ``task_objective(self, learner, task)`` (or
``task_pseudo_gradient(self, learner, task)``) for one task; the engine that runs it binds
the learner (:func:`skmeta.functional.map_tasks`). Plugins written for earlier releases
define ``(self, learner, task, engine)`` and handle engines themselves: they still run,
with a ``FutureWarning``, on the engines they declare (``supports_batched``) and with
padded query sets only if they declare ``supports_query_mask``.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["hook_name", "takes_engine", "supports", "per_task_function"]


def hook_name(est: Any) -> str:
    """``"task_objective"``, or ``"task_pseudo_gradient"`` when the algorithm defines one."""
    return "task_objective" if est.task_pseudo_gradient is None else "task_pseudo_gradient"


@functools.cache
def _takes_engine(cls: type, name: str) -> bool:
    try:
        params = inspect.signature(getattr(cls, name)).parameters.values()
    except (TypeError, ValueError):
        return False
    old = len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) >= 4
    if old:  # self, learner, task, engine
        warnings.warn(f"{cls.__name__}.{name}(learner, task, engine): the engine argument is "
                      f"deprecated; define {name}(self, learner, task) and compute with the "
                      "learner's methods, which every engine binds (see "
                      "skmeta.functional.map_tasks). The older form stops working in a future "
                      "release.", FutureWarning, stacklevel=5)
    return old


def takes_engine(est: Any) -> bool:
    """Whether ``est``'s per-task hook has the older ``(learner, task, engine)`` form (warns
    once per class when it does)."""
    return _takes_engine(type(est), hook_name(est))


def supports(est: Any, flag: bool | None) -> bool:
    """A ``supports_*`` declaration: None means "decided by the hook's form" (the
    two-argument form supports every engine and padded query sets)."""
    return (not takes_engine(est)) if flag is None else bool(flag)


def per_task_function(est: Any, learner: Any) -> tuple[Callable, Any]:
    """``(fn, learner)`` for :func:`skmeta.functional.meta_gradient` or
    :func:`~skmeta.functional.mean_over_tasks`: the hook and the learner the engine binds,
    or, for the older form, the hook with ``learner`` already given and None."""
    hook = getattr(est, hook_name(est))
    if takes_engine(est):
        return functools.partial(hook, learner), None
    return hook, learner
