"""Heads: the layer an inner loop adapts alone, found and checked on any network."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._inner import Learner, check_head
from ._rules import only, sgd

__all__ = ["last_layer", "head_is_last", "example_inputs"]


def last_layer(module: nn.Module, kind: type[nn.Module] | None = None) -> str:
    """The name of the last submodule with parameters of its own (of type ``kind`` if given).

    "Last" is in registration order (``module.named_modules()``), which is the order
    of application for ``nn.Sequential`` and for most networks; :func:`head_is_last`
    checks it.

    Parameters
    ----------
    module : nn.Module
        The network.
    kind : type or None, default=None
        Only submodules of this type (e.g. ``nn.Linear``).

    Returns
    -------
    name : str
        As in ``module.named_modules()``.

    Raises
    ------
    ValueError
        If the network has no such submodule.

    Examples
    --------
    >>> from torch import nn
    >>> from skmeta.functional import last_layer
    >>> last_layer(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)))
    '2'
    """
    found = None
    for name, sub in module.named_modules():
        if name and list(sub.parameters(recurse=False)) and (kind is None or
                                                              isinstance(sub, kind)):
            found = name
    if found is None:
        what = "layer with parameters" if kind is None else f"{kind.__name__} layer"
        raise ValueError(f"{type(module).__name__} has no {what} to adapt.")
    return found


def head_is_last(module: nn.Module, head: str, X: Tensor) -> bool:
    """Whether submodule ``head`` is the network's last operation, checked on ``X``.

    Runs the whole network and the head on its own input (captured from the same
    pass), in evaluation mode so that dropout does not make them differ, and
    compares (see :func:`check_head`).

    Parameters
    ----------
    module : nn.Module
        The network.
    head : str
        A submodule's name.
    X : Tensor
        A few examples, of the network's dtype and device.

    Returns
    -------
    bool

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta.functional import head_is_last
    >>> net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    >>> head_is_last(net, "2", torch.randn(3, 2)), head_is_last(net, "0", torch.randn(3, 2))
    (True, False)
    """
    learner = Learner(module, dict(module.named_parameters()), dict(module.named_buffers()),
                      nn.functional.mse_loss, only([head], sgd(1.0)), head=head)
    was = module.training
    module.eval()
    try:
        check_head(learner, X)
        return True
    except ValueError:
        return False
    finally:
        module.train(was)


def example_inputs(module: nn.Module, input_shape: tuple[int, ...], n: int = 4) -> Tensor:
    """``n`` standard-normal examples of ``input_shape``, always the same, on the network's
    device and in its dtype (to probe a network, e.g. with :func:`head_is_last`).

    Examples
    --------
    >>> from torch import nn
    >>> from skmeta.functional import example_inputs
    >>> example_inputs(nn.Linear(3, 1).double(), (3,)).dtype
    torch.float64
    """
    p = next(module.parameters())
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, *input_shape, generator=gen).to(device=p.device, dtype=p.dtype)
