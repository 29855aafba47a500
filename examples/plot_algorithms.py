"""
Comparing the algorithms: MAML, Meta-SGD, ANIL, MAML++, R2-D2 and Reptile
=========================================================================

Every skmeta meta-learner has the same API, so comparing them is a loop. On Finn et
al.'s sine waves we meta-train each algorithm for the same number of meta-iterations
and plot its error after 0 to 10 adaptation steps on fresh waves. A short run here
(400 meta-iterations each, about 20 s in all on one CPU core); the full run of
``benchmarks/algorithms.py`` (10,000 meta-iterations) and the Omniglot benchmark are
shown at the end, read from the results the benchmark scripts saved.
"""

# %%
# Meta-train every algorithm on the same tasks (one inner step; R2-D2 solves its head in
# closed form instead, Reptile takes its default five steps).
import json
import time
from pathlib import Path

import numpy as np
import torch

import skmeta
from skmeta.datasets import make_sinusoid_tasks

torch.set_num_threads(1)  # small networks: one thread is fastest (see the FAQ)
tasks = make_sinusoid_tasks(n_tasks=10_000, n_samples=20, random_state=0)  # 400 batches
test = make_sinusoid_tasks(n_tasks=200, n_samples=30, random_state=1)
common = dict(k_shot=10, batch_size=25, max_epochs=1, verbose=0, random_state=0)
models = {
    "MAML": skmeta.MAMLRegressor(**common),
    "Meta-SGD": skmeta.MetaSGDRegressor(**common),
    "ANIL": skmeta.ANILRegressor(**common),
    "MAML++": skmeta.MAMLPlusPlusRegressor(inner_steps=1, **common),
    "R2-D2": skmeta.R2D2Regressor(**common),
    "Reptile": skmeta.ReptileRegressor(**common),
}
for name, model in models.items():
    start = time.perf_counter()
    model.fit(tasks)
    print(f"{name:9s} meta-trained in {time.perf_counter() - start:5.1f} s")

# %%
# The query error after 0 to 10 adaptation steps on 200 fresh waves (10 support
# points each). Learned inner rates (Meta-SGD, MAML++) are tuned for the one step of
# meta-training and can overshoot when adaptation takes many more: a reminder to adapt
# with the number of steps a model was meta-trained for. R2-D2's closed-form head does
# not take steps: its error is the same for any number.
steps = [0, 1, 2, 3, 5, 10]


def median_mse(model, n_steps):
    try:
        adapted = model.adapt_tasks([(X[:10], y[:10]) for X, y in test], adapt_steps=n_steps)
    except FloatingPointError:  # the adapted weights were not finite
        return np.nan
    return np.median([np.mean((a.predict(X[10:]) - y[10:]) ** 2)
                      for a, (X, y) in zip(adapted, test)])


curves = {name: [median_mse(model, s) for s in steps] for name, model in models.items()}
for name, curve in curves.items():
    print(f"{name:9s} " + "  ".join(f"{s} step(s) {v:.3f}" for s, v in zip(steps, curve)))

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6.4, 4))
markers = dict(zip(models, "os^Dvx"))
for name, curve in curves.items():
    ax.plot(steps, curve, marker=markers[name], label=name)
ax.set(xlabel="adaptation steps", ylabel="median query MSE (log scale)", yscale="log",
       title="Error after adaptation, 400 meta-iterations each")
ax.legend(ncol=2, fontsize=8)
fig.tight_layout()

# %%
# The full runs, from the benchmark scripts' saved results (``benchmarks/results``):
# 10,000 meta-iterations on sine waves (left), and accuracy on Omniglot alphabets never
# seen in training against training time, for the same wall-clock budget per model
# on a 2-core CPU (right).
try:
    examples = Path(__file__).resolve().parent
except NameError:  # sphinx-gallery runs an example from its folder, without ``__file__``
    examples = Path.cwd()
results = examples.parent / "benchmarks" / "results"
sinusoid = json.loads((results / "algorithms_sinusoid.json").read_text())["results"]
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
names = list(sinusoid)
one_step = [sinusoid[n]["mse"]["K=10,steps=1"][0] for n in names]
left.barh(names, one_step, color="C0")
left.set(xscale="log", xlabel="mean query MSE after one step (K = 10, log scale)",
         title="Sine waves, 10,000 meta-iterations")
for i, v in enumerate(one_step):
    left.text(v, i, f" {v:.3f}", va="center", fontsize=8)
omniglot_file = results / "omniglot_cpu.json"
if omniglot_file.exists():
    # accuracy on 100 fixed 5-way 1-shot test episodes, measured every few minutes of
    # training (the evaluations are not counted in the budget); the last point of every
    # curve is the final model's accuracy on 600 episodes (the only point of runs that
    # recorded no curve)
    omniglot = json.loads(omniglot_file.read_text())
    rows = omniglot["results"]
    plugins_file = results / "omniglot_cpu_plugins.json"  # the newer algorithms, same settings
    if plugins_file.exists():
        rows = rows + json.loads(plugins_file.read_text())["results"]
    for marker, row in zip("osD^v<>xP", rows):
        curve = row["settings"].get("curve") or []  # older runs recorded no curve
        minutes = [t / 60 for t, _, _ in curve]
        accuracy = [100 * a for _, _, a in curve]
        final = row["accuracy"]["5-way 1-shot"]
        right.plot(minutes + [row["settings"]["train_seconds"] / 60],
                   accuracy + [100 * final["mean"]], marker=marker, label=row["label"])
    right.set(xlabel="training time (minutes, one CPU core per model)",
              ylabel="5-way 1-shot accuracy (%), unseen alphabets",
              title=f"Omniglot, {omniglot['minutes_per_model']:g} min of training per model")
    right.legend(fontsize=7)
else:
    right.text(0.5, 0.5, "run benchmarks/omniglot.py", ha="center")
fig.tight_layout()
plt.show()
