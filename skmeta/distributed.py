"""Data-parallel meta-training over ``torch.distributed`` (and Hugging Face Accelerate).

With ``distributed=True`` (or :class:`AccelerateMixin` on several processes),
every process ("rank") runs the same skorch loop over the same meta-batches:

1. The process group fixes the seed: rank 0's ``seed_`` is broadcast at
   ``initialize``, then rank 0's initial parameters, so every rank starts from
   the same meta-parameters and draws the same task order, support/query splits
   and label permutations as a single-process run with that seed.
2. Each rank adapts only its contiguous share of the meta-batch's tasks
   (:func:`shard_bounds`) and computes the mean meta-gradient over them
   (MAML) or the mean pseudo-gradient ``phi - W`` (Reptile).
3. One all-reduce sums ``n_r / n * mean_r`` over ranks: the mean over the
   whole meta-batch, exactly as one process would compute it (up to
   floating-point summation order). Every rank then takes the same outer
   step, so the meta-parameters stay identical on all ranks.
4. Meta-validation is divided the same way and its mean loss all-reduced
   before the callbacks run, so early stopping stops every rank together.
5. Callbacks that write (checkpoints, logs, progress bars; see
   :func:`runs_on_rank`) run on rank 0 only; at the end of ``fit`` every rank
   receives rank 0's parameters.

A rank whose step raises still takes part in the all-reduce, with a failure
flag: every rank then raises (the failing one its own exception, the others a
:class:`DistributedError` naming it), so no rank waits forever for it. A rank
that dies closes its connections and the others fail promptly as well; a rank
that hangs is caught by the process group's ``timeout``.

Examples
--------
On one process ``shard_bounds`` gives the whole meta-batch; on 3 ranks, a
meta-batch of 8 tasks is shared as 3 + 3 + 2:

>>> from skmeta.distributed import shard_bounds
>>> [shard_bounds(8, rank, 3) for rank in range(3)]
[(0, 3), (3, 6), (6, 8)]
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["AccelerateMixin", "DistributedError", "LocalGroup", "TorchGroup", "shard_bounds",
           "runs_on_rank"]


class DistributedError(RuntimeError):
    """Another rank of a distributed meta-training run failed; this rank stops too.

    Raised on every rank but the failing one, which raises its own exception.

    Examples
    --------
    >>> from skmeta.distributed import DistributedError
    >>> issubclass(DistributedError, RuntimeError)
    True
    """


def _dist():
    import torch.distributed as dist

    return dist


def is_active() -> bool:
    """True when a ``torch.distributed`` process group is initialised."""
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` without one."""
    if not is_active():
        return 0, 1
    dist = _dist()
    return dist.get_rank(), dist.get_world_size()


def ensure_process_group(owner: str, device) -> None:
    """Initialise the default process group from ``torchrun``'s environment if needed.

    Raises a ValueError naming the fix when there is no group and no launcher
    environment, or when several local ranks would share one CUDA device.
    """
    dist = _dist()
    if not dist.is_available():
        raise ValueError(f"{owner}: distributed=True needs torch.distributed, which this "
                         "build of torch does not provide. Set distributed=False.")
    dev = torch.device(device if device is not None else "cpu")
    if not dist.is_initialized():
        if "WORLD_SIZE" not in os.environ or "MASTER_ADDR" not in os.environ:
            raise ValueError(
                f"{owner}: distributed=True but no torch.distributed process group is "
                "initialised and the launcher's environment (WORLD_SIZE, MASTER_ADDR) is "
                "absent. Launch the script with torchrun, e.g. "
                "'torchrun --nproc-per-node 2 train.py', or call "
                "torch.distributed.init_process_group(...) before fit, or set "
                "distributed=False.")
        backend = "nccl" if dev.type == "cuda" and dist.is_nccl_available() else "gloo"
        if backend == "nccl" and dev.index is not None:
            torch.cuda.set_device(dev)  # NCCL's own collectives (barrier) use this device
        dist.init_process_group(backend)
    if dev.type == "cuda" and dev.index is None and int(os.environ.get("LOCAL_WORLD_SIZE", 1)) > 1:
        raise ValueError(
            f"{owner}: device={str(device)!r} with {os.environ['LOCAL_WORLD_SIZE']} processes "
            "on this machine would put every process on the same GPU. Give each process its "
            "own device, e.g. device=f\"cuda:{os.environ['LOCAL_RANK']}\".")


