"""This checkout against another (e.g. the previous release): fit time per meta-iteration.

Usage (from the repository root)::

    git worktree add /tmp/prev <commit>          # the other checkout
    python benchmarks/releases.py --against /tmp/prev --json benchmarks/results/releases.json

Each configuration (MAML on Finn et al.'s sinusoids, MLP 1-40-40-1, meta-batch 25, one
inner step, second and first order, every engine; MAML on a small ConvNet 5-way 1-shot)
is timed in *fresh subprocesses that alternate between the two checkouts*, one process
per round and checkout, so both see the same machine load; each process fits once to
warm up and choose, then times ``fit`` over a fixed number of meta-iterations. Reported:
median milliseconds per meta-iteration over the rounds, and the ratio this / other (below
1 is faster). Only the public estimator API is used, so any version of skmeta runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _common import machine_info, markdown_table, print_header, save_json, set_threads  # noqa: I001

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: name -> (estimator keyword arguments as Python source, task kind, meta-iterations timed)
CONFIGS = {
    "sinusoid MLP, 2nd order, batched": ("engine='batched'", "sinusoid", 60),
    "sinusoid MLP, 2nd order, vmap": ("engine='vmap'", "sinusoid", 60),
    "sinusoid MLP, 2nd order, loop": ("engine='loop'", "sinusoid", 20),
    "sinusoid MLP, 1st order, batched": ("engine='batched', first_order=True", "sinusoid", 60),
    "ConvNet 5-way 1-shot, loop": ("engine='loop'", "conv", 6),
    "ConvNet 5-way 1-shot, vmap": ("engine='vmap'", "conv", 6),
}

_CHILD = r"""
import sys, time, json
import numpy as np, torch
torch.set_num_threads(1)
import skmeta
from skmeta import MAMLRegressor, MAMLClassifier
from skmeta.datasets import make_sinusoid_tasks
from skmeta.modules import ConvNet
kind, kwargs, n_iter = sys.argv[1], eval("dict(" + sys.argv[2] + ")"), int(sys.argv[3])
if kind == "sinusoid":
    tasks = make_sinusoid_tasks(n_tasks=25 * (n_iter + 10), n_samples=20, random_state=0)
    est = MAMLRegressor(k_shot=10, batch_size=25, max_epochs=1, verbose=0, random_state=0,
                        **kwargs)
    warm, timed = tasks[:250], tasks[250:]
else:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(40), 6)
    X = (rng.normal(size=(240, 1, 28, 28)) + (y % 5)[:, None, None, None]).astype("float32")
    est = MAMLClassifier(module=ConvNet, module__n_filters=32, module__image_size=28, n_way=5,
                         k_shot=1, n_query=5, n_episodes=4 * 2, batch_size=4, inner_lr=0.4,
                         max_epochs=1, verbose=0, random_state=0, **kwargs)
    warm = timed = None
if kind == "sinusoid":
    est.fit(warm)
    est.set_params(warm_start=True)
    t0 = time.perf_counter(); est.fit(timed); wall = time.perf_counter() - t0
else:
    est.fit(X, y)
    est.set_params(warm_start=True, n_episodes=4 * n_iter)
    t0 = time.perf_counter(); est.fit(X, y); wall = time.perf_counter() - t0
print(json.dumps({"ms": 1e3 * wall / n_iter, "version": skmeta.__version__,
                  "file": skmeta.__file__}))
"""


def run_once(tree: Path, kind: str, kwargs: str, n_iter: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _CHILD, kind, kwargs, str(n_iter)], env=env,
                         cwd=str(tree), capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{tree}: {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["file"].startswith(str(tree)):
        raise RuntimeError(f"{tree} imported skmeta from {result['file']}")
    return result["ms"]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--against", required=True, help="the other checkout's root folder")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--only", default=None, help="comma-separated substrings of config names")
    p.add_argument("--label", default="previous release")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    set_threads(1)
    other = Path(args.against).resolve()
    if not (other / "skmeta" / "__init__.py").is_file():
        p.error(f"--against {other} holds no skmeta package")
    info = machine_info()
    print_header("this checkout against " + args.label, info)
    configs = {k: v for k, v in CONFIGS.items()
               if args.only is None or any(s in k for s in args.only.split(","))}
    rows, results = [], {}
    for name, (kwargs, kind, n_iter) in configs.items():
        times = {"this": [], "other": []}
        for r in range(args.rounds):
            order = [("this", ROOT), ("other", other)][:: 1 if r % 2 == 0 else -1]
            for label, tree in order:
                times[label].append(run_once(tree, kind, kwargs, n_iter))
        this, that = statistics.median(times["this"]), statistics.median(times["other"])
        results[name] = {"this_ms": this, "other_ms": that, "ratio": this / that,
                         "rounds": times}
        rows.append([name, f"{that:.2f}", f"{this:.2f}", f"{this / that:.2f}"])
        print(f"{name}: {args.label} {that:.2f} ms, this {this:.2f} ms, ratio {this / that:.2f}",
              flush=True)
    table = markdown_table([f"configuration (ms per meta-iteration, median of {args.rounds})",
                            args.label, "this checkout", "this / other"], rows)
    print("\n" + table)
    out = {"info": info, "against": str(other), "label": args.label, "results": results,
           "table": table}
    if args.json:
        save_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
