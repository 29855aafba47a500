"""
MAML, Reptile and pre-training on sine waves
============================================

The regression experiment of Finn et al. (2017, section 5.1 and figure 2): every
task is a sine wave ``y = A sin(x - phi)`` with amplitude ``A`` in [0.1, 5] and
phase ``phi`` in [0, pi], seen through K = 5 or 10 points. We compare three ways
of learning the starting point that a few gradient steps adapt to a new wave:

* **MAML** (:class:`~skmeta.MAMLRegressor`) learns it so that one inner step
  fits a task;
* **Reptile** (:class:`~skmeta.ReptileRegressor`) moves it toward the weights
  that 5 SGD steps reach on each task;
* **pre-training** (:class:`~skmeta.PretrainedRegressor`) trains one network on
  the pooled points of all training tasks, the usual transfer-learning baseline.

All three then adapt to a new wave in the same way: plain gradient steps on its
K points. The training runs are short (about a minute in all on a two-core
CPU); longer runs reach lower errors (see the benchmarks).
"""

# %%
# Meta-train the three models
# ---------------------------
# 1000 training tasks of 20 points; each support set holds ``k_shot=10`` points
# and the query set the other 10. MAML makes 4000 updates with Adam; Reptile
# 3200, with its usual plain SGD of step 1 on the pseudo-gradient; pre-training
# 1600 with Adam (by then its training loss barely moves: it has learned the
# average wave).
import time

import numpy as np
import torch
from sklearn.metrics import mean_squared_error

from skmeta import MAMLRegressor, PretrainedRegressor, ReptileRegressor
from skmeta.datasets import make_sinusoid_tasks

torch.set_num_threads(1)  # small network: one thread (see plot_sinusoid.py)

tasks = make_sinusoid_tasks(n_tasks=1000, n_samples=20, random_state=0)
test_tasks = make_sinusoid_tasks(n_tasks=300, n_samples=20, random_state=1)

common = dict(k_shot=10, batch_size=25, verbose=0, random_state=0)
models = {
    "MAML": MAMLRegressor(inner_lr=0.01, inner_steps=1, lr=1e-3, max_epochs=100, **common),
    "Reptile": ReptileRegressor(inner_lr=0.02, inner_steps=5, lr=1.0, max_epochs=80, **common),
    "pre-training": PretrainedRegressor(inner_lr=0.01, lr=1e-3, max_epochs=40, **common),
}
for name, model in models.items():
    start = time.perf_counter()
    model.fit(tasks)
    print(f"{name:>12}: {time.perf_counter() - start:5.1f} s")

# %%
# Error after adaptation, against the number of gradient steps
# ------------------------------------------------------------
# For 300 new waves, adapt on K support points and measure the mean squared
# error on the other points, after 0 to 10 steps (each model with the inner
# step size it was trained with). ``adapt_steps`` and ``k_shot`` only change how
# :meth:`~skmeta.MAMLRegressor.score_tasks` adapts, so no retraining is needed.
# ``score_tasks`` returns one error per wave; we keep them all.
steps = np.arange(11)
per_wave = {}  # (K, name) -> array of shape (n_steps, n_waves)
for K in (5, 10):
    for name, model in models.items():
        model.set_params(k_shot=K)
        per_wave[K, name] = np.array([model.set_params(adapt_steps=int(s)).score_tasks(
            test_tasks, metric=mean_squared_error) for s in steps])
        mse = per_wave[K, name].mean(axis=1)
        print(f"K={K:2d} {name:>12}: MSE {mse[0]:.2f} before adapting, "
              f"{mse[1]:.2f} after 1 step, {mse[10]:.2f} after 10")

# %%
# A mean over waves can be dominated by a few waves on which a step overshoots;
# the median and the interquartile range (the middle half of the waves) show
# the typical wave. Solid lines: medians; shaded: 25th to 75th percentiles;
# dotted: means.
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

colors = {"MAML": "C0", "Reptile": "C2", "pre-training": "C1"}
from matplotlib.patches import Patch

fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True, layout="constrained")
for ax, K in zip(axes, (5, 10)):
    for name in models:
        errors = per_wave[K, name]
        q25, median, q75 = np.percentile(errors, [25, 50, 75], axis=1)
        ax.fill_between(steps, q25, q75, color=colors[name], alpha=0.15, lw=0)
        ax.plot(steps, median, "o-", color=colors[name], ms=4)
        ax.plot(steps, errors.mean(axis=1), ":", color=colors[name], lw=2)
    ax.set(title=f"K = {K} support points", xlabel="gradient steps on the support set",
           xticks=steps[::2], yscale="log")
axes[0].set(ylabel="squared error (300 new waves)")
handles = [Patch(color=colors[name], label=name) for name in models] + [
    plt.Line2D([], [], color="0.3", marker="o", ms=4, label="median"),
    plt.Line2D([], [], color="0.3", ls=":", lw=2, label="mean"),
    Patch(color="0.3", alpha=0.15, label="25th-75th percentile")]
fig.legend(handles=handles, loc="outside lower center", ncol=6, fontsize=8, frameon=False)

# %%
# What the adapted models predict
# -------------------------------
# One new wave, K = 5 and K = 10 of its points, and each model's prediction
# before adapting and after 1 and 10 gradient steps. The pre-trained network
# predicts roughly the *average* wave of the family, about ``-1.6 cos(x)`` (the
# phases span only [0, pi], so they do not cancel), and a few steps from a few
# points do not take it to the new wave; MAML's and Reptile's starting points
# are made to move quickly toward any wave of the family.
[(X, y)], [(amplitude, phase)] = make_sinusoid_tasks(n_tasks=1, n_samples=10, random_state=37,
                                                     return_params=True)
grid = np.linspace(-5, 5, 200, dtype=np.float32)[:, None]
fig, axes = plt.subplots(2, 3, figsize=(11, 6.4), sharex=True, sharey=True,
                         layout="constrained")
for row, K in enumerate((5, 10)):
    for col, (name, model) in enumerate(models.items()):
        ax = axes[row, col]
        ax.plot(grid, amplitude * np.sin(grid - phase), color="0.6", lw=3, label="true wave")
        for n_steps, style in ((0, ":"), (1, "--"), (10, "-")):
            pred = model.adapt(X[:K], y[:K], adapt_steps=n_steps).predict(grid)
            ax.plot(grid, pred, style, color=colors[name], label=f"{n_steps} step(s)")
        ax.plot(X[:K], y[:K], "^", color="k", label="support points")
        ax.set_title(f"{name}, K = {K}", fontsize=10)
        if row == 1:
            ax.set_xlabel("x")
        if col == 0:
            ax.set_ylabel("y")
axes[0, 0].set_ylim(-6, 6)
# one legend for the six panels (line styles are the same in each; colours name the model)
handles = [plt.Line2D([], [], color="0.6", lw=3, label="true wave"),
           plt.Line2D([], [], color="0.2", ls=":", label="before adapting (0 steps)"),
           plt.Line2D([], [], color="0.2", ls="--", label="after 1 step"),
           plt.Line2D([], [], color="0.2", ls="-", label="after 10 steps"),
           plt.Line2D([], [], color="k", marker="^", ls="", label="support points")]
fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=8, frameon=False)

# %%
# Reading the results
# -------------------
# The meta-learned starting points are no better than pre-training before any
# step, and far better after one or a few: MAML, trained for exactly one step,
# is best after one; Reptile, trained with five, catches up with more steps from
# 10 points. Pre-training barely improves and often gets *worse* at first: with
# these step sizes, a first step from its starting point overshoots on many
# waves, while MAML's starting point is trained to make that step useful.
#
# The dotted means lie above the medians: a few waves on which a step
# overshoots pull them up, which is what a bump in a mean curve usually is.
# The median over waves and the worst wave tell them apart; here at the number
# of steps where Reptile's mean K = 5 error rises most:
n_steps = int(steps[1:][np.argmax(np.diff(per_wave[5, "Reptile"].mean(axis=1)))])
for name in models:
    errors = per_wave[5, name][n_steps]
    print(f"K=5, {n_steps} steps, {name:>12}: mean {errors.mean():.2f}, "
          f"median {np.median(errors):.2f}, worst wave {errors.max():.1f}")
