"""Data-parallel meta-training: throughput of 1 process vs 2 processes on one machine.

Workloads (meta-updates of the estimator's ``fit``, random data, fixed engines):

* ``sinusoid``: ``MAMLRegressor``, MLP 1-40-40-1, K = 10 + 10, meta-batch 25, second
  order, ``engine="vmap"`` (the small-network case: little compute per task);
* ``conv``: ``MAMLClassifier`` with MAML's Omniglot ``ConvNet`` (64 filters, 28x28),
  5-way 1-shot, 15 queries per class, meta-batch 16, one inner step, second order,
  ``engine="loop"`` (the compute-heavy case).

Settings, each in fresh processes: 1 process with 1 torch thread (the baseline), 1 process
with 2 threads, and 2 processes with 1 thread each (``distributed=True``, gloo on
loopback, the meta-batch divided between them). Settings are run round-robin (the
starting setting rotates every round) and the median time per meta-update is reported,
with the throughput ratio to the baseline. Each 2-process run also checks that both ranks
end with the parameters of the 1-process run (max abs difference).

Run ``python benchmarks/distributed.py`` (``--quick`` for a smoke run, ``--help``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    from . import _common as C
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common as C

import numpy as np
import torch

SETTINGS = {  # name: (processes, threads per process)
    "1 process x 1 thread": (1, 1),
    "1 process x 2 threads": (1, 2),
    "2 processes x 1 thread": (2, 1),
}
BASELINE = "1 process x 1 thread"


def _workload(name: str, n_updates: int, distributed: bool):
    from skmeta import MAMLClassifier, MAMLRegressor, Task
    from skmeta.datasets import make_sinusoid_tasks
    from skmeta.modules import ConvNet

    if name == "sinusoid":
        batch = 25
        tasks = make_sinusoid_tasks(n_tasks=batch * (n_updates + 1), n_samples=20,
                                    random_state=0)
        net = MAMLRegressor(k_shot=10, batch_size=batch, engine="vmap", random_state=0,
                            verbose=0, max_epochs=1, distributed=distributed)
    else:
        batch, n_way, n_query = 16, 5, 15
        rng = np.random.default_rng(0)
        tasks = []
        for _ in range(batch * (n_updates + 1)):
            Xs = rng.random((n_way, 1, 28, 28), dtype=np.float32)
            Xq = rng.random((n_way * n_query, 1, 28, 28), dtype=np.float32)
            tasks.append(Task(Xs, np.arange(n_way), Xq, np.repeat(np.arange(n_way), n_query)))
        net = MAMLClassifier(module=ConvNet, n_way=n_way, k_shot=1, inner_lr=0.4,
                             batch_size=batch, engine="loop", random_state=0, verbose=0,
                             max_epochs=1, distributed=distributed)
    return net, tasks[:batch], tasks[batch:]


def _run(rank: int, world: int, threads: int, workload: str, n_updates: int, store: str,
         out: str) -> None:
    torch.set_num_threads(threads)
    if world > 1:
        torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                                             world_size=world)
    net, warm, timed = _workload(workload, n_updates, world > 1)
    net.fit(warm)  # initialise and warm up (one meta-update)
    first_grads = {k: p.grad.detach().clone() for k, p in net.module_.named_parameters()}
    if world > 1:
        torch.distributed.barrier()
    t0 = time.perf_counter()
    net.partial_fit(timed)
    if world > 1:
        torch.distributed.barrier()
    seconds = time.perf_counter() - t0
    params = {k: v.detach().clone() for k, v in net.module_.state_dict().items()}
    with open(out, "wb") as f:
        pickle.dump({"seconds_per_update": seconds / n_updates, "params": params,
                     "grads": first_grads}, f)
    if world > 1:
        torch.distributed.destroy_process_group()


def _max_diff(per_rank: list[dict], ref: dict, relative: bool = False) -> float:
    out = 0.0
    for tensors in per_rank:
        for k, v in tensors.items():
            d = float((v.double() - ref[k].double()).abs().max())
            out = max(out, d / max(float(ref[k].abs().max()), 1e-30) if relative else d)
    return out


def run_setting(workload: str, setting: str, n_updates: int) -> dict:
    world, threads = SETTINGS[setting]
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="skmeta-dist-") as tmp:
        outs = [os.path.join(tmp, f"rank{r}.pkl") for r in range(world)]
        procs = [ctx.Process(target=_run, args=(r, world, threads, workload, n_updates,
                                                os.path.join(tmp, "store"), outs[r]))
                 for r in range(world)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(1800)
        if any(p.exitcode != 0 for p in procs):
            raise RuntimeError(f"{workload} / {setting}: exit codes {[p.exitcode for p in procs]}")
        results = []
        for out in outs:
            with open(out, "rb") as f:
                results.append(pickle.load(f))
    return {"seconds_per_update": max(r["seconds_per_update"] for r in results),
            "params": [r["params"] for r in results], "grads": [r["grads"] for r in results]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run (fewer updates, 1 round)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", default="sinusoid,conv")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--threads", type=int, default=None,
                   help="ignored: the settings fix the threads (accepted for python -m benchmarks)")
    args = p.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    updates = {"sinusoid": 10 if args.quick else 60, "conv": 1 if args.quick else 4}
    info = C.machine_info()
    C.print_header("Distributed meta-training: 1 vs 2 processes", info)
    results = {"info": info, "workloads": {}}
    names = list(SETTINGS)
    refs: dict = {}
    for workload in [w.strip() for w in args.only.split(",") if w.strip()]:
        times = {s: [] for s in names}
        max_diff = grad_diff = 0.0
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for setting in order:
                res = run_setting(workload, setting, updates[workload])
                times[setting].append(res["seconds_per_update"])
                if setting == BASELINE:
                    refs[workload] = res
                elif setting == "2 processes x 1 thread" and workload in refs:
                    max_diff = max(max_diff, _max_diff(res["params"], refs[workload]["params"][0]))
                    grad_diff = max(grad_diff, _max_diff(res["grads"], refs[workload]["grads"][0],
                                                         relative=True))
            print(f"  {workload} round {r + 1}: " + ", ".join(
                f"{s} {times[s][-1]:.3f} s" for s in names), flush=True)
        med = {s: statistics.median(v) for s, v in times.items()}
        results["workloads"][workload] = {
            "seconds_per_update": med,
            "throughput_vs_baseline": {s: med[BASELINE] / med[s] for s in names},
            "max_abs_param_diff_2proc_vs_1proc": max_diff,
            "max_rel_first_meta_gradient_diff_2proc_vs_1proc": grad_diff,
            "rounds": rounds, "updates_per_run": updates[workload]}
    lines = ["| workload | setting | s / meta-update (median) | throughput vs baseline |",
             "|---|---|---|---|"]
    for workload, res in results["workloads"].items():
        for s in names:
            lines.append(f"| {workload} | {s} | {res['seconds_per_update'][s]:.4f} | "
                         f"{res['throughput_vs_baseline'][s]:.2f}x |")
    results["table"] = "\n".join(lines)
    print("\n" + results["table"])
    for workload, res in results["workloads"].items():
        print(f"{workload}: 2 processes vs 1: first meta-gradient max relative difference "
              f"{res['max_rel_first_meta_gradient_diff_2proc_vs_1proc']:.1e}; parameters after "
              f"{res['updates_per_run'] + 1} Adam updates, max abs difference "
              f"{res['max_abs_param_diff_2proc_vs_1proc']:.1e} (Adam's first steps move every "
              "weight by about lr, whatever the gradient's size: near-zero gradient components "
              "that differ in rounding can move a weight differently)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
