"""Run every benchmark, one fresh process each, then print all result tables together.

Usage (from the repository root)::

    python -m benchmarks                 # the default run (about 14 minutes on 2 cores)
    python -m benchmarks --quick         # a smoke run (about 2 minutes)
    python -m benchmarks --only sinusoid,adapt --json-dir /tmp/bench
    python -m benchmarks --only gpu      # the GPU table (benchmarks/gpu.py; needs CUDA)
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("sinusoid", "conv", "adapt", "distributed")
ON_REQUEST = ("gpu",)  # run only when named in --only


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="pass --quick to every script")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--only", default=",".join(SCRIPTS),
                   help=f"comma-separated subset of {', '.join(SCRIPTS)}")
    p.add_argument("--json-dir", default=None,
                   help="keep each script's JSON results here (default: a temporary folder)")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SCRIPTS) - set(ON_REQUEST))
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from "
                f"{', '.join(SCRIPTS + ON_REQUEST)}")
    json_dir = Path(args.json_dir) if args.json_dir else Path(tempfile.mkdtemp(prefix="skmeta-"))
    json_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    failed = []
    for name in names:
        cmd = [sys.executable, str(HERE / f"{name}.py"), "--threads", str(args.threads),
               "--json", str(json_dir / f"{name}.json")] + (["--quick"] if args.quick else [])
        print(f"\n=== {shlex.join(cmd)}", flush=True)
        if subprocess.run(cmd).returncode != 0:
            failed.append(name)
    print("\n\n======================== summary of all benchmarks ========================")
    for name in names:
        path = json_dir / f"{name}.json"
        if not path.is_file():
            print(f"\n## {name}: no results (the script failed)")
            continue
        res = json.loads(path.read_text())
        info = res["info"]
        print(f"\n## {name}  (torch {info['torch']}, {info['torch_threads']} thread(s), "
              f"{info['cpu']}, {info['cpu_count']} cores, load {info['load_avg_1min_at_start']}"
              f" at start)\n")
        print(res["table"])
    print(f"\nall benchmarks: {time.perf_counter() - t0:.0f} s; JSON results in {json_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
