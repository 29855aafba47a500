"""Few-shot accuracy on Omniglot: MAML, first-order MAML, Reptile and a pre-training baseline.

Meta-train on the 5 alphabets of Omniglot's ``background_small1`` set (136
characters, x4 with rotations by 0/90/180/270 degrees as new classes, as in
Finn et al. 2017) and meta-test on the alphabets of ``background_small2`` that
small1 lacks (Japanese_(katakana), Sanskrit, Tagalog: 106 characters, no
rotation), so test alphabets are never seen in training.

Every model is scored on the same 600 test episodes per setting (fixed seeds):
5-way 1-shot, 5-way 5-shot, 20-way 1-shot (classes from any test alphabet) and
20-way 1-shot within one alphabet (Lake et al.'s harder protocol; Tagalog has
only 17 characters, so these episodes come from Katakana and Sanskrit). The
accuracy is reported as mean +- 1.96 * std / sqrt(n) over episodes (std with
ddof=0, as in Finn et al.'s code).

One model per algorithm is trained, 5-way. It is used as it is for the 5-way
settings; for 20-way episodes its 5-row output layer is replaced by 20 copies
of the mean of its rows (weights and biases), so that all classes start equal
and the adaptation steps separate them (the "single shared head" of Ye & Chao,
2022, "How to train your MAML to excel in few-shot classification"). Finn et
al. instead train a separate 20-way model.

The pre-training baseline trains the same ConvNet as an ordinary classifier of
all rotated training characters (544 classes). At test time its output layer is
replaced by a fresh, zero-initialised n_way head that is fine-tuned on the
support set (head only, the convolutional features stay frozen) with Adam;
features are computed with the batch statistics of the set they come from, as
the meta-learners' batch norm does.

Raw-pixel baselines, with no training at all, are scored on the same test
episodes: 1-nearest-neighbour (each query image takes the class of the closest
support image) and nearest centroid (the class whose mean support image is
closest), each with the cosine distance (Vinyals et al. 2016's "pixels" baseline)
and with the Euclidean distance, on the 28x28 images flattened to 784 values.
With one shot per class the two rules coincide. ``--baselines-only`` runs them
alone (a minute; no training).

Usage (from the repository root)::

    SKMETA_DATA=../shared/data python benchmarks/omniglot.py --config cpu --minutes 25 \\
        --jobs 2 --out benchmarks/results/omniglot_cpu

    SKMETA_DATA=../shared/data python benchmarks/omniglot.py --config gpu --minutes 10 \\
        --out benchmarks/results/omniglot_gpu

    SKMETA_DATA=../shared/data python benchmarks/omniglot.py --baselines-only \\
        --out benchmarks/results/omniglot_pixels

``--out PREFIX`` writes ``PREFIX.json`` and ``PREFIX.md``. ``--config cpu``
trains each model for ``--minutes`` of wall-clock time with a narrow network
(32 filters), small meta-batches and few query examples; ``--config gpu`` uses
the paper's settings (64 filters, meta-batch 32, 15 queries, inner lr 0.4, one
inner step) on ``device="cuda"``. ``--jobs 2`` trains two models at a time in
separate processes with one thread each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from multiprocessing import get_context

import numpy as np
import torch
from skorch.callbacks import Callback

# run from a checkout without installing skmeta
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skmeta import (
    ANILClassifier,
    EpisodeSampler,
    MAMLClassifier,
    MAMLPlusPlusClassifier,
    MetaSGDClassifier,
    R2D2Classifier,
    ReptileClassifier,
)
from skmeta.datasets import fetch_omniglot, rotate_classes
from skmeta.modules import ConvNet

MODELS = ("maml", "fomaml", "metasgd", "anil", "mamlpp", "r2d2", "reptile", "pretrain")
CLASSES = {"maml": MAMLClassifier, "fomaml": MAMLClassifier, "metasgd": MetaSGDClassifier,
           "anil": ANILClassifier, "mamlpp": MAMLPlusPlusClassifier, "r2d2": R2D2Classifier,
           "reptile": ReptileClassifier}
LABELS = {
    "metasgd": "Meta-SGD",
    "anil": "ANIL (head-only inner loop)",
    "mamlpp": "MAML++ (2 steps)",
    "r2d2": "R2-D2 (closed-form ridge head)",
    "maml": "MAML (second order)",
    "fomaml": "first-order MAML",
    "reptile": "Reptile",
    "pretrain": "pre-training + fine-tuned head",
}
# Raw-pixel baselines (no training): name -> (rule, distance)
BASELINES = {
    "pixels-1nn-cosine": ("1-NN", "cosine"),
    "pixels-1nn-euclidean": ("1-NN", "euclidean"),
    "pixels-centroid-cosine": ("nearest centroid", "cosine"),
    "pixels-centroid-euclidean": ("nearest centroid", "euclidean"),
}
for _name, (_rule, _dist) in BASELINES.items():
    LABELS[_name] = f"raw pixels, {_rule} ({_dist}), no training"

# Test settings: name -> (n_way, k_shot, n_query, within_alphabet).
SETTINGS = {
    "5-way 1-shot": (5, 1, 15, False),
    "5-way 5-shot": (5, 5, 15, False),
    "20-way 1-shot": (20, 1, 15, False),
    "20-way 1-shot within-alphabet": (20, 1, 15, True),
}

CONFIGS = {
    # Chosen by short trials on a 2-core CPU (see docs/benchmarks.md): a 32-filter
    # ConvNet, meta-batches of 8 tasks with 5 query examples per class, Finn et al.'s
    # inner step size 0.4 (one step in training, three at test).
    "cpu": {
        "device": "cpu",
        "n_filters": 32,
        "minutes": 20.0,
        "maml": dict(first_order=False, inner_lr=0.4, inner_steps=1, adapt_steps=3,
                     batch_size=8, k_shot=1, n_query=5, lr=1e-3),
        "fomaml": dict(first_order=True, inner_lr=0.4, inner_steps=1, adapt_steps=3,
                       batch_size=8, k_shot=1, n_query=5, lr=1e-3),
        # Nichol et al.: meta-batch 5, 5 inner steps on 10 shots per class, outer step
        # size 1 annealed linearly to 0, many more steps at test.
        "reptile": dict(inner_lr=0.1, inner_steps=5, adapt_steps=20, batch_size=5,
                        k_shot=5, n_query=1, lr=1.0, anneal=True),
        "pretrain": dict(batch_size=32, lr=1e-3, head_steps=100, head_lr=0.01),
        # the refinements, with MAML's settings where they have one; not tuned
        "metasgd": dict(inner_lr=0.4, inner_steps=1, adapt_steps=1, batch_size=8, k_shot=1,
                        n_query=5, lr=1e-3),
        "anil": dict(inner_lr=0.4, inner_steps=1, adapt_steps=3, batch_size=8, k_shot=1,
                     n_query=5, lr=1e-3),
        # MAML++ with 2 inner steps (its recipe's 5 are 5 second-order steps: too slow for
        # a CPU budget); epochs of 100 meta-iterations for its schedules
        "mamlpp": dict(inner_lr=0.4, inner_steps=2, adapt_steps=2, batch_size=8, k_shot=1,
                       n_query=5, lr=1e-3, multi_step_loss_epochs=10, first_order_epochs=10,
                       cosine_annealing=False, epoch_iterations=100),
        "r2d2": dict(inner_steps=1, adapt_steps=1, batch_size=8, k_shot=1, n_query=5,
                     lr=1e-3),
    },
    # Finn et al. (2017), Omniglot 5-way: 64 filters, meta-batch 32, one inner step of
    # 0.4, 15 query examples per class; tested with 3 steps of 0.4 (the reference code,
    # cbfinn/maml main.py, evaluates Omniglot with test_num_updates = 10).
    "gpu": {
        "device": "cuda",
        "n_filters": 64,
        "minutes": 10.0,
        "maml": dict(first_order=False, inner_lr=0.4, inner_steps=1, adapt_steps=3,
                     batch_size=32, k_shot=1, n_query=15, lr=1e-3),
        "fomaml": dict(first_order=True, inner_lr=0.4, inner_steps=1, adapt_steps=3,
                       batch_size=32, k_shot=1, n_query=15, lr=1e-3),
        "reptile": dict(inner_lr=0.1, inner_steps=5, adapt_steps=20, batch_size=5,
                        k_shot=10, n_query=1, lr=1.0, anneal=True),
        "pretrain": dict(batch_size=64, lr=1e-3, head_steps=100, head_lr=0.01),
        "metasgd": dict(inner_lr=0.4, inner_steps=1, adapt_steps=1, batch_size=32, k_shot=1,
                        n_query=15, lr=1e-3),
        "anil": dict(inner_lr=0.4, inner_steps=1, adapt_steps=3, batch_size=32, k_shot=1,
                     n_query=15, lr=1e-3),
        "mamlpp": dict(inner_lr=0.1, inner_steps=5, adapt_steps=5, batch_size=32, k_shot=1,
                       n_query=15, lr=1e-3, multi_step_loss_epochs=10, first_order_epochs=10,
                       cosine_annealing=False, epoch_iterations=100),
        "r2d2": dict(inner_steps=1, adapt_steps=1, batch_size=32, k_shot=1, n_query=15,
                     lr=1e-3),
    },
}

TRAIN_SUBSET = "background_small1"
TEST_SUBSET = "background_small2"


# ---------------------------------------------------------------------------
# data


def load_data(data_home=None):
    """Rotated training characters of small1; small2's alphabets absent from small1."""
    train = fetch_omniglot(subset=TRAIN_SUBSET, data_home=data_home)
    test = fetch_omniglot(subset=TEST_SUBSET, data_home=data_home)
    X_train, y_train, g_train = rotate_classes(train.images, train.target,
                                               groups=train.alphabet)
    keep = ~np.isin(test.alphabet, np.unique(train.alphabet))
    return {
        "X_train": X_train, "y_train": y_train, "g_train": g_train,
        "X_test": test.images[keep], "y_test": test.target[keep],
        "g_test": test.alphabet[keep],
        "train_alphabets": sorted(np.unique(train.alphabet).tolist()),
        "test_alphabets": sorted(np.unique(test.alphabet[keep]).tolist()),
    }


