"""Shared helpers of the benchmark scripts: machine facts, interleaved timing, memory, tables.

Timings on shared machines are noisy, so every script times the implementations it
compares *round-robin in one process* (a block of iterations of each, then the next
implementation, the starting implementation rotating every round) and reports medians
over the rounds, and ratios between medians.

Peak memory is measured in a *fresh subprocess* per configuration: the script re-runs
itself with ``--_memory NAME``, builds the model and data, resets the kernel's peak-RSS
mark (``echo 5 > /proc/self/clear_refs``, Linux), records the resident set size (RSS), runs
a few iterations and reports the new peak RSS (``VmHWM``) minus that baseline: the extra
memory the iterations needed at their peak, without the import-time peaks of torch.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: import the checkout's skmeta
    sys.path.insert(0, str(ROOT))

import torch

DATE = "2026-11-26"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Facts every benchmark prints: versions, threads, CPU, load."""
    import skmeta

    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return {
        "torch": torch.__version__,
        "skmeta": skmeta.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_avg_1min_at_start": round(load, 2),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def print_header(title: str, info: dict) -> None:
    print(f"\n# {title}")
    print(f"torch {info['torch']} | skmeta {info['skmeta']} | Python {info['python']} | "
          f"torch threads: {info['torch_threads']} | CPU: {info['cpu']} "
          f"({info['cpu_count']} logical cores) | load average at start: "
          f"{info['load_avg_1min_at_start']}", flush=True)


def set_threads(n: int) -> None:
    torch.set_num_threads(n)


def round_robin(blocks: dict[str, Callable[[], float]], rounds: int, *,
                log: bool = True) -> dict[str, list[float]]:
    """Run ``blocks`` (each returns seconds per iteration of one block) interleaved.

    Round ``r`` starts with implementation ``r mod n`` so that no implementation is
    always run right after the same neighbour. Returns every implementation's
    per-iteration seconds, one value per round.
    """
    names = list(blocks)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            out[name].append(blocks[name]())
        if log:
            print(f"  round {r + 1}/{rounds}: " + ", ".join(
                f"{n} {1e3 * out[n][-1]:.1f}" for n in names) + " ms", flush=True)
    return out


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def iqr(xs: Sequence[float]) -> tuple[float, float]:
    if len(xs) < 4:
        return min(xs), max(xs)
    q = statistics.quantiles(xs, n=4)
    return q[0], q[2]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    def cell(v) -> str:
        return v if isinstance(v, str) else f"{v}"

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _status_kb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def rss_now_mb() -> float:
    """Current resident set size of this process, in MB."""
    kb = _status_kb("VmRSS")
    return float("nan") if kb is None else kb / 1024


def malloc_trim() -> None:
    """Hand freed heap memory back to the OS (glibc), so that RSS reflects live memory."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); False if impossible.

    Freed heap memory is first handed back to the OS (``malloc_trim``), so that memory a
    previous computation left in the allocator does not hide the next one's growth.
    """
    malloc_trim()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """Peak resident set size of this process since the last reset, in MB."""
    kb = _status_kb("VmHWM")
    if kb is None:  # not Linux: the lifetime peak (ru_maxrss, KiB on Linux, bytes on macOS)
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kb = kb / 1024 if sys.platform == "darwin" else kb
    return kb / 1024


def memory_child(build: Callable[[], Callable[[], None]], *, warmup: bool = True) -> None:
    """Body of a ``--_memory`` child: build, run once to warm up (lazy imports, allocator
    caches), reset the peak, run again, print the JSON result."""
    step = build()
    if warmup:
        step()
    reset = reset_peak_rss()
    base = rss_now_mb()
    step()
    peak = peak_rss_mb()
    print("MEMORY " + json.dumps({"base_mb": base, "peak_mb": peak, "extra_mb": peak - base,
                                  "peak_was_reset": reset}), flush=True)


def measure_memory(script: Path, name: str, extra_args: Sequence[str] = (),
                   timeout: float = 900) -> dict:
    """Run ``script --_memory name`` in a fresh interpreter and parse its report."""
    cmd = [sys.executable, str(script), "--_memory", name, *extra_args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("MEMORY "):
            return json.loads(line[len("MEMORY "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"error": tail[0][:200]}


def fmt_ms(seconds: float) -> str:
    ms = 1e3 * seconds
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}x"


def fmt_mb(d: dict) -> str:
    if "error" in d:
        return "error: " + d["error"]
    return f"{d['extra_mb']:.0f} (peak {d['peak_mb']:.0f})"


def save_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, default=str))
        print(f"results written to {path}")


def import_optional(name: str):
    """``(module, None)`` or ``(None, why not)`` for an optional comparison library."""
    try:
        module = __import__(name, fromlist=["_"])
    except Exception as exc:  # ImportError, or a broken dependency raising anything
        return None, f"not importable ({type(exc).__name__}: {str(exc)[:80]})"
    return module, None
