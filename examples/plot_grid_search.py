"""
Choosing the inner step size and the number of adaptation steps
===============================================================

``inner_lr`` (the step size of the inner, task-level update) and ``adapt_steps``
(how many such steps ``adapt`` and ``score`` take on a new task) are MAML's two
most important knobs. Because skmeta's meta-learners are scikit-learn
estimators, :class:`~sklearn.model_selection.GridSearchCV` can tune them: its
folds split the *tasks*, and each candidate is scored on held-out tasks after
adapting to them. ``adapt_steps`` only changes adaptation, so it needs no
re-training: we fit once per ``inner_lr`` and fold, and score every fit with
several values of ``adapt_steps`` at once (multi-metric scoring). Then we check
the choice on fresh meta-test tasks.
"""

# %%
# One scorer per number of adaptation steps
# -----------------------------------------
# A scorer is any callable ``scorer(estimator, X, y)``; for a task list, ``X``
# is the list of held-out tasks (and ``y`` is ``None``). This one adapts to each
# task with ``n_steps`` gradient steps and returns minus the mean squared error on
# the query sets (scikit-learn maximises scores). Setting ``adapt_steps`` on the
# fitted fold estimator needs no re-training. The squared error is computed with
# NumPy so that a diverged adaptation gives ``nan`` rather than an error.
import warnings

import numpy as np
import torch
from sklearn.model_selection import GridSearchCV

from skmeta import MAMLRegressor
from skmeta.datasets import make_sinusoid_tasks

torch.set_num_threads(1)  # small network: one thread (see plot_sinusoid.py)


def squared_error(y_true, y_pred):
    with np.errstate(all="ignore"):  # overflow warnings of diverged adaptations
        return float(np.mean((y_true - y_pred) ** 2))


def neg_mse_after(n_steps):
    def scorer(estimator, tasks, y=None):
        estimator.set_params(adapt_steps=n_steps)
        return -np.mean(estimator.score_tasks(tasks, metric=squared_error))
    return scorer


inner_lrs = [0.003, 0.01, 0.03]
adapt_steps = [1, 3, 10, 30, 100, 300, 1000]
scoring = {f"{n}_steps": neg_mse_after(n) for n in adapt_steps}

# %%
# Grid search over tasks
# ----------------------
# Three-fold cross-validation over 450 training tasks: each ``inner_lr`` is
# meta-trained on 300 tasks (720 meta-updates) and scored on the other 150,
# after adapting on each task's 10 support points. ``refit`` picks the
# ``inner_lr`` whose best number of steps has the lowest error and re-trains it
# on all 450 tasks. More steps cost adaptation time, and past a point they no
# longer help; we take the fewest steps within 2% of that ``inner_lr``'s best.


def best_inner_lr(cv_results):
    errors = -np.array([cv_results[f"mean_test_{name}"] for name in scoring])
    return int(np.nanargmin(np.nanmin(errors, axis=0)))


# ``engine="vmap"`` adapts all held-out tasks of a fold at once. (``"auto"``
# would time the loop engine on some of the first calls, which with 1000 steps
# on 150 tasks costs a minute.)
tasks = make_sinusoid_tasks(n_tasks=450, n_samples=20, random_state=0)
maml = MAMLRegressor(k_shot=10, inner_steps=1, batch_size=25, lr=3e-3, max_epochs=60,
                     engine="vmap", verbose=0, random_state=0)
search = GridSearchCV(maml, {"inner_lr": inner_lrs}, cv=3, scoring=scoring,
                      refit=best_inner_lr)
with warnings.catch_warnings():  # diverged cells are nan; scikit-learn would warn
    warnings.filterwarnings("ignore", "One or more of the test scores are non-finite")
    search.fit(tasks)

cv_mse = -np.array([search.cv_results_[f"mean_test_{name}"] for name in scoring]).T
best_lr = search.best_params_["inner_lr"]
row = cv_mse[search.best_index_]
best_steps = adapt_steps[int(np.argmax(row <= 1.02 * np.nanmin(row)))]
print(f"chosen: inner_lr={best_lr}, adapt_steps={best_steps}, cross-validated MSE "
      f"{row[adapt_steps.index(best_steps)]:.3f} (lowest in the grid: {np.nanmin(cv_mse):.3f})")

