"""One table of meta-training speed and memory on a GPU: every engine, small and convolutional nets.

Configurations (Finn et al., 2017), second-order MAML, one inner step, Adam(1e-3):

* ``sinusoid-25`` and ``sinusoid-100``: MLP 1-40-40-1 (ReLU), K = 10 support + 10 query
  examples, inner lr 0.01, meta-batch 25 and 100;
* ``omniglot-conv``: ``skmeta.modules.ConvNet`` (4 blocks of 64 3x3 filters, batch norm, ReLU,
  2x2 max-pooling; 28x28 inputs), 5-way 1-shot with 15 queries per class, inner lr 0.4,
  meta-batch 32 (random images: only speed and memory are measured).

For each, the meta-gradient of ``skmeta.functional`` on pre-stacked tensors plus the optimizer
step, with each engine (``batched``, ``vmap``, ``loop``), and a plain PyTorch loop over tasks
(``functional_call`` + ``torch.autograd.grad(create_graph=True)``) as the reference. Times are
per meta-iteration, measured with CUDA events (``time.perf_counter`` on a CPU) over blocks of
iterations after a warm-up; the median over rounds is reported, the engines interleaved round
by round. Memory is the peak of ``torch.cuda.max_memory_allocated`` during a block, over the
memory held before it (not measured on a CPU).

Run ``python benchmarks/gpu.py`` on a machine with a GPU (about 3 minutes on one H100);
``--device cpu --quick`` is a smoke run anywhere.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

try:
    from . import _common as C
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common as C

import torch
from torch.func import functional_call
from torch.nn import functional as nnf

from skmeta import functional as F
from skmeta.modules import MLP, ConvNet

ENGINES = ("batched", "vmap", "loop")
IMPLEMENTATIONS = (*ENGINES, "plain loop")


def make_config(name: str, device: torch.device, *, quick: bool, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if name.startswith("sinusoid"):
        n_tasks = int(name.split("-")[1])
        amp = torch.rand(n_tasks, 1, 1, generator=g) * 4.9 + 0.1
        phase = torch.rand(n_tasks, 1, 1, generator=g) * torch.pi
        X = torch.rand(n_tasks, 20, 1, generator=g) * 10 - 5
        y = amp * torch.sin(X - phase)
        batch = F.TaskBatch(X[:, :10], y[:, :10], X[:, 10:], y[:, 10:])
        net, inner_lr, loss_fn = MLP(1, 1), 0.01, nnf.mse_loss
    elif name == "omniglot-conv":
        n_tasks, way, queries = (4 if quick else 32), 5, 15
        filters = 8 if quick else 64
        Xs = torch.randn(n_tasks, way, 1, 28, 28, generator=g)
        Xq = torch.randn(n_tasks, way * queries, 1, 28, 28, generator=g)
        ys = torch.arange(way).repeat(n_tasks, 1)
        yq = torch.arange(way).repeat_interleave(queries).repeat(n_tasks, 1)
        batch = F.TaskBatch(Xs, ys, Xq, yq)
        net, inner_lr, loss_fn = ConvNet(way, n_filters=filters), 0.4, nnf.cross_entropy
    else:
        raise ValueError(f"unknown configuration {name!r}")
    batch = F.TaskBatch(*(None if t is None else t.to(device) for t in batch))
    return {"name": name, "batch": batch, "state": net.state_dict(), "make": type(net),
            "net": net, "inner_lr": inner_lr, "loss_fn": loss_fn, "n_tasks": n_tasks}


class Runner:
    """One implementation on its own copy of the network: ``step()`` is one meta-iteration."""

    def __init__(self, config: dict, impl: str, device: torch.device):
        import copy

        self.net = copy.deepcopy(config["net"]).to(device)
        self.params = dict(self.net.named_parameters())
        self.batch, self.impl = config["batch"], impl
        self.loss_fn, self.inner_lr = config["loss_fn"], config["inner_lr"]
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.learner = F.Learner(self.net, self.params, dict(self.net.named_buffers()),
                                 self.loss_fn, F.sgd(self.inner_lr))

    def step(self) -> None:
        self.opt.zero_grad()
        if self.impl == "plain loop":
            self._plain_loop()
        else:
            _, grads = F.meta_gradient(
                lambda learner, task: F.query_loss(learner, task, steps=1), [self.batch],
                self.params, engine=self.impl, learner=self.learner)
            for k, p in self.params.items():
                p.grad = grads[k]
        self.opt.step()

    def _plain_loop(self) -> None:
        b, n = self.batch, self.batch.n_tasks
        names, phi = list(self.params), list(self.params.values())
        for t in range(n):
            out = functional_call(self.net, self.params, (b.X_support[t],))
            g = torch.autograd.grad(self.loss_fn(out, b.y_support[t]), phi, create_graph=True)
            fast = {k: p - self.inner_lr * gp for k, p, gp in zip(names, phi, g)}
            q = self.loss_fn(functional_call(self.net, fast, (b.X_query[t],)), b.y_query[t])
            (q / n).backward()


def time_block(runner: Runner, n_iter: int, device: torch.device) -> tuple[float, float | None]:
    """Seconds per meta-iteration over ``n_iter`` iterations, and the peak memory in MiB."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(n_iter):
            runner.step()
        end.record()
        torch.cuda.synchronize(device)
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        return start.elapsed_time(end) / 1e3 / n_iter, peak
    t0 = time.perf_counter()
    for _ in range(n_iter):
        runner.step()
    return (time.perf_counter() - t0) / n_iter, None


