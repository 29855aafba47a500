"""The inner loop: a network with its rule (:class:`Learner`), adaptation and prediction."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad

from ._batched import batched_forward, masked_loss, per_task_loss
from ._core import (
    Engine,
    LossFn,
    Params,
    TaskBatch,
    check_engine,
    forward,
    inner_step,
    map_tasks,
)
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
    engine : {"vmap", "loop", "batched"}, default="vmap"
        The engine the learner is bound to (see :meth:`bind`): per-task functions never
        set it; :func:`map_tasks` binds the learner it passes them.

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
    engine: Engine = "vmap"
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
        if self.engine == "batched" and type(self) is Learner:
            raise ValueError("A learner for the batched engine comes from "
                             "learner.bind('batched').")

    def detached(self) -> Learner:
        """The same learner with detached parameters and state (no meta-gradient)."""
        return dataclasses.replace(self, params=_detached(self.params),
                                   state=_detached(self.state))

    def bind(self, engine: Engine) -> Learner:
        """The same learner as the engine ``engine`` runs it (see :func:`map_tasks`).

        Under ``"vmap"`` and ``"loop"`` its methods see one task; under
        ``"batched"`` they see every task of a chunk at once (a leading task axis on
        inputs, targets and the parameters that move; one loss per task), so that a
        per-task function written with them runs unchanged on every engine.

        Parameters
        ----------
        engine : {"vmap", "loop", "batched"}

        Returns
        -------
        learner : Learner

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> from skmeta import functional as F
        >>> net = nn.Linear(2, 1)
        >>> learner = F.Learner(net, dict(net.named_parameters()), {}, nn.functional.mse_loss,
        ...                     F.sgd(0.1))
        >>> X, y = torch.randn(3, 5, 2), torch.randn(3, 5, 1)  # three tasks
        >>> learner.bind("batched").loss({}, X, y).shape  # one loss per task
        torch.Size([3])
        """
        if engine == self.engine:
            return self
        check_engine(engine)
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        fields["engine"] = engine
        return (_BatchedLearner if engine == "batched" else Learner)(**fields)

    def _as(self, engine: Engine | None) -> Learner:
        return self if engine is None or engine == self.engine else self.bind(engine)

    # ------------------------------------------------------------- forward

    def forward(self, fast: Mapping[str, Tensor], X: Tensor, *, step: int | None = None,
                engine: Engine | None = None) -> Tensor:
        """The network's output on ``X`` with the parameters in ``fast`` replaced.

        ``fast`` may hold only the parameters that move (as :meth:`run_inner`
        returns them); the others are the meta-parameters. ``engine`` (not needed:
        see :meth:`bind`) runs it as that engine's learner would.
        """
        if engine is not None and engine != self.engine:
            return self.bind(engine).forward(fast, X, step=step)
        return forward(self.module, {**self.params, **fast}, self.buffers, X, step=step)

    def loss(self, fast: Mapping[str, Tensor], X: Tensor, y: Tensor, *,
             step: int | None = None, engine: Engine | None = None, mask: Tensor | None = None
             ) -> Tensor:
        """``loss_fn(forward(fast, X), y)``: the task's loss (one loss per task when bound
        to the batched engine).

        ``mask`` (a task's ``query_mask``) leaves padded rows out of the mean.
        """
        learner = self._as(engine)
        return learner._loss(learner.forward(fast, X, step=step), y, mask)

    def _loss(self, out: Tensor, y: Tensor, mask: Tensor | None) -> Tensor:
        return self.loss_fn(out, y) if mask is None else masked_loss(self.loss_fn, out, y, mask)

    def _total(self, loss: Tensor) -> Tensor:
        """What the inner gradient differentiates: the task's loss."""
        return loss

    def merged(self, fast: Mapping[str, Tensor]) -> Params:
        """Every parameter of the network, those in ``fast`` replaced (as :meth:`forward`
        uses them; each with the task axis when bound to the batched engine)."""
        return {**self.params, **fast}

    def features(self, X: Tensor, *, step: int | None = None, engine: Engine | None = None
                 ) -> Tensor:
        """The input of the ``head`` submodule when the network runs on ``X``."""
        if engine is not None and engine != self.engine:
            return self.bind(engine).features(X, step=step)
        if self.head is None:
            raise ValueError("features() needs a learner with a head.")
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

    def _head_params(self, fast: Mapping[str, Tensor]) -> tuple[Params, nn.Module]:
        prefix = self.head + "."
        cut = len(prefix)
        params = {k[cut:]: v for k, v in {**self.params, **fast}.items() if k.startswith(prefix)}
        return params, self.module.get_submodule(self.head)

    def _head_forward(self, fast: Mapping[str, Tensor], features: Tensor,
                      step: int | None) -> Tensor:
        params, head = self._head_params(fast)
        prefix = self.head + "."
        buffers = {k[len(prefix):]: v for k, v in self.buffers.items() if k.startswith(prefix)}
        with inner_step(step):
            return functional_call(head, (params, buffers), (features,))

    # ----------------------------------------------------------- inner loop

    def start(self, X: Tensor, engine: Engine | None = None) -> Params:
        """The parameters that move, before the first step (one copy per task when bound
        to the batched engine, so that gradients of summed losses are per task)."""
        if engine is not None and engine != self.engine:
            return self.bind(engine).start(X)
        return {k: self.params[k] for k in self.adapted}

    def run_inner(self, X: Tensor, y: Tensor, *, steps: int, first_order: bool = False,
                  engine: Engine | None = None) -> list[Params]:
        """Adapt to one task's support set ``(X, y)``: the inner loop.

        Takes ``steps`` steps of the rule from the meta-parameters. When the
        meta-parameters (or the rule's state) require grad and ``first_order`` is
        False, the result stays differentiable through every step (second order);
        with ``first_order=True`` the inner gradients are constants.

        Parameters
        ----------
        X, y : Tensor
            One task's support set (every task's, with a leading task axis, when
            the learner is bound to the batched engine).
        steps : int
            Number of inner steps.
        first_order : bool, default=False
            Treat the inner gradients as constants.
        engine : {"vmap", "loop", "batched"} or None, default=None
            Run as that engine's learner (:meth:`bind`); None: this learner's
            ``engine``. Under ``"vmap"`` inner gradients come from
            :func:`torch.func.grad` (composes with :func:`torch.func.vmap`); under
            ``"loop"`` and ``"batched"`` from :func:`torch.autograd.grad`.

        Returns
        -------
        fasts : list of dict of str to Tensor
            ``steps + 1`` entries: the parameters that move, before the first
            step and after each step (``fasts[-1]`` is the adapted result).
        """
        if engine is not None and engine != self.engine:
            return self.bind(engine).run_inner(X, y, steps=steps, first_order=first_order)
        if self.rule.run is not None:
            return self.rule.run(self, X, y, steps=steps, first_order=first_order,
                                 engine=self.engine)
        if self.head is not None:
            inputs = self.features(X)

            def inner_loss(fast: Params, step: int) -> Tensor:
                return self._total(self._loss(self._head_forward(fast, inputs, step), y, None))
        else:
            def inner_loss(fast: Params, step: int) -> Tensor:
                return self._total(self.loss(fast, X, y, step=step))

        fast = self.start(X)
        fasts = [fast]
        if self.engine == "vmap":
            grad_fn = grad(inner_loss)
            for step in range(steps):
                grads = grad_fn(fast, step)
                if first_order:
                    grads = _detached(grads)
                fast = self.rule.update(fast, grads, self.state, step)
                fasts.append(fast)
            return fasts
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


@dataclasses.dataclass(frozen=True, eq=False)
class _BatchedLearner(Learner):
    """A :class:`Learner` as the batched engine binds it: every method sees every task of a
    chunk at once (see :func:`batched_forward`)."""

    def forward(self, fast: Mapping[str, Tensor], X: Tensor, *, step: int | None = None,
                engine: Engine | None = None) -> Tensor:
        if engine is not None and engine != self.engine:
            return self.bind(engine).forward(fast, X, step=step)
        with inner_step(step):
            return batched_forward(self.module, {**self.params, **fast}, X)

    def _loss(self, out: Tensor, y: Tensor, mask: Tensor | None) -> Tensor:
        return per_task_loss(self.loss_fn, out, y, mask)

    def _total(self, loss: Tensor) -> Tensor:
        return loss.sum()  # the tasks are independent: each gets its own gradient

    def merged(self, fast: Mapping[str, Tensor]) -> Params:
        n = next(iter(fast.values())).shape[0] if fast else None
        return {k: fast[k] if k in fast else (p if n is None else p.expand(n, *p.shape))
                for k, p in self.params.items()}

    def features(self, X: Tensor, *, step: int | None = None, engine: Engine | None = None
                 ) -> Tensor:
        if engine is not None and engine != self.engine:
            return self.bind(engine).features(X, step=step)
        if self.head is None:
            raise ValueError("features() needs a learner with a head.")
        with inner_step(step):
            return batched_forward(self.module, self.params, X, stop_at=self.head)

    def _head_forward(self, fast: Mapping[str, Tensor], features: Tensor,
                      step: int | None) -> Tensor:
        params, head = self._head_params(fast)
        with inner_step(step):
            return batched_forward(head, params, features)

    def start(self, X: Tensor, engine: Engine | None = None) -> Params:
        if engine is not None and engine != self.engine:
            return self.bind(engine).start(X)
        return {k: self.params[k].expand(X.shape[0], *self.params[k].shape)
                for k in self.adapted}


def query_loss(learner: Learner, task: TaskBatch, *, steps: int, first_order: bool = False,
               engine: Engine | None = None) -> Tensor:
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
    engine : {"vmap", "loop", "batched"} or None, default=None
        Not needed: the engine that runs it binds the learner (see
        :func:`map_tasks`); None uses ``learner.engine``.

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
    >>> loss, grads = F.meta_gradient(lambda learner, task: F.query_loss(
    ...     learner, task, steps=2), [batch], learner.params, learner=learner)
    >>> sorted(grads)
    ['bias', 'weight']
    """
    if task.X_query is None:
        raise ValueError("Meta-training needs a query set for every task (X_query, y_query).")
    learner = learner._as(engine)
    fasts = learner.run_inner(task.X_support, task.y_support, steps=steps,
                              first_order=first_order)
    return learner.loss(fasts[-1], task.X_query, task.y_query, step=max(steps - 1, 0),
                        mask=task.query_mask)


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
    engine : {"vmap", "loop", "batched"}, default="vmap"
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

    def one(learner: Learner, task: TaskBatch) -> Params:
        return _detached(learner.run_inner(task.X_support, task.y_support, steps=steps)[-1])

    support = TaskBatch(batch.X_support, batch.y_support)
    with torch.no_grad():
        outs = [out for _, out in map_tasks(one, support, engine=engine, chunk_size=chunk_size,
                                             learner=learner)]
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

    def one(learner: Learner, task: tuple[Params, Tensor]) -> Tensor:
        return learner.forward(task[0], task[1], step=step)

    with torch.no_grad():
        outs = [out for _, out in map_tasks(one, (dict(fast), X), engine=engine,
                                             chunk_size=chunk_size, learner=learner)]
    return torch.cat(outs)
