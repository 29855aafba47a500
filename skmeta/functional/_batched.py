"""The batched engine: every task's network evaluated at once with batched matrix products.

For the networks most users meta-train (sequences of linear layers, activations,
dropout and skmeta's :class:`~skmeta.modules.BatchNorm`), the parameters of all tasks
of a chunk are stacked along a leading task axis and the network runs as a handful of
batched products (:func:`torch.baddbmm`); inner gradients come from ordinary autograd
on those stacked tensors (the tasks are independent, so the gradient of the summed
losses with respect to one task's parameters is that task's gradient). No
:mod:`torch.func` transform is involved, which removes most of the per-operation
overhead that dominates small networks; the numbers are those of the other engines.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from ._core import current_step

__all__ = ["batched_forward", "batchable"]

_ACTIVATIONS: tuple[type, ...] = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.LeakyReLU,
                                  nn.SiLU, nn.Softplus, nn.Identity, nn.Dropout)


class NotBatchable(ValueError):
    """The network has a layer the batched engine does not run."""


def _skmeta_layer(module: nn.Module, name: str) -> bool:
    """An instance of ``skmeta.modules.<name>`` (or a subclass keeping its forward)."""
    for klass in type(module).__mro__:
        if klass.__name__ == name and klass.__module__ == "skmeta.modules":
            return type(module).forward is klass.forward
    return False


def _is_mlp(module: nn.Module) -> bool:
    return _skmeta_layer(module, "MLP")


def _is_batch_norm(module: nn.Module) -> bool:
    return _skmeta_layer(module, "BatchNorm")


def batchable(module: nn.Module) -> tuple[bool, str]:
    """Whether the batched engine runs ``module``, and why not.

    It runs :class:`torch.nn.Sequential` and :class:`skmeta.modules.MLP` networks of
    :class:`torch.nn.Linear` layers, element-wise activations, dropout and
    :class:`skmeta.modules.BatchNorm`, with no hooks.

    Parameters
    ----------
    module : nn.Module
        The network.

    Returns
    -------
    ok : bool
    reason : str
        Empty when ``ok``.

    Examples
    --------
    >>> from torch import nn
    >>> from skmeta.functional import batchable
    >>> batchable(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)))
    (True, '')
    >>> batchable(nn.Conv2d(1, 2, 3))[0]
    False
    """
    for name, sub in module.named_modules():
        if sub._forward_hooks or sub._forward_pre_hooks:
            return False, f"layer {name!r} has hooks"
        if type(sub) is nn.Sequential or _is_mlp(sub) or isinstance(sub, _ACTIVATIONS) \
                or type(sub) is nn.Linear or _is_batch_norm(sub):
            continue
        return False, f"layer {name!r} ({type(sub).__name__}) has no batched implementation"
    return True, ""


def _linear(X: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    if weight.dim() == 2:  # shared by every task
        return nn.functional.linear(X, weight, bias)
    if bias is None:
        return torch.bmm(X, weight.mT)
    if bias.dim() == 1:
        bias = bias.expand(weight.shape[0], -1)
    return torch.baddbmm(bias.unsqueeze(1), X, weight.mT)


def _batch_norm(module: nn.Module, X: Tensor, weight: Tensor | None, bias: Tensor | None
                ) -> Tensor:
    dims = [1] + list(range(3, X.dim()))  # the examples and spatial axes of each task
    mean = X.mean(dim=dims, keepdim=True)
    var = ((X - mean) ** 2).mean(dim=dims, keepdim=True)
    out = (X - mean) * torch.rsqrt(var + module.eps)
    if weight is None:
        return out
    if module.n_steps is not None:
        step = current_step()
        row = module.n_steps - 1 if step is None else min(step, module.n_steps - 1)
        weight, bias = weight[..., row, :], bias[..., row, :]
    lead = X.shape[0] if weight.dim() == 2 else 1
    shape = [lead, 1, -1] + [1] * (X.dim() - 3)
    return out * weight.reshape(shape) + bias.reshape(shape)


def batched_forward(module: nn.Module, params: Mapping[str, Tensor], X: Tensor, *,
                    stop_at: str | None = None) -> Tensor:
    """Run ``module`` on every task at once: ``X`` and (some of) ``params`` carry a task axis.

    Parameters
    ----------
    module : nn.Module
        A network for which :func:`batchable` holds; used as a structure only.
    params : mapping of str to Tensor
        Its parameters: with a leading task axis (one set per task) or without
        (shared by every task).
    X : Tensor of shape (n_tasks, n, \\*input_shape)
        Every task's inputs.
    stop_at : str or None, default=None
        Return the input of this submodule instead of the output.

    Returns
    -------
    out : Tensor of shape (n_tasks, n, ...)

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta.functional import batched_forward
    >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> params = {k: p.expand(4, *p.shape) for k, p in net.named_parameters()}
    >>> X = torch.randn(4, 5, 2)
    >>> torch.allclose(batched_forward(net, params, X), net(X))
    True
    """
    for name, kind, sub in _plan(module):
        if name == stop_at:
            return X
        if kind == "linear":
            X = _linear(X, params[name + ".weight" if name else "weight"],
                        params.get(name + ".bias" if name else "bias"))
        elif kind == "batch_norm":
            prefix = name + "." if name else ""
            X = _batch_norm(sub, X, params.get(prefix + "weight"), params.get(prefix + "bias"))
        elif kind == "flatten":
            X = X.flatten(2) if X.dim() > 3 else X
        else:
            X = sub(X)  # element-wise: the task axis changes nothing
    if stop_at is not None:
        raise ValueError(f"The network never reached {stop_at!r}.")
    return X


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _plan(module: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """The network as a flat list of ``(name, kind, layer)`` steps (cached per module)."""
    plan = _PLANS.get(module)
    if plan is not None:
        return plan
    plan = []

    def walk(sub: nn.Module, name: str) -> None:
        if type(sub) is nn.Sequential:
            for child_name, child in sub.named_children():
                walk(child, f"{name}.{child_name}" if name else child_name)
        elif _is_mlp(sub):
            plan.append((name, "flatten", sub))
            walk(sub.layers, f"{name}.layers" if name else "layers")
        elif type(sub) is nn.Linear:
            plan.append((name, "linear", sub))
        elif _is_batch_norm(sub):
            plan.append((name, "batch_norm", sub))
        elif isinstance(sub, _ACTIVATIONS):
            plan.append((name, "elementwise", sub))
        else:
            raise NotBatchable(f"{type(sub).__name__} has no batched implementation")

    walk(module, "")
    _PLANS[module] = plan
    return plan


def per_task_loss(loss_fn: Callable[[Tensor, Tensor], Tensor], out: Tensor, y: Tensor
                  ) -> Tensor:
    """``loss_fn`` on each task's predictions: a vector with one loss per task.

    :class:`torch.nn.MSELoss` and :class:`torch.nn.CrossEntropyLoss` with their
    default options are computed directly; any other loss through
    :func:`torch.func.vmap`.
    """
    kind = type(loss_fn)
    if kind is nn.MSELoss and loss_fn.reduction == "mean":
        return ((out - y) ** 2).flatten(1).mean(1)
    if kind is nn.CrossEntropyLoss and loss_fn.reduction == "mean" and loss_fn.weight is None \
            and loss_fn.label_smoothing == 0 and y.dim() == 2 and out.dim() == 3:
        flat = nn.functional.cross_entropy(out.flatten(0, 1), y.flatten(),
                                           ignore_index=loss_fn.ignore_index, reduction="none")
        kept = (y != loss_fn.ignore_index).sum(1)
        return flat.view(y.shape).sum(1) / kept
    return torch.func.vmap(loss_fn)(out, y)