def test_episodes(data, setting, n_episodes, seed):
    n_way, k_shot, n_query, within = SETTINGS[setting]
    offset = list(SETTINGS).index(setting)
    return EpisodeSampler(data["X_test"], data["y_test"], n_way=n_way, k_shot=k_shot,
                          n_query=n_query, n_episodes=n_episodes,
                          groups=data["g_test"] if within else None, within_groups=within,
                          random_state=seed + offset)


def summarise(scores):
    scores = np.asarray(scores, dtype=float)
    return {"mean": float(scores.mean()),
            "ci95": float(1.96 * scores.std() / np.sqrt(len(scores))),
            "n_episodes": int(len(scores))}


# ---------------------------------------------------------------------------
# training with a wall-clock budget


class TimeBudget(Callback):
    """Stop skorch's fit after ``seconds`` (skorch ends fit cleanly on KeyboardInterrupt).

    Counts meta-iterations, prints progress every ``print_every`` seconds and, with
    ``anneal``, lowers the outer learning rate linearly to 0 over the budget (Reptile).
    """

    def __init__(self, seconds, name="", anneal=False, print_every=60.0, curve=None,
                 curve_every=None):
        self.seconds = seconds
        self.name = name
        self.anneal = anneal
        self.print_every = print_every
        self.curve = curve  # callable(net) -> accuracy, for accuracy-vs-time curves
        self.curve_every = curve_every

    def on_train_begin(self, net, **kwargs):
        self.t0_ = time.perf_counter()
        self.last_print_ = self.t0_
        self.iterations_ = 0
        self.losses_ = []
        self.lr0_ = net.lr
        self.points_ = []  # (training seconds, meta-iterations, accuracy)
        self.next_point_ = self.curve_every

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        if training and self.anneal:
            frac = min(1.0, (time.perf_counter() - self.t0_) / self.seconds)
            for group in net.optimizer_.param_groups:
                group["lr"] = self.lr0_ * (1.0 - frac)

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        if not training:
            return
        self.iterations_ += 1
        loss = kwargs.get("loss")
        if loss is not None:
            self.losses_.append(float(loss))
        now = time.perf_counter()
        if self.curve is not None and now - self.t0_ >= self.next_point_:
            # evaluated outside the budget: the clock is moved past the evaluation
            accuracy = self.curve(net)
            self.points_.append((round(now - self.t0_, 1), self.iterations_, accuracy))
            self.next_point_ += self.curve_every
            spent = time.perf_counter() - now
            self.t0_ += spent
            self.last_print_ += spent
            now = time.perf_counter()
        if now - self.last_print_ >= self.print_every:
            self.last_print_ = now
            recent = np.mean(self.losses_[-50:]) if self.losses_ else float("nan")
            print(f"[{self.name}] {now - self.t0_:7.0f} s  {self.iterations_:6d} meta-iterations"
                  f"  query loss (last 50) {recent:.3f}", flush=True)
        if now - self.t0_ >= self.seconds:
            raise KeyboardInterrupt


