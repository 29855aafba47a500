"""The reference runs that pin today's numbers: meta-gradients and model files.

``python tests/_reference.py`` wrote ``tests/data/reference/``
with skmeta 0.1.0.dev0 as released on 2026-12-01 (commit 23e3c5f), before the package
was reorganised into folders; ``tests/test_reference_release.py`` checks that the
current code reproduces those numbers and loads those files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

import skmeta
from skmeta.datasets import make_sinusoid_tasks
from skmeta.modules import MLP, ConvNet

HERE = Path(__file__).resolve().parent / "data" / "reference"


class DoubleMLP(MLP):
    """A float64 MLP, to compare meta-gradients to rounding error."""

    def __init__(self, in_features=None, n_outputs=None, **kwargs):
        super().__init__(in_features, n_outputs, **kwargs)
        self.double()


class DoubleConvNet(ConvNet):
    """A float64 ConvNet with skmeta's BatchNorm."""

    def __init__(self, n_outputs=None, **kwargs):
        super().__init__(n_outputs, **kwargs)
        self.double()


def conv_pool(n_classes=8, per_class=4, size=8, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), per_class)
    X = rng.normal(size=(len(y), 1, size, size)) + (y % 3)[:, None, None, None]
    return X, y


REGRESSORS = {
    "maml": ("MAMLRegressor", {}),
    "fomaml": ("MAMLRegressor", {"first_order": True}),
    "metasgd": ("MetaSGDRegressor", {}),
    "anil": ("ANILRegressor", {}),
    "mamlpp": ("MAMLPlusPlusRegressor", {"inner_steps": 2, "max_epochs": 2,
                                         "first_order_epochs": 1, "multi_step_loss_epochs": 1,
                                         "lr": 0.005}),
    "r2d2": ("R2D2Regressor", {}),
    "reptile": ("ReptileRegressor", {"inner_steps": 2}),
    "pretrained": ("PretrainedRegressor", {}),
}
CLASSIFIERS = {
    "maml": ("MAMLClassifier", {}),
    "metasgd": ("MetaSGDClassifier", {}),
    "anil": ("ANILClassifier", {}),
    "mamlpp": ("MAMLPlusPlusClassifier", {"inner_steps": 2, "max_epochs": 2,
                                          "first_order_epochs": 1,
                                          "multi_step_loss_epochs": 1}),
    "r2d2": ("R2D2Classifier", {}),
    "reptile": ("ReptileClassifier", {"inner_steps": 2}),
    "pretrained": ("PretrainedClassifier", {}),
}
SGD = dict(optimizer=torch.optim.SGD, lr=0.05, verbose=0, random_state=0)


def mlp_run(name: str, engine: str) -> dict[str, np.ndarray]:
    """Meta-parameters after two epochs of four meta-updates of plain SGD (sinusoid MLP)."""
    cls, kw = REGRESSORS[name]
    tasks = make_sinusoid_tasks(n_tasks=16, n_samples=12, random_state=0)
    est = getattr(skmeta, cls)(**{**SGD, "module": DoubleMLP, "module__hidden": [8, 8],
                                  "k_shot": 5, "batch_size": 4, "max_epochs": 2,
                                  "inner_lr": 0.05, "engine": engine, **kw}).fit(tasks)
    return _state(est)


def conv_run(name: str, engine: str) -> dict[str, np.ndarray]:
    """Meta-parameters after two epochs on a small float64 ConvNet pool (3-way 1-shot)."""
    cls, kw = CLASSIFIERS[name]
    X, y = conv_pool()
    est = getattr(skmeta, cls)(**{**SGD, "module": DoubleConvNet, "module__n_filters": 3,
                                  "module__n_blocks": 2, "module__image_size": 8, "n_way": 3,
                                  "k_shot": 1, "n_query": 2, "n_episodes": 6, "batch_size": 3,
                                  "max_epochs": 2, "inner_lr": 0.1, "engine": engine,
                                  **kw}).fit(X, y)
    return _state(est)