def shard_bounds(n_tasks: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous slice ``[start, stop)`` of a meta-batch that ``rank`` computes.

    The first ``n_tasks % world_size`` ranks take one task more; a rank may get
    none when the meta-batch has fewer tasks than there are ranks.

    Parameters
    ----------
    n_tasks : int
        Tasks in the meta-batch.
    rank : int
        This process's rank, from 0.
    world_size : int
        The number of processes.

    Returns
    -------
    start, stop : int
        This rank computes tasks ``start`` to ``stop - 1`` (``start == stop``: none).

    Examples
    --------
    >>> from skmeta.distributed import shard_bounds
    >>> shard_bounds(25, 0, 2), shard_bounds(25, 1, 2), shard_bounds(1, 1, 2)
    ((0, 13), (13, 25), (1, 1))
    """
    base, extra = divmod(int(n_tasks), int(world_size))
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def all_reduce_mean(values: Sequence[torch.Tensor], *, weight: int, total: int,
                    error: BaseException | None, what: str) -> list[torch.Tensor]:
    """Average per-rank means over a distributed meta-batch, with failure propagation.

    Each rank passes the means of its ``weight`` tasks (any placeholders of the
    right shapes when ``error`` is set); the result is the mean over all
    ``total`` tasks. If any rank reports an error, every rank raises: the
    failing rank its own ``error``, the others a :class:`DistributedError`.
    """
    dist = _dist()
    rank, world = dist.get_rank(), dist.get_world_size()
    template = values[0]
    flat = torch.cat([v.detach().reshape(-1).to(template.dtype) for v in values])
    flat = flat * (weight / total) if error is None and weight else torch.zeros_like(flat)
    flags = torch.zeros(world, dtype=flat.dtype, device=flat.device)
    if error is not None:
        flags[rank] = 1
    buf = torch.cat([flat, flags])
    dist.all_reduce(buf)
    failed = [r for r, f in enumerate(buf[flat.numel():].tolist()) if f > 0]
    if failed:
        if error is not None:
            raise error
        raise DistributedError(
            f"Rank(s) {failed} failed during {what}; rank {rank} stops too. The traceback "
            "of the failing rank explains why.")
    out, offset = [], 0
    for v in values:
        out.append(buf[offset:offset + v.numel()].view_as(v).to(v.dtype))
        offset += v.numel()
    return out


def broadcast_seed(seed: int, device=None) -> int:
    """Rank 0's seed, on every rank (NCCL needs it on this rank's GPU, ``device``)."""
    dist = _dist()
    on = torch.device(device) if dist.get_backend() == "nccl" and device is not None else "cpu"
    t = torch.tensor([seed], dtype=torch.int64, device=on)
    dist.broadcast(t, src=0)
    return int(t.item())


def broadcast_module(module: nn.Module) -> None:
    """Overwrite every rank's parameters and buffers with rank 0's, in place."""
    dist = _dist()
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.detach(), src=0)


def _rank_zero_classes() -> tuple[type, ...]:
    from skorch import callbacks as cbs

    names = ["Checkpoint", "TrainEndCheckpoint", "PrintLog", "ProgressBar", "TensorBoard",
             "WandbLogger", "NeptuneLogger", "SacredLogger", "MlflowLogger"]
    return tuple(getattr(cbs, n) for n in names if hasattr(cbs, n))


def runs_on_rank(callback, rank: int) -> bool:
    """Whether ``callback`` runs on ``rank`` of a distributed meta-training run.

    Callbacks that write files or logs (skorch's ``Checkpoint``,
    ``TrainEndCheckpoint``, ``PrintLog``, ``ProgressBar`` and its logger
    callbacks) run on rank 0 only; all others (scoring, early stopping,
    learning-rate schedules, gradient clipping) run on every rank. A callback
    with a boolean attribute ``rank_zero_only`` decides for itself.

    Parameters
    ----------
    callback : skorch callback
        The callback.
    rank : int
        The rank asking.

    Returns
    -------
    runs : bool

    Examples
    --------
    >>> from skorch.callbacks import Checkpoint, EarlyStopping
    >>> from skmeta.distributed import runs_on_rank
    >>> runs_on_rank(Checkpoint(), 1), runs_on_rank(EarlyStopping(), 1)
    (False, True)
    """
    if rank == 0:
        return True
    own = getattr(callback, "rank_zero_only", None)
    if own is not None:
        return not own
    return not isinstance(callback, _rank_zero_classes())


# ---------------------------------------------------------------------------
# the one object a meta-learner talks to


class LocalGroup:
    """One process: every collective is the identity.

    The object a meta-learner asks everything distributed of: where tensors
    live (``device``), which rank it is, how to share seeds and parameters, how
    a meta-batch's mean is computed, and which callbacks run. A meta-learner with
    ``distributed=False`` uses this one; :class:`TorchGroup` and Accelerate's group
    replace it.

    Parameters
    ----------
    device : str or torch.device or None
        Where the meta-learner's tensors live.

    Examples
    --------
    >>> from skmeta.distributed import LocalGroup
    >>> group = LocalGroup("cpu")
    >>> group.rank, group.world_size, group.shared_seed(7)
    (0, 1, 7)
    """

    def __init__(self, device=None):
        self.device = device

    @property
    def rank(self) -> int:
        """This process's rank (0 on one process)."""
        return 0

    @property
    def world_size(self) -> int:
        """The number of processes."""
        return 1

    def ensure(self, owner: str) -> None:
        """Set up (or check) the process group before fitting; ``owner`` names the estimator."""

    def check_device(self, owner: str) -> None:
        """Refuse a device that does not exist on this machine, naming the fix."""
        try:
            dev = torch.device(self.device if self.device is not None else "cpu")
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"The 'device' parameter of {owner} must name a torch device such "
                             f"as 'cpu', 'cuda' or 'cuda:1'. Got {self.device!r} instead."
                             ) from exc
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"device={self.device!r} was requested but CUDA is not "
                                 "available on this machine (torch.cuda.is_available() is "
                                 "False). Use device='cpu' or install a CUDA build of torch.")
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise ValueError(f"device={self.device!r} was requested but only "
                                 f"{torch.cuda.device_count()} CUDA device(s) exist.")

    def shared_seed(self, seed: int) -> int:
        """``seed`` as rank 0 drew it."""
        return seed

    def sync(self, *modules: nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers of ``modules``."""

    def mean_over_tasks(self, batch, compute, zeros, *, what: str) -> list[torch.Tensor]:
        """``compute(batch)``: a list of tensors that are means over the batch's tasks."""
        return compute(batch)

    def runs(self, callback) -> bool:
        """Whether ``callback`` runs on this rank."""
        return True


class TorchGroup(LocalGroup):
    """The default ``torch.distributed`` process group (``distributed=True``).

    Each rank computes its contiguous share of every meta-batch
    (:func:`shard_bounds`) and the means are all-reduced with failure flags
    (:func:`all_reduce_mean`); seeds and parameters are broadcast from rank 0;
    writing callbacks run on rank 0 only (:func:`runs_on_rank`).

    Parameters
    ----------
    device : str or torch.device or None
        Where the meta-learner's tensors live (and, with NCCL, this rank's GPU).

    Examples
    --------
    Without an initialised process group it behaves as one process:

    >>> from skmeta.distributed import TorchGroup
    >>> TorchGroup("cpu").world_size
    1
    """

    @property
    def rank(self) -> int:
        return rank_and_world()[0]

    @property
    def world_size(self) -> int:
        return rank_and_world()[1]

    def ensure(self, owner: str) -> None:
        ensure_process_group(owner, self.device)

    def shared_seed(self, seed: int) -> int:
        return broadcast_seed(seed, self.device) if self.world_size > 1 else seed

    def sync(self, *modules: nn.Module) -> None:
        if self.world_size > 1:
            for module in modules:
                broadcast_module(module)

    def mean_over_tasks(self, batch, compute, zeros, *, what: str) -> list[torch.Tensor]:
        """On several ranks, ``compute`` runs on this rank's share and the mean is all-reduced.

        A rank that fails contributes ``zeros()`` and a failure flag, so every rank
        raises (see :func:`all_reduce_mean`).
        """
        rank, world = self.rank, self.world_size
        if world == 1:
            return compute(batch)
        start, stop = shard_bounds(len(batch), rank, world)
        values, error = None, None
        try:
            local = batch.shard(start, stop)
            if len(local):
                values = compute(local)
        except Exception as exc:  # the other ranks must learn of it
            error = exc
        return all_reduce_mean(zeros() if values is None else values, weight=stop - start,
                               total=len(batch), error=error, what=what)

    def runs(self, callback) -> bool:
        return runs_on_rank(callback, self.rank)


class AcceleratorGroup(TorchGroup):
    """The processes of a Hugging Face ``Accelerator`` (see :class:`AccelerateMixin`).

    Parameters
    ----------
    accelerator : accelerate.Accelerator
        Its ``device``, ``process_index`` and ``num_processes`` are used.
    """

    def __init__(self, accelerator):
        super().__init__(accelerator.device)
        self.accelerator = accelerator

    @property
    def rank(self) -> int:
        return int(self.accelerator.process_index)

    @property
    def world_size(self) -> int:
        return int(self.accelerator.num_processes)

    def ensure(self, owner: str) -> None:
        acc = self.accelerator
        if str(getattr(acc, "mixed_precision", "no")) == "fp16":
            raise ValueError(
                f"{owner}: Accelerator(mixed_precision='fp16') is not supported: its gradient "
                "scaler expects a scaled loss, not a meta-gradient. Use mixed_precision='bf16' "
                "or 'no'.")
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched > 1 and int(acc.num_processes) != launched:
            raise ValueError(
                f"{owner}: the launcher started {launched} processes but the Accelerator sees "
                f"{acc.num_processes}: every process would meta-train on its own. On CPUs pass "
                "Accelerator(cpu=True); on GPUs launch with 'accelerate launch --multi_gpu' or "
                "torchrun.")
        if int(getattr(acc, "gradient_accumulation_steps", 1)) > 1:
            raise ValueError(
                f"{owner}: Accelerator(gradient_accumulation_steps>1) is not supported: "
                "accumulation scales a loss, not a meta-gradient. Raise batch_size (tasks per "
                "meta-update) instead, with chunk_size to bound memory.")


# ---------------------------------------------------------------------------
# Hugging Face Accelerate

try:  # skorch.hf imports no Hugging Face library at import time
    from skorch.hf import AccelerateMixin as _SkorchAccelerateMixin
except ImportError:  # pragma: no cover - very old skorch
    class _SkorchAccelerateMixin:  # type: ignore[no-redef]
        """Stand-in when skorch has no Accelerate integration."""


def check_not_skorch_accelerate(net) -> None:
    """Refuse skorch's own AccelerateMixin on a meta-learner, naming skmeta's."""
    if isinstance(net, _SkorchAccelerateMixin) and not isinstance(net, AccelerateMixin):
        raise TypeError(
            f"{type(net).__name__} uses skorch.hf.AccelerateMixin, whose training step is a "
            "forward/backward pass on samples; meta-learners need "
            "skmeta.distributed.AccelerateMixin instead (same usage: put it first in the "
            "bases and pass accelerator=Accelerator(...)).")


class AccelerateMixin(_SkorchAccelerateMixin):
    """Run a skmeta meta-learner under Hugging Face Accelerate.

    skorch's :class:`skorch.hf.AccelerateMixin` assumes a forward/backward
    step on mini-batches of samples; this mixin keeps its launcher, device
    placement, optimizer wrapper and ``accelerator.autocast`` (bf16), and
    replaces the parts that do not apply to meta-learning (gradient accumulation
    is refused; the log prints on the main process only): the meta-step is
    skmeta's own (the network is *not* wrapped in ``DistributedDataParallel``,
    whose hooks never see gradients computed with :mod:`torch.func`), and with
    several processes the meta-batch is divided and all-reduced exactly as with
    ``distributed=True`` (see :mod:`skmeta.distributed`).

    Put it first in the bases and pass ``accelerator=Accelerator(...)``; leave
    ``device`` at None (Accelerate places the network). Requires the
    ``accelerate`` package (``pip install "skmeta[distributed]"``).

    Parameters
    ----------
    accelerator : accelerate.Accelerator
        ``mixed_precision`` may be ``"no"`` or ``"bf16"``; ``"fp16"`` is refused
        (its gradient scaler needs a scaled loss, which a meta-gradient is not).
    unwrap_after_train : bool, default=True
        As in skorch.

    Examples
    --------
    >>> from accelerate import Accelerator
    >>> from skmeta import MAMLRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> from skmeta.distributed import AccelerateMixin
    >>> class AcceleratedMAML(AccelerateMixin, MAMLRegressor):
    ...     pass
    >>> tasks = make_sinusoid_tasks(n_tasks=20, random_state=0)
    >>> net = AcceleratedMAML(accelerator=Accelerator(cpu=True), max_epochs=1,
    ...                       verbose=0, random_state=0).fit(tasks)
    >>> net.adapt(*tasks[0]).predict(tasks[0][0][:2]).shape
    (2,)
    """

    def _group(self) -> AcceleratorGroup:
        """The accelerator's processes (replaces the estimator's process group)."""
        return AcceleratorGroup(self.accelerator)

    def initialize(self):
        """Initialise as the skmeta estimator does, then hand the optimizer to Accelerate."""
        super(_SkorchAccelerateMixin, self).initialize()
        self._initialize_accelerator()
        return self

    def _initialize_accelerator(self):
        if self._wrapped_with_accelerator:
            return self
        try:
            from accelerate.optimizer import AcceleratedOptimizer
        except ImportError as exc:  # pragma: no cover - an Accelerator implies accelerate
            raise ImportError("skmeta's AccelerateMixin needs the accelerate package: "
                              "pip install 'skmeta[distributed]'") from exc

        for name in self._criteria:  # the module itself is placed by initialize_module
            criterion = getattr(self, name + "_")
            if isinstance(criterion, nn.Module):
                criterion.to(self.accelerator.device)
        for name in self._optimizers:
            optimizer = getattr(self, name + "_")
            if isinstance(optimizer, torch.optim.Optimizer) and \
                    not isinstance(optimizer, AcceleratedOptimizer):
                setattr(self, name + "_", self.accelerator.prepare(optimizer))
        self._wrapped_with_accelerator = True
        return self

    def _initialize_callbacks(self):
        # skorch's 'auto' sink (accelerator.print) would print even with verbose=0;
        # PrintLog runs on the main process only here anyway. The parameter keeps 'auto'.
        auto = isinstance(self.callbacks__print_log__sink, str) and \
            self.callbacks__print_log__sink == "auto"
        if auto:
            self.callbacks__print_log__sink = print
        try:
            return super(_SkorchAccelerateMixin, self)._initialize_callbacks()
        finally:
            if auto:
                self.callbacks__print_log__sink = "auto"

    def get_iterator(self, dataset, training=False):
        # meta-batches are divided among ranks by the step, not by a sampler
        return super(_SkorchAccelerateMixin, self).get_iterator(dataset, training=training)

    def train_step_single(self, batch, **fit_params):
        with self.accelerator.autocast():
            return super(_SkorchAccelerateMixin, self).train_step_single(batch, **fit_params)

    def save_params(self, *args, **kwargs):
        """Save on the main process only (callbacks that save run on rank 0 only)."""
        if self.accelerator.is_main_process:
            super(_SkorchAccelerateMixin, self).save_params(*args, **kwargs)

    def load_params(self, *args, **kwargs):
        """Load on every process, onto the accelerator's device."""
        previous = self.device
        if previous is None:
            self.device = str(self.accelerator.device)
        try:
            super(_SkorchAccelerateMixin, self).load_params(*args, **kwargs)
        finally:
            self.device = previous

    def initialize_module(self):
        """Build the module as the estimator does and place it on the accelerator's device.

        Placed, not wrapped in ``DistributedDataParallel``: the meta-step is functional.
        """
        super().initialize_module()
        self.module_.to(self.accelerator.device)
        return self