# %%
# Meta-test: the chosen model on 300 fresh tasks
# ----------------------------------------------
# ``search.best_estimator_`` was re-trained on all training tasks with the best
# ``inner_lr``; we set the chosen ``adapt_steps`` and score new tasks, and also
# score every other number of steps to see how well cross-validation chose.
test_tasks = make_sinusoid_tasks(n_tasks=300, n_samples=20, random_state=1)
best = search.best_estimator_
test_mse = [np.mean(best.set_params(adapt_steps=n).score_tasks(
    test_tasks, metric=squared_error)) for n in adapt_steps]
best.set_params(adapt_steps=best_steps)
print(f"meta-test MSE with adapt_steps={best_steps}: "
      f"{test_mse[adapt_steps.index(best_steps)]:.3f} (best over the grid: {min(test_mse):.3f})")

# %%
# The heat map and the meta-test curve
# ------------------------------------
# Left, the cross-validated error of every ``inner_lr`` x ``adapt_steps``
# (the white frame is the choice; "nan": the adaptation diverged on a held-out
# task); right, the meta-test error of the re-trained best ``inner_lr`` against
# the number of steps, next to its cross-validated errors.
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.colors import LogNorm
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

levels = [0.25, 0.5, 1, 2]  # tick marks for the logarithmic error axes
fig, (ax, ax_test) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained",
                                  gridspec_kw={"width_ratios": [1.5, 1]})
image = ax.imshow(cv_mse, cmap="viridis_r", norm=LogNorm())
for (i, j), v in np.ndenumerate(cv_mse):
    dark = np.isfinite(v) and image.norm(v) > 0.5
    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
            color="white" if dark else "black")
i_best, j_best = search.best_index_, adapt_steps.index(best_steps)
ax.add_patch(Rectangle((j_best - 0.5, i_best - 0.5), 1, 1, fill=False, ec="white", lw=3))
ax.set(xticks=range(len(adapt_steps)), xticklabels=adapt_steps, xlabel="adapt_steps",
       yticks=range(len(inner_lrs)), yticklabels=inner_lrs, ylabel="inner_lr",
       title="3-fold CV: MSE on held-out tasks")
colorbar = fig.colorbar(image, ax=ax, shrink=0.8, label="MSE after adaptation")
colorbar.set_ticks([v for v in levels if image.norm.vmin <= v <= image.norm.vmax],
                   labels=[f"{v:g}" for v in levels if image.norm.vmin <= v <= image.norm.vmax])
colorbar.ax.yaxis.set_minor_formatter(NullFormatter())

ax_test.plot(adapt_steps, cv_mse[search.best_index_], "o--", color="C1",
             label=f"cross-validation (inner_lr={best_lr})")
ax_test.plot(adapt_steps, test_mse, "o-", color="C0", label="300 meta-test tasks")
ax_test.axvline(best_steps, color="0.6", lw=1, zorder=0)
ax_test.set(xscale="log", yscale="log", xticks=adapt_steps, xticklabels=adapt_steps,
            xlabel="adapt_steps", title="The chosen inner_lr on new tasks")
ax_test.yaxis.set_major_locator(FixedLocator(levels))
ax_test.yaxis.set_major_formatter(ScalarFormatter())
ax_test.yaxis.set_minor_formatter(NullFormatter())
ax_test.legend(fontsize=8)

# %%
# Reading the maps: too small a step (``inner_lr=0.003``) moves slowly from the
# meta-learned starting point and needs hundreds of steps; too large a step
# (``inner_lr=0.03``) overshoots, and after many steps diverges on some tasks
# (one task with an infinite error makes the mean of its fold nan). The grid
# brackets the best ``inner_lr`` from both sides; along ``adapt_steps`` the error
# falls and then levels off, so the grid extends until more steps stop helping.
# The meta-test curve of the chosen ``inner_lr`` follows the cross-validated
# one: cross-validation over tasks estimates the error on new tasks. In
# practice, tune ``inner_lr`` (with ``inner_steps``) by grid search and score
# ``adapt_steps`` alongside, as here, without re-training.
