"""The batched engine: every task's network evaluated at once with batched matrix products.

For networks of registered layers (:mod:`skmeta.functional._layers`: linear layers,
activations, dropout, normalisations, convolutions, residual additions, ...), the
parameters of all tasks of a chunk are stacked along a leading task axis and the network
runs as a handful of batched products (:func:`torch.baddbmm`); inner gradients come from
ordinary autograd on those stacked tensors (the tasks are independent, so the gradient of the summed
losses with respect to one task's parameters is that task's gradient). No
:mod:`torch.func` transform is involved, which removes most of the per-operation
overhead that dominates small networks; the numbers are those of the other engines.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ._layers import NotBatchable, batchable, batched_forward

__all__ = ["NotBatchable", "batched_forward", "batchable", "maskable", "masked_loss",
           "per_task_loss"]


def maskable(loss_fn: Callable[[Tensor, Tensor], Tensor]) -> bool:
    """Whether :func:`masked_loss` can leave padded rows out of ``loss_fn``'s mean.

    True for :class:`torch.nn.MSELoss` and :class:`torch.nn.CrossEntropyLoss` with
    their default options: tasks whose query sets differ in size can then be padded
    and computed together.

    Parameters
    ----------
    loss_fn : callable
        The loss.

    Returns
    -------
    ok : bool

    Examples
    --------
    >>> from torch import nn
    >>> from skmeta.functional import maskable
    >>> maskable(nn.MSELoss()), maskable(nn.L1Loss())
    (True, False)
    """
    kind = type(loss_fn)
    if kind is nn.MSELoss:
        return loss_fn.reduction == "mean"
    if kind is nn.CrossEntropyLoss:
        return loss_fn.reduction == "mean" and loss_fn.weight is None \
            and loss_fn.label_smoothing == 0 and loss_fn.ignore_index < 0
    return False


def masked_loss(loss_fn: Callable[[Tensor, Tensor], Tensor], out: Tensor, y: Tensor,
                mask: Tensor) -> Tensor:
    """``loss_fn(out, y)`` over the rows where ``mask`` is True (one task, no task axis).

    Parameters
    ----------
    loss_fn : nn.MSELoss or nn.CrossEntropyLoss
        A loss for which :func:`maskable` holds.
    out, y : Tensor
        Predictions and targets of one task, rows first.
    mask : bool Tensor of shape (n_rows,)
        The rows that count.

    Returns
    -------
    loss : Tensor
        The mean over the rows that count, as ``loss_fn`` would give on them alone.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta.functional import masked_loss
    >>> masked_loss(nn.MSELoss(), torch.zeros(3, 1), torch.tensor([[1.], [3.], [100.]]),
    ...             torch.tensor([True, True, False])).item()
    5.0
    """
    weight = mask.to(out.dtype)
    if type(loss_fn) is nn.MSELoss:
        per_row = ((out - y) ** 2).flatten(1).mean(1)
    else:
        per_row = nn.functional.cross_entropy(out, y, reduction="none")
    return (per_row * weight).sum() / weight.sum()


def per_task_loss(loss_fn: Callable[[Tensor, Tensor], Tensor], out: Tensor, y: Tensor,
                  mask: Tensor | None = None) -> Tensor:
    """``loss_fn`` on each task's predictions: a vector with one loss per task.

    :class:`torch.nn.MSELoss` and :class:`torch.nn.CrossEntropyLoss` with their
    default options are computed directly (with ``mask``, over each task's real
    rows); any other loss through :func:`torch.func.vmap`.

    Parameters
    ----------
    loss_fn : callable
        The loss of one task's predictions.
    out, y : Tensor of shape (n_tasks, n, ...)
        Predictions and targets of every task.
    mask : bool Tensor of shape (n_tasks, n) or None, default=None
        The rows that count (requires :func:`maskable`).

    Returns
    -------
    losses : Tensor of shape (n_tasks,)

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta.functional import per_task_loss
    >>> out, y = torch.zeros(2, 3, 1), torch.tensor([[[1.], [1.], [1.]], [[2.], [0.], [9.]]])
    >>> per_task_loss(nn.MSELoss(), out, y)
    tensor([ 1.0000, 28.3333])
    >>> per_task_loss(nn.MSELoss(), out, y, torch.tensor([[1, 1, 1], [1, 1, 0]]).bool())
    tensor([1., 2.])
    """
    if mask is not None:
        weight = mask.to(out.dtype)
        if type(loss_fn) is nn.MSELoss:
            per_row = ((out - y) ** 2).flatten(2).mean(2)
        else:
            per_row = nn.functional.cross_entropy(out.flatten(0, 1), y.flatten(),
                                                  reduction="none").view(y.shape)
        return (per_row * weight).sum(1) / weight.sum(1)
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
