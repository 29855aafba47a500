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

>>> from skmeta.parallel import shard_bounds
>>> [shard_bounds(8, rank, 3) for rank in range(3)]
[(0, 3), (3, 6), (6, 8)]
"""

from .accelerate import (  # noqa: F401 - the shell's helpers
    AccelerateMixin,
    AcceleratorGroup,
    check_not_skorch_accelerate,
)
from .groups import (  # noqa: F401 - the shell's helpers
    DistributedError,
    LocalGroup,
    TorchGroup,
    all_reduce_mean,
    broadcast_module,
    broadcast_seed,
    ensure_process_group,
    is_active,
    rank_and_world,
    runs_on_rank,
    shard_bounds,
)

__all__ = ["AccelerateMixin", "DistributedError", "LocalGroup", "TorchGroup", "shard_bounds",
           "runs_on_rank"]
