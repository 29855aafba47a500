"""The pure functional core of skmeta.

Everything here works on *parameter dictionaries* (``{name: tensor}``) and a
module used only as a function through :func:`torch.func.functional_call`; nothing
here edits ``module._parameters``, knows about skorch or holds state. The
estimators in :mod:`skmeta.base` are a thin shell around these functions.

Tasks travel as :class:`TaskBatch` objects: tasks of equal shapes stacked along a
leading *task axis*. Two engines compute the same numbers:

* ``"vmap"`` runs the inner loops of all tasks of a batch as one vectorised
  computation (:func:`torch.func.vmap` over :func:`torch.func.grad`);
* ``"loop"`` runs them one task after another with :func:`torch.autograd.grad`.
  It is the reference implementation the vectorised engine is tested against.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from skmeta.functional import TaskBatch, adapt, maml_meta_gradient
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> net = nn.Linear(1, 1)
>>> params, buffers = dict(net.named_parameters()), dict(net.named_buffers())
>>> batch = TaskBatch(torch.randn(4, 5, 1), torch.randn(4, 5, 1),
...                   torch.randn(4, 5, 1), torch.randn(4, 5, 1))
>>> loss, grads = maml_meta_gradient(net, params, buffers, [batch],
...                                  loss_fn=nn.functional.mse_loss, inner_lr=0.1, steps=1)
>>> sorted(grads), grads["weight"].shape
(['bias', 'weight'], torch.Size([1, 1]))
>>> fast = adapt(net, params, buffers, batch, loss_fn=nn.functional.mse_loss,
...              inner_lr=0.1, steps=3)
>>> fast["weight"].shape  # one set of adapted weights per task
torch.Size([4, 1, 1])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

__all__ = [
    "Params",
    "LossFn",
    "Engine",
    "TaskBatch",
    "forward",
    "inner_loop",
    "adapt",
    "predict",
    "maml_meta_gradient",
    "reptile_meta_gradient",
    "vmap_support",
]

Params = dict[str, Tensor]
"""A parameter (or buffer) dictionary ``{name: tensor}``."""

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss_fn(y_pred, y_true) -> scalar``, e.g. ``nn.MSELoss()``."""

Engine = Literal["vmap", "loop"]


class TaskBatch(NamedTuple):
    """Tasks of equal shapes, stacked along a leading task axis.

    Attributes
    ----------
    X_support : Tensor of shape (n_tasks, n_support, \\*input_shape)
    y_support : Tensor of shape (n_tasks, n_support, ...)
    X_query : Tensor of shape (n_tasks, n_query, \\*input_shape) or None
    y_query : Tensor of shape (n_tasks, n_query, ...) or None

    Examples
    --------
    >>> import torch
    >>> from skmeta.functional import TaskBatch
    >>> batch = TaskBatch(torch.zeros(8, 5, 2), torch.zeros(8, 5, 1))
    >>> batch.n_tasks, [c.n_tasks for c in batch.chunks(3)]
    (8, [3, 3, 2])
    """

    X_support: Tensor
    y_support: Tensor
    X_query: Tensor | None = None
    y_query: Tensor | None = None

    @property
    def n_tasks(self) -> int:
        """Number of tasks in the batch."""
        return self.X_support.shape[0]

    def slice(self, start: int, stop: int) -> TaskBatch:
        """Tasks ``start:stop`` of the batch."""
        return TaskBatch(*(None if t is None else t[start:stop] for t in self))

    def chunks(self, chunk_size: int | None) -> Iterator[TaskBatch]:
        """Split the batch into consecutive chunks of at most ``chunk_size`` tasks."""
        n = self.n_tasks
        step = n if not chunk_size else chunk_size
        for start in range(0, n, step):
            yield self.slice(start, min(start + step, n))


def forward(module: nn.Module, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor],
            X: Tensor) -> Tensor:
    """Run ``module`` on ``X`` with the given parameters and buffers, functionally.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta.functional import forward
    >>> net = nn.Linear(2, 1)
    >>> zeros = {k: torch.zeros_like(v) for k, v in net.named_parameters()}
    >>> forward(net, zeros, {}, torch.ones(3, 2)).ravel().tolist()
    [0.0, 0.0, 0.0]
    """
    return functional_call(module, (dict(params), dict(buffers)), (X,))


