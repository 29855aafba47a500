"""
Meta-training on several processes with torchrun
================================================

Data-parallel MAML: every process computes the meta-gradient of its share of each
meta-batch and the means are averaged across processes, so the meta-parameters are
those of a one-process run with the same ``random_state``. This script is not run
when the documentation is built; launch it with ``torchrun`` (see
:doc:`/user_guide/scaling`)::

    torchrun --standalone --nproc-per-node 2 examples/distributed_maml.py

It also runs as a plain script (one process, ``distributed=False``). Only rank 0
prints the training log, evaluates and saves the model.
"""

# sphinx_gallery_thumbnail_path = "_static/distributed_maml_thumbnail.png"

# %%
# Set-up: the launcher tells each process its rank
# ------------------------------------------------
# ``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``. With
# ``distributed=True`` skmeta initialises the process group from them (gloo on CPUs,
# NCCL on GPUs); each process on a GPU machine gets its own GPU.
import os
import tempfile

import torch

from skmeta import MAMLRegressor
from skmeta.datasets import make_sinusoid_tasks

distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
local_rank = int(os.environ.get("LOCAL_RANK", "0"))
device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
torch.set_num_threads(1)  # one thread per process on a CPU

# %%
# Meta-train: the same code as on one process
# -------------------------------------------
# ``batch_size`` is the *whole* meta-batch (25 tasks), divided between the processes.
tasks = make_sinusoid_tasks(n_tasks=1000, n_samples=20, random_state=0)
maml = MAMLRegressor(k_shot=10, batch_size=25, max_epochs=10, random_state=0, device=device,
                     distributed=distributed)
maml.fit(tasks)
rank = torch.distributed.get_rank() if distributed else 0

# %%
# Evaluate and save on rank 0
# ---------------------------
# Every rank holds the same meta-parameters; adapting and scoring are local
# computations, so one process is enough.
if rank == 0:
    from sklearn.metrics import mean_squared_error

    test = make_sinusoid_tasks(n_tasks=100, n_samples=20, random_state=1)
    mse = maml.score_tasks(test, metric=mean_squared_error).mean()
    untrained = MAMLRegressor(k_shot=10, max_epochs=0, random_state=0, verbose=0).fit(tasks)
    mse0 = untrained.score_tasks(test, metric=mean_squared_error).mean()
    print(f"MSE after adaptation on 100 new tasks: {mse:.3f} (untrained network: {mse0:.3f})")
    path = os.path.join(tempfile.mkdtemp(), "maml")
    maml.save(path)
    print(f"saved to {path}")
if distributed:  # wait for rank 0, then leave together
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
