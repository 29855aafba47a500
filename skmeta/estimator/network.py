"""The network of a meta-learner: its constructor's sizes filled in from the data, and checked.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["fill_sizes", "check_io"]


def fill_sizes(module: Any, kwargs: dict, input_shape: tuple[int, ...] | None,
               n_outputs: int | None) -> dict:
    """``kwargs`` with ``in_features`` / ``n_outputs`` filled in for a module *class*.

    Only a class whose constructor takes those parameters, and only where they were
    not set; an instance (or anything else) gets ``kwargs`` unchanged.

    Examples
    --------
    >>> from skmeta.modules import MLP
    >>> from skmeta.estimator.network import fill_sizes
    >>> fill_sizes(MLP, {"hidden": [8]}, (3,), 2)
    {'hidden': [8], 'in_features': 3, 'n_outputs': 2}
    """
    kwargs = dict(kwargs)
    if isinstance(module, nn.Module) or not callable(module):
        return kwargs
    try:
        sig = inspect.signature(module).parameters
    except (TypeError, ValueError):
        return kwargs
    if "in_features" in sig and "in_features" not in kwargs and input_shape is not None:
        kwargs["in_features"] = int(np.prod(input_shape))
    if "n_outputs" in sig and "n_outputs" not in kwargs and n_outputs is not None:
        kwargs["n_outputs"] = int(n_outputs)
    return kwargs


def check_io(module: nn.Module, X: torch.Tensor, n_outputs: int, *, owner: str,
             outputs: str) -> None:
    """Fail early, and clearly, when the network's input or output does not fit the tasks.

    Parameters
    ----------
    module : nn.Module
        The network.
    X : Tensor
        A few examples of the first task.
    n_outputs : int
        The output size the estimator needs.
    owner : str
        The estimator's name, for messages.
    outputs : str
        What the outputs are, in words (e.g. ``"n_way=5 logits"``).
    """
    try:
        with torch.no_grad():
            out = module(X)
    except RuntimeError as exc:
        raise ValueError(f"The module fails on examples of shape {tuple(X.shape[1:])} "
                         f"({int(np.prod(X.shape[1:]))} values each): {exc}. Set the "
                         "module's input size to match the data (e.g. module__in_features) "
                         "or leave it unset for the estimator to fill in.") from exc
    if out.dim() != 2 or out.shape[0] != len(X) or out.shape[1] != n_outputs:
        raise ValueError(f"The module maps {len(X)} examples to an output of shape "
                         f"{tuple(out.shape)}; {owner} needs shape ({len(X)}, {n_outputs}): "
                         f"{outputs}. Set the module's output size (e.g. module__n_outputs) "
                         "to match.")
