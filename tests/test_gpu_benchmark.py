"""The GPU benchmark script: it runs on a CPU as a smoke test and refuses CUDA cleanly."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def _load():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return gpu


def test_gpu_benchmark_runs_on_a_cpu_and_its_engines_agree(capsys):
    gpu = _load()
    out = gpu.main(["--device", "cpu", "--quick", "--configs", "sinusoid-25",
                    "--rounds", "1", "--iterations", "1"])
    res = out["results"]["sinusoid-25"]
    assert set(res["median_s"]) == {"batched", "vmap", "loop", "plain loop"}
    assert all(t > 0 for t in res["median_s"].values())
    assert res["max_rel_grad_diff"] < 1e-4  # float32, one inner step
    assert "| sinusoid-25 | 25 |" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_gpu_benchmark_refuses_cuda_when_absent():
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda", "--quick"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "CUDA is not available here" in done.stderr and "--device cpu" in done.stderr
