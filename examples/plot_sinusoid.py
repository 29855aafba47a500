"""
MAML on sinusoids: few-shot regression
======================================

Finn et al. (2017, section 5.1): every task is a sine wave ``y = A sin(x - phi)``
with its own amplitude and phase. A network meta-trained with MAML adapts to a
new wave from 10 points and a few gradient steps; an untrained network cannot.

Run it with ``python examples/plot_sinusoid.py``. It takes about half a minute
on a two-core CPU (29 s measured, 28 s of it meta-training, while other programs
were using the machine; longer on a busier one). skorch prints one line per
epoch while it meta-trains; then the script prints the post-adaptation error on
600 fresh tasks and writes ``sinusoid_maml.png``.
"""

# %%
# Meta-train on 2000 tasks of 20 points (10 support + 10 query each)
# ------------------------------------------------------------------
# 60 epochs of 80 meta-batches of 25 tasks: 4800 meta-updates. ``verbose=1``
# prints skorch's log, one line per epoch: ``train_loss`` is the mean query loss
# *after* the inner step, the quantity MAML minimises.
#
# The network is small (two hidden layers of 40 units): torch's default of one
# thread per core gains little on such small matrices and becomes many times
# slower when other programs keep the cores busy, so we use one thread.
import time

import numpy as np
import torch
from sklearn.metrics import mean_squared_error

from skmeta import MAMLRegressor
from skmeta.datasets import make_sinusoid_tasks

torch.set_num_threads(1)
tasks = make_sinusoid_tasks(n_tasks=2000, n_samples=20, random_state=0)
test_tasks = make_sinusoid_tasks(n_tasks=600, n_samples=20, random_state=1)

maml = MAMLRegressor(inner_lr=0.01, inner_steps=1, k_shot=10, batch_size=25, lr=1e-3,
                     max_epochs=60, verbose=1, random_state=0)
start = time.perf_counter()
maml.fit(tasks)
seconds = time.perf_counter() - start
print(f"meta-trained {60 * 80} meta-updates in {seconds:.1f} s "
      f"({1000 * seconds / (60 * 80):.1f} ms each, engine={maml.engine_['train']})")

# %%
# Post-adaptation error on 600 fresh tasks
# ----------------------------------------
# After 1 and 10 steps, against the same network before meta-training
# (``max_epochs=0``).
untrained = MAMLRegressor(k_shot=10, max_epochs=0, verbose=0, random_state=0).fit(tasks)
for steps in (1, 10):
    mse = {name: np.mean(est.set_params(adapt_steps=steps).score_tasks(
        test_tasks, metric=mean_squared_error)) for name, est in
        [("MAML", maml), ("untrained", untrained)]}
    print(f"{steps:2d} step(s): MSE after adaptation  MAML {mse['MAML']:.3f}  "
          f"untrained {mse['untrained']:.3f}")

# %%
# Adapt to one new wave from K = 10 points
# ----------------------------------------
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

[(X, y)], [(amp, phase)] = make_sinusoid_tasks(1, 10, random_state=37, return_params=True)
grid = np.linspace(-5, 5, 200, dtype=np.float32)[:, None]
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(grid, amp * np.sin(grid - phase), "k", label="true function")
ax.plot(X, y, "^", color="C3", label="10 support points")
ax.plot(grid, maml.adapt(X, y, adapt_steps=0).predict(grid), ":", color="C0",
        label="MAML, before adaptation")
for steps, style in ((1, "--"), (10, "-")):
    ax.plot(grid, maml.adapt(X, y, adapt_steps=steps).predict(grid), style, color="C0",
            label=f"MAML, {steps} step(s)")
ax.set(xlabel="x", ylabel="y", title="MAML adapts to a new sine wave from 10 points")
ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()
fig.savefig("sinusoid_maml.png", dpi=120)
print("wrote sinusoid_maml.png")
