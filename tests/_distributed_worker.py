"""Rank processes of tests/test_distributed.py (spawned; importable by module name)."""

from __future__ import annotations

import contextlib
import os
import pickle
import time
import traceback
from datetime import timedelta

import numpy as np
import torch
from skorch.callbacks import Callback

from skmeta import MAMLClassifier, MAMLRegressor, ReptileRegressor, TaskSplit
from skmeta.datasets import make_sinusoid_tasks

TIMEOUT = timedelta(seconds=60)


def regression_tasks():
    return make_sinusoid_tasks(n_tasks=16, n_samples=12, random_state=0)


def classification_tasks():
    rng = np.random.default_rng(0)
    tasks = []
    for _ in range(14):
        centers = rng.normal(size=(3, 4)) * 3
        y = np.repeat(np.array(["a", "b", "c"])[rng.permutation(3)], 6)
        X = centers[np.repeat(np.arange(3), 6)] + rng.normal(size=(18, 4))
        tasks.append((X.astype(np.float32), y))
    return tasks


def scenarios(distributed: bool, checkpoint_dir: str | None = None) -> dict:
    """The estimators the equality test fits, on one process or on every rank.

    Every estimator of the shared contract (tests/test_contract.py) is included, so a new
    algorithm is checked under ``distributed=True`` as soon as it is under contract.
    """
    from sklearn.base import is_classifier
    from skorch.callbacks import Checkpoint, EarlyStopping
    from test_contract import ESTIMATORS

    common = dict(random_state=3, verbose=0, distributed=distributed, max_epochs=2,
                  k_shot=4, module__hidden=(16, 16))
    callbacks = [EarlyStopping(patience=1, monitor="valid_loss")]
    if checkpoint_dir is not None:
        callbacks.append(Checkpoint(dirname=checkpoint_dir, monitor="valid_loss_best"))
    contract = {}
    for Est in ESTIMATORS:  # 5 tasks per meta-batch: ranks take 3 and 2 (the last batch: 1, 0)
        if is_classifier(Est()):
            contract[f"contract:{Est.__name__}"] = (
                Est(n_way=3, batch_size=5, **{**common, "k_shot": 2}), classification_tasks)
        else:
            contract[f"contract:{Est.__name__}"] = (Est(batch_size=5, **common), regression_tasks)
    return {
        **contract,
        # 7 tasks per meta-batch: ranks take 4 and 3
        "maml_second_order": (MAMLRegressor(batch_size=7, inner_steps=2, **common),
                              regression_tasks),
        "maml_first_order": (MAMLRegressor(batch_size=7, first_order=True, **common),
                             regression_tasks),
        "reptile": (ReptileRegressor(batch_size=5, inner_steps=3, lr=0.5, **common),
                    regression_tasks),
        # string labels, random label permutations, meta-validation + early stopping
        "classifier_validation": (MAMLClassifier(
            n_way=3, batch_size=3, train_split=TaskSplit(0.3, random_state=0),
            # inner_lr=0.01 (the previous default): its validation loss stalls, so that
            # EarlyStopping(patience=1) stops it within 4 epochs, on every rank together
            callbacks=callbacks, inner_lr=0.01, **{**common, "max_epochs": 4, "k_shot": 2}),
            classification_tasks),
    }


def summary(net) -> dict:
    params = {k: v.detach().cpu().clone() for k, v in net.module_.state_dict().items()}
    params.update({f"inner_state_.{k}": v.detach().cpu().clone()
                   for k, v in net.inner_state_.state_dict().items()})
    return {"params": params,
            "train_loss": list(net.history[:, "train_loss"]),
            "valid_loss": [r.get("valid_loss") for r in net.history],
            "epochs": len(net.history)}


def _init(rank: int, world: int, store: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                                         world_size=world, timeout=TIMEOUT)


@contextlib.contextmanager
def _reporting(out: str):
    """Yield this rank's result dict; record any exception; write the dict to ``out``."""
    result: dict = {}
    try:
        yield result
    except BaseException:
        result["error"] = traceback.format_exc()
    finally:
        with open(out, "wb") as f:
            pickle.dump(result, f)