def _state(est) -> dict[str, np.ndarray]:
    out = {f"module_.{k}": v.detach().numpy().copy()
           for k, v in est.module_.state_dict().items()}
    out.update({f"inner_state_.{k}": v.detach().numpy().copy()
                for k, v in est.inner_state_.state_dict().items()})
    return out


RUNS = [("mlp", n, e) for n in REGRESSORS for e in ("loop", "vmap", "batched")] + \
    [("conv", n, e) for n in CLASSIFIERS for e in ("loop", "vmap")]


def saved_models() -> dict:
    """Fitted models whose safe-format files and predictions are pinned."""
    tasks = make_sinusoid_tasks(n_tasks=40, n_samples=20, random_state=0)
    data = inputs()
    Xp, labels = data["Xp"], data["labels"]
    fit = dict(max_epochs=2, verbose=0, random_state=0)
    models = {
        "maml": skmeta.MAMLRegressor(module__hidden=[16, 16], k_shot=10, **fit).fit(tasks),
        "metasgd": skmeta.MetaSGDRegressor(module__hidden=[16, 16], k_shot=10,
                                           **fit).fit(tasks),
        "r2d2": skmeta.R2D2Regressor(module__hidden=[16, 16], k_shot=10, **fit).fit(tasks),
        "anil_clf": skmeta.ANILClassifier(module__hidden=[16], n_way=3, k_shot=2, n_query=3,
                                          n_episodes=20, inner_lr=0.3, **fit).fit(Xp, labels),
    }
    return {"models": models, **data}


def inputs() -> dict:
    """A new sinusoid task and a labelled pool, to adapt the saved models to."""
    X, y = make_sinusoid_tasks(n_tasks=1, n_samples=20, random_state=1)[0]
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(12), 8)
    Xp = (rng.normal(scale=3.0, size=(12, 4))[labels] + rng.normal(size=(96, 4)))
    return {"X": X, "y": y, "Xp": Xp.astype(np.float32), "labels": labels}


def predictions(name: str, est, data: dict) -> np.ndarray:
    """What a model of ``saved_models`` predicts (the adapted model, for a meta-learner)."""
    if name == "anil_clf":
        support = np.r_[0:2, 8:10, 16:18]
        return est.adapt(data["Xp"][support], data["labels"][support]).predict_proba(
            data["Xp"][:24])
    X, y = data["X"], data["y"]
    return est.adapt(X[:10], y[:10]).predict(X[10:])


def main() -> None:  # pragma: no cover - run by hand to (re)write the reference
    HERE.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    arrays = {}
    for net, name, engine in RUNS:
        state = (mlp_run if net == "mlp" else conv_run)(name, engine)
        arrays.update({f"{net}/{name}/{engine}/{k}": v for k, v in state.items()})
    np.savez_compressed(HERE / "meta_parameters.npz", **arrays)
    data = saved_models()
    preds = {}
    for name, est in data["models"].items():
        est.save(HERE / f"{name}.skmeta")
        adapted = est.adapt(data["X"][:10], data["y"][:10]) if name != "anil_clf" else None
        if adapted is not None:
            adapted.save(HERE / f"{name}_adapted.skmeta")
        preds[name] = predictions(name, est, data)
    np.savez_compressed(HERE / "predictions.npz", **preds)
    (HERE / "README.md").write_text(
        "Written by `python tests/_reference.py` with skmeta " + skmeta.__version__ +
        " at commit 23e3c5f (2026-12-01 release), before the reorganisation into folders.\n"
        "`meta_parameters.npz`: meta-parameters after two epochs of plain SGD, per algorithm and "
        "engine (float64).\n`*.skmeta`: safe-format files; `predictions.npz`: what they predict.\n")
    print(json.dumps({"runs": len(RUNS), "arrays": len(arrays)}), file=sys.stderr)


if __name__ == "__main__":
    main()