def _task_loss(params: Params, buffers: Params, module: nn.Module, loss_fn: LossFn,
               X: Tensor, y: Tensor) -> Tensor:
    return loss_fn(forward(module, params, buffers, X), y)


def _sgd_step(params: Params, grads: Mapping[str, Tensor], inner_lr: float) -> Params:
    return {name: p - inner_lr * grads[name] for name, p in params.items()}


def inner_loop(module: nn.Module, params: Params, buffers: Params, X: Tensor, y: Tensor, *,
               loss_fn: LossFn, inner_lr: float, steps: int, first_order: bool = False,
               engine: Engine = "vmap") -> Params:
    """Take ``steps`` gradient steps of size ``inner_lr`` on one task's ``(X, y)``.

    Returns the adapted ("fast") parameters. When ``params`` require grad and
    ``first_order`` is False the result stays differentiable with respect to
    ``params`` through every step (second-order MAML); with ``first_order=True``
    the inner gradients are treated as constants (first-order MAML).

    ``engine="vmap"`` computes inner gradients with :func:`torch.func.grad`, which
    composes with :func:`torch.func.vmap`; ``engine="loop"`` uses
    :func:`torch.autograd.grad` and cannot be vmapped.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> net = nn.Linear(2, 1)
    >>> params, buffers = dict(net.named_parameters()), {}
    >>> g = torch.Generator().manual_seed(0)
    >>> batch = F.TaskBatch(*(torch.randn(3, 4, d, generator=g) for d in (2, 1, 2, 1)))
    >>> fast = F.inner_loop(net, params, buffers, batch.X_support[0], batch.y_support[0],
    ...                     loss_fn=nn.functional.mse_loss, inner_lr=0.1, steps=2)
    >>> fast["weight"].requires_grad  # differentiable w.r.t. params (second order)
    True
    """
    if engine == "vmap":
        grad_fn = grad(_task_loss)
        for _ in range(steps):
            grads = grad_fn(params, buffers, module, loss_fn, X, y)
            if first_order:
                grads = {k: g.detach() for k, g in grads.items()}
            params = _sgd_step(params, grads, inner_lr)
        return params
    if engine != "loop":
        raise ValueError(f"engine must be 'vmap' or 'loop'; got {engine!r}.")
    names = list(params)
    if not any(p.requires_grad for p in params.values()):
        # adaptation without a meta-gradient: start from leaves that track grad
        params = {k: p.detach().requires_grad_() for k, p in params.items()}
    with torch.enable_grad():
        for _ in range(steps):
            loss = _task_loss(params, buffers, module, loss_fn, X, y)
            create_graph = not first_order and torch.is_grad_enabled()
            grads = torch.autograd.grad(loss, [params[k] for k in names],
                                        create_graph=create_graph, allow_unused=True)
            grads = {k: torch.zeros_like(params[k]) if g is None else g
                     for k, g in zip(names, grads)}
            params = _sgd_step(params, grads, inner_lr)
    return params


def _detached(params: Mapping[str, Tensor]) -> Params:
    return {k: p.detach() for k, p in params.items()}