def _failure(fit) -> tuple | None:
    """``(exception name, message, seconds)`` of ``fit()``, or None when it succeeds."""
    t0 = time.perf_counter()
    try:
        fit()
    except Exception as exc:
        return type(exc).__name__, str(exc), time.perf_counter() - t0
    return None


def _leave() -> None:
    torch.distributed.barrier()  # leave together (gloo aborts a process left alone)
    torch.distributed.destroy_process_group()


class _FailingMAML(MAMLRegressor):
    """Rank 1 raises in its third meta-step."""

    def get_meta_gradient(self, batch, engine):
        self.calls_ = getattr(self, "calls_", 0) + 1
        if torch.distributed.get_rank() == 1 and self.calls_ == 3:
            raise ValueError("injected failure on rank 1")
        return super().get_meta_gradient(batch, engine)


def equality_and_failure(rank: int, world: int, store: str, out: str) -> None:
    """Fit every scenario on this rank, then a run in which rank 1 raises."""
    with _reporting(out) as result:
        _init(rank, world, store)
        ckpt = os.path.join(os.path.dirname(out), f"checkpoints-rank{rank}")
        for name, (net, make) in scenarios(True, checkpoint_dir=ckpt).items():
            result[name] = summary(net.fit(make()))
        result["checkpoint_files"] = sorted(os.listdir(ckpt)) if os.path.isdir(ckpt) else []
        # a labelled pool without random_state: rank 0 draws the episodes' seed for all
        X, y = np.concatenate([t[0] for t in classification_tasks()]), \
            np.concatenate([np.char.add(t[1], str(i % 4)) for i, t in
                            enumerate(classification_tasks())])
        pooled = MAMLClassifier(n_way=3, k_shot=2, n_query=2, n_episodes=6, batch_size=3,
                                max_epochs=1, verbose=0, distributed=True).fit(X, y)
        episode = pooled._as_tasks(X, y)[0]
        result["pool"] = {"seed": pooled.seed_, "episode": episode[0], "labels": episode[1]}
        result["failure"] = _failure(lambda: _FailingMAML(
            batch_size=4, max_epochs=1, verbose=0, random_state=0,
            distributed=True).fit(regression_tasks()))
        _leave()


class _Dies(Callback):
    """Rank 1 exits abruptly in the second meta-batch."""

    def initialize(self):
        self.n_ = 0
        return self

    def on_batch_begin(self, net, **kwargs):
        self.n_ += 1
        if torch.distributed.get_rank() == 1 and self.n_ == 2:
            os._exit(7)


def dying_rank(rank: int, world: int, store: str, out: str) -> None:
    """Rank 1 dies; rank 0 must fail promptly instead of waiting for it."""
    with _reporting(out) as result:
        _init(rank, world, store)
        result["failure"] = _failure(lambda: MAMLRegressor(
            batch_size=4, max_epochs=3, verbose=0, random_state=0, distributed=True,
            callbacks=[("dies", _Dies())]).fit(regression_tasks()))


def accelerate_run(rank: int, world: int, port: int, out: str) -> None:
    """Meta-train under Accelerate (its own process group from the launcher's variables)."""
    with _reporting(out) as result:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                          LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(port))
        torch.set_num_threads(1)
        result["summary"] = summary(accelerated_maml(world).fit(regression_tasks()))
        _leave()


def accelerated_maml(world: int, **accelerator_kwargs):
    from accelerate import Accelerator

    from skmeta.parallel import AccelerateMixin

    class AcceleratedMAML(AccelerateMixin, MAMLRegressor):
        pass

    accelerator = Accelerator(cpu=True, **accelerator_kwargs)
    assert accelerator.num_processes == world, accelerator.num_processes
    return AcceleratedMAML(accelerator=accelerator, batch_size=7, inner_steps=2, max_epochs=2,
                           k_shot=4, random_state=3, verbose=0, module__hidden=(16, 16))
