"""The learnable state of an inner-loop rule, kept as modules skorch trains, moves and saves."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .. import functional as F

__all__ = ["InnerState", "LearnedState"]


def _escape(name: str) -> str:
    return name.replace(".", "/")


class InnerState(nn.Module):
    """The learnable state of an inner-loop rule, as a module skorch trains, moves and saves.

    Parameters
    ----------
    state : mapping of str to Tensor
        From the rule's ``init`` (e.g. Meta-SGD's per-element learning rates).

    Examples
    --------
    >>> import torch
    >>> from skmeta.estimator import InnerState
    >>> state = InnerState({"layers.0.weight": torch.full((2, 2), 0.01)})
    >>> list(state.tensors()), sum(p.numel() for p in state.parameters())
    (['layers.0.weight'], 4)
    """

    def __init__(self, state: Mapping[str, torch.Tensor]):
        super().__init__()
        self.values = nn.ParameterDict({_escape(k): nn.Parameter(v.detach().clone())
                                        for k, v in state.items()})

    def tensors(self) -> F.Params:
        """The state under the parameter names it belongs to."""
        return {k.replace("/", "."): v for k, v in self.values.items()}


class LearnedState:
    """A network and its inner rule's learned state as one state dict: skorch's ``f_params``.

    ``save_params``, ``load_params`` and :class:`skorch.callbacks.Checkpoint` read and
    write the meta-learner's ``module_`` through this view, so the inner rule's learned
    state (keys starting with ``__inner_state__.``; none for plain gradient steps)
    travels with the network. The file is written with :func:`torch.save` (pickle): for
    files that cross a trust boundary use :func:`skmeta.save`.

    Parameters
    ----------
    module : nn.Module
        The network.
    inner_state : InnerState
        The rule's learnable state.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta.estimator.inner_state import InnerState, LearnedState
    >>> state = LearnedState(nn.Linear(1, 1), InnerState({"weight": torch.ones(1, 1)}))
    >>> sorted(state.state_dict())
    ['__inner_state__.values.weight', 'bias', 'weight']
    """

    _PREFIX = "__inner_state__."

    def __init__(self, module: nn.Module, inner_state: InnerState):
        self.module, self.inner_state = module, inner_state

    def state_dict(self) -> dict:
        state = self.module.state_dict()
        state.update({self._PREFIX + k: v for k, v in self.inner_state.state_dict().items()})
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        own = {k[len(self._PREFIX):]: v for k, v in state.items() if k.startswith(self._PREFIX)}
        self.module.load_state_dict({k: v for k, v in state.items()
                                     if not k.startswith(self._PREFIX)})
        self.inner_state.load_state_dict(own)
