"""Process groups: one process (:class:`LocalGroup`) or ``torch.distributed`` ranks.

The shell holds one group object and asks it for its rank, its share of a meta-batch,
the all-reduced mean and the shared seed; see :mod:`skmeta.parallel` for the protocol.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["DistributedError", "LocalGroup", "TorchGroup", "shard_bounds", "runs_on_rank",
           "all_reduce_mean", "broadcast_seed", "broadcast_module", "ensure_process_group",
           "is_active", "rank_and_world"]


class DistributedError(RuntimeError):
    """Another rank of a distributed meta-training run failed; this rank stops too.

    Raised on every rank but the failing one, which raises its own exception.

    Examples
    --------
    >>> from skmeta.parallel import DistributedError
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
    >>> from skmeta.parallel import shard_bounds
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
    >>> from skmeta.parallel import runs_on_rank
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
    >>> from skmeta.parallel import LocalGroup
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

    >>> from skmeta.parallel import TorchGroup
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