def train_meta(name, cfg, data, seconds, seed, device, curve_every=None):
    params = dict(cfg[name])
    anneal = params.pop("anneal", False)
    epoch_iterations = params.pop("epoch_iterations", None)
    k_shot, n_query, batch_size = params["k_shot"], params["n_query"], params["batch_size"]
    cls = CLASSES[name]
    episodes = test_episodes(data, "5-way 1-shot", 100, 99)  # for the curve only

    def curve(net):
        return float(np.mean(net.score_tasks(episodes)))

    budget = TimeBudget(seconds, name=name, anneal=anneal,
                        curve=curve if curve_every else None, curve_every=curve_every)
    # One epoch of (practically) unlimited distinct episodes, the budget ends it; or, for
    # schedules counted in epochs, epochs of epoch_iterations meta-iterations.
    per_epoch = batch_size * (epoch_iterations or 1_000_000)
    clf = cls(module=ConvNet, module__n_filters=cfg["n_filters"], n_way=5,
              max_epochs=1 if epoch_iterations is None else 1_000_000,
              callbacks=[("budget", budget)], verbose=0, random_state=seed, device=device,
              n_episodes=per_epoch, **params)
    tasks = EpisodeSampler(data["X_train"], data["y_train"], n_way=5, k_shot=k_shot,
                           n_query=n_query, n_episodes=per_epoch, random_state=seed)
    t0 = time.perf_counter()
    clf.fit(tasks)
    train_seconds = time.perf_counter() - t0
    info = {"algorithm": cls.__name__, "n_filters": cfg["n_filters"], "n_way_trained": 5,
            **{k: v for k, v in cfg[name].items()}, "outer_optimizer": clf.optimizer.__name__,
            "meta_iterations": budget.iterations_,
            "train_seconds": round(budget.seconds if budget.points_ else train_seconds, 1),
            "ms_per_meta_iteration": round(1e3 * budget.seconds / max(budget.iterations_, 1), 1),
            "final_query_loss_last50": float(np.mean(budget.losses_[-50:])),
            "curve": budget.points_, "engine": dict(getattr(clf, "engine_", {}))}
    return clf, info