def adapt(module: nn.Module, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor],
          batch: TaskBatch, *, loss_fn: LossFn, inner_lr: float, steps: int,
          engine: Engine = "vmap", chunk_size: int | None = None) -> Params:
    """Adapt ``params`` to every task of ``batch`` on its support set.

    Returns detached adapted parameters stacked along a leading task axis
    (``fast[name][t]`` belongs to task ``t``). No graph is kept, so the result is
    a set of plain leaf tensors that can be copied, pickled and used from threads.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> net = nn.Linear(2, 1)
    >>> params, buffers = dict(net.named_parameters()), {}
    >>> g = torch.Generator().manual_seed(0)
    >>> batch = F.TaskBatch(*(torch.randn(3, 4, d, generator=g) for d in (2, 1, 2, 1)))
    >>> fast = F.adapt(net, params, buffers, batch, loss_fn=nn.functional.mse_loss,
    ...                inner_lr=0.1, steps=1)
    >>> fast["weight"].shape, fast["weight"].requires_grad
    (torch.Size([3, 1, 2]), False)
    """
    phi = _detached(params)
    out: list[Params] = []
    for chunk in batch.chunks(chunk_size):
        if engine == "vmap":
            def one(Xs: Tensor, ys: Tensor) -> Params:
                return inner_loop(module, phi, dict(buffers), Xs, ys, loss_fn=loss_fn,
                                  inner_lr=inner_lr, steps=steps, engine="vmap")

            with torch.no_grad():  # torch.func.grad ignores it; it stops outer graphs
                if chunk.n_tasks == 1:  # a single task needs no vmap (cheaper)
                    fast = one(chunk.X_support[0], chunk.y_support[0])
                    out.append({k: v.unsqueeze(0) for k, v in fast.items()})
                else:
                    out.append(vmap(one, randomness="different")(chunk.X_support,
                                                                 chunk.y_support))
        else:
            per_task = []
            for t in range(chunk.n_tasks):
                fast = inner_loop(module, phi, _cloned(buffers), chunk.X_support[t],
                                  chunk.y_support[t], loss_fn=loss_fn, inner_lr=inner_lr,
                                  steps=steps, first_order=True, engine="loop")
                per_task.append(_detached(fast))
            out.append({k: torch.stack([f[k] for f in per_task]) for k in phi})
    return {k: torch.cat([o[k] for o in out]) for k in phi}


def _cloned(buffers: Mapping[str, Tensor]) -> Params:
    return {k: b.clone() for k, b in buffers.items()}


def predict(module: nn.Module, fast: Mapping[str, Tensor], buffers: Mapping[str, Tensor],
            X: Tensor, *, engine: Engine = "vmap", chunk_size: int | None = None) -> Tensor:
    """Outputs of the adapted models: ``fast`` and ``X`` carry a leading task axis.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> net = nn.Linear(2, 1)
    >>> params, buffers = dict(net.named_parameters()), {}
    >>> g = torch.Generator().manual_seed(0)
    >>> batch = F.TaskBatch(*(torch.randn(3, 4, d, generator=g) for d in (2, 1, 2, 1)))
    >>> fast = F.adapt(net, params, buffers, batch, loss_fn=nn.functional.mse_loss,
    ...                inner_lr=0.1, steps=1)
    >>> F.predict(net, fast, buffers, batch.X_query).shape
    torch.Size([3, 4, 1])
    """
    n = X.shape[0]
    step = n if not chunk_size else chunk_size
    outs = []
    with torch.no_grad():
        for start in range(0, n, step):
            stop = min(start + step, n)
            f = {k: v[start:stop] for k, v in fast.items()}
            if engine == "vmap":
                def one(p: Params, x: Tensor) -> Tensor:
                    return forward(module, p, buffers, x)

                outs.append(vmap(one, randomness="different")(f, X[start:stop]))
            else:
                outs.append(torch.stack([
                    forward(module, {k: v[t] for k, v in f.items()}, buffers, X[start + t])
                    for t in range(stop - start)]))
    return torch.cat(outs)


def _maml_query_loss(params: Params, buffers: Params, module: nn.Module, loss_fn: LossFn,
                     Xs: Tensor, ys: Tensor, Xq: Tensor, yq: Tensor, inner_lr: float,
                     steps: int, first_order: bool, engine: Engine) -> Tensor:
    fast = inner_loop(module, params, buffers, Xs, ys, loss_fn=loss_fn, inner_lr=inner_lr,
                      steps=steps, first_order=first_order, engine=engine)
    return _task_loss(fast, buffers, module, loss_fn, Xq, yq)


def _require_query(batch: TaskBatch) -> None:
    if batch.X_query is None or batch.y_query is None:
        raise ValueError("Meta-training needs a query set for every task (X_query, y_query).")


