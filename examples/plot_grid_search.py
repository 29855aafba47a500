"""
Choosing the inner step size and the number of adaptation steps
===============================================================

``inner_lr`` (the step size of the inner, task-level update) and ``adapt_steps``
(how many such steps ``adapt`` and ``score`` take on a new task) are MAML's two
most important knobs. Because skmeta's meta-learners are scikit-learn
estimators, :class:`~sklearn.model_selection.GridSearchCV` can tune them: its
folds split the *tasks*, and each candidate is scored on held-out tasks after
adapting to them. We search ``inner_lr`` x ``adapt_steps`` on sine waves and draw
the scores as heat maps, then check them on fresh meta-test tasks.
"""

# %%
# Grid search over tasks
# ----------------------
# Three-fold cross-validation over 240 training tasks. Each candidate is
# meta-trained on 160 tasks (a short run) and scored on the other 80 with a task-aware
# scorer from :mod:`skmeta.metrics`: the mean squared error on each task's
# query set after adapting on its 10 support points (negated, as scikit-learn
# maximises scores).
import numpy as np
from sklearn.base import clone
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import GridSearchCV

from skmeta import MAMLRegressor
from skmeta.datasets import make_sinusoid_tasks
from skmeta.metrics import get_task_scorer

tasks = make_sinusoid_tasks(n_tasks=240, n_samples=20, random_state=0)
maml = MAMLRegressor(k_shot=10, inner_steps=1, batch_size=12, lr=3e-3, max_epochs=8,
                     verbose=0, random_state=0)
inner_lrs = [0.003, 0.01, 0.03]
adapt_steps = [1, 3, 10]
search = GridSearchCV(maml, {"inner_lr": inner_lrs, "adapt_steps": adapt_steps}, cv=3,
                      scoring=get_task_scorer("neg_mean_squared_error"))
search.fit(tasks)
print("best:", search.best_params_, f"validation MSE {-search.best_score_:.3f}")

# %%
# Meta-test scores without re-training
# ------------------------------------
# ``adapt_steps`` only changes adaptation, so GridSearchCV's re-training for
# each of its values is correct but wasteful. To score fresh meta-test tasks,
# train once per ``inner_lr`` on all 240 tasks and vary ``adapt_steps`` with
# ``set_params``.
test_tasks = make_sinusoid_tasks(n_tasks=300, n_samples=20, random_state=1)
test_mse = np.empty((len(inner_lrs), len(adapt_steps)))
for i, inner_lr in enumerate(inner_lrs):
    model = clone(maml).set_params(inner_lr=inner_lr).fit(tasks)
    for j, n_steps in enumerate(adapt_steps):
        test_mse[i, j] = np.mean(model.set_params(adapt_steps=n_steps).score_tasks(
            test_tasks, metric=mean_squared_error))

# %%
# Heat maps
# ---------
# Left, the cross-validated error of every candidate (GridSearchCV's
# ``cv_results_``); right, the error on 300 meta-test tasks.
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

cv_mse = np.empty_like(test_mse)
for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
    cv_mse[inner_lrs.index(params["inner_lr"]), adapt_steps.index(params["adapt_steps"])] = -score

fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), layout="constrained")
vmin, vmax = min(cv_mse.min(), test_mse.min()), max(cv_mse.max(), test_mse.max())
for ax, values, title in ((axes[0], cv_mse, "3-fold CV (held-out tasks)"),
                          (axes[1], test_mse, "300 meta-test tasks")):
    image = ax.imshow(values, cmap="viridis_r", vmin=vmin, vmax=vmax)
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center",
                color="white" if v > (vmin + vmax) / 2 else "black")
    ax.set(xticks=range(len(adapt_steps)), xticklabels=adapt_steps, xlabel="adapt_steps",
           yticks=range(len(inner_lrs)), yticklabels=inner_lrs, title=title)
axes[0].set_ylabel("inner_lr")
colorbar = fig.colorbar(image, ax=axes, label="MSE after adaptation", shrink=0.85)

# %%
# Reading the maps: too small a step (``inner_lr=0.003``) barely moves from the
# meta-learned starting point, however many steps are taken; larger steps need
# fewer of them. The cross-validated choice is close to the best on the
# meta-test tasks, but not necessarily the same cell: with short training runs
# and a few hundred tasks, neighbouring cells differ by little more than the
# noise. In practice, tune ``inner_lr`` (with ``inner_steps``) by grid search,
# then ``adapt_steps`` on a held-out set of tasks, without re-training.