def adapt_milliseconds(clf, data, n=50, seed=7):
    """Mean wall time of one ``adapt`` on a 5-way 1-shot support set (after a warm-up)."""
    tasks = test_episodes(data, "5-way 1-shot", n + 1, seed)
    clf.adapt(tasks[0].X_support, tasks[0].y_support)
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        clf.adapt(tasks[i].X_support, tasks[i].y_support)
    return round(1e3 * (time.perf_counter() - t0) / n, 2)


def widen_head(clf, n_way):
    """A copy of a fitted meta-learner with ``n_way`` outputs, all equal to the mean row.

    The head's learned inner rates (Meta-SGD) are widened the same way. R2-D2 needs no
    widening: its head is solved for any number of classes.
    """
    if n_way == clf.n_way or isinstance(clf, R2D2Classifier):
        return clf
    from sklearn.base import clone

    wide = clone(clf).set_params(n_way=n_way, callbacks=None)
    wide.input_shape_ = clf.input_shape_
    wide.n_outputs_ = n_way
    wide.initialize()

    def widened(state, prefixes):
        out = {}
        for k, v in state.items():
            v = v.detach().clone()
            if k.startswith(prefixes) and v.dim() and v.shape[0] == clf.n_way:
                v = v.mean(0, keepdim=True).expand(n_way, *v.shape[1:])
            out[k] = v.contiguous()
        return out

    wide.module_.load_state_dict(widened(clf.module_.state_dict(), ("head.",)))
    wide.inner_state_.load_state_dict(widened(clf.inner_state_.state_dict(), ("values.head/",)))
    return wide


