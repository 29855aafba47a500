"""MAML's Omniglot network on the CPU: time and memory per meta-iteration, and CPU tricks.

Network: ``skmeta.modules.ConvNet`` (4 blocks of 3x3 convolution with 64 filters, batch norm,
ReLU, 2x2 max-pooling; 28x28 inputs), 5-way 1-shot with 15 queries per class, meta-batch 32,
inner lr 0.4, Adam(1e-3). Random images: only speed is measured here (accuracy on Omniglot
is another benchmark).

Compared, for 1 and 5 inner steps, first and second order:

* ``skmeta auto``: ``MAMLClassifier(module=ConvNet, engine="auto")``, timed by ``partial_fit``
  over one meta-batch (on the CPU, "auto" picks the loop engine for convolutional nets);
* ``skmeta vmap``: the same with ``engine="vmap"``;
* ``plain loop``: this file's own PyTorch loop over tasks (``functional_call`` +
  ``torch.autograd.grad``).

The meta-gradients of the three are compared on a small meta-batch. Then what might make
CPU convolutions faster, each interleaved with its baseline: ``chunk_size`` for vmap,
channels_last for the loop, 2 torch threads instead of 1, and ``torch.compile`` (in a
subprocess bounded by a timeout).

Memory is measured in the timing process: before each timed block the kernel's peak-RSS mark
is reset (``/proc/self/clear_refs``) and the block's peak RSS growth over the RSS at its start
is recorded (the largest over rounds is reported).

Run ``python benchmarks/conv.py`` (``--quick`` for a smoke run, ``--help`` for options).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
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
from torch.func import functional_call
from torch.nn.functional import cross_entropy

from skmeta import MAMLClassifier, Task
from skmeta import functional as F
from skmeta.modules import ConvNet

N_WAY, K_SHOT, N_QUERY, META_BATCH = 5, 1, 15, 32
INNER_LR, OUTER_LR = 0.4, 1e-3
CONFIGS = {  # name: (first_order, inner steps)
    "2nd order, 1 step": (False, 1),
    "1st order, 1 step": (True, 1),
    "2nd order, 5 steps": (False, 5),
    "1st order, 5 steps": (True, 5),
}


# --------------------------------------------------------------------------- data, models


def make_tasks(n: int, seed: int) -> list[Task]:
    """``n`` random 5-way 1-shot episodes with 28x28 images (labels 0..4)."""
    rng = np.random.default_rng(seed)
    ys = np.arange(N_WAY)
    yq = np.repeat(np.arange(N_WAY), N_QUERY)
    return [Task(rng.normal(size=(N_WAY * K_SHOT, 1, 28, 28)).astype(np.float32), ys,
                 rng.normal(size=(N_WAY * N_QUERY, 1, 28, 28)).astype(np.float32), yq)
            for _ in range(n)]


def stack(tasks: list[Task], channels_last: bool = False) -> F.TaskBatch:
    """Tasks stacked along a task axis; with ``channels_last``, lists of per-task tensors
    in channels-last memory format (the plain loop indexes both the same way)."""
    def t(a, x=True):
        out = torch.as_tensor(np.stack(a))
        if x and channels_last:
            return [o.contiguous(memory_format=torch.channels_last) for o in out]
        return out if x else out.long()

    return F.TaskBatch(t([k.X_support for k in tasks]), t([k.y_support for k in tasks], False),
                       t([k.X_query for k in tasks]), t([k.y_query for k in tasks], False))


def make_estimator(first_order: bool, steps: int, engine: str, chunk_size=None,
                   max_epochs: int = 1) -> MAMLClassifier:
    return MAMLClassifier(module=ConvNet, n_way=N_WAY, k_shot=K_SHOT, n_query=N_QUERY,
                          batch_size=META_BATCH, inner_lr=INNER_LR, lr=OUTER_LR,
                          inner_steps=steps, first_order=first_order, engine=engine,
                          chunk_size=chunk_size, max_epochs=max_epochs, verbose=0,
                          random_state=0)


class PlainLoop:
    """A plain PyTorch MAML loop over tasks, one after another (no vmap, no skmeta engine)."""

    def __init__(self, state: dict, first_order: bool, steps: int, *,
                 channels_last: bool = False, forward=None):
        self.net = ConvNet(N_WAY)
        self.net.load_state_dict(state)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.params = dict(self.net.named_parameters())
        self.opt = torch.optim.Adam(self.net.parameters(), lr=OUTER_LR)
        self.first_order, self.steps = first_order, steps
        self.forward = forward or (lambda params, X: functional_call(self.net, params, (X,)))

    def compute_grads(self, b: F.TaskBatch) -> None:
        self.opt.zero_grad()
        n = len(b.X_support)
        for t in range(n):
            fast = dict(self.params)
            for _ in range(self.steps):
                loss = cross_entropy(self.forward(fast, b.X_support[t]), b.y_support[t])
                g = torch.autograd.grad(loss, list(fast.values()),
                                        create_graph=not self.first_order)
                fast = {k: w - INNER_LR * gw for (k, w), gw in zip(fast.items(), g)}
            q = cross_entropy(self.forward(fast, b.X_query[t]), b.y_query[t])
            (q / n).backward()

    def step(self, b: F.TaskBatch) -> None:
        self.compute_grads(b)
        self.opt.step()


# --------------------------------------------------------------------------- timing


class Block:
    """One timed meta-iteration; records seconds and the peak RSS growth (MB) of the block."""

    def __init__(self, fn, threads: int = 1):
        self.fn, self.threads, self.mem = fn, threads, []

    def __call__(self) -> float:
        prev = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            C.reset_peak_rss()
            base = C.rss_now_mb()
            t0 = time.perf_counter()
            self.fn()
            dt = time.perf_counter() - t0
            self.mem.append(C.peak_rss_mb() - base)
        finally:
            torch.set_num_threads(prev)
        return dt


def estimator_block(first_order, steps, engine, tasks, warm, chunk_size=None, threads=1):
    est = make_estimator(first_order, steps, engine, chunk_size)
    est.fit(warm)  # initialises (weights from random_state=0) and warms up on a small batch
    return est, Block(lambda: est.partial_fit(tasks), threads)


def loop_block(state, first_order, steps, tasks, warm, *, channels_last=False, threads=1):
    loop = PlainLoop(state, first_order, steps, channels_last=channels_last)
    batch, wbatch = stack(tasks, channels_last), stack(warm, channels_last)
    loop.step(wbatch)
    return Block(lambda: loop.step(batch), threads)


def time_config(name: str, rounds: int, seed: int) -> dict:
    first_order, steps = CONFIGS[name]
    tasks, warm = make_tasks(META_BATCH, seed), make_tasks(2, seed + 1)
    est, auto = estimator_block(first_order, steps, "auto", tasks, warm)
    state = {k: v.detach().clone() for k, v in est.module_.state_dict().items()}
    _, vmapped = estimator_block(first_order, steps, "vmap", tasks, warm)
    blocks = {"skmeta auto": auto, "skmeta vmap": vmapped,
              "plain loop": loop_block(state, first_order, steps, tasks, warm)}
    print(f"\n{name}: {rounds} round(s) of 1 meta-iteration each (skmeta auto chose "
          f"engine {est.engine_.get('train')!r})", flush=True)
    times = C.round_robin(blocks, rounds)
    return {"times": times, "mem": {k: b.mem for k, b in blocks.items()},
            "engine": est.engine_.get("train")}


def time_tricks(rounds: int, seed: int, chunk_sizes: list[int]) -> dict:
    """CPU tricks on the 2nd-order 1-step configuration, interleaved with their baselines."""
    first_order, steps = CONFIGS["2nd order, 1 step"]
    tasks, warm = make_tasks(META_BATCH, seed), make_tasks(2, seed + 1)
    est, auto1 = estimator_block(first_order, steps, "auto", tasks, warm)
    state = {k: v.detach().clone() for k, v in est.module_.state_dict().items()}
    blocks = {
        "skmeta auto, 1 thread": auto1,
        "skmeta auto, 2 threads": estimator_block(first_order, steps, "auto", tasks, warm,
                                                  threads=2)[1],
        "plain loop, 1 thread": loop_block(state, first_order, steps, tasks, warm),
        "plain loop, channels_last": loop_block(state, first_order, steps, tasks, warm,
                                                channels_last=True),
    }
    for cs in chunk_sizes:
        blocks[f"skmeta vmap, chunk_size={cs}"] = estimator_block(
            first_order, steps, "vmap", tasks, warm, chunk_size=cs)[1]
    print(f"\nCPU tricks, 2nd order, 1 step: {rounds} round(s)", flush=True)
    times = C.round_robin(blocks, rounds)
    return {"times": times, "mem": {k: b.mem for k, b in blocks.items()}}


# --------------------------------------------------------------------------- correctness


def gradient_check(name: str, n_tasks: int, seed: int) -> dict:
    """max |g - g_plain| / max |g_plain| of the meta-gradients on ``n_tasks`` tasks.

    skmeta's gradients come from the estimator's ``get_meta_gradient`` hook (what
    ``partial_fit`` calls) with each engine, on a meta-batch assembled by the estimator
    without the label permutation of training.
    """
    first_order, steps = CONFIGS[name]
    tasks = make_tasks(n_tasks, seed + 2)
    est = make_estimator(first_order, steps, "auto", max_epochs=0).fit(tasks)
    mb = est.get_meta_batch(tasks, np.arange(n_tasks), np.random.default_rng(0), training=False)
    loop = PlainLoop(est.module_.state_dict(), first_order, steps)
    loop.compute_grads(mb.task_batches[0])
    ref = {k: p.grad for k, p in loop.net.named_parameters()}
    scale = max(g.abs().max().item() for g in ref.values())
    out = {}
    for engine in ("loop", "vmap"):
        loss, g = est.get_meta_gradient(mb, engine)
        out[f"skmeta {engine} engine"] = max(  # skmeta's keys: "module_.<name>"
            ((g[f"module_.{k}"] - ref[k]).abs().max().item() / scale, k) for k in ref)
    return out


# --------------------------------------------------------------------------- torch.compile


def compile_child(seed: int, rounds: int) -> None:
    """In a subprocess: eager vs ``torch.compile``d forward in the plain loop."""
    torch.set_num_threads(1)
    tasks, warm = make_tasks(META_BATCH, seed), make_tasks(2, seed + 1)
    state = ConvNet(N_WAY).state_dict()
    result: dict = {}
    for name, (first_order, steps) in (("1st order, 1 step", CONFIGS["1st order, 1 step"]),
                                       ("2nd order, 1 step", CONFIGS["2nd order, 1 step"])):
        if not first_order:
            try:  # else the first error is about donated buffers, not double backward
                import torch._functorch.config as functorch_config

                functorch_config.donated_buffer = False
            except (ImportError, AttributeError):
                pass
        eager = PlainLoop(state, first_order, steps)
        comp = PlainLoop(state, first_order, steps)
        comp.forward = torch.compile(
            lambda params, X, net=comp.net: functional_call(net, params, (X,)))
        batch = stack(tasks)
        try:
            t0 = time.perf_counter()
            comp.step(stack(warm))
            comp.step(stack(warm))
            compile_s = time.perf_counter() - t0
        except Exception as exc:  # double backward through AOTAutograd, compiler missing, ...
            msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            result[name] = {"error": f"{type(exc).__name__}: {msg}"}
            print("COMPILE " + json.dumps(result), flush=True)
            continue
        eager.step(stack(warm))
        times: dict = {"eager": [], "compiled": []}
        for _ in range(rounds):
            for who, runner in (("eager", eager), ("compiled", comp)):
                t0 = time.perf_counter()
                runner.step(batch)
                times[who].append(time.perf_counter() - t0)
        result[name] = {"compile_s": compile_s, "eager_s": C.median(times["eager"]),
                        "compiled_s": C.median(times["compiled"])}
        print("COMPILE " + json.dumps(result), flush=True)


def run_compile(seed: int, rounds: int, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__)), "--_compile", "--seed", str(seed),
           "--rounds", str(rounds)]
    print(f"\ntorch.compile (subprocess, at most {timeout:.0f} s) ...", flush=True)
    try:
        env = dict(os.environ, TORCHINDUCTOR_FORCE_DISABLE_CACHES="1")  # a cold compile
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        stdout, note = proc.stdout, ""
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        note = f"timed out after {timeout:.0f} s"
    result: dict = {}
    for line in stdout.splitlines():
        if line.startswith("COMPILE "):
            result = json.loads(line[len("COMPILE "):])
    if note:
        for name in ("1st order, 1 step", "2nd order, 1 step"):
            result.setdefault(name, {"error": note})
    return result


# --------------------------------------------------------------------------- report


def fmt_s(xs) -> str:
    return f"{C.median(xs):.2f}" if len(xs) < 3 else (
        f"{C.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})")


def report(speed: dict, grads: dict, tricks: dict, compiled: dict) -> str:
    out = ["Ratios of medians (time per meta-iteration; > 1 means the first is faster):\n"]
    rows = []
    for name, res in speed.items():
        med = {k: C.median(v) for k, v in res["times"].items()}
        rows.append([name, res["engine"], C.fmt_ratio(med["skmeta vmap"] / med["skmeta auto"]),
                     C.fmt_ratio(med["plain loop"] / med["skmeta auto"]),
                     C.fmt_ratio(med["skmeta vmap"] / med["plain loop"])])
    out.append(C.markdown_table(["configuration", "engine chosen by auto",
                                 "skmeta auto over skmeta vmap", "skmeta auto over plain loop",
                                 "plain loop over skmeta vmap"], rows))
    names = ["skmeta auto", "skmeta vmap", "plain loop"]
    out.append("\nSeconds per meta-iteration, median (min-max) over rounds; peak RSS growth "
               "during the meta-iteration, MB (largest over rounds):\n")
    rows = []
    for name, res in speed.items():
        rows.append([name, len(res["times"]["plain loop"])]
                    + [fmt_s(res["times"][n]) for n in names]
                    + [f"{max(res['mem'][n]):.0f}" for n in names])
    out.append(C.markdown_table(["configuration", "rounds"] + [f"{n}, s" for n in names]
                                + [f"{n}, MB" for n in names], rows))
    if grads:
        out.append(f"\nMeta-gradient agreement with the plain loop on {grads['n_tasks']} tasks "
                   "from one initialisation, max |g - g_plain| / max |g_plain| over all "
                   "parameters, and the parameter where it is largest (float32; a convolution's "
                   "bias before batch norm has an exact gradient of ~0, so its differences are "
                   "rounding):\n")
        cols = [k for k in next(iter(grads["results"].values()))]
        out.append(C.markdown_table(["configuration"] + cols, [
            [name] + [f"{r[c][0]:.1e} (`{r[c][1]}`)" if r[c][0] > 0 else "0" for c in cols]
            for name, r in grads["results"].items()]))
    if tricks:
        med = {k: C.median(v) for k, v in tricks["times"].items()}
        base = {"skmeta auto, 2 threads": "skmeta auto, 1 thread",
                "plain loop, channels_last": "plain loop, 1 thread"}
        rows = []
        for k, v in tricks["times"].items():
            if k in base:
                ratio = C.fmt_ratio(med[base[k]] / med[k]) + f" vs {base[k]}"
            elif k.startswith("skmeta vmap"):
                ratio = (C.fmt_ratio(med["skmeta auto, 1 thread"] / med[k])
                         + " vs skmeta auto, 1 thread")
            else:
                ratio = "(baseline)"
            rows.append([k, ratio, fmt_s(v), f"{max(tricks['mem'][k]):.0f}"])
        out.append("\nCPU tricks on 2nd order, 1 step (speed-up = baseline time / time; "
                   "< 1 is slower):\n")
        out.append(C.markdown_table(["variant", "speed-up", "s per meta-iteration", "MB"], rows))
    if compiled:
        rows = []
        for name, r in compiled.items():
            if "error" in r:
                rows.append([name, "-", "-", "-", r["error"]])
            else:
                rows.append([name, C.fmt_ratio(r["eager_s"] / r["compiled_s"]),
                             f"{r['eager_s']:.2f}", f"{r['compiled_s']:.2f}",
                             f"compile + 2 warm-up steps: {r['compile_s']:.0f} s"])
        out.append("\n`torch.compile` of the network's forward in the plain loop (separate "
                   "process, fresh initialisation, inductor caches disabled so the compile is "
                   "cold):\n")
        out.append(C.markdown_table(["configuration", "speed-up", "eager, s", "compiled, s",
                                     "note"], rows))
    return "\n".join(out)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="2nd order 1 step only, 1 round, small gradient check, no tricks")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--rounds", type=int, default=None,
                   help="timing rounds for 1-step configurations (default 2; 5 steps: 1)")
    p.add_argument("--configs", default=None, help="a ';'-separated subset of: "
                   + "; ".join(CONFIGS))
    p.add_argument("--chunk-sizes", default="2,8",
                   help="chunk_size values tried for engine='vmap' (default 2,8)")
    p.add_argument("--no-tricks", action="store_true")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--compile-timeout", type=float, default=180)
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--_compile", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    C.set_threads(args.threads)
    if args._compile:
        compile_child(args.seed, args.rounds or 2)
        return {}
    if args.configs:
        configs = [c.strip() for c in args.configs.split(";")]
    else:
        configs = ["2nd order, 1 step"] if args.quick else list(CONFIGS)
    rounds = args.rounds or (1 if args.quick else 2)
    info = C.machine_info()
    C.print_header("MAML Omniglot ConvNet on the CPU: time per meta-iteration", info)
    t_start = time.perf_counter()
    speed = {c: time_config(c, rounds if CONFIGS[c][1] == 1 else max(1, rounds // 2), args.seed)
             for c in configs}
    n_check = 2 if args.quick else 4
    print(f"\ngradient check on {n_check} tasks ...", flush=True)
    grads = {"n_tasks": n_check,
             "results": {c: gradient_check(c, n_check, args.seed) for c in configs}}
    chunk_sizes = [int(c) for c in args.chunk_sizes.split(",") if c]
    tricks = {} if args.quick or args.no_tricks else time_tricks(rounds, args.seed,
                                                                 chunk_sizes)
    compiled = {} if args.quick or args.no_compile else run_compile(
        args.seed, rounds, args.compile_timeout)
    text = report(speed, grads, tricks, compiled)
    C.print_header("MAML Omniglot ConvNet on the CPU: results", info)
    print(text)
    print(f"\ncommand: python benchmarks/conv.py {shlex.join(argv or sys.argv[1:])}".rstrip()
          + f"  (total {time.perf_counter() - t_start:.0f} s)")
    payload = {"info": info, "speed": speed, "grads": grads, "tricks": tricks,
               "compile": compiled, "table": text}
    C.save_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
