"""Task batches, the step context, and the one place that maps a function over tasks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Literal, NamedTuple, TypeVar

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

__all__ = ["Params", "LossFn", "Engine", "ENGINES", "check_engine", "TaskBatch", "forward",
           "current_step", "inner_step", "map_tasks", "meta_gradient", "mean_over_tasks",
           "vmap_support"]

Params = dict[str, Tensor]
"""A parameter (or buffer) dictionary ``{name: tensor}``."""

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss_fn(y_pred, y_true) -> scalar``, e.g. ``nn.MSELoss()``."""

Engine = Literal["vmap", "loop", "batched"]
#: the engines that map a per-task function over tasks (see :func:`map_tasks`)
ENGINES: tuple[str, ...] = ("vmap", "loop", "batched")
"""``"vmap"``: tasks vectorised with :func:`torch.func.vmap`; ``"loop"``: one task at a time;
``"batched"``: every task at once with batched matrix products (see :func:`batched_forward`)."""

T = TypeVar("T")


class TaskBatch(NamedTuple):
    """Tasks of equal shapes, stacked along a leading task axis.

    A per-task function (see :func:`map_tasks`) receives a ``TaskBatch`` of *one*
    task, whose tensors have no task axis.

    Attributes
    ----------
    X_support : Tensor of shape (n_tasks, n_support, \\*input_shape)
        The support inputs.
    y_support : Tensor of shape (n_tasks, n_support, ...)
        The support targets.
    X_query : Tensor of shape (n_tasks, n_query, \\*input_shape) or None
        The query inputs; None when only support sets are known (adaptation).
    y_query : Tensor of shape (n_tasks, n_query, ...) or None
        The query targets.
    query_mask : bool Tensor of shape (n_tasks, n_query) or None
        Tasks whose query sets differ in size are padded to the longest; the mask
        says which query rows are real. None: every row is (no padding).

    Examples
    --------
    >>> import torch
    >>> from skmeta.functional import TaskBatch
    >>> batch = TaskBatch(torch.zeros(8, 5, 2), torch.zeros(8, 5, 1))
    >>> batch.n_tasks, batch.slice(0, 3).n_tasks
    (8, 3)
    >>> batch.task(0).X_support.shape
    torch.Size([5, 2])
    """

    X_support: Tensor
    y_support: Tensor
    X_query: Tensor | None = None
    y_query: Tensor | None = None
    query_mask: Tensor | None = None

    @property
    def n_tasks(self) -> int:
        """Number of tasks in the batch."""
        return self.X_support.shape[0]

    def slice(self, start: int, stop: int) -> TaskBatch:
        """Tasks ``start:stop`` of the batch."""
        return TaskBatch(*(None if t is None else t[start:stop] for t in self))

    def task(self, t: int) -> TaskBatch:
        """Task ``t`` alone, without the task axis."""
        return TaskBatch(*(None if a is None else a[t] for a in self))

    def pooled(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """The task's support and query examples together: ``(X, y, mask)``.

        ``mask`` says which rows count (None: all of them; padded query rows do
        not). Written for one task; a per-task function run by the batched engine
        receives every task at once and gets every task's pooled rows.

        Examples
        --------
        >>> import torch
        >>> from skmeta.functional import TaskBatch
        >>> X, y, mask = TaskBatch(torch.zeros(3, 2), torch.zeros(3), torch.ones(4, 2),
        ...                        torch.ones(4)).pooled()
        >>> X.shape, mask
        (torch.Size([7, 2]), None)
        """
        return self._pooled(0)

    def _pooled(self, axis: int) -> tuple[Tensor, Tensor, Tensor | None]:
        X, y, mask = self.X_support, self.y_support, None
        if self.X_query is not None:
            X, y = torch.cat([X, self.X_query], axis), torch.cat([y, self.y_query], axis)
            if self.query_mask is not None:  # padded query rows do not count
                mask = torch.cat([torch.ones(self.y_support.shape[:axis + 1], dtype=torch.bool,
                                             device=X.device), self.query_mask], axis)
        return X, y, mask


class _TaskChunk(TaskBatch):
    """Every task of a chunk, as the batched engine hands them to a per-task function."""

    __slots__ = ()

    def pooled(self) -> tuple[Tensor, Tensor, Tensor | None]:
        return self._pooled(1)


# ---------------------------------------------------------------------- the step


_STEP: ContextVar[int | None] = ContextVar("skmeta_inner_step", default=None)


def current_step() -> int | None:
    """The index of the inner step the network is being run for, or None.

    Set by :func:`forward` (``step=``) and :func:`inner_step`; read by layers whose
    weights depend on the step, such as :class:`skmeta.modules.BatchNorm` with
    ``n_steps`` (MAML++'s per-step batch norm). Each thread has its own value.

    Returns
    -------
    step : int or None
        None outside an inner loop.

    Examples
    --------
    >>> from skmeta.functional import current_step, inner_step
    >>> with inner_step(2):
    ...     current_step()
    2
    >>> current_step() is None
    True
    """
    return _STEP.get()


@contextlib.contextmanager
def inner_step(step: int | None) -> Iterator[None]:
    """Run a block as inner step ``step`` (see :func:`current_step`).

    Parameters
    ----------
    step : int or None
        The step index; None leaves the current one as it is.

    Yields
    ------
    None
        The block runs with :func:`current_step` returning ``step``.

    Examples
    --------
    >>> from skmeta.functional import current_step, inner_step
    >>> with inner_step(0):
    ...     with inner_step(None):
    ...         current_step()
    0
    """
    if step is None:
        yield
        return
    token = _STEP.set(int(step))
    try:
        yield
    finally:
        _STEP.reset(token)


def forward(module: nn.Module, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor],
            X: Tensor, *, step: int | None = None) -> Tensor:
    """Run ``module`` on ``X`` with the given parameters and buffers, functionally.

    Parameters
    ----------
    module : nn.Module
        Used only as a function (:func:`torch.func.functional_call`); never modified.
    params, buffers : mapping of str to Tensor
        Tensors that replace the module's own for this call.
    X : Tensor
        The input.
    step : int or None, default=None
        The inner step this forward pass belongs to (see :func:`current_step`).

    Returns
    -------
    out : Tensor
        ``module(X)`` computed with ``params`` and ``buffers``.

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
    with inner_step(step):
        return functional_call(module, (dict(params), dict(buffers)), (X,))


# --------------------------------------------------------- mapping over tasks


def check_engine(engine: str) -> None:
    """Refuse an engine name that is not one of :data:`ENGINES` (the one check of it)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}; "
                         f"got {engine!r}.")