def gradient_check(config: dict, device: torch.device) -> float:
    """Largest relative difference of the engines' meta-gradients from the loop engine's."""
    grads = {}
    for impl in ENGINES:
        runner = Runner(config, impl, device)
        runner.opt.zero_grad()
        _, grads[impl] = F.meta_gradient(
            lambda learner, task: F.query_loss(learner, task, steps=1), [runner.batch],
            runner.params, engine=impl, learner=runner.learner)
    ref = grads["loop"]
    scale = max(float(g.abs().max()) for g in ref.values())
    return max(float((grads[e][k] - ref[k]).abs().max()) / scale
               for e in ("batched", "vmap") for k in ref)


def run_config(name: str, device: torch.device, *, rounds: int, n_iter: int, quick: bool,
               seed: int) -> dict:
    config = make_config(name, device, quick=quick, seed=seed)
    runners = {impl: Runner(config, impl, device) for impl in IMPLEMENTATIONS}
    for runner in runners.values():  # warm-up (kernels, caches, traces)
        for _ in range(2):
            runner.step()
    times: dict[str, list[float]] = {impl: [] for impl in IMPLEMENTATIONS}
    peaks: dict[str, float | None] = dict.fromkeys(IMPLEMENTATIONS)
    for _ in range(rounds):
        for impl, runner in runners.items():
            dt, peak = time_block(runner, n_iter, device)
            times[impl].append(dt)
            if peak is not None:
                peaks[impl] = max(peaks[impl] or 0.0, peak)
    med = {impl: C.median(ts) for impl, ts in times.items()}
    print(f"{name}: " + ", ".join(f"{impl} {1e3 * t:.2f} ms" for impl, t in med.items()),
          flush=True)
    return {"median_s": med, "times_s": times, "peak_mib": peaks, "n_tasks": config["n_tasks"],
            "max_rel_grad_diff": gradient_check(config, device)}


def report(results: dict, device: torch.device, info: dict) -> str:
    headers = ["configuration", "meta-batch"] + [f"{i} (ms)" for i in IMPLEMENTATIONS] + \
        ["batched vs plain loop", "peak memory MiB (" + ", ".join(IMPLEMENTATIONS) + ")",
         "max rel. grad diff"]
    rows = []
    for name, r in results.items():
        med = r["median_s"]
        peaks = r["peak_mib"]
        rows.append([name, r["n_tasks"], *(f"{1e3 * med[i]:.2f}" for i in IMPLEMENTATIONS),
                     f"{med['plain loop'] / med['batched']:.1f}x",
                     "not measured (CPU)" if device.type != "cuda" else
                     ", ".join(f"{peaks[i]:.0f}" for i in IMPLEMENTATIONS),
                     f"{r['max_rel_grad_diff']:.1e}"])
    return (f"device: {info['device']}\n\n" + C.markdown_table(headers, rows))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--quick", action="store_true", help="a smoke run (small conv net)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--rounds", type=int, default=None, help="timing rounds (default 5)")
    p.add_argument("--iterations", type=int, default=None,
                   help="meta-iterations per timed block (default 20)")
    p.add_argument("--configs", default="sinusoid-25,sinusoid-100,omniglot-conv")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {args.device}: CUDA is not available here "
                "(torch.cuda.is_available() is False); run on a GPU machine, or pass "
                "--device cpu for a smoke run.")
    C.set_threads(args.threads)
    rounds = args.rounds or (2 if args.quick else 5)
    n_iter = args.iterations or (2 if args.quick else 20)
    info = C.machine_info()
    info["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    C.print_header("MAML meta-iteration on " + info["device"], info)
    results = {name: run_config(name.strip(), device, rounds=rounds, n_iter=n_iter,
                                quick=args.quick, seed=args.seed)
               for name in args.configs.split(",") if name.strip()}
    table = report(results, device, info)
    print("\n" + table)
    payload = {"info": info, "results": results, "table": table}
    C.save_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