def evaluate_meta(clf, data, n_episodes, seed):
    results = {}
    for setting, (n_way, *_rest) in SETTINGS.items():
        t0 = time.perf_counter()
        model = widen_head(clf, n_way)
        scores = model.score_tasks(test_episodes(data, setting, n_episodes, seed))
        results[setting] = {**summarise(scores),
                            "eval_seconds": round(time.perf_counter() - t0, 1),
                            "head": "trained 5-way head" if n_way == clf.n_way
                            else "5-way head widened to 20 (mean row)"}
    return results


# ---------------------------------------------------------------------------
# the pre-training baseline (plain PyTorch)


def train_pretrain(cfg, data, seconds, seed, device):
    params = cfg["pretrain"]
    X = torch.as_tensor(data["X_train"], device=device)
    classes, y = np.unique(data["y_train"], return_inverse=True)
    y = torch.as_tensor(y, device=device)
    torch.manual_seed(seed)
    net = ConvNet(n_outputs=len(classes), n_filters=cfg["n_filters"]).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=params["lr"])
    rng = np.random.default_rng(seed)
    steps, losses = 0, []
    t0 = last = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        idx = torch.as_tensor(rng.choice(len(X), params["batch_size"], replace=False),
                              device=device)
        loss = torch.nn.functional.cross_entropy(net(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
        losses.append(loss.item())
        if time.perf_counter() - last >= 60:
            last = time.perf_counter()
            print(f"[pretrain] {last - t0:7.0f} s  {steps:6d} steps  "
                  f"train loss (last 50) {np.mean(losses[-50:]):.3f}", flush=True)
    info = {"algorithm": "pre-training (plain PyTorch, Adam, cross-entropy)",
            "n_filters": cfg["n_filters"], "n_classes": len(classes), **params,
            "steps": steps, "train_seconds": round(time.perf_counter() - t0, 1),
            "final_train_loss_last50": float(np.mean(losses[-50:])),
            "fine_tuning": "fresh zero-initialised n_way head, head only, Adam, full batch"}
    return net, info


def evaluate_pretrain(net, cfg, data, n_episodes, seed, device):
    params = cfg["pretrain"]
    results = {}
    net.eval()
    for setting, (n_way, *_rest) in SETTINGS.items():
        t0 = time.perf_counter()
        scores = []
        episodes = test_episodes(data, setting, n_episodes, seed)
        for start in range(0, n_episodes, 100):
            feats_s, feats_q, ys, yq = [], [], [], []
            with torch.no_grad():
                for task in episodes[start:start + 100]:
                    classes, s_enc = np.unique(task.y_support, return_inverse=True)
                    q_enc = np.searchsorted(classes, task.y_query)
                    # each set normalised with its own batch statistics (as in MAML)
                    feats_s.append(net.features(torch.as_tensor(task.X_support,
                                                                device=device)).flatten(1))
                    feats_q.append(net.features(torch.as_tensor(task.X_query,
                                                                device=device)).flatten(1))
                    ys.append(torch.as_tensor(s_enc, device=device))
                    yq.append(torch.as_tensor(q_enc, device=device))
            fs, fq = torch.stack(feats_s), torch.stack(feats_q)
            ys_t, yq_t = torch.stack(ys), torch.stack(yq)
            n_tasks, dim = fs.shape[0], fs.shape[-1]
            W = torch.zeros(n_tasks, dim, n_way, device=device, requires_grad=True)
            b = torch.zeros(n_tasks, 1, n_way, device=device, requires_grad=True)
            opt = torch.optim.Adam([W, b], lr=params["head_lr"])
            for _ in range(params["head_steps"]):
                logits = torch.bmm(fs, W) + b
                # sum over tasks of each task's mean loss: the tasks are independent
                loss = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, n_way), ys_t.reshape(-1), reduction="sum") / fs.shape[1]
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                pred = (torch.bmm(fq, W) + b).argmax(-1)
                scores += (pred == yq_t).float().mean(1).cpu().tolist()
        results[setting] = {**summarise(scores),
                            "eval_seconds": round(time.perf_counter() - t0, 1),
                            "head": f"fresh {n_way}-way head fine-tuned on the support set"}
    return results


