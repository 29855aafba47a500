"""Where the time of a small-network meta-iteration goes: PyTorch profiler breakdown.

Fits ``MAMLRegressor`` on Finn et al.'s sinusoids (MLP 1-40-40-1, K = 10 + 10,
meta-batch 25, one inner step), lets ``engine="auto"`` decide, then profiles 50
meta-iterations of ``fit`` with :mod:`torch.profiler` and reports per meta-iteration:
wall time (measured without the profiler), the number of ATen operations dispatched (the
per-operation overhead is what dominates small networks), the time of the autograd
backward passes, and the most frequent operations. It uses only the public estimator API, so it
runs on earlier versions of skmeta too (``--label`` names the version in the output):
``docs/benchmarks.md`` compares the code before and after the batched engine.
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np
import torch
from _common import machine_info, markdown_table, print_header, save_json, set_threads  # noqa: I001
from torch.profiler import ProfilerActivity, profile

from skmeta import MAMLRegressor
from skmeta.datasets import make_sinusoid_tasks


def breakdown(first_order: bool, n_iter: int, batch_size: int) -> dict:
    tasks = make_sinusoid_tasks(n_tasks=batch_size * (n_iter + 40), n_samples=20, random_state=0)
    est = MAMLRegressor(k_shot=10, batch_size=batch_size, max_epochs=1, first_order=first_order,
                        verbose=0, random_state=0)
    est.fit(tasks[:batch_size * 40])  # engine choice and warm-up
    est.set_params(warm_start=True)
    test = tasks[batch_size * 40:]
    t0 = time.perf_counter()
    est.fit(test)
    wall = (time.perf_counter() - t0) / n_iter
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        est.fit(test)
    events = prof.key_averages()
    aten = [e for e in events if e.key.startswith("aten::")]
    calls = collections.Counter({e.key: e.count for e in aten})
    top = [(k, round(c / n_iter, 1)) for k, c in calls.most_common(8)]
    backward = sum(e.cpu_time_total for e in events
                   if e.key.startswith("autograd::engine::evaluate_function")) / n_iter
    return {"wall_ms": 1e3 * wall, "aten_calls": sum(calls.values()) / n_iter,
            "backward_ms": backward / 1e3,
            "engine": dict(getattr(est, "engine_", {})), "top_ops": top}


class _ShellOnly(MAMLRegressor):
    """MAMLRegressor whose meta-gradient is computed once, then reused: what remains is the
    shell (skorch's loop and callbacks, meta-batches, the optimizer step)."""

    def get_meta_gradient(self, batch, engine):
        if getattr(self, "_cached_gradient", None) is None:
            self._cached_gradient = super().get_meta_gradient(batch, engine)
        return self._cached_gradient


# where the shell's time goes: (label, file fragment, function name) of cumulative times
_SHELL_PARTS = [
    ("optimizer step (torch.optim.Adam)", "torch/optim/optimizer.py", "wrapper"),
    ("meta-batch assembly", "skmeta/data/metabatch.py", "__iter__"),
    ("train step around the (cached) meta-gradient", "skmeta/estimator/training.py",
     "train_step_single"),
    ("input validation (once per fit call)", "skmeta/data/task.py", "__init__"),
    ("skorch callbacks (notify)", "skorch/net.py", "notify"),
    ("zero_grad", "torch/optim/optimizer.py", "zero_grad"),
]


def shell_breakdown(n_iter: int, batch_size: int, fused: bool = False) -> dict:
    """Per meta-iteration: the shell's wall time and its parts (cProfile, cumulative)."""
    import cProfile
    import pstats

    tasks = make_sinusoid_tasks(n_tasks=batch_size * (n_iter + 4), n_samples=20, random_state=0)
    est = _ShellOnly(k_shot=10, batch_size=batch_size, max_epochs=1, verbose=0, random_state=0,
                     **({"optimizer__fused": True} if fused else {}))
    est.fit(tasks[:batch_size * 4])
    est.set_params(warm_start=True)
    test = tasks[batch_size * 4:]
    walls = []
    for _ in range(5):
        t0 = time.perf_counter()
        est.partial_fit(test)
        walls.append((time.perf_counter() - t0) / n_iter)
    prof = cProfile.Profile()
    prof.enable()
    est.partial_fit(test)
    prof.disable()
    stats = pstats.Stats(prof).stats
    total = sum(tt for (_, _, tt, _, _) in stats.values()) / n_iter
    parts = {}
    for label, where, name in _SHELL_PARTS:
        parts[label] = sum(ct for (f, _, fn), (_, _, _, ct, _) in stats.items()
                           if where in f and fn == name) / n_iter
    top = sorted(((tt / n_iter, f"{f.split('site-packages/')[-1]}:{fn}")
                  for (f, _, fn), (_, _, tt, _, _) in stats.items()), reverse=True)[:12]
    return {"wall_ms": 1e3 * float(np.median(walls)), "profiled_ms": 1e3 * total,
            "parts_ms": {k: 1e3 * v for k, v in parts.items()},
            "top_self_ms": [(name, 1e3 * t) for t, name in top]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=25)
    p.add_argument("--label", default="this checkout")
    p.add_argument("--json", default=None)
    p.add_argument("--shell", action="store_true",
                   help="profile the shell alone (meta-gradient cached) with cProfile")
    p.add_argument("--fused", action="store_true",
                   help="with --shell: Adam with fused=True (optimizer__fused=True)")
    args = p.parse_args(argv)
    set_threads(args.threads)
    info = machine_info()
    if args.shell:
        print_header(f"Profile of the estimator shell, meta-gradient cached ({args.label})",
                     info)
        res = shell_breakdown(args.iterations, args.batch_size, args.fused)
        print(f"\nshell: {res['wall_ms']:.3f} ms per meta-iteration (median of 5 fits of "
              f"{args.iterations} meta-iterations; {res['profiled_ms']:.3f} ms under cProfile)\n")
        print(markdown_table(["part (cumulative, under cProfile)", "ms / iteration"],
                             [[k, f"{v:.3f}"] for k, v in res["parts_ms"].items()]))
        print()
        print(markdown_table(["function (own time, under cProfile)", "ms / iteration"],
                             [[k, f"{v:.3f}"] for k, v in res["top_self_ms"]]))
        payload = {"info": info, "label": args.label, "batch_size": args.batch_size,
                   "fused": args.fused, "shell": res}
        save_json(args.json, payload)
        return payload
    print_header(f"Profile of a sinusoid meta-iteration ({args.label})", info)
    results = {order: breakdown(order == "first", args.iterations, args.batch_size)
               for order in ("second", "first")}
    rows = [[f"{order} order", f"{r['wall_ms']:.2f}", f"{r['aten_calls']:.0f}",
             f"{r['backward_ms']:.2f}", r["engine"].get("train", "?"),
             ", ".join(f"{k} x{c:g}" for k, c in r["top_ops"][:4])]
            for order, r in results.items()]
    print(markdown_table(["", "ms / iteration", "ATen ops / iteration", "autograd backward ms",
                          "engine", "most frequent ops"], rows))
    payload = {"info": info, "label": args.label, "batch_size": args.batch_size,
               "results": results}
    save_json(args.json, payload)
    return payload


if __name__ == "__main__":
    np.seterr(all="ignore")
    torch.set_grad_enabled(True)
    main()
