"""Distributed meta-training (2 gloo processes on loopback) and Dask model selection."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import _distributed_worker as W
import numpy as np
import pytest
import torch

from skmeta import MAMLRegressor
from skmeta.data import MetaBatch
from skmeta.parallel import DistributedError, runs_on_rank, shard_bounds

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="torch.distributed is not available")

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
JOIN_TIMEOUT = 120  # seconds: a hang fails the test instead of blocking CI


def _spawn(target, args_for_rank, tmp_path):
    """Run ``target(rank, WORLD, *args, out)`` in WORLD fresh processes; return their results."""
    ctx = multiprocessing.get_context("spawn")
    outs = [str(tmp_path / f"rank{r}.pkl") for r in range(WORLD)]
    procs = [ctx.Process(target=target, args=(r, WORLD, *args_for_rank, outs[r]))
             for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(JOIN_TIMEOUT)
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    assert not hung, f"rank(s) {hung} still running after {JOIN_TIMEOUT} s"
    results = []
    for r, out in enumerate(outs):
        if os.path.exists(out):
            with open(out, "rb") as f:
                results.append(pickle.load(f))
        else:
            results.append({"exitcode": procs[r].exitcode})
    return results


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_same(a: dict, b: dict, atol=2e-5):
    assert a["epochs"] == b["epochs"]
    for k in a["params"]:
        torch.testing.assert_close(a["params"][k], b["params"][k], rtol=1e-4, atol=atol)
    np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=1e-4)
    if a["valid_loss"][0] is not None:
        np.testing.assert_allclose(a["valid_loss"], b["valid_loss"], rtol=1e-4)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    results = _spawn(W.equality_and_failure, (str(tmp / "store"),), tmp)
    for r, res in enumerate(results):
        assert "error" not in res, f"rank {r} failed:\n{res.get('error', res)}"
    return results


@pytest.mark.slow
@pytest.mark.parametrize("name", list(W.scenarios(False)))
def test_two_ranks_match_one_process(two_ranks, name):
    reference = W.summary(W.scenarios(False)[name][0].fit(W.scenarios(False)[name][1]()))
    rank0, rank1 = two_ranks[0][name], two_ranks[1][name]
    for k in rank0["params"]:  # every rank holds identical parameters, bit for bit
        assert torch.equal(rank0["params"][k], rank1["params"][k]), k
    assert rank0["train_loss"] == rank1["train_loss"]
    _assert_same(rank0, reference)


@pytest.mark.slow
def test_early_stopping_stops_every_rank_together(two_ranks):
    epochs = [res["classifier_validation"]["epochs"] for res in two_ranks]
    assert epochs[0] == epochs[1] < 4  # stopped early, on both ranks at once
    assert two_ranks[0]["classifier_validation"]["valid_loss"] == \
        two_ranks[1]["classifier_validation"]["valid_loss"]


@pytest.mark.slow
def test_unseeded_runs_share_rank_zero_seeds(two_ranks):
    a, b = two_ranks[0]["pool"], two_ranks[1]["pool"]
    assert a["seed"] == b["seed"]
    np.testing.assert_array_equal(a["episode"], b["episode"])
    np.testing.assert_array_equal(a["labels"], b["labels"])


@pytest.mark.slow
def test_only_rank_zero_writes_checkpoints(two_ranks):
    assert "params.pt" in two_ranks[0]["checkpoint_files"]
    assert two_ranks[1]["checkpoint_files"] == []


@pytest.mark.slow
def test_a_failing_rank_fails_every_rank_promptly(two_ranks):
    name0, msg0, seconds0 = two_ranks[0]["failure"]
    name1, msg1, seconds1 = two_ranks[1]["failure"]
    assert (name1, msg1) == ("ValueError", "injected failure on rank 1")
    assert name0 == "DistributedError" and "Rank(s) [1] failed" in msg0
    assert max(seconds0, seconds1) < 30


@pytest.mark.slow
def test_a_dying_rank_does_not_hang_the_others(tmp_path):
    results = _spawn(W.dying_rank, (str(tmp_path / "store"),), tmp_path)
    assert results[1] == {"exitcode": 7}
    name, msg, seconds = results[0]["failure"]
    assert name in {"RuntimeError", "DistributedError", "DistBackendError"}, (name, msg)
    assert seconds < 60


@pytest.mark.slow
def test_accelerate_two_processes_match_one_process(tmp_path):
    pytest.importorskip("accelerate")
    results = _spawn(W.accelerate_run, (_free_port(),), tmp_path)
    for r, res in enumerate(results):
        assert "error" not in res, f"rank {r} failed:\n{res.get('error', res)}"
    reference = W.summary(W.scenarios(False)["maml_second_order"][0].fit(W.regression_tasks()))
    for k in reference["params"]:
        assert torch.equal(results[0]["summary"]["params"][k], results[1]["summary"]["params"][k])
    _assert_same(results[0]["summary"], reference)


@pytest.mark.slow
def test_documented_torchrun_command_runs_the_example(tmp_path):
    # the command of docs/user_guide/scaling.rst, on 2 CPU processes
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           str(WORLD), str(ROOT / "examples" / "distributed_maml.py")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert run.stdout.count("MSE after adaptation") == 1  # rank 0 only
    assert run.stdout.count("train_loss") == 1  # skorch's log: rank 0 only
    line = run.stdout.split("100 new tasks: ")[1]
    mse, untrained = float(line.split()[0]), float(line.split("network: ")[1].split(")")[0])
    assert mse < 0.8 * untrained  # it learned


# ---------------------------------------------------------------- single process


@pytest.fixture
def accelerate_state():
    """Accelerate keeps one process-wide state; give each test a fresh one."""
    state = pytest.importorskip("accelerate.state")
    state.AcceleratorState._reset_state(reset_partial_state=True)
    yield
    state.AcceleratorState._reset_state(reset_partial_state=True)


def test_accelerate_single_process_matches_plain_estimator(accelerate_state):
    pytest.importorskip("accelerate")
    net = W.accelerated_maml(1).fit(W.regression_tasks())
    reference = W.scenarios(False)["maml_second_order"][0].fit(W.regression_tasks())
    for (k, a), b in zip(net.module_.state_dict().items(), reference.module_.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    adapted = net.adapt(*W.regression_tasks()[0])
    assert adapted.predict(W.regression_tasks()[0][0]).shape == (12,)


def test_accelerate_bf16_autocast_trains_close_to_float32(accelerate_state):
    net = W.accelerated_maml(1, mixed_precision="bf16").fit(W.regression_tasks())
    reference = W.scenarios(False)["maml_second_order"][0].fit(W.regression_tasks())
    np.testing.assert_allclose(net.history[:, "train_loss"], reference.history[:, "train_loss"],
                               rtol=2e-2)
    assert any(not torch.equal(a, b) for a, b in zip(net.module_.parameters(),
                                                     reference.module_.parameters()))


def test_skorch_accelerate_mixin_is_refused_with_the_fix(accelerate_state):
    from accelerate import Accelerator
    from skorch.hf import AccelerateMixin as SkorchAccelerateMixin

    class Wrong(SkorchAccelerateMixin, MAMLRegressor):
        pass

    with pytest.raises(TypeError, match="skmeta.parallel.AccelerateMixin"):
        Wrong(accelerator=Accelerator(cpu=True), verbose=0).fit(W.regression_tasks())


def test_accelerate_refuses_an_accelerator_blind_to_the_launch(monkeypatch, accelerate_state):
    net = W.accelerated_maml(1)  # made before the launcher's variables appear
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="cpu=True"):
        net.fit(W.regression_tasks())


def test_accelerate_refuses_fp16(monkeypatch, accelerate_state):
    pytest.importorskip("accelerate")
    net = W.accelerated_maml(1)
    # as Accelerator(mixed_precision="fp16") on a GPU sets it
    monkeypatch.setattr(type(net.accelerator), "mixed_precision", property(lambda s: "fp16"))
    with pytest.raises(ValueError, match="fp16"):
        net.fit(W.regression_tasks())


def test_accelerate_refuses_gradient_accumulation(monkeypatch, accelerate_state):
    pytest.importorskip("accelerate")
    net = W.accelerated_maml(1)
    monkeypatch.setattr(net.accelerator, "gradient_accumulation_steps", 4, raising=False)
    with pytest.raises(ValueError, match="batch_size"):
        net.fit(W.regression_tasks())


def test_distributed_without_process_group_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ValueError, match="torchrun"):
        MAMLRegressor(distributed=True, max_epochs=1, verbose=0).fit(W.regression_tasks())


def test_distributed_parameter_is_validated():
    with pytest.raises(ValueError, match="distributed"):
        MAMLRegressor(distributed="yes").fit(W.regression_tasks())


@pytest.mark.parametrize("n,world", [(8, 3), (7, 2), (2, 4), (0, 2), (25, 1)])
def test_shard_bounds_partition_the_meta_batch(n, world):
    bounds = [shard_bounds(n, r, world) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [b - a for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_meta_batch_shard_keeps_tasks_and_positions():
    net = MAMLRegressor(random_state=0, verbose=0, max_epochs=0).fit(W.regression_tasks())
    tasks = [(X[: 8 + (i % 2) * 2], y[: 8 + (i % 2) * 2])  # two shapes, interleaved
             for i, (X, y) in enumerate(W.regression_tasks()[:7])]
    batch = net.get_meta_batch(tasks, np.arange(7), np.random.default_rng(0), training=True)
    shard = batch.shard(2, 6)
    assert isinstance(shard, MetaBatch) and len(shard) == 4 and shard.indices == [2, 3, 4, 5]
    flat = {}
    for positions, b in shard.groups:
        for j, p in enumerate(positions):
            flat[p] = b.X_support[j]
    for p in range(4):
        _, full = next((pos, b) for pos, b in batch.groups if p + 2 in pos)
        j = [pos for pos, b in batch.groups if p + 2 in pos][0].index(p + 2)
        assert torch.equal(flat[p], full.X_support[j])


def test_runs_on_rank_respects_own_attribute():
    from skorch.callbacks import Checkpoint, EarlyStopping, PrintLog

    assert not runs_on_rank(PrintLog(), 1) and runs_on_rank(PrintLog(), 0)
    assert runs_on_rank(EarlyStopping(), 3)
    cp = Checkpoint()
    cp.rank_zero_only = False
    assert runs_on_rank(cp, 1)
    assert issubclass(DistributedError, RuntimeError)


# ------------------------------------------------------------------------ Dask


@pytest.mark.slow
def test_grid_search_on_dask_local_cluster_matches_local_run():
    distributed = pytest.importorskip("distributed")
    import joblib
    from sklearn.model_selection import GridSearchCV, cross_val_score

    tasks = W.regression_tasks()

    def search():
        return GridSearchCV(
            MAMLRegressor(max_epochs=2, batch_size=4, random_state=0, verbose=0,
                          module__hidden=(16, 16)),
            {"inner_lr": [0.001, 0.01, 0.1]}, cv=2, n_jobs=-1)

    def cv(n_jobs):
        return cross_val_score(MAMLRegressor(max_epochs=1, batch_size=4, random_state=0,
                                             verbose=0), tasks, cv=3, n_jobs=n_jobs)

    local, local_cv = search().fit(tasks), cv(1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client, joblib.parallel_backend("dask"):
        remote, remote_cv = search().fit(tasks), cv(-1)
        workers = client.run(os.getpid)  # two worker processes, not this one
    assert len(set(workers.values()) - {os.getpid()}) == 2
    assert remote.best_params_ == local.best_params_
    np.testing.assert_allclose(remote.cv_results_["mean_test_score"],
                               local.cv_results_["mean_test_score"], rtol=1e-4)
    np.testing.assert_allclose(remote_cv, local_cv, rtol=1e-4)