def _n_tasks(leaves: list) -> int:
    for leaf in leaves:
        if leaf is not None:
            return leaf.shape[0]
    raise ValueError("map_tasks needs at least one tensor with a leading task axis.")


def _take(leaves: list, index: Any) -> list:
    return [None if leaf is None else leaf[index] for leaf in leaves]


def _bound(fn: Callable, learner: Any, engine: Engine) -> Callable[[Any], Any]:
    """``fn`` as a function of one task: ``fn(learner, task)`` with the learner the engine
    binds, or (without a learner) the older form ``fn(task, engine)``."""
    if learner is None:
        return lambda task: fn(task, engine)
    bound = learner.bind(engine)
    return lambda task: fn(bound, task)


def _with_task_axis(out: Any, n: int) -> Any:
    """Outputs of a chunk of the batched engine: a 0-dim output (a constant, the same for
    every task) is repeated for each task."""
    return tree_map(lambda v: v.expand(n) if isinstance(v, Tensor) and v.dim() == 0 else v,
                    out)


def map_tasks(fn: Callable[..., T], tasks: Any, *, engine: Engine = "vmap",
              chunk_size: int | None = None, learner: Any = None
              ) -> Iterator[tuple[Any, T]]:
    """Apply a per-task function to every task, chunk by chunk.

    This is the one place where skmeta maps work over the tasks of a meta-batch.
    ``tasks`` is a :class:`TaskBatch` (or any tuple/dict of tensors sharing a
    leading task axis, such as ``(fast_weights, X)``). ``fn`` is written for one
    task: with a ``learner``, ``fn(learner, task)`` receives the learner as the
    engine binds it and one task (the same structure without the task axis), and
    returns a tensor or a dict/tuple of tensors; it never needs to know which engine
    runs it. For each chunk of tasks this yields the chunk and ``fn``'s outputs
    stacked along a new leading task axis, so a caller can reduce (or differentiate)
    chunk by chunk and free each chunk's graph before the next.

    Parameters
    ----------
    fn : callable
        ``fn(learner, task)`` when ``learner`` is given, else ``fn(task, engine)``
        (the older form, which must handle each engine itself). It computes with
        the learner's methods, :mod:`torch` operations and :mod:`torch.func`; under
        ``"vmap"`` it may not call :func:`torch.autograd.grad` itself.
    tasks : TaskBatch or pytree of Tensor
        Tensors with a leading task axis (None entries are passed through).
    engine : {"vmap", "loop", "batched"}, default="vmap"
        ``"vmap"`` vectorises the tasks of a chunk (:func:`torch.func.vmap`);
        ``"loop"`` runs one task after another (the reference, and the lighter
        engine for convolutions on a CPU); ``"batched"`` runs every task of a chunk
        at once with a learner whose methods carry the task axis (see
        :func:`batched_forward`): ``fn`` is called once per chunk, and a 0-dim
        output (a constant) stands for the same value in every task.
    chunk_size : int or None, default=None
        At most this many tasks at once (bounds memory).
    learner : Learner or None, default=None
        The learner to bind to the engine (:meth:`Learner.bind`) and pass to ``fn``.

    Yields
    ------
    chunk : same type as ``tasks``
        The tasks computed.
    out : Tensor or pytree of Tensor
        ``fn``'s outputs, with a leading task axis.

    Examples
    --------
    >>> import torch
    >>> from skmeta.functional import TaskBatch, map_tasks
    >>> batch = TaskBatch(torch.arange(6.).reshape(3, 2, 1), torch.zeros(3, 2, 1))
    >>> def support_mean(task, engine):
    ...     return task.X_support.mean()
    >>> [out.tolist() for _, out in map_tasks(support_mean, batch, engine="loop")]
    [[0.5], [2.5], [4.5]]
    >>> [out.tolist() for _, out in map_tasks(support_mean, batch, engine="vmap")]
    [[0.5, 2.5, 4.5]]
    """
    check_engine(engine)
    one_task = _bound(fn, learner, engine)
    leaves, spec = tree_flatten(tasks)
    n = _n_tasks(leaves)
    step = n if not chunk_size else int(chunk_size)
    if engine == "batched":  # every task of a chunk at once (the learner carries the axis)
        for start in range(0, n, step):
            chunk = tree_unflatten(_take(leaves, slice(start, min(start + step, n))), spec)
            given = _TaskChunk(*chunk) if type(chunk) is TaskBatch else chunk
            yield chunk, _with_task_axis(one_task(given), min(start + step, n) - start)
        return
    if engine == "loop":
        for t in range(n):
            chunk = tree_unflatten(_take(leaves, slice(t, t + 1)), spec)
            out = one_task(tree_unflatten(_take(leaves, t), spec))
            yield chunk, tree_map(lambda v: v.unsqueeze(0), out)
        return
    in_dims = tuple(None if leaf is None else 0 for leaf in leaves)

    def one(*task_leaves: Tensor | None) -> Any:
        return one_task(tree_unflatten(list(task_leaves), spec))

    batched = vmap(one, in_dims=in_dims, randomness="different")
    for start in range(0, n, step):
        part = _take(leaves, slice(start, min(start + step, n)))
        chunk = tree_unflatten(part, spec)
        if min(start + step, n) - start == 1:  # a single task needs no vmap (cheaper)
            out = one_task(tree_unflatten(_take(part, 0), spec))
            yield chunk, tree_map(lambda v: v.unsqueeze(0), out)
        else:
            yield chunk, batched(*part)