def maml_meta_gradient(module: nn.Module, params: Mapping[str, Tensor],
                       buffers: Mapping[str, Tensor], batches: Sequence[TaskBatch], *,
                       loss_fn: LossFn, inner_lr: float, steps: int, first_order: bool = False,
                       engine: Engine = "vmap", chunk_size: int | None = None,
                       ) -> tuple[Tensor, Params]:
    """MAML's meta-gradient over all tasks of ``batches``.

    The meta-objective is the mean over tasks of the query loss after ``steps``
    inner steps on the support set (Finn et al., 2017). Gradients are taken with
    respect to every tensor of ``params`` that requires grad; the others get zeros.

    Parameters
    ----------
    module : nn.Module
        Used only as a function through :func:`torch.func.functional_call`.
    params, buffers : dict of str to Tensor
        The meta-parameters (phi) and the module's buffers.
    batches : sequence of TaskBatch
        Groups of equally shaped tasks; each task counts once in the mean.
    loss_fn : callable
        ``loss_fn(y_pred, y_true)``, used for both support and query losses.
    inner_lr : float
        Inner (adaptation) step size.
    steps : int
        Number of inner steps.
    first_order : bool, default=False
        Drop the second-order terms (first-order MAML).
    engine : {"vmap", "loop"}, default="vmap"
        Vectorised over tasks, or one task at a time (the reference).
    chunk_size : int or None, default=None
        With ``engine="vmap"``, at most this many tasks are vectorised at once,
        which bounds memory; gradients are accumulated over chunks.

    Returns
    -------
    loss : Tensor
        The detached mean post-adaptation query loss.
    grads : dict of str to Tensor
        The meta-gradient, one tensor per parameter.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> net = nn.Linear(2, 1)
    >>> params, buffers = dict(net.named_parameters()), {}
    >>> g = torch.Generator().manual_seed(0)
    >>> batch = F.TaskBatch(*(torch.randn(3, 4, d, generator=g) for d in (2, 1, 2, 1)))
    >>> kw = dict(loss_fn=nn.functional.mse_loss, inner_lr=0.1, steps=2)
    >>> loss, grads = F.maml_meta_gradient(net, params, buffers, [batch], **kw)
    >>> _, grads_loop = F.maml_meta_gradient(net, params, buffers, [batch], engine="loop", **kw)
    >>> torch.allclose(grads["weight"], grads_loop["weight"], atol=1e-6)
    True
    """
    names = [k for k, p in params.items() if p.requires_grad]
    n_total = sum(b.n_tasks for b in batches)
    grads = {k: torch.zeros_like(p) for k, p in params.items()}
    total = torch.zeros((), dtype=torch.float64)
    params = dict(params)
    buffers = dict(buffers)
    for batch in batches:
        _require_query(batch)
        if engine == "vmap":
            def one(Xs: Tensor, ys: Tensor, Xq: Tensor, yq: Tensor) -> Tensor:
                return _maml_query_loss(params, buffers, module, loss_fn, Xs, ys, Xq, yq,
                                        inner_lr, steps, first_order, "vmap")

            chunks = [(vmap(one, randomness="different"), c) for c in batch.chunks(chunk_size)]
        elif engine == "loop":
            def one_task(Xs: Tensor, ys: Tensor, Xq: Tensor, yq: Tensor) -> Tensor:
                return _maml_query_loss(params, buffers, module, loss_fn, Xs[0], ys[0], Xq[0],
                                        yq[0], inner_lr, steps, first_order, "loop")[None]

            chunks = [(one_task, c) for c in batch.chunks(1)]
        else:
            raise ValueError(f"engine must be 'vmap' or 'loop'; got {engine!r}.")
        for fn, chunk in chunks:
            losses = fn(chunk.X_support, chunk.y_support, chunk.X_query, chunk.y_query)
            if names:
                gs = torch.autograd.grad(losses.sum() / n_total, [params[k] for k in names],
                                         allow_unused=True)
                for k, g in zip(names, gs):
                    if g is not None:
                        grads[k] += g
            total += losses.detach().sum().double().cpu()
    return (total / n_total).to(next(iter(params.values())).dtype), grads