# ---------------------------------------------------------------------------
# raw-pixel baselines (no training)


def pixel_predictions(task, rule, distance):
    """Labels predicted for ``task.X_query`` from its support set, on flattened pixels."""
    Xs = task.X_support.reshape(len(task.X_support), -1).astype(np.float64)
    Xq = task.X_query.reshape(len(task.X_query), -1).astype(np.float64)
    ys = np.asarray(task.y_support)
    if rule == "nearest centroid":
        labels = np.unique(ys)
        if distance == "cosine":  # the mean of the unit-length support images
            Xs = Xs / np.maximum(np.linalg.norm(Xs, axis=1, keepdims=True), 1e-12)
        Xs = np.stack([Xs[ys == c].mean(0) for c in labels])
        ys = labels
    if distance == "cosine":
        Xs = Xs / np.maximum(np.linalg.norm(Xs, axis=1, keepdims=True), 1e-12)
        Xq = Xq / np.maximum(np.linalg.norm(Xq, axis=1, keepdims=True), 1e-12)
        d = -Xq @ Xs.T
    else:
        d = (Xq ** 2).sum(1)[:, None] - 2 * Xq @ Xs.T + (Xs ** 2).sum(1)[None, :]
    return ys[np.argmin(d, axis=1)]


def run_baseline(name, data, n_episodes, seed):
    """Score one raw-pixel baseline on every test setting (``data``: :func:`load_data`)."""
    rule, distance = BASELINES[name]
    results = {}
    t_all = time.perf_counter()
    for setting in SETTINGS:
        t0 = time.perf_counter()
        scores = [float(np.mean(pixel_predictions(task, rule, distance) == task.y_query))
                  for task in test_episodes(data, setting, n_episodes, seed)]
        results[setting] = {**summarise(scores),
                            "eval_seconds": round(time.perf_counter() - t0, 1),
                            "head": f"{rule}, {distance} distance on 784 raw pixels"}
    info = {"algorithm": f"{rule} on raw pixels ({distance} distance)", "train_seconds": 0.0,
            "training": "none", "eval_seconds": round(time.perf_counter() - t_all, 1)}
    print(f"[{name}] done: " + ", ".join(f"{s} {r['mean']:.3f}" for s, r in results.items()),
          flush=True)
    return {"name": name, "label": LABELS[name], "settings": info, "accuracy": results}


# ---------------------------------------------------------------------------
# driver


def run_model(job):
    """Train and evaluate one model (in a worker process with ``--jobs`` > 1)."""
    name, args = job["name"], job["args"]
    if args["threads"]:
        torch.set_num_threads(args["threads"])
    cfg = CONFIGS[args["config"]]
    device = args["device"] or cfg["device"]
    seconds = 60.0 * args["minutes"]
    data = load_data(args["data_home"])
    print(f"[{name}] training for {seconds:.0f} s on {device} "
          f"({torch.get_num_threads()} threads)", flush=True)
    if name == "pretrain":
        model, info = train_pretrain(cfg, data, seconds, args["seed"], device)
        t0 = time.perf_counter()
        results = evaluate_pretrain(model, cfg, data, args["test_episodes"],
                                    args["test_seed"], device)
    else:
        model, info = train_meta(name, cfg, data, seconds, args["seed"], device,
                                 curve_every=60.0 * args["curve_minutes"]
                                 if args.get("curve_minutes") else None)
        info["adapt_ms"] = adapt_milliseconds(model, data)
        t0 = time.perf_counter()
        results = evaluate_meta(model, data, args["test_episodes"], args["test_seed"])
    info["eval_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"[{name}] done: " + ", ".join(f"{s} {r['mean']:.3f}" for s, r in results.items()),
          flush=True)
    return {"name": name, "label": LABELS[name], "settings": info, "accuracy": results}