def _dtype_of(tensors: Mapping[str, Tensor]) -> torch.dtype:
    return next((t.dtype for t in tensors.values() if t.is_floating_point()),
                torch.get_default_dtype())


def meta_gradient(objective: Callable[..., Tensor], batches: Sequence[TaskBatch],
                  wrt: Mapping[str, Tensor], *, engine: Engine = "vmap",
                  chunk_size: int | None = None, learner: Any = None) -> tuple[Tensor, Params]:
    """The mean over tasks of a per-task objective, and its gradient.

    Every task of every batch counts once in the mean; losses are accumulated in
    float64. The gradient is taken chunk by chunk (task by task with the loop
    engine), so at most one chunk's graph is alive at a time.

    Parameters
    ----------
    objective : callable
        ``objective(learner, task) -> scalar Tensor`` (with ``learner``; else
        ``objective(task, engine)``, see :func:`map_tasks`), differentiable with
        respect to the tensors of ``wrt`` (for MAML: the query loss after the inner
        loop, :func:`query_loss`).
    batches : sequence of TaskBatch
        Groups of equally shaped tasks.
    wrt : mapping of str to Tensor
        The meta-parameters; those that do not require grad get zeros.
    engine : {"vmap", "loop", "batched"}, default="vmap"
    chunk_size : int or None, default=None
        See :func:`map_tasks`.
    learner : Learner or None, default=None
        Passed to ``objective``, bound to the engine (see :func:`map_tasks`).

    Returns
    -------
    loss : Tensor
        The detached mean of the objective over tasks.
    grads : dict of str to Tensor
        Its gradient, one tensor per entry of ``wrt``.

    Examples
    --------
    >>> import torch
    >>> from skmeta.functional import TaskBatch, meta_gradient
    >>> w = torch.ones(1, requires_grad=True)
    >>> batch = TaskBatch(torch.ones(4, 2, 1), torch.ones(4, 2, 1))
    >>> def objective(task, engine):
    ...     return ((task.X_support * w - 2 * task.y_support) ** 2).mean()
    >>> loss, grads = meta_gradient(objective, [batch], {"w": w})
    >>> loss.item(), grads["w"].tolist()
    (1.0, [-2.0])
    """
    names = [k for k, p in wrt.items() if p.requires_grad]
    n_total = sum(b.n_tasks for b in batches)
    grads: dict[str, Tensor] = {}
    total = None
    for batch in batches:
        for _, losses in map_tasks(objective, batch, engine=engine, chunk_size=chunk_size,
                                   learner=learner):
            if names:
                gs = torch.autograd.grad(losses.sum() / n_total, [wrt[k] for k in names],
                                         allow_unused=True)
                for k, g in zip(names, gs):
                    if g is not None:
                        grads[k] = g if k not in grads else grads[k] + g
            part = losses.detach().double().sum()
            total = part if total is None else total + part
    for k, p in wrt.items():
        if k not in grads:
            grads[k] = torch.zeros_like(p)
    mean = torch.zeros((), dtype=torch.float64) if total is None else total.cpu() / n_total
    return mean.to(_dtype_of(wrt)), {k: grads[k] for k in wrt}