def reptile_meta_gradient(module: nn.Module, params: Mapping[str, Tensor],
                          buffers: Mapping[str, Tensor], batches: Sequence[TaskBatch], *,
                          loss_fn: LossFn, inner_lr: float, steps: int, engine: Engine = "vmap",
                          chunk_size: int | None = None) -> tuple[Tensor, Params]:
    """Reptile's pseudo-gradient ``phi - mean_t W_t`` (Nichol et al., 2018).

    ``W_t`` are the parameters after ``steps`` SGD steps of size ``inner_lr`` from
    ``phi`` on task ``t``'s support set. An outer optimizer stepping with this
    "gradient" moves ``phi`` toward the adapted weights: with plain SGD of
    learning rate ``eps``, ``phi <- phi + eps * (mean_t W_t - phi)``.

    Returns
    -------
    loss : Tensor
        Mean post-adaptation query loss (``nan`` when the tasks carry no query
        set); it is for monitoring only and has no gradient.
    pseudo_grads : dict of str to Tensor
        ``phi - mean_t W_t`` for every parameter.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> net = nn.Linear(2, 1)
    >>> params, buffers = dict(net.named_parameters()), {}
    >>> g = torch.Generator().manual_seed(0)
    >>> batch = F.TaskBatch(*(torch.randn(3, 4, d, generator=g) for d in (2, 1, 2, 1)))
    >>> _, pseudo = F.reptile_meta_gradient(net, params, buffers, [batch],
    ...                                     loss_fn=nn.functional.mse_loss, inner_lr=0.1, steps=5)
    >>> sorted(pseudo)
    ['bias', 'weight']
    """
    phi = _detached(params)
    n_total = sum(b.n_tasks for b in batches)
    w_sum = {k: torch.zeros_like(p) for k, p in phi.items()}
    total = torch.zeros((), dtype=torch.float64)
    has_query = all(b.X_query is not None for b in batches)
    for batch in batches:
        fast = adapt(module, phi, buffers, batch, loss_fn=loss_fn, inner_lr=inner_lr,
                     steps=steps, engine=engine, chunk_size=chunk_size)
        for k in w_sum:
            w_sum[k] += fast[k].sum(0)
        if has_query:
            out = predict(module, fast, buffers, batch.X_query, engine=engine,
                          chunk_size=chunk_size)
            with torch.no_grad():
                total += sum(loss_fn(out[t], batch.y_query[t]).double().cpu()
                             for t in range(batch.n_tasks))
    loss = total / n_total if has_query else torch.tensor(float("nan"))
    pseudo = {k: phi[k] - w_sum[k] / n_total for k in phi}
    return loss.to(next(iter(phi.values())).dtype), pseudo


# Native normalisation layers whose vmapped second-order gradients are wrong
# (pytorch/functorch#534; re-measured on torch 2.13) or that update buffers in place.
_SECOND_ORDER_UNSAFE = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm,
                        nn.modules.instancenorm._InstanceNorm)


def vmap_support(module: nn.Module, *, second_order: bool) -> tuple[bool, str]:
    """Whether ``module`` can run on the vectorised engine, and why not.

    Native ``BatchNorm`` layers that track running statistics update their buffers
    in place, which :func:`torch.func.vmap` cannot batch. Under second-order
    gradients, native affine ``BatchNorm``, ``InstanceNorm`` and ``LayerNorm`` give
    silently wrong meta-gradients under ``vmap`` (measured 0.4-20% off). Use the
    normalisation layers of :mod:`skmeta.modules`, written with elementary tensor
    operations, which are exact on both engines.

    Returns
    -------
    ok : bool
    reason : str
        Empty when ``ok``.

    Examples
    --------
    >>> from torch import nn
    >>> from skmeta.functional import vmap_support
    >>> from skmeta.modules import BatchNorm
    >>> vmap_support(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), second_order=True)[0]
    False
    >>> vmap_support(nn.Sequential(nn.Linear(2, 2), BatchNorm(2)), second_order=True)
    (True, '')
    """
    for name, sub in module.named_modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.track_running_stats:
            return False, (f"layer {name!r} ({type(sub).__name__}) tracks running statistics, "
                           "which vmap cannot update in place")
        if second_order and isinstance(sub, _SECOND_ORDER_UNSAFE):
            affine = getattr(sub, "affine", None)
            if affine is None:
                affine = getattr(sub, "elementwise_affine", False)
            if affine:
                return False, (f"layer {name!r} ({type(sub).__name__}) gives wrong second-order "
                               "gradients under vmap (pytorch/functorch#534)")
    return True, ""
