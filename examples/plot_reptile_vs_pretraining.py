"""
Reptile vs pre-training: the chart of the Reptile blog post
===========================================================

The Reptile paper and its blog post (Nichol, Achiam and Schulman, 2018) show
the idea in one picture: on sine-wave regression, a network trained *jointly* on
all tasks (pre-training) learns the average wave and cannot be fine-tuned to a
new wave from 10 points, while the initialisation learned by Reptile fits the
new wave after a few dozen gradient steps. We redraw that chart: for each
starting point, the prediction before fine-tuning and after 32 gradient steps on
the 10 points, next to a randomly initialised network.
"""

# %%
# Train Reptile and the pre-training baseline on the same tasks
# -------------------------------------------------------------
# The waves of Finn et al. (amplitude in [0.1, 5], phase in [0, pi]); each
# support set holds 10 points. Reptile takes 5 SGD steps of size 0.02 on each
# task and moves the initialisation toward the result (plain SGD of step 1 on
# the pseudo-gradient, averaged over 25 tasks); pre-training fits one network to
# the pooled points of all tasks with Adam.
import numpy as np
import torch
from sklearn.metrics import mean_squared_error

from skmeta import PretrainedRegressor, ReptileRegressor
from skmeta.datasets import make_sinusoid_tasks

torch.set_num_threads(1)  # small network: one thread (see plot_sinusoid.py)

tasks = make_sinusoid_tasks(n_tasks=1000, n_samples=20, random_state=0)
common = dict(k_shot=10, batch_size=25, inner_lr=0.02, verbose=0, random_state=0)

reptile = ReptileRegressor(inner_steps=5, lr=1.0, max_epochs=80, **common).fit(tasks)
pretrained = PretrainedRegressor(lr=1e-3, max_epochs=40, **common).fit(tasks)
untrained = ReptileRegressor(max_epochs=0, **common).fit(tasks)  # the initial weights

# %%
# Fine-tune each on 10 points of a new wave
# -----------------------------------------
# ``adapt(X, y, steps=32)`` takes 32 gradient steps of size ``inner_lr`` from the
# learned starting point; ``adapt_steps=0`` shows the starting point itself.
[(X, y)], [(amplitude, phase)] = make_sinusoid_tasks(n_tasks=1, n_samples=10, random_state=3,
                                                     return_params=True)
grid = np.linspace(-5, 5, 200, dtype=np.float32)[:, None]
truth = amplitude * np.sin(grid[:, 0] - phase)

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), sharey=True)
for ax, (title, model) in zip(axes, [("random initialisation", untrained),
                                     ("pre-training (joint training)", pretrained),
                                     ("Reptile", reptile)]):
    ax.plot(grid, truth, color="0.6", lw=3, label="true wave")
    ax.plot(grid, model.adapt(X, y, adapt_steps=0).predict(grid), ":", color="C1",
            label="before fine-tuning")
    ax.plot(grid, model.adapt(X, y, adapt_steps=32).predict(grid), "-", color="C0",
            label="after 32 steps")
    ax.plot(X, y, "^", color="k", label="10 points")
    ax.set(title=title, xlabel="x")
axes[0].set(ylabel="y", ylim=(-6, 6))
axes[0].legend(fontsize=8, loc="upper left")
fig.tight_layout()

# %%
# The same comparison over 300 new waves
# --------------------------------------
# Mean squared error on the other 10 points of each wave, after 32 steps.
test_tasks = make_sinusoid_tasks(n_tasks=300, n_samples=20, random_state=1)
for name, model in [("random initialisation", untrained), ("pre-training", pretrained),
                    ("Reptile", reptile)]:
    mse = model.set_params(adapt_steps=32).score_tasks(test_tasks, metric=mean_squared_error)
    print(f"{name:>22}: MSE after 32 steps {np.mean(mse):.2f}")