def mean_over_tasks(fn: Callable[..., T], batches: Sequence[TaskBatch], *,
                    engine: Engine = "vmap", chunk_size: int | None = None,
                    learner: Any = None) -> T:
    """The mean over all tasks of ``fn(task, engine)``, without autograd graphs.

    For algorithms that compute a per-task *pseudo-gradient* (Reptile's
    ``phi - W``, pre-training's per-task gradient) rather than differentiate a
    per-task objective. Outputs are summed in float64 and returned in their own
    dtype.

    Parameters
    ----------
    fn : callable
        ``fn(learner, task)`` (with ``learner``; else ``fn(task, engine)``)
        returning a tensor or a dict/tuple of tensors.
    batches : sequence of TaskBatch
    engine : {"vmap", "loop", "batched"}, default="vmap"
    chunk_size : int or None, default=None
    learner : Learner or None, default=None
        Passed to ``fn``, bound to the engine (see :func:`map_tasks`).

    Returns
    -------
    mean : Tensor or pytree of Tensor
        Shaped like one output of ``fn``.

    Examples
    --------
    >>> import torch
    >>> from skmeta.functional import TaskBatch, mean_over_tasks
    >>> batch = TaskBatch(torch.arange(6.).reshape(3, 2, 1), torch.zeros(3, 2, 1))
    >>> mean_over_tasks(lambda task, engine: task.X_support.sum(), [batch]).item()
    5.0
    """
    n_total = sum(b.n_tasks for b in batches)
    total: Any = None
    dtypes: Any = None
    with torch.no_grad():
        for batch in batches:
            for _, out in map_tasks(fn, batch, engine=engine, chunk_size=chunk_size,
                                    learner=learner):
                part = tree_map(lambda v: v.double().sum(0), out)
                if total is None:
                    total, dtypes = part, tree_map(lambda v: v.dtype, out)
                else:
                    total = tree_map(torch.add, total, part)
    return tree_map(lambda v, d: (v / max(n_total, 1)).to(d), total, dtypes)


# ------------------------------------------------------------- engine support

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

    Parameters
    ----------
    module : nn.Module
        The network.
    second_order : bool
        Whether meta-gradients differentiate through the inner steps.

    Returns
    -------
    ok : bool
        True when the vectorised engine computes the same numbers as the loop.
    reason : str
        Why not; empty when ``ok``.

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
