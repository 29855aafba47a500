"""Every skmeta algorithm on Finn et al.'s sinusoid protocol, side by side.

MLP 1-40-40-1, support sets of K = 10 points, one inner step of size 0.01 during
meta-training (Reptile: its default five), meta-batch 25, Adam 1e-3 (Reptile: SGD 1.0),
the same number of meta-iterations for every algorithm, each meta-iteration on fresh
tasks. Reported: the post-adaptation query MSE on 600 fresh tasks (20 query points each)
after 0, 1, 5 and 10 adaptation steps, with K = 5, 10 and 20 support points, the wall-
clock training time and the time per meta-iteration. Results are written as JSON (the
gallery example ``plot_algorithms.py`` reads them) and as a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import machine_info, markdown_table, print_header, save_json, set_threads  # noqa: I001

import skmeta
from skmeta.datasets import make_sinusoid_tasks

ALGORITHMS = {
    "MAML": ("MAMLRegressor", {}),
    "FOMAML": ("MAMLRegressor", {"first_order": True}),
    "Meta-SGD": ("MetaSGDRegressor", {}),
    "ANIL": ("ANILRegressor", {}),
    "MAML++": ("MAMLPlusPlusRegressor", {"inner_steps": 1}),
    "R2-D2": ("R2D2Regressor", {"prior": "zero"}),
    "R2-D2 (learned prior)": ("R2D2Regressor", {"prior": "learned"}),
    "Reptile": ("ReptileRegressor", {}),
    "Pre-training": ("PretrainedRegressor", {}),
}
STEPS = (0, 1, 5, 10)
SHOTS = (5, 10, 20)


def build(name: str, n_iter: int, seed: int):
    cls_name, extra = ALGORITHMS[name]
    return getattr(skmeta, cls_name)(k_shot=10, inner_lr=0.01, batch_size=25, max_epochs=1,
                                     verbose=0, random_state=seed, **extra)


def evaluate(est, test: list, k: int, steps: int) -> tuple[float, float]:
    """Mean and median query MSE after ``steps`` steps on ``k`` support points (NaN when
    adaptation diverges: rates learned for one step can overshoot over ten)."""
    try:
        adapted = est.adapt_tasks([(X[:k], y[:k]) for X, y in test], adapt_steps=steps)
    except FloatingPointError:
        return float("nan"), float("nan")
    mse = np.array([np.mean((a.predict(X[k:k + 20]) - y[k:k + 20]) ** 2)
                    for a, (X, y) in zip(adapted, test)])
    return float(mse.mean()), float(np.median(mse))


def run(names: list[str], n_iter: int, n_test: int, seed: int) -> dict:
    tasks = make_sinusoid_tasks(n_tasks=25 * n_iter, n_samples=20, random_state=seed)
    test = make_sinusoid_tasks(n_tasks=n_test, n_samples=40, random_state=seed + 1000)
    out = {}
    for name in names:
        est = build(name, n_iter, seed)
        t0 = time.perf_counter()
        est.fit(tasks)
        seconds = time.perf_counter() - t0
        row = {"train_seconds": seconds, "ms_per_iteration": 1e3 * seconds / n_iter,
               "engine": est.engine_.get("train"), "mse": {}}
        for k in SHOTS:
            for steps in STEPS:
                row["mse"][f"K={k},steps={steps}"] = evaluate(est, test, k, steps)
        out[name] = row
        print(f"{name:13s} {seconds:6.1f} s  K=10: " + "  ".join(
            f"{s} step(s) {row['mse'][f'K=10,steps={s}'][0]:.3f}" for s in STEPS), flush=True)
    return out


def report(results: dict, info: dict, n_iter: int, n_test: int) -> str:
    headers = ["algorithm", "ms / meta-iteration", *[f"K={k}, {s} step{'s' * (s != 1)}"
                                                     for k in SHOTS for s in (1, 10)]]
    rows = [[name, f"{r['ms_per_iteration']:.1f}",
             *[f"{r['mse'][f'K={k},steps={s}'][0]:.3f}" for k in SHOTS for s in (1, 10)]]
            for name, r in results.items()]
    return (f"Sinusoid, Finn et al.'s protocol: {n_iter} meta-iterations of 25 fresh tasks, "
            f"mean query MSE on {n_test} fresh tasks (torch {info['torch']}, "
            f"{info['torch_threads']} thread(s), {info['cpu']}, {info['date']}).\n\n"
            + markdown_table(headers, rows) + "\n")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--iterations", type=int, default=10000, help="meta-iterations per model")
    p.add_argument("--test-tasks", type=int, default=600)
    p.add_argument("--algorithms", default=",".join(ALGORITHMS),
                   help="comma-separated subset of " + ", ".join(ALGORITHMS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--out", default=None, help="write PREFIX.json and PREFIX.md")
    args = p.parse_args(argv)
    set_threads(args.threads)
    n_iter, n_test = (200, 50) if args.quick else (args.iterations, args.test_tasks)
    info = machine_info()
    print_header("Every algorithm on sinusoids (Finn et al.'s protocol)", info)
    names = [n.strip() for n in args.algorithms.split(",") if n.strip()]
    unknown = sorted(set(names) - set(ALGORITHMS))
    if unknown:
        p.error(f"unknown algorithm(s) {unknown}; choose from {list(ALGORITHMS)}")
    results = run(names, n_iter, n_test, args.seed)
    text = report(results, info, n_iter, n_test)
    print("\n" + text)
    payload = {"info": info, "iterations": n_iter, "test_tasks": n_test, "results": results}
    save_json(args.json or (args.out and args.out + ".json"), payload)
    if args.out:
        with open(args.out + ".md", "w") as f:
            f.write(text)
    return payload


if __name__ == "__main__":
    main()
