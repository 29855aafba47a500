"""
Saving an adapted model and loading it elsewhere
================================================

``adapt`` returns a small, self-contained estimator for one task: a copy of the
network with the task's adapted weights, as plain tensors. Here we adapt a MAML
model to a new sine wave, save the adapted model, load it in a *fresh Python
process* (as a prediction service would), and check that it predicts exactly
the same values. We also save it in skmeta's safe format, and explain what
happens to models trained or adapted on a GPU.
"""

# %%
# Meta-train a small model and adapt it to a new task
# ----------------------------------------------------
# A short meta-training run is enough here: what matters is the round trip.
import os
import subprocess
import sys
import tempfile

import joblib
import numpy as np
import torch

import skmeta
from skmeta import MAMLRegressor
from skmeta.datasets import make_sinusoid_tasks

torch.set_num_threads(1)  # small network: one thread (see plot_sinusoid.py)
tasks = make_sinusoid_tasks(n_tasks=500, n_samples=20, random_state=0)
maml = MAMLRegressor(k_shot=10, inner_lr=0.01, max_epochs=20, verbose=0, random_state=0)
maml.fit(tasks)

[(X, y)] = make_sinusoid_tasks(n_tasks=1, n_samples=10, random_state=42)
adapted = maml.adapt(X, y, adapt_steps=10)  # 10 gradient steps on the 10 support points
print(adapted)

# %%
# Save it, then load and predict in a fresh process
# -------------------------------------------------
# ``joblib.dump`` (or ``pickle.dump``) writes the adapted model: the network with
# its adapted weights, the input shape and the device; no reference to the
# meta-learner or to the training data. The fresh process below only needs
# skmeta installed.
folder = tempfile.mkdtemp()
model_path = os.path.join(folder, "adapted.joblib")
joblib.dump(adapted, model_path)
print(f"{os.path.getsize(model_path) / 1024:.1f} KiB written")

grid = np.linspace(-5, 5, 100, dtype=np.float32)[:, None]
grid_path = os.path.join(folder, "grid.npy")
pred_path = os.path.join(folder, "pred.npy")
np.save(grid_path, grid)

child = """
import sys, joblib, numpy as np
model = joblib.load(sys.argv[1])
np.save(sys.argv[3], model.predict(np.load(sys.argv[2])))
print("loaded", model, "on", model.device_)
"""
result = subprocess.run([sys.executable, "-c", child, model_path, grid_path, pred_path],
                        capture_output=True, text=True, check=True)
print("child process:", result.stdout.strip())

pred_here = adapted.predict(grid)
pred_there = np.load(pred_path)
print("largest difference between the two processes:", np.abs(pred_here - pred_there).max())

# %%
# The safe format for files you do not trust
# -------------------------------------------
# Loading a pickle (or a joblib file) runs code chosen by whoever wrote it:
# **only load pickles you trust**. For files that cross a trust boundary,
# :func:`skmeta.save` writes tensors and JSON only (a standard safetensors file,
# which other tools can open too), and :func:`skmeta.load` reads them back
# without running code from the file.
safe_path = os.path.join(folder, "adapted.skmeta")
skmeta.save(adapted, safe_path)
reloaded = skmeta.load(safe_path)
print("safe format, largest difference:", np.abs(reloaded.predict(grid) - pred_here).max())

# %%
# The point of this example is identity: plot the reloaded models' predictions
# against the original's (left: every point on the diagonal) and their
# difference (right: exactly zero, for both the pickle loaded in another process
# and the safe format). The model itself was trained only briefly; how well it
# fits the wave is not the point here.
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

pred_safe = reloaded.predict(grid)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
axes[0].plot(pred_here, pred_there, "o", color="C1", ms=6, mfc="none",
             label="joblib, loaded in a fresh process")
axes[0].plot(pred_here, pred_safe, ".", color="C0", ms=4, label="safe format (skmeta.load)")
axes[0].axline((0, 0), slope=1, color="0.6", lw=1, zorder=0, label="identical")
axes[0].set(xlabel="prediction of the adapted model (this process)",
            ylabel="prediction of the reloaded model", title="100 inputs, x in [-5, 5]")
axes[0].legend(fontsize=8, loc="upper left")
axes[1].plot(grid, pred_there - pred_here, "-", color="C1", lw=3, label="joblib, fresh process")
axes[1].plot(grid, pred_safe - pred_here, "--", color="C0", lw=1.5, label="safe format")
largest = max(np.abs(pred_there - pred_here).max(), np.abs(pred_safe - pred_here).max())
axes[1].set(xlabel="x", ylabel="reloaded - original", ylim=(-1e-6, 1e-6),
            title=f"Difference (largest: {largest:g})")
axes[1].legend(fontsize=8, loc="upper right")

# %%
# Trained on a GPU, used on a CPU
# -------------------------------
# A model adapted on a GPU (``MAMLRegressor(device="cuda")``) moves its network
# to the CPU when it is pickled, so the file holds CPU tensors only. When it is
# loaded on a machine with CUDA, it goes back to its GPU; on a machine without
# CUDA it stays on the CPU, with a ``skorch.exceptions.DeviceWarning``, and
# ``model.device_`` becomes ``"cpu"``. No ``map_location`` is needed. A pickled
# meta-learner behaves the same way (skorch moves it to the CPU). This machine
# runs the round trip for real when it has a GPU:
import torch

if torch.cuda.is_available():
    from sklearn.base import clone

    gpu_maml = clone(maml).set_params(device="cuda").fit(tasks)
    gpu_adapted = gpu_maml.adapt(X, y, adapt_steps=10)
    gpu_path = os.path.join(folder, "adapted_on_gpu.joblib")
    joblib.dump(gpu_adapted, gpu_path)
    cpu_only = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # the child sees no GPU
    result = subprocess.run([sys.executable, "-c", child, gpu_path, grid_path, pred_path],
                            capture_output=True, text=True, check=True, env=cpu_only)
    print("CPU-only process:", result.stdout.strip())
    print("its warning:", result.stderr.strip().splitlines()[-1:])
    gpu_pred = gpu_adapted.predict(grid)
    print("largest difference from the GPU:", np.abs(np.load(pred_path) - gpu_pred).max())
else:
    print("No GPU here: the CUDA -> CPU round trip is described above, not run.")