def markdown_table(results):
    head = "| model | " + " | ".join(SETTINGS) + " | train time | iterations |"
    rule = "|---|" + "---|" * len(SETTINGS) + "---|---|"
    rows = [head, rule]
    for r in results:
        accs = " | ".join(f"{100 * r['accuracy'][s]['mean']:.1f} ± "
                          f"{100 * r['accuracy'][s]['ci95']:.1f}" for s in SETTINGS)
        info = r["settings"]
        if info.get("training") == "none":
            rows.append(f"| {r['label']} | {accs} | - | - |")
            continue
        iters = info.get("meta_iterations", info.get("steps"))
        unit = "meta-iterations" if "meta_iterations" in info else "SGD steps"
        rows.append(f"| {r['label']} | {accs} | {info['train_seconds'] / 60:.1f} min | "
                    f"{iters} {unit} |")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cpu")
    parser.add_argument("--minutes", type=float, default=None,
                        help="training wall-clock budget per model (default: 20 on cpu, "
                             "10 on gpu)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--jobs", type=int, default=1,
                        help="models trained at once, in separate processes")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (default: cores // jobs)")
    parser.add_argument("--test-episodes", type=int, default=600)
    parser.add_argument("--curve-minutes", type=float, default=None,
                        help="every this many minutes of training, score 5-way 1-shot on 100 "
                             "test episodes (outside the budget): accuracy vs training time")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--test-seed", type=int, default=2017,
                        help="seed of the test episodes (the same for every model)")
    parser.add_argument("--device", default=None, help="override the config's device")
    parser.add_argument("--data-home", default=None,
                        help="folder holding omniglot/ (default: $SKMETA_DATA)")
    parser.add_argument("--out", default=None,
                        help="write results to OUT.json and OUT.md")
    parser.add_argument("--baselines-only", action="store_true",
                        help="only the raw-pixel baselines (1-NN, nearest centroid): no "
                             "training, about a minute")
    parser.add_argument("--no-baselines", action="store_true",
                        help="skip the raw-pixel baselines")
    args = parser.parse_args(argv)

    cfg = CONFIGS[args.config]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {MODELS}")
    minutes = cfg["minutes"] if args.minutes is None else args.minutes
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    job_args = {"config": args.config, "minutes": minutes, "threads": threads,
                "curve_minutes": args.curve_minutes,
                "device": args.device, "data_home": args.data_home, "seed": args.seed,
                "test_seed": args.test_seed, "test_episodes": args.test_episodes}
    if args.baselines_only:
        models = []
    jobs = [{"name": m, "args": job_args} for m in models]

    t0 = time.perf_counter()
    if args.jobs > 1:
        with get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
            results = pool.map(run_model, jobs, chunksize=1)
    else:
        results = [run_model(job) for job in jobs]
    data = load_data(args.data_home)
    if not args.no_baselines:
        results += [run_baseline(name, data, args.test_episodes, args.test_seed)
                    for name in BASELINES]
    total = time.perf_counter() - t0

    table = markdown_table(results)
    print()
    print(table)
    report = {
        "config": args.config, "baselines_only": args.baselines_only,
        "minutes_per_model": 0 if args.baselines_only else minutes, "jobs": args.jobs,
        "threads_per_job": threads, "total_wall_seconds": round(total, 1),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "cuda": torch.cuda.get_device_name() if torch.cuda.is_available()
                    else None},
        "train": {"subset": TRAIN_SUBSET, "alphabets": data["train_alphabets"],
                  "characters": int(len(np.unique(data["y_train"])) // 4),
                  "classes_with_rotations": int(len(np.unique(data["y_train"])))},
        "test": {"subset": TEST_SUBSET, "alphabets": data["test_alphabets"],
                 "characters": int(len(np.unique(data["y_test"]))),
                 "episodes": args.test_episodes, "seed": args.test_seed,
                 "settings": {k: dict(zip(("n_way", "k_shot", "n_query", "within_alphabet"),
                                          v)) for k, v in SETTINGS.items()}},
        "results": results,
        "table": table,
    }
    if args.out:
        folder = os.path.dirname(args.out)
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(args.out + ".json", "w") as f:
            json.dump(report, f, indent=2)
        with open(args.out + ".md", "w") as f:
            what = ("raw-pixel baselines only, no training" if args.baselines_only
                    else f"config {args.config}, {minutes:g} min per model")
            f.write(f"Omniglot few-shot accuracy (%), {what}, {args.test_episodes} test "
                    f"episodes (seed {args.test_seed}), mean ± 95% CI\n\n" + table + "\n")
        print(f"\nwrote {args.out}.json and {args.out}.md")
    return report


if __name__ == "__main__":
    main()
