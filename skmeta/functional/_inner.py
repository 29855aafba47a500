"""The inner loop: a network with its rule (:class:`Learner`), adaptation and prediction."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad

from ._batched import batched_forward, per_task_loss
from ._core import Engine, LossFn, Params, TaskBatch, forward, inner_step, map_tasks
from ._rules import InnerRule

__all__ = ["Learner", "query_loss", "adapt", "predict", "check_head"]


def _detached(tensors: Mapping[str, Tensor]) -> Params:
    return {k: v.detach() for k, v in tensors.items()}


@dataclasses.dataclass(frozen=True, eq=False)
class Learner:
    """A network used as a function, with the inner-loop rule that adapts it.

    Everything a per-task function needs: the meta-parameters ``params`` (phi),
    the rule that says which of them move and how, and the rule's learnable
    ``state``. It holds tensors and never modifies them, nor the module.

    Parameters
    ----------
    module : nn.Module
        Used only as a function (:func:`forward`).
    params : dict of str to Tensor
        The meta-parameters; they may require grad (meta-training).
    buffers : dict of str to Tensor
        The module's buffers.
    loss_fn : callable
        ``loss_fn(y_pred, y_true)``, for support and query losses.
    rule : InnerRule
        The inner-loop rule (see :func:`sgd`, :func:`learned_lr`, :func:`only`).
    state : dict of str to Tensor, default={}
        The rule's learnable state (from ``rule.init``).
    head : str or None, default=None
        Name of a submodule that is the network's last operation and holds every
        parameter the rule moves (ANIL). The inner loop then computes the input of
        the head once per task and steps the head alone, instead of running the
        whole network at every step; see :func:`check_head`.

    Attributes
    ----------
    adapted : tuple of str
        Names of the parameters the inner loop moves.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> net = nn.Linear(2, 1)
    >>> learner = F.Learner(net, dict(net.named_parameters()), {}, nn.functional.mse_loss,
    ...                     F.sgd(0.1))
    >>> X, y = torch.randn(5, 2), torch.randn(5, 1)
    >>> fasts = learner.run_inner(X, y, steps=3)
    >>> len(fasts), sorted(fasts[-1])  # the weights before and after each step
    (4, ['bias', 'weight'])
    >>> bool(learner.loss(fasts[-1], X, y) < learner.loss(fasts[0], X, y))
    True
    """

    module: nn.Module
    params: Params
    buffers: Params
    loss_fn: LossFn
    rule: InnerRule
    state: Params = dataclasses.field(default_factory=dict)
    head: str | None = None
    adapted: tuple[str, ...] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        adapted = tuple(k for k in self.params if self.rule.selects(k))
        object.__setattr__(self, "adapted", adapted)
        if self.head is not None:
            prefix = self.head + "."
            outside = [k for k in adapted if not k.startswith(prefix)]
            if outside:
                raise ValueError(f"head={self.head!r} must hold every parameter the inner loop "
                                 f"moves, but the rule also moves {outside}.")

    def detached(self) -> Learner:
        """The same learner with detached parameters and state (no meta-gradient)."""
        return dataclasses.replace(self, params=_detached(self.params),
                                   state=_detached(self.state))

    # ------------------------------------------------------------- forward

    def forward(self, fast: Mapping[str, Tensor], X: Tensor, *, step: int | None = None,
                engine: Engine = "vmap") -> Tensor:
        """The network's output on ``X`` with the parameters in ``fast`` replaced.

        ``fast`` may hold only the parameters that move (as :meth:`run_inner`
        returns them); the others are the meta-parameters. With ``engine="batched"``,
        ``X`` and ``fast`` carry a leading task axis (every task at once).
        """
        params = {**self.params, **fast}
        if engine == "batched":
            with inner_step(step):
                return batched_forward(self.module, params, X)
        return forward(self.module, params, self.buffers, X, step=step)

    def loss(self, fast: Mapping[str, Tensor], X: Tensor, y: Tensor, *,
             step: int | None = None, engine: Engine = "vmap") -> Tensor:
        """``loss_fn(forward(fast, X), y)`` (one loss per task with ``engine="batched"``)."""
        out = self.forward(fast, X, step=step, engine=engine)
        return per_task_loss(self.loss_fn, out, y) if engine == "batched" else \
            self.loss_fn(out, y)

    def features(self, X: Tensor, *, step: int | None = None, engine: Engine = "vmap"
                 ) -> Tensor:
        """The input of the ``head`` submodule when the network runs on ``X``."""
        if self.head is None:
            raise ValueError("features() needs a learner with a head.")
        if engine == "batched":
            with inner_step(step):
                return batched_forward(self.module, self.params, X, stop_at=self.head)
        captured: list[Tensor] = []

        def hook(module: nn.Module, args: tuple) -> None:
            captured.append(args[0])

        handle = self.module.get_submodule(self.head).register_forward_pre_hook(hook)
        try:
            forward(self.module, self.params, self.buffers, X, step=step)
        finally:
            handle.remove()
        if len(captured) != 1:
            raise ValueError(f"The head {self.head!r} ran {len(captured)} times in one forward "
                             "pass; the head must be applied exactly once, last.")
        return captured[0]

    def _head_forward(self, fast: Mapping[str, Tensor], features: Tensor,
                      step: int | None, engine: Engine = "vmap") -> Tensor:
        prefix = self.head + "."
        cut = len(prefix)
        params = {k[cut:]: v for k, v in {**self.params, **fast}.items() if k.startswith(prefix)}
        head = self.module.get_submodule(self.head)
        with inner_step(step):
            if engine == "batched":
                return batched_forward(head, params, features)
            buffers = {k[cut:]: v for k, v in self.buffers.items() if k.startswith(prefix)}
            return functional_call(head, (params, buffers), (features,))

    # ----------------------------------------------------------- inner loop

    def start(self, X: Tensor, engine: Engine = "vmap") -> Params:
        """The parameters that move, before the first step (one copy per task of ``X`` with
        ``engine="batched"``, so that gradients of summed losses are per task)."""
        fast = {k: self.params[k] for k in self.adapted}
        if engine == "batched":
            fast = {k: v.expand(X.shape[0], *v.shape) for k, v in fast.items()}
        return fast

    def run_inner(self, X: Tensor, y: Tensor, *, steps: int, first_order: bool = False,
                  engine: Engine = "vmap") -> list[Params]:
        """Adapt to one task's support set ``(X, y)``: the inner loop.

        Takes ``steps`` steps of the rule from the meta-parameters. When the
        meta-parameters (or the rule's state) require grad and ``first_order`` is
        False, the result stays differentiable through every step (second order);
        with ``first_order=True`` the inner gradients are constants.

        Parameters
        ----------
        X, y : Tensor
            One task's support set (no task axis; with ``engine="batched"``, every
            task's, with a leading task axis).
        steps : int
            Number of inner steps.
        first_order : bool, default=False
            Treat the inner gradients as constants.
        engine : {"vmap", "loop", "batched"}, default="vmap"
            ``"vmap"`` computes inner gradients with :func:`torch.func.grad`
            (composes with :func:`torch.func.vmap`); ``"loop"`` uses
            :func:`torch.autograd.grad` (cannot be vmapped); ``"batched"`` runs all
            tasks at once (:func:`batched_forward`) with :func:`torch.autograd.grad`.

        Returns
        -------
        fasts : list of dict of str to Tensor
            ``steps + 1`` entries: the parameters that move, before the first
            step and after each step (``fasts[-1]`` is the adapted result).
        """
        if self.rule.run is not None:
            return self.rule.run(self, X, y, steps=steps, first_order=first_order,
                                 engine=engine)
        if self.head is not None:
            inputs = self.features(X, engine=engine)

            def inner_loss(fast: Params, step: int) -> Tensor:
                out = self._head_forward(fast, inputs, step, engine)
                return per_task_loss(self.loss_fn, out, y).sum() if engine == "batched" \
                    else self.loss_fn(out, y)
        else:
            def inner_loss(fast: Params, step: int) -> Tensor:
                loss = self.loss(fast, X, y, step=step, engine=engine)
                return loss.sum() if engine == "batched" else loss

        fast = self.start(X, engine)
        fasts = [fast]
        if engine == "vmap":
            grad_fn = grad(inner_loss)
            for step in range(steps):
                grads = grad_fn(fast, step)
                if first_order:
                    grads = _detached(grads)
                fast = self.rule.update(fast, grads, self.state, step)
                fasts.append(fast)
            return fasts
        if engine not in ("loop", "batched"):
            raise ValueError(f"engine must be 'vmap', 'loop' or 'batched'; got {engine!r}.")
        tracking = torch.is_grad_enabled()  # False: adaptation, no meta-gradient wanted
        create_graph = tracking and not first_order
        names = list(fast)
        with torch.enable_grad():
            for step in range(steps):
                if not tracking or not any(v.requires_grad for v in fast.values()):
                    fast = {k: v.detach().requires_grad_() for k, v in fast.items()}
                loss = inner_loss(fast, step)
                gs = torch.autograd.grad(loss, [fast[k] for k in names],
                                         create_graph=create_graph, allow_unused=True)
                grads = {k: torch.zeros_like(fast[k]) if g is None else g
                         for k, g in zip(names, gs)}
                fast = self.rule.update(fast, grads, self.state, step)
                fasts.append(fast if tracking else _detached(fast))
        return fasts


def query_loss(learner: Learner, task: TaskBatch, *, steps: int, first_order: bool = False,
               engine: Engine = "vmap") -> Tensor:
    """The query loss of one task after ``steps`` inner steps on its support set.

    MAML's per-task objective (Finn et al., 2017), and that of every algorithm
    that differs from MAML only in its inner rule (Meta-SGD, ANIL): the mean of
    this over tasks is the meta-loss; its gradient flows through the inner loop
    unless ``first_order``.

    Parameters
    ----------
    learner : Learner
        The network, its meta-parameters and its inner-loop rule.
    task : TaskBatch
        One task (no task axis), with a query set.
    steps : int
        Inner steps on the support set.
    first_order : bool, default=False
        Treat the inner gradients as constants (first-order MAML).
    engine : {"vmap", "loop"}, default="vmap"

    Returns
    -------
    loss : Tensor
        A scalar, differentiable with respect to the meta-parameters and state.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> net = nn.Linear(1, 1)
    >>> learner = F.Learner(net, dict(net.named_parameters()), {}, nn.functional.mse_loss,
    ...                     F.sgd(0.1))
    >>> batch = F.TaskBatch(*(torch.randn(3, 5, 1) for _ in range(4)))
    >>> loss, grads = F.meta_gradient(lambda task, engine: F.query_loss(
    ...     learner, task, steps=2, engine=engine), [batch], learner.params)
    >>> sorted(grads)
    ['bias', 'weight']
    """
    if task.X_query is None:
        raise ValueError("Meta-training needs a query set for every task (X_query, y_query).")
    fasts = learner.run_inner(task.X_support, task.y_support, steps=steps,
                              first_order=first_order, engine=engine)
    return learner.loss(fasts[-1], task.X_query, task.y_query, step=max(steps - 1, 0),
                        engine=engine)


def check_head(learner: Learner, X: Tensor, *, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Check that ``learner.head`` is the network's last operation.

    The head-only inner loop computes the head's input once and runs the head
    alone; that equals running the whole network only if the network's output is
    the head's output. This runs both on ``X`` and compares.

    Parameters
    ----------
    learner : Learner
        With a ``head``.
    X : Tensor
        A few examples.
    rtol, atol : float
        Tolerances of the comparison.

    Returns
    -------
    None

    Raises
    ------
    ValueError
        If the outputs differ, naming the head and the fix.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    >>> learner = F.Learner(net, dict(net.named_parameters()), {}, nn.functional.mse_loss,
    ...                     F.only("2", F.sgd(0.1)), head="2")
    >>> F.check_head(learner, torch.randn(3, 2))  # no error: layer "2" is applied last
    """
    with torch.no_grad():
        whole = learner.forward({}, X)
        alone = learner._head_forward({}, learner.features(X), None)
    if whole.shape != alone.shape or not torch.allclose(whole, alone, rtol=rtol, atol=atol):
        raise ValueError(f"The submodule {learner.head!r} is not the network's last operation: "
                         "the network's output differs from the head applied to its input. "
                         "Name the last layer with parameters as the head, or make the head "
                         "the network's final step.")


def adapt(learner: Learner, batch: TaskBatch, *, steps: int, engine: Engine = "vmap",
          chunk_size: int | None = None) -> Params:
    """Adapt to every task of ``batch`` on its support set.

    Parameters
    ----------
    learner : Learner
        The network, its meta-parameters and its inner-loop rule.
    batch : TaskBatch
        Only the support sets are used.
    steps : int
        Number of inner steps.
    engine : {"vmap", "loop"}, default="vmap"
    chunk_size : int or None, default=None
        See :func:`map_tasks`.

    Returns
    -------
    fast : dict of str to Tensor
        The adapted values of the parameters that move (``learner.adapted``),
        stacked along a leading task axis (``fast[name][t]`` belongs to task
        ``t``); detached leaf tensors that can be copied, pickled and used from
        threads. The other parameters are the meta-parameters.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> net = nn.Linear(2, 1)
    >>> learner = F.Learner(net, dict(net.named_parameters()), {}, nn.functional.mse_loss,
    ...                     F.sgd(0.1))
    >>> g = torch.Generator().manual_seed(0)
    >>> batch = F.TaskBatch(*(torch.randn(3, 4, d, generator=g) for d in (2, 1, 2, 1)))
    >>> fast = F.adapt(learner, batch, steps=1)
    >>> fast["weight"].shape, fast["weight"].requires_grad
    (torch.Size([3, 1, 2]), False)
    """
    learner = learner.detached()

    def one(task: TaskBatch, engine: Engine) -> Params:
        return _detached(learner.run_inner(task.X_support, task.y_support, steps=steps,
                                           engine=engine)[-1])

    support = TaskBatch(batch.X_support, batch.y_support)
    with torch.no_grad():
        outs = [out for _, out in map_tasks(one, support, engine=engine, chunk_size=chunk_size)]
    return {k: torch.cat([o[k] for o in outs]) for k in learner.adapted}


def predict(learner: Learner, fast: Mapping[str, Tensor], X: Tensor, *,
            step: int | None = None, engine: Engine = "vmap",
            chunk_size: int | None = None) -> Tensor:
    """Outputs of adapted models: ``fast`` and ``X`` carry a leading task axis.

    Parameters
    ----------
    learner : Learner
        The network and its meta-parameters (for the parameters that do not move).
    fast : dict of str to Tensor
        Adapted parameters, one set per task (as :func:`adapt` returns them).
    X : Tensor of shape (n_tasks, n, \\*input_shape)
        Inputs of every task.
    step : int or None, default=None
        The inner step the networks run as (per-step layers; see
        :func:`current_step`).
    engine : {"vmap", "loop"}, default="vmap"
    chunk_size : int or None, default=None

    Returns
    -------
    out : Tensor of shape (n_tasks, n, ...)

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> net = nn.Linear(2, 1)
    >>> learner = F.Learner(net, dict(net.named_parameters()), {}, nn.functional.mse_loss,
    ...                     F.sgd(0.1))
    >>> g = torch.Generator().manual_seed(0)
    >>> batch = F.TaskBatch(*(torch.randn(3, 4, d, generator=g) for d in (2, 1, 2, 1)))
    >>> fast = F.adapt(learner, batch, steps=1)
    >>> F.predict(learner, fast, batch.X_query).shape
    torch.Size([3, 4, 1])
    """
    learner = learner.detached()

    def one(task: tuple[Params, Tensor], engine: Engine) -> Tensor:
        return learner.forward(task[0], task[1], step=step, engine=engine)

    with torch.no_grad():
        outs = [out for _, out in map_tasks(one, (dict(fast), X), engine=engine,
                                             chunk_size=chunk_size)]
    return torch.cat(outs)
