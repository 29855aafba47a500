"""The learnable state of an inner-loop rule, kept as modules skorch trains, moves and saves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from . import functional as F

__all__ = ["InnerState"]


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
    >>> from skmeta.base import InnerState
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


class _Learned:
    """``module_`` and ``inner_state_`` as one state dict (skorch's ``f_params`` file)."""

    _PREFIX = "__inner_state__."

    def __init__(self, net: Any):
        self.net = net

    def state_dict(self) -> dict:
        state = self.net.module_.state_dict()
        state.update({self._PREFIX + k: v for k, v in self.net.inner_state_.state_dict().items()})
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        own = {k[len(self._PREFIX):]: v for k, v in state.items() if k.startswith(self._PREFIX)}
        self.net.module_.load_state_dict({k: v for k, v in state.items()
                                          if not k.startswith(self._PREFIX)})
        self.net.inner_state_.load_state_dict(own)
