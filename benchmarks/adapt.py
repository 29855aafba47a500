"""Adaptation throughput: tasks adapted (and scored) per second after meta-training.

A ``MAMLRegressor`` is meta-trained briefly on sinusoid tasks (Finn et al.'s setup: MLP
1-40-40-1, K = 10 support + 10 query, inner lr 0.01), then, on fresh tasks with a fixed
support/query split, these are timed round-robin in one process:

* ``adapt`` loop: ``est.adapt(X_support, y_support)`` called once per task in a Python loop;
* ``adapt_tasks``: one call with all tasks (the batch path, vectorised when shapes agree);
* ``score``: ``est.score(tasks)``, the mean R² after adaptation over all tasks;
* naive scoring loop: per task ``est.adapt(...)``, ``.predict(X_query)`` and ``r2_score``.

The per-task R² of ``score_tasks`` and of the naive loop are compared, so speed is not
bought with different results.

Run ``python benchmarks/adapt.py`` (``--quick`` for a smoke run, ``--help`` for options).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

try:
    from . import _common as C
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common as C

import numpy as np
from sklearn.metrics import r2_score

from skmeta import MAMLRegressor, Task
from skmeta.datasets import make_sinusoid_tasks

K, Q = 10, 10
TARGET_SCORE = 10.0


def fixed_tasks(n: int, seed: int) -> list[Task]:
    tasks = make_sinusoid_tasks(n_tasks=n, n_samples=K + Q, random_state=seed)
    return [Task(X[:K], y[:K], X[K:], y[K:]) for X, y in tasks]


def naive_scores(est, tasks) -> list[float]:
    return [r2_score(t.y_query, est.adapt(t.X_support, t.y_support).predict(t.X_query))
            for t in tasks]


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def per_task_costs(est, tasks) -> dict:
    """Reference costs: what a naive per-task implementation pays for each task.

    skmeta's ``score`` computes R² for all tasks of a group at once, and
    ``adapt_tasks`` copies the network structurally (not with ``copy.deepcopy``);
    these rows show what those choices save.
    """
    import copy

    Xq, yq = tasks[0].X_query, tasks[0].y_query
    pred = est.adapt(tasks[0].X_support, tasks[0].y_support).predict(Xq)
    n = min(len(tasks), 500)
    return {
        "sklearn r2_score on one task's query set (a naive loop calls it per task)":
            timed(lambda: [r2_score(yq, pred) for _ in range(n)]) / n,
        "copy.deepcopy of the network (what a naive per-task model copy costs)":
            timed(lambda: [copy.deepcopy(est.module_) for _ in range(n)]) / n,
    }


def run(n_tasks: int, n_adapt_loop: int, rounds: int, train_iters: int, seed: int) -> dict:
    est = MAMLRegressor(k_shot=K, n_query=Q, batch_size=25, inner_lr=0.01, max_epochs=1,
                        verbose=0, random_state=seed)
    t0 = time.perf_counter()
    est.fit(make_sinusoid_tasks(n_tasks=25 * train_iters, n_samples=K + Q,
                                random_state=seed + 1))
    print(f"meta-trained {train_iters} meta-iterations in {time.perf_counter() - t0:.1f} s",
          flush=True)
    tasks = fixed_tasks(n_tasks, seed + 2)
    pairs = [(t.X_support, t.y_support) for t in tasks]
    few = pairs[:n_adapt_loop]
    out: dict = {"n_tasks": n_tasks, "n_adapt_loop": n_adapt_loop, "steps": {}}
    for steps in (1, 10):
        est.set_params(adapt_steps=steps)
        # warm-up: with engine="auto" the first calls time both engines
        for _ in range(3):
            est.adapt_tasks(pairs[:50])
            est.score(tasks[:50])
        blocks = {
            "adapt loop": lambda: timed(lambda: [est.adapt(X, y) for X, y in few]) / len(few),
            "adapt_tasks": lambda: timed(lambda: est.adapt_tasks(pairs)) / n_tasks,
            "score": lambda: timed(lambda: est.score(tasks)) / n_tasks,
            "naive scoring loop": lambda: timed(lambda: naive_scores(est, tasks[:n_adapt_loop]))
            / n_adapt_loop,
        }
        print(f"\nadapt_steps={steps}: {rounds} rounds; ms per task", flush=True)
        times = C.round_robin(blocks, rounds, log=False)
        for name, ts in times.items():
            print(f"  {name}: " + ", ".join(f"{1e3 * t:.3f}" for t in ts), flush=True)
        if steps == 1:
            out["per_task_costs"] = per_task_costs(est, tasks)
        fast = est.score_tasks(tasks)
        slow = np.asarray(naive_scores(est, tasks))
        out["steps"][steps] = {"times": times, "engine": dict(est.engine_),
                               "score": float(fast.mean()), "naive": float(slow.mean()),
                               "max_abs_diff": float(np.abs(fast - slow).max())}
    return out


def report(res: dict) -> str:
    out = ["Ratios of medians (seconds per task):\n"]
    rows = []
    for steps, r in res["steps"].items():
        med = {k: C.median(v) for k, v in r["times"].items()}
        ratio = med["naive scoring loop"] / med["score"]
        rows.append([steps, C.fmt_ratio(ratio),
                     f">= {TARGET_SCORE:g}x: " + ("met" if ratio >= TARGET_SCORE else "NOT met"),
                     C.fmt_ratio(med["adapt loop"] / med["adapt_tasks"])])
    out.append(C.markdown_table(["adapt steps", "score speed-up over naive loop", "target",
                                 "adapt_tasks speed-up over adapt loop"], rows))
    out.append(f"\nTasks per second (median over rounds; score and adapt_tasks over "
               f"{res['n_tasks']} tasks, the loops over {res['n_adapt_loop']}):\n")
    rows = []
    for steps, r in res["steps"].items():
        rows.append([steps] + [f"{1 / C.median(v):,.0f}" for v in r["times"].values()])
    names = list(next(iter(res["steps"].values()))["times"])
    out.append(C.markdown_table(["adapt steps"] + names, rows))
    out.append("\nAgreement (fixed support/query splits):\n")
    rows = [[steps, f"{r['score']:.4f}", f"{r['naive']:.4f}", f"{r['max_abs_diff']:.1e}",
             r["engine"].get("adapt", "-")] for steps, r in res["steps"].items()]
    out.append(C.markdown_table(["adapt steps", f"score ({res['n_tasks']} tasks, mean R²)",
                                 "naive loop, mean R²", "max per-task |R² difference|",
                                 "engine chosen for adapt"], rows))
    if "per_task_costs" in res:
        out.append("\nPer-task costs inside the batch paths (ms per task; compare with the "
                   "ms per task of score and adapt_tasks at 1 step: "
                   + ", ".join(f"{k} {1e3 * C.median(v):.3f}" for k, v in
                               res["steps"][1]["times"].items() if k in ("score", "adapt_tasks"))
                   + "):\n")
        out.append(C.markdown_table(["operation", "ms per task"], [
            [k, f"{1e3 * v:.3f}"] for k, v in res["per_task_costs"].items()]))
    return "\n".join(out)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--tasks", type=int, default=1000, help="tasks scored (default 1000)")
    p.add_argument("--rounds", type=int, default=None, help="timing rounds (default 5)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    C.set_threads(args.threads)
    info = C.machine_info()
    C.print_header("Adaptation throughput (sinusoid MAMLRegressor)", info)
    t0 = time.perf_counter()
    n_tasks = 200 if args.quick else args.tasks
    res = run(n_tasks, n_adapt_loop=min(n_tasks, 200 if args.quick else 1000),
              rounds=args.rounds or (2 if args.quick else 5),
              train_iters=20 if args.quick else 200, seed=args.seed)
    text = report(res)
    C.print_header("Adaptation throughput: results", info)
    print(text)
    print(f"\ncommand: python benchmarks/adapt.py {shlex.join(argv or sys.argv[1:])}".rstrip()
          + f"  (total {time.perf_counter() - t0:.0f} s)")
    payload = {"info": info, "results": res, "table": text}
    C.save_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
