"""Few-shot regression on grouped tables: skmeta's meta-learners against classical baselines.

The data are two tables of students in schools from the R package mlmRev, loaded with
:func:`skmeta.datasets.load_grouped_table` (``pip install "skmeta[tables]"``): ``Exam``
(4,059 students, 65 schools, target ``normexam``) and ``Chem97`` (31,022 students, 2,410
schools, target ``score``). A *task* is a school; the question is how well each method
predicts the students of a school it has never seen from ``k`` of that school's students.

Protocol, for each table and each seed:

* the schools are split into ``--folds`` folds with ``GroupKFold(shuffle=True,
  random_state=seed)``; every fold is held out once (test schools), the other schools are
  the training schools;
* features and target are standardised with the mean and standard deviation of the
  training schools' rows only; errors are reported in the target's original units;
* for every test school with at least ``k + 2`` students, ``k`` support students are drawn
  at random (seeded by ``(seed, k, school)``, the same draw for every method) and the other
  students of the school are its query set; smaller schools are skipped (and counted);
* metric: the query MSE of each test school, averaged over the test schools ("mean over
  schools"), and the squared error summed over all query students of the fold divided by
  their number ("pooled"). The tables give the mean and the standard deviation of these
  over the ``folds x seeds`` runs, and the paired difference to the mixed model.

Methods (all fitted on the training schools only):

* ``pooled OLS``: one linear regression on all training rows; the support set is unused.
* ``pooled HGB``: scikit-learn's ``HistGradientBoostingRegressor`` (default settings) on all
  training rows; the support set is unused.
* ``ridge on support``: ``RidgeCV`` fitted on the ``k`` support rows alone, alpha chosen
  by efficient leave-one-out from ``logspace(-2, 3, 11)``.
* ``pooled OLS + support mean residual``: pooled OLS plus the mean of its residuals on the
  support rows (a school intercept estimated without shrinkage).
* ``LMM``: a linear mixed-effects model (statsmodels ``MixedLM``, REML) with all features
  as fixed effects, a random intercept per school and (second variant) a random slope on
  the strongest covariate. The strongest covariate is the one with the largest absolute
  standardised coefficient in the pooled OLS on the training rows, chosen per fold (the
  output says which: ``standLRT`` for Exam and ``gcsescore`` for Chem97 in every fold of
  the recorded run). A new school's random effects are predicted from its support rows by
  the BLUP ``b = G Z_s^T (Z_s G Z_s^T + sigma^2 I)^-1 (y_s - X_s beta)`` and its query rows
  by ``X_q beta + Z_q b`` (``beta``: fixed effects, ``G``: random-effects covariance,
  ``sigma^2``: residual variance, ``Z``: the random-effects design, ``[1]`` or
  ``[1, strongest covariate]``). The script checks this formula against statsmodels' own
  ``random_effects`` on a training school of every fold, and counts ``MixedLM``'s
  warnings and non-converged fits. A third variant puts the strongest covariate into the
  fixed effects as a cubic B-spline (5 knots at quantiles) instead of a straight line
  (random intercept and linear random slope as before): the classical answer to a
  non-linear effect, such as Chem97's ``score`` levelling off at 10 points. The tables
  compare every method with the linear random-slope LMM.
* skmeta's estimators (``--estimators``): ``MAMLRegressor`` (second order), first-order MAML,
  ``ReptileRegressor``, ``PretrainedRegressor`` (joint training, then fine-tuning) and MAML
  with a linear module, plus ``MetaSGDRegressor``, ``ANILRegressor``,
  ``MAMLPlusPlusRegressor``, ``R2D2Regressor`` and ``ALPaCARegressor`` (on an MLP, and on
  the features ``[1, x]``, where it is the mixed model with random slopes on every feature)
  when skmeta has them. Each is tuned as a
  user would: ``GridSearchCV`` over a small grid with ``GroupKFold`` over the *training*
  schools' tasks (one task per training school with at least ``k + n_query`` students),
  scored with ``skmeta.metrics.get_task_scorer("neg_mean_squared_error")``, refitted on all
  those training tasks, then adapted (``adapt_tasks``) on each test school's ``k`` support
  rows and used to predict its query rows. ``k_shot`` equals the evaluation ``k``; the
  training budget is a number of meta-iterations (``--iters``, converted to ``max_epochs``
  from the number of tasks) so that Exam and Chem97 cost the same.

Prediction intervals (90%), reported next to the errors: the mixed models' BLUP predictive
intervals ``mean +- 1.645 sd`` with ``sd^2 = Z_q P Z_q^T + sigma^2`` (``P``: the covariance
of the new school's random effects given its support rows; the fixed effects taken as
known); ALPaCA's own posterior predictive intervals (uncalibrated); and, with
``--intervals``, split-conformal intervals for skmeta's estimators
(:class:`skmeta.intervals.ConformalMetaRegressor`: the tuned estimator meta-trained again on
three quarters of the training tasks and calibrated on the other quarter). For each: the
coverage of the query students, the mean width and the Gaussian NLL (for conformal
intervals, of the Gaussian with the same interval), in the target's units, mean over
schools.

GPBoost (``--gpboost``, default ``auto``: run when the ``gpboost`` package imports, skipped
with a note when it does not; ``pip install gpboost`` or the ``tables`` extra): tree boosting
for the fixed effects (all features) plus grouped random effects, a random intercept and a
random slope on the same strongest covariate as the random-slope LMM (``gpb.GPModel(
group_data=school, group_rand_coef_data=x, ind_effect_group_rand_coef=[1])``, independent
intercept and slope, Gaussian likelihood, covariance parameters re-estimated along the
boosting as GPBoost does by default). Fixed tree settings (learning rate 0.05, depth 3, 8
leaves, 20 rows per leaf); the number of boosting rounds (at most 1000) by ``gpb.cv`` with
early stopping (20 rounds) over a 3-fold ``GroupKFold`` of the *training* schools, the
validation schools being predicted as new groups without data. A held-out school's query rows
are predicted given its ``k`` support rows by GPBoost's own ``GPModel.predict`` with the
fitted covariance parameters (``cov_pars``) on the support rows' residuals from the trees:
the BLUP of the new school's random effects, and its predictive variance (random-effect
posterior plus the residual variance; the trees taken as known) gives the 90% interval
``mean +- 1.645 sd``. The script checks GPBoost's prediction against the closed-form BLUP
above with GPBoost's covariance parameters and reports the largest difference.

Usage (from the repository root)::

    python benchmarks/tables.py --out benchmarks/results/tables_cpu    # the default run
    python benchmarks/tables.py --quick                                # a smoke run
    python benchmarks/tables.py --tables Exam --k 5 --estimators maml,reptile --seeds 1

``--out PREFIX`` writes ``PREFIX.json`` and ``PREFIX.md``; ``--json PATH`` writes the JSON
alone.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import sys
import time
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from multiprocessing import get_context
from pathlib import Path

try:
    from . import _common as C
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common as C

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, RidgeCV
from sklearn.model_selection import GridSearchCV, GroupKFold

import skmeta
from skmeta.datasets import load_grouped_table
from skmeta.metrics import get_task_scorer
from skmeta.modules import MLP

try:  # skmeta versions before ALPaCA have no LinearFeatures
    from skmeta.modules import LinearFeatures
except ImportError:
    LinearFeatures = None

TITLE = "Few-shot regression on grouped tables (mlmRev): skmeta vs classical baselines"
TABLES = ("Exam", "Chem97")
#: the covariate the mixed model's random slope is expected on (the script checks it)
EXPECTED_STRONGEST = {"Exam": "standLRT", "Chem97": "gcsescore"}
REFERENCE = "LMM, random intercept + slope"
SPLINE_LMM = "LMM, spline fixed effect, random intercept + slope"
RIDGE_ALPHAS = np.logspace(-2, 3, 11)
LEVEL = 0.9  # the prediction intervals' confidence level (--intervals)
Z90 = 1.6448536269514722  # the standard normal's 95% quantile


# --------------------------------------------------------------------------- estimator specs


@dataclass
class Spec:
    """A skmeta estimator as the harness builds and tunes it."""

    label: str
    cls_name: str
    params: dict
    grid: dict
    optional: bool = False


HIDDEN = (32, 32)

# The two-value grids (and the fixed parameters) were narrowed from wider grids (inner_lr
# 0.003-0.1 x lr 1e-3-1e-2, 400 and 1500 meta-iterations) by the inner cross-validation score
# on the training schools of Exam, seed 0, fold 0, k = 5; no test school was scored. 1500
# meta-iterations were no better than 400 there.
SPECS = {
    "maml": Spec("MAML (2nd order), MLP 32-32", "MAMLRegressor",
                 dict(module=MLP, module__hidden=HIDDEN, inner_steps=1, lr=1e-3),
                 {"inner_lr": [0.03, 0.1]}),
    "fomaml": Spec("FOMAML, MLP 32-32", "MAMLRegressor",
                   dict(module=MLP, module__hidden=HIDDEN, inner_steps=1, lr=1e-3,
                        first_order=True),
                   {"inner_lr": [0.03, 0.1]}),
    "reptile": Spec("Reptile (5 steps), MLP 32-32", "ReptileRegressor",
                    dict(module=MLP, module__hidden=HIDDEN, inner_steps=5, inner_lr=0.01),
                    {"lr": [0.3, 1.0]}),
    "pretrained": Spec("Pretrained + 5 fine-tuning steps, MLP 32-32", "PretrainedRegressor",
                       dict(module=MLP, module__hidden=HIDDEN, adapt_steps=5, lr=1e-3),
                       {"inner_lr": [0.003, 0.01]}),
    "maml-linear": Spec("MAML (2nd order), linear module", "MAMLRegressor",
                        dict(module=MLP, module__hidden=(), inner_steps=1, lr=1e-2),
                        {"inner_lr": [0.01, 0.03]}),
    # used when skmeta has them (getattr(skmeta, class name)); their grids were narrowed the
    # same way (300 meta-iterations; R2-D2 also at 1200, which was worse)
    "metasgd": Spec("Meta-SGD, MLP 32-32", "MetaSGDRegressor",
                    dict(module=MLP, module__hidden=HIDDEN, inner_steps=1, lr=3e-3),
                    {"inner_lr": [0.1, 0.3]}, optional=True),
    "anil": Spec("ANIL (head only), MLP 32-32", "ANILRegressor",
                 dict(module=MLP, module__hidden=HIDDEN, inner_steps=1, lr=3e-3),
                 {"inner_lr": [0.03, 0.1]}, optional=True),
    "mamlpp": Spec("MAML++ (5 steps), MLP 32-32", "MAMLPlusPlusRegressor",
                   dict(module=MLP, module__hidden=HIDDEN, inner_steps=5, lr=1e-3),
                   {"inner_lr": [0.003, 0.01]}, optional=True),
    "r2d2": Spec("R2-D2 (ridge head), MLP 32-32", "R2D2Regressor",
                 dict(module=MLP, module__hidden=HIDDEN, lr=3e-3, prior="zero"),
                 {"alpha": [10.0, 100.0]}, optional=True),
    # the head shrunk toward meta-learned weights instead of zero (ALPaCA's prior mean);
    # the same grid as R2-D2's, not narrowed separately
    "r2d2-prior": Spec("R2-D2, learned prior, MLP 32-32", "R2D2Regressor",
                       dict(module=MLP, module__hidden=HIDDEN, lr=3e-3, prior="learned"),
                       {"alpha": [10.0, 100.0]}, optional=True),
    # a Bayesian linear head with a learned prior (mean, covariance, noise) on the learned
    # features: the mixed model on learned features; the structure of the covariance tuned
    "alpaca": Spec("ALPaCA, MLP 32-32", "ALPaCARegressor",
                   dict(module=MLP, module__hidden=HIDDEN, lr=3e-3),
                   {"covariance": ["diag", "lowrank"]}, optional=True),
    # ALPaCA on the features [1, x]: the mixed model with random slopes on every feature,
    # fitted by the posterior-predictive likelihood of the query rows
    "alpaca-linear": Spec("ALPaCA, features [1, x]", "ALPaCARegressor",
                          dict(module=LinearFeatures, lr=1e-2),
                          {"covariance": ["diag", "full"]}, optional=True),
}
# for an estimator without a grid above: tune inner_lr if it has one, else lr
DEFAULT_INNER_LR_GRID = [0.03, 0.1]
DEFAULT_LR_GRID = [1e-3, 3e-3]


def available_specs(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """The requested estimators that exist in this skmeta, and why the others are left out."""
    keep, missing = [], {}
    for name in names:
        spec = SPECS[name]
        if getattr(skmeta, spec.cls_name, None) is None:
            missing[name] = f"skmeta has no {spec.cls_name}"
        else:
            keep.append(name)
    return keep, missing


def build_estimator(name: str, *, k: int, n_query: int, batch_size: int, max_epochs: int,
                    seed: int, quick: bool):
    spec = SPECS[name]
    cls = getattr(skmeta, spec.cls_name)
    est = cls(k_shot=k, n_query=n_query, batch_size=batch_size, max_epochs=max_epochs,
              verbose=0, random_state=seed, device="cpu", **spec.params)
    grid = dict(spec.grid)
    if not grid:  # an optional estimator: tune its inner step size, or its outer one
        names = est.get_params(deep=False)
        grid = ({"inner_lr": DEFAULT_INNER_LR_GRID} if "inner_lr" in names
                else {"lr": DEFAULT_LR_GRID})
    if quick:  # at most two values of each grid parameter
        grid = {key: values[::max(1, len(values) - 1)][:2] for key, values in grid.items()}
    return est, grid


# --------------------------------------------------------------------------- GPBoost

GPBOOST = "GPBoost, trees + random intercept + slope"
#: fixed tree settings; the number of rounds is chosen by inner cross-validation
GPB_PARAMS = dict(objective="regression_l2", learning_rate=0.05, max_depth=3, num_leaves=8,
                  min_data_in_leaf=20, num_threads=1, deterministic=True, verbose=-1)
GPB_MAX_ROUNDS = 1000
GPB_EARLY_STOPPING = 20


def import_gpboost():
    """``(gpboost module, None)``, or ``(None, why not)`` when it does not import."""
    try:
        import gpboost
    except ImportError as exc:
        return None, (f"gpboost does not import ({exc}); install it with `pip install gpboost` "
                      "or `pip install -e \".[tables]\"`")
    return gpboost, None


class GPBoostModel:
    """GPBoost: boosted trees for the fixed effects, a random intercept and a random slope on
    ``slope_column`` per group; the number of rounds by a grouped inner CV."""

    def __init__(self, slope_column: int, *, inner_folds: int = 3, seed: int = 0,
                 max_rounds: int = GPB_MAX_ROUNDS):
        self.slope_column, self.inner_folds = slope_column, inner_folds
        self.seed, self.max_rounds = seed, max_rounds

    def _gp_model(self, gpb, groups, X):
        gm = gpb.GPModel(group_data=groups, group_rand_coef_data=X[:, self.slope_column],
                         ind_effect_group_rand_coef=[1], likelihood="gaussian")
        gm.set_optim_params(params={"trace": False})
        return gm

    def fit(self, X, y, groups):
        gpb, why = import_gpboost()
        if gpb is None:
            raise ImportError(why)
        self.version_ = gpb.__version__
        params = {**GPB_PARAMS, "seed": self.seed}
        folds = list(GroupKFold(self.inner_folds).split(X, y, groups))
        cv = gpb.cv(params, gpb.Dataset(X, y), gp_model=self._gp_model(gpb, groups, X),
                    num_boost_round=self.max_rounds, early_stopping_rounds=GPB_EARLY_STOPPING,
                    folds=folds, metric="l2", use_gp_model_for_validation=True)
        key = next(k for k in cv if k.endswith("l2-mean"))
        self.n_rounds_ = len(cv[key])  # truncated at the best iteration
        self.inner_cv_mse_ = float(cv[key][-1])
        gm = self._gp_model(gpb, groups, X)
        self.booster_ = gpb.train(params, gpb.Dataset(X, y), gp_model=gm,
                                  num_boost_round=self.n_rounds_)
        # [residual variance, random intercept variance, random slope variance]
        self.cov_pars_ = np.asarray(gm.get_cov_pars(), dtype=float).ravel()
        self._gpb = gpb
        return self

    def fixed(self, X):
        return np.asarray(self.booster_.predict(X, ignore_gp_model=True), dtype=float)

    def predict_new(self, sup, qry):
        """Means and predictive variances of the query rows of new groups given their support
        rows: GPBoost's ``GPModel.predict`` on the support residuals with the fitted
        covariance parameters (one call for all the groups)."""
        j = self.slope_column
        g_s = np.concatenate([np.full(len(ys), i) for i, (_, ys) in enumerate(sup)])
        g_q = np.concatenate([np.full(len(Xq), i) for i, (Xq, _) in enumerate(qry)])
        X_s = np.concatenate([Xs for Xs, _ in sup])
        y_s = np.concatenate([ys for _, ys in sup])
        X_q = np.concatenate([Xq for Xq, _ in qry])
        new = self._gp_model(self._gpb, g_s, X_s)
        out = new.predict(y=y_s - self.fixed(X_s), cov_pars=self.cov_pars_, group_data_pred=g_q,
                          group_rand_coef_data_pred=X_q[:, j], predict_var=True,
                          predict_response=True)
        mean = self.fixed(X_q) + np.asarray(out["mu"], dtype=float)
        var = np.asarray(out["var"], dtype=float)
        cuts = np.cumsum([len(Xq) for Xq, _ in qry])[:-1]
        return np.split(mean, cuts), np.split(var, cuts)

    def check_new(self, sup, qry, means, variances) -> tuple[float, float]:
        """max |GPBoost - closed-form BLUP| of the means and of the variances, with GPBoost's
        covariance parameters and trees."""
        s2, G = self.cov_pars_[0], np.diag(self.cov_pars_[1:])
        dm = dv = 0.0
        for (Xs, ys), (Xq, _), m, v in zip(sup, qry, means, variances):
            Z_s = np.column_stack([np.ones(len(Xs)), Xs[:, self.slope_column]])
            Z_q = np.column_stack([np.ones(len(Xq)), Xq[:, self.slope_column]])
            b = blup(G, s2, Z_s, ys - self.fixed(Xs))
            V = Z_s @ G @ Z_s.T + s2 * np.eye(len(Z_s))
            P = G - G @ Z_s.T @ np.linalg.solve(V, Z_s @ G)
            dm = max(dm, float(np.max(np.abs(self.fixed(Xq) + Z_q @ b - m))))
            dv = max(dv, float(np.max(np.abs(np.einsum("ij,jk,ik->i", Z_q, P, Z_q) + s2 - v))))
        return dm, dv


# --------------------------------------------------------------------------- helpers


class WarningCounter:
    """Record every warning raised inside ``with counter:`` (nothing is silenced: the
    messages are counted and reported instead of printed)."""

    def __init__(self):
        self.counts: Counter = Counter()

    def __enter__(self):
        self._ctx = warnings.catch_warnings(record=True)
        self._log = self._ctx.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        for w in self._log:
            first_line = str(w.message).strip().splitlines()[0] if str(w.message).strip() else ""
            first_line = re.sub(r"\d+", "N", first_line)  # one entry for "after 12/15 steps"
            self.counts[f"{w.category.__name__}: {first_line[:140]}"] += 1
        return False


def support_draws(groups: np.ndarray, schools: np.ndarray, k: int, seed: int):
    """``[(school, support row indices, query row indices)]`` and the skipped schools."""
    episodes, skipped = [], []
    for school in schools:
        rows = np.flatnonzero(groups == school)
        if len(rows) < k + 2:
            skipped.append(int(school))
            continue
        rng = np.random.default_rng([seed, k, int(school)])
        perm = rng.permutation(rows)
        episodes.append((int(school), np.sort(perm[:k]), np.sort(perm[k:])))
    return episodes, skipped


def blup(G: np.ndarray, sigma2: float, Z_s: np.ndarray, r_s: np.ndarray) -> np.ndarray:
    """``G Z_s^T (Z_s G Z_s^T + sigma^2 I)^-1 r_s``: the random effects given the support."""
    V = Z_s @ G @ Z_s.T + sigma2 * np.eye(len(Z_s))
    return G @ Z_s.T @ np.linalg.solve(V, r_s)


class MixedModel:
    """statsmodels ``MixedLM`` (REML) with a random intercept and optional random slopes.

    The fixed effects are an intercept and every feature; with ``spline_column`` that
    feature enters the fixed effects as a cubic B-spline basis (5 knots at its quantiles
    on the training rows, ``SplineTransformer(include_bias=False)``) in place of its raw
    values, while a random slope on it stays linear.
    """

    def __init__(self, slope_columns: list[int], spline_column: int | None = None):
        self.slope_columns = slope_columns
        self.spline_column = spline_column

    def _Z(self, X):
        return np.column_stack([np.ones(len(X))] + [X[:, j] for j in self.slope_columns])

    def _fixed_design(self, X):
        if self.spline_column is None:
            return X
        j = self.spline_column
        return np.column_stack([self.spline_.transform(X[:, [j]]), np.delete(X, j, axis=1)])

    def fit(self, X, y, groups):
        import statsmodels.api as sm
        from sklearn.preprocessing import SplineTransformer

        if self.spline_column is not None:
            self.spline_ = SplineTransformer(n_knots=5, degree=3, knots="quantile",
                                             include_bias=False)
            self.spline_.fit(X[:, [self.spline_column]])
        exog = np.column_stack([np.ones(len(X)), self._fixed_design(X)])
        self.result_ = sm.MixedLM(y, exog, groups=groups, exog_re=self._Z(X)).fit(reml=True)
        self.beta_ = np.asarray(self.result_.fe_params)
        self.G_ = np.asarray(self.result_.cov_re)
        self.sigma2_ = float(self.result_.scale)
        self.converged_ = bool(self.result_.converged)
        return self

    def fixed(self, X):
        return self.beta_[0] + self._fixed_design(X) @ self.beta_[1:]

    def predict(self, X_s, y_s, X_q):
        b = blup(self.G_, self.sigma2_, self._Z(X_s), y_s - self.fixed(X_s))
        return self.fixed(X_q) + self._Z(X_q) @ b

    def predict_var(self, X_s, X_q):
        """The BLUP's predictive variance of each query row: ``Z_q P Z_q^T`` (``P``: the
        covariance of the random effects given the support rows) plus ``sigma^2``; the
        fixed effects are taken as known."""
        Z_s, Z_q = self._Z(X_s), self._Z(X_q)
        V = Z_s @ self.G_ @ Z_s.T + self.sigma2_ * np.eye(len(Z_s))
        P = self.G_ - self.G_ @ Z_s.T @ np.linalg.solve(V, Z_s @ self.G_)
        return np.einsum("ij,jk,ik->i", Z_q, P, Z_q) + self.sigma2_

    def check_blup(self, X, y, groups) -> float:
        """max |our BLUP - statsmodels' random_effects| on the largest training school."""
        ids, counts = np.unique(groups, return_counts=True)
        school = ids[np.argmax(counts)]
        rows = groups == school
        ours = blup(self.G_, self.sigma2_, self._Z(X[rows]), y[rows] - self.fixed(X[rows]))
        try:
            theirs = np.asarray(self.result_.random_effects[school])
        except ValueError as exc:  # singular G: statsmodels refuses, our formula does not
            return float("nan") if "singular" in str(exc) else float("inf")
        return float(np.max(np.abs(ours - theirs)))


def strongest_covariate(X, y, names) -> dict:
    """The feature with the largest |standardised pooled OLS coefficient| (X, y standardised)."""
    coef = LinearRegression().fit(X, y).coef_
    corr = np.array([np.corrcoef(X[:, j], y)[0, 1] if X[:, j].std() > 0 else 0.0
                     for j in range(X.shape[1])])
    j = int(np.argmax(np.abs(coef)))
    return {"index": j, "name": names[j],
            "std_ols_coef": {n: round(float(c), 3) for n, c in zip(names, coef)},
            "corr_with_target": {n: round(float(c), 3) for n, c in zip(names, corr)},
            "largest_abs_corr": names[int(np.argmax(np.abs(corr)))]}


def errors(y_true_list, y_pred_list, y_scale: float) -> dict:
    """Mean over schools of the query MSE, and the pooled query MSE, in original units."""
    per_school = [float(np.mean((yt - yp) ** 2)) * y_scale ** 2
                  for yt, yp in zip(y_true_list, y_pred_list)]
    sse = sum(float(np.sum((yt - yp) ** 2)) for yt, yp in zip(y_true_list, y_pred_list))
    n = sum(len(yt) for yt in y_true_list)
    return {"mean_school_mse": float(np.mean(per_school)),
            "pooled_mse": sse / n * y_scale ** 2,
            "n_schools": len(per_school), "n_query_rows": n}


def interval_errors(y_true_list, mean_list, std_list, half_list, y_scale: float,
                    prefix: str = "") -> dict:
    """Mean over schools of the coverage of ``mean +- half``, its width and the Gaussian NLL
    with ``std`` (original units: the NLL of the standardised target plus log(y_scale))."""
    cover, width, nll = [], [], []
    for y, m, s, h in zip(y_true_list, mean_list, std_list, half_list):
        cover.append(float(np.mean(np.abs(y - m) <= h)))
        width.append(float(np.mean(2 * h)) * y_scale)
        nll.append(float(np.mean(0.5 * ((y - m) / s) ** 2 + np.log(s)
                                 + 0.5 * np.log(2 * np.pi))) + math.log(y_scale))
    return {f"{prefix}coverage90": float(np.mean(cover)), f"{prefix}width90": float(np.mean(width)),
            f"{prefix}nll": float(np.mean(nll))}


# --------------------------------------------------------------------------- one run


def conformal_errors(est, best_params: dict, tasks: list, sup: list, qry: list, y_true: list,
                     y_sd: float, seed: int) -> dict:
    """Split-conformal intervals (skmeta.intervals): the tuned estimator meta-trained again on
    three quarters of the training schools' tasks and calibrated on the other quarter, then
    adapted on each test school's support rows. The NLL is that of the Gaussian with the
    calibrated interval."""
    from sklearn.base import clone

    from skmeta.intervals import ConformalMetaRegressor

    conformal = ConformalMetaRegressor(clone(est).set_params(**best_params),
                                       confidence_level=LEVEL, conformalize_size=0.25,
                                       random_state=seed).fit(tasks)
    adapted = conformal.adapt_tasks(sup)
    means, halves = [], []
    for a, (Xq, _) in zip(adapted, qry):
        mean, pis = a.predict_interval(Xq.astype(np.float32))
        means.append(mean.astype(float))
        halves.append((pis[:, 1, 0] - pis[:, 0, 0]).astype(float) / 2)
    out = interval_errors(y_true, means, [h / Z90 for h in halves], halves, y_sd)
    out["conformal_mse"] = errors(y_true, means, y_sd)["mean_school_mse"]
    out["conformal_quantile"] = float(conformal.quantile_)
    out["conformity_score"] = conformal.conformity_score_
    return out


def run_fold(table: str, data, *, seed: int, fold: int, train_idx, test_idx, ks, names,
             args) -> list[dict]:
    """Every method on one (seed, fold): a list of result records."""
    groups = data.groups
    X_raw, y_raw = data.X, data.y
    mu, sd = X_raw[train_idx].mean(0), X_raw[train_idx].std(0)
    sd[sd == 0] = 1.0
    y_mu, y_sd = float(y_raw[train_idx].mean()), float(y_raw[train_idx].std())
    X = (X_raw - mu) / sd
    y = (y_raw - y_mu) / y_sd
    Xtr, ytr, gtr = X[train_idx], y[train_idx], groups[train_idx]
    test_schools = np.unique(groups[test_idx])
    records = []
    base = {"table": table, "seed": seed, "fold": fold,
            "n_train_schools": int(len(np.unique(gtr))), "n_test_schools": len(test_schools),
            "target_var_train": y_sd ** 2}

    def record(k, method, err, **extra):
        records.append({**base, "k": k, "method": method, **err, **extra})

    # ---- pooled models (independent of k)
    strong = strongest_covariate(Xtr, ytr, data.feature_names)
    pooled = {}
    t0 = time.perf_counter()
    with WarningCounter() as wc:
        ols = LinearRegression().fit(Xtr, ytr)
    pooled["pooled OLS"] = (ols, time.perf_counter() - t0, wc.counts)
    t0 = time.perf_counter()
    with WarningCounter() as wc:
        hgb = HistGradientBoostingRegressor(random_state=seed).fit(Xtr, ytr)
    pooled["pooled HGB"] = (hgb, time.perf_counter() - t0, wc.counts)
    lmms = {}
    for method, slopes, spline in (
            ("LMM, random intercept", [], None),
            (REFERENCE, [strong["index"]], None),
            (SPLINE_LMM, [strong["index"]], strong["index"])):
        t0 = time.perf_counter()
        with WarningCounter() as wc:
            try:
                model = MixedModel(slopes, spline).fit(Xtr, ytr, gtr)
                error = None
            except Exception as exc:  # reported, not hidden
                model, error = None, f"{type(exc).__name__}: {exc}"
        info = {"fit_seconds": time.perf_counter() - t0, "warnings": dict(wc.counts),
                "error": error}
        if model is not None:
            info.update(converged=model.converged_, G=model.G_.tolist(), sigma2=model.sigma2_,
                        blup_check_max_abs_diff=model.check_blup(Xtr, ytr, gtr),
                        slope_on=[data.feature_names[j] for j in slopes],
                        spline_on=None if spline is None else data.feature_names[spline])
        lmms[method] = (model, info)
    gpboost = None
    if args.run_gpboost:
        t0 = time.perf_counter()
        with WarningCounter() as wc:
            try:
                gpboost = GPBoostModel(strong["index"], inner_folds=args.inner_folds, seed=seed,
                                       max_rounds=100 if args.quick else GPB_MAX_ROUNDS
                                       ).fit(Xtr, ytr, gtr)
                gpb_info = {"best_params": {"num_boost_round": gpboost.n_rounds_},
                            "inner_cv_mse_std_units": gpboost.inner_cv_mse_,
                            "cov_pars": {"residual_var": gpboost.cov_pars_[0],
                                         "intercept_var": gpboost.cov_pars_[1],
                                         "slope_var": gpboost.cov_pars_[2]},
                            "gpboost_version": gpboost.version_,
                            "slope_on": [data.feature_names[strong["index"]]]}
            except Exception as exc:  # reported, not hidden
                gpb_info = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        gpb_info.update(fit_seconds=time.perf_counter() - t0, warnings=dict(wc.counts))
        print(f"  [{table} seed {seed} fold {fold}] {GPBOOST}: "
              + (f"{gpboost.n_rounds_} rounds, cov pars {np.round(gpboost.cov_pars_, 4)}"
                 if gpboost is not None else gpb_info["error"][:80])
              + f", {gpb_info['fit_seconds']:.0f} s", flush=True)

    for k in ks:
        episodes, skipped = support_draws(groups, test_schools, k, seed)
        sup = [(X[s], y[s]) for _, s, _ in episodes]
        qry = [(X[q], y[q]) for _, _, q in episodes]
        y_true = [yq for _, yq in qry]
        common = {"n_skipped_schools": len(skipped)}
        for method in ("pooled OLS", "pooled HGB"):
            model, fit_s, wcounts = pooled[method]
            preds = [model.predict(Xq) for Xq, _ in qry]
            record(k, method, errors(y_true, preds, y_sd), fit_seconds=fit_s,
                   warnings=dict(wcounts), **common)
        with WarningCounter() as wc:
            t0 = time.perf_counter()
            preds, alphas = [], []
            for (Xs, ys), (Xq, _) in zip(sup, qry):
                ridge = RidgeCV(alphas=RIDGE_ALPHAS).fit(Xs, ys)
                alphas.append(float(ridge.alpha_))
                preds.append(ridge.predict(Xq))
        record(k, "ridge on support", errors(y_true, preds, y_sd),
               fit_seconds=time.perf_counter() - t0, warnings=dict(wc.counts),
               alpha_counts={str(a): int(c) for a, c in zip(*np.unique(alphas,
                                                                        return_counts=True))},
               **common)
        preds = [ols.predict(Xq) + np.mean(ys - ols.predict(Xs))
                 for (Xs, ys), (Xq, _) in zip(sup, qry)]
        record(k, "pooled OLS + support mean residual", errors(y_true, preds, y_sd),
               fit_seconds=pooled["pooled OLS"][1], warnings={}, **common)
        for method, (model, info) in lmms.items():
            if model is None:
                record(k, method, {"mean_school_mse": float("nan"), "pooled_mse": float("nan"),
                                   "n_schools": len(sup), "n_query_rows": 0}, **info, **common)
                continue
            preds = [model.predict(Xs, ys, Xq) for (Xs, ys), (Xq, _) in zip(sup, qry)]
            stds = [np.sqrt(model.predict_var(Xs, Xq)) for (Xs, _), (Xq, _) in zip(sup, qry)]
            err = errors(y_true, preds, y_sd)
            err.update(interval_errors(y_true, preds, stds, [Z90 * s for s in stds], y_sd))
            record(k, method, err, **info,
                   strongest=strong if method == REFERENCE else None, **common)
        if args.run_gpboost:
            if gpboost is None:
                record(k, GPBOOST, {"mean_school_mse": float("nan"),
                                    "pooled_mse": float("nan"), "n_schools": len(sup),
                                    "n_query_rows": 0}, **gpb_info, **common)
            else:
                t0 = time.perf_counter()
                with WarningCounter() as wc:
                    preds, variances = gpboost.predict_new(sup, qry)
                    stds = [np.sqrt(v) for v in variances]
                    err = errors(y_true, preds, y_sd)
                    err.update(interval_errors(y_true, preds, stds, [Z90 * s for s in stds],
                                               y_sd))
                    dm, dv = gpboost.check_new(sup, qry, preds, variances)
                record(k, GPBOOST, err, **{**gpb_info, "warnings": {
                           **gpb_info["warnings"], **{m: c for m, c in wc.counts.items()}}},
                       predict_seconds=time.perf_counter() - t0,
                       check_vs_closed_form={"max_abs_diff_mean": dm, "max_abs_diff_var": dv},
                       **common)

        # ---- skmeta's meta-learners
        big = [g for g in np.unique(gtr) if np.sum(gtr == g) >= k + args.n_query]
        tasks = [(Xtr[gtr == g].astype(np.float32), ytr[gtr == g].astype(np.float32))
                 for g in big]
        task_ids = np.asarray(big)
        # an epoch is one pass over the tasks: max_epochs such that each grid-search fit
        # (on (inner_folds - 1) / inner_folds of the tasks) makes about --iters meta-updates
        inner_train = len(tasks) * (args.inner_folds - 1) / args.inner_folds
        max_epochs = max(1, round(args.iters / math.ceil(max(inner_train, 1) / args.batch_size)))
        batches_per_epoch = math.ceil(len(tasks) / args.batch_size)
        sup32 = [(Xs.astype(np.float32), ys.astype(np.float32)) for Xs, ys in sup]
        for name in names:
            extra = {"n_train_tasks": len(tasks), "max_epochs": max_epochs,
                     "refit_meta_iterations": max_epochs * batches_per_epoch}
            t0 = time.perf_counter()
            with WarningCounter() as wc:
                try:  # an estimator that fails (to build, fit or adapt) is reported, not fatal
                    est, grid = build_estimator(name, k=k, n_query=args.n_query,
                                                batch_size=args.batch_size,
                                                max_epochs=max_epochs, seed=seed,
                                                quick=args.quick)
                    extra["grid"] = {kk: list(v) for kk, v in grid.items()}
                    search = GridSearchCV(est, grid, cv=GroupKFold(args.inner_folds),
                                          scoring=get_task_scorer("neg_mean_squared_error"),
                                          error_score=np.nan, refit=True)
                    search.fit(tasks, groups=task_ids)
                    fit_s = time.perf_counter() - t0
                    t1 = time.perf_counter()
                    adapted = search.best_estimator_.adapt_tasks(sup32)
                    preds = [a.predict(Xq.astype(np.float32)).astype(float)
                             for a, (Xq, _) in zip(adapted, qry)]
                    err = errors(y_true, preds, y_sd)
                    if adapted[0].predictive_ is not None:  # its own posterior, uncalibrated
                        stds = [a.predict(Xq.astype(np.float32), return_std=True)[1]
                                .astype(float) for a, (Xq, _) in zip(adapted, qry)]
                        err.update(interval_errors(y_true, preds, stds,
                                                   [Z90 * sd for sd in stds], y_sd, "raw_"))
                    if args.intervals:
                        err.update(conformal_errors(est, search.best_params_, tasks, sup32,
                                                    qry, y_true, y_sd, seed))
                    extra.update(best_params={kk: v for kk, v in search.best_params_.items()},
                                 inner_cv_mse_std_units=float(-search.best_score_),
                                 n_failed_candidates=int(np.isnan(
                                     search.cv_results_["mean_test_score"]).sum()),
                                 engine=dict(getattr(search.best_estimator_, "engine_", {})),
                                 adapt_predict_seconds=time.perf_counter() - t1)
                except Exception as exc:
                    fit_s = time.perf_counter() - t0
                    err = {"mean_school_mse": float("nan"), "pooled_mse": float("nan"),
                           "n_schools": len(sup), "n_query_rows": 0}
                    extra["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            record(k, SPECS[name].label, err, fit_seconds=fit_s, warnings=dict(wc.counts),
                   **extra, **common)
            status = (f"MSE {err['mean_school_mse']:.4f}" if "error" not in extra
                      else extra["error"][:80])
            print(f"  [{table} seed {seed} fold {fold} k={k}] {SPECS[name].label}: {status}, "
                  f"{fit_s:.0f} s, best {extra.get('best_params')}", flush=True)
        ref = [r for r in records if r["k"] == k and r["method"] == REFERENCE]
        msg = f"{ref[0]['mean_school_mse']:.4f}" if ref else "-"
        print(f"  [{table} seed {seed} fold {fold} k={k}] done (LMM slope {msg}; "
              f"{len(episodes)} test schools, {len(skipped)} skipped)", flush=True)
    return records


# --------------------------------------------------------------------------- summary


def fmt(mean: float, sd: float) -> str:
    if not np.isfinite(mean):
        return "failed"
    digits = 3 if abs(mean) >= 0.1 else 4
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _paired(rows: list[dict], runs: list, method: str, reference: str) -> dict:
    """Mean and sd over runs of ``method``'s MSE minus ``reference``'s, and its wins."""
    rs = {(r["seed"], r["fold"]): r["mean_school_mse"] for r in rows if r["method"] == method}
    ref = {(r["seed"], r["fold"]): r["mean_school_mse"] for r in rows
           if r["method"] == reference}
    diff = np.array([rs[u] - ref[u] for u in runs if u in rs and u in ref])
    diff = diff[np.isfinite(diff)]
    return {"mean": float(diff.mean()) if len(diff) else float("nan"),
            "sd": float(diff.std(ddof=1)) if len(diff) > 1 else 0.0,
            "better": int(np.sum(diff < 0)), "n": len(diff)}


def summarise(records: list[dict], table: str, k: int) -> tuple[list[dict], str]:
    rows = [r for r in records if r["table"] == table and r["k"] == k]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    runs = sorted({(r["seed"], r["fold"]) for r in rows})
    out = []
    for m in methods:
        rs = {(r["seed"], r["fold"]): r for r in rows if r["method"] == m}
        school = np.array([rs[u]["mean_school_mse"] for u in runs if u in rs])
        pooled = np.array([rs[u]["pooled_mse"] for u in runs if u in rs])
        fit = np.array([rs[u]["fit_seconds"] for u in runs if u in rs])
        n_warn = sum(sum(rs[u].get("warnings", {}).values()) for u in runs if u in rs)
        failed = sum(1 for u in runs if u in rs and not np.isfinite(rs[u]["mean_school_mse"]))
        out.append({"method": m, "n_runs": len(school),
                    "mean_school_mse": float(np.nanmean(school)) if len(school) else np.nan,
                    "mean_school_mse_sd": float(np.nanstd(school, ddof=1))
                    if len(school) > 1 else 0.0,
                    "pooled_mse": float(np.nanmean(pooled)) if len(pooled) else np.nan,
                    "pooled_mse_sd": float(np.nanstd(pooled, ddof=1)) if len(pooled) > 1
                    else 0.0,
                    "vs_lmm_slope": _paired(rows, runs, m, REFERENCE),
                    "vs_spline_lmm": _paired(rows, runs, m, SPLINE_LMM),
                    "fit_seconds_mean": float(np.mean(fit)),
                    "warnings": n_warn, "failed_runs": failed,
                    **{key: float(np.nanmean([rs[u][key] for u in runs if u in rs]))
                       for key in ("coverage90", "width90", "nll", "raw_coverage90",
                                   "raw_width90", "raw_nll")
                       if any(key in rs[u] for u in runs if u in rs)}})

    def delta(s, key, reference):
        d = s[key]
        if s["method"] == reference:
            return "(reference)"
        if not np.isfinite(d["mean"]):
            return "-"
        return f"{d['mean']:+.4f} ± {d['sd']:.4f} ({d['better']}/{d['n']})"

    table_rows = [[s["method"], fmt(s["mean_school_mse"], s["mean_school_mse_sd"]),
                   fmt(s["pooled_mse"], s["pooled_mse_sd"]),
                   delta(s, "vs_lmm_slope", REFERENCE), delta(s, "vs_spline_lmm", SPLINE_LMM),
                   f"{s['fit_seconds_mean']:.1f}",
                   str(s["warnings"]) + (f", {s['failed_runs']} failed" if s["failed_runs"]
                                         else "")]
                  for s in out]
    md = C.markdown_table(
        ["method", "query MSE, mean over schools", "query MSE, pooled",
         "Δ vs LMM slope (runs better)", "Δ vs spline LMM (runs better)",
         "fit s / run", "warnings"], table_rows)
    with_intervals = [s for s in out if "coverage90" in s or "raw_coverage90" in s]
    if with_intervals:
        def cell(s, key):
            return f"{s[key]:.3f}" if key in s and np.isfinite(s[key]) else "-"

        md += ("\n\n90% prediction intervals for the held-out schools' query students (mean "
               "over schools; width and NLL in the target's units): the mixed models' BLUP "
               "predictive (Gaussian) and GPBoost's (Gaussian, given the support rows), "
               "skmeta's split conformal across held-out training schools (--intervals), "
               "and ALPaCA's own posterior predictive (uncalibrated)."
               "\n\n" + C.markdown_table(
                   ["method", "coverage", "mean width", "NLL", "own posterior: coverage",
                    "width", "NLL"],
                   [[s["method"], cell(s, "coverage90"), cell(s, "width90"), cell(s, "nll"),
                     cell(s, "raw_coverage90"), cell(s, "raw_width90"), cell(s, "raw_nll")]
                    for s in with_intervals]))
    return out, md


def describe(records: list[dict], table: str, k: int) -> str:
    rows = [r for r in records if r["table"] == table and r["k"] == k]
    runs = sorted({(r["seed"], r["fold"]) for r in rows})
    ref = [r for r in rows if r["method"] == REFERENCE]
    any_row = {(r["seed"], r["fold"]): r for r in rows if r["method"] == "pooled OLS"}
    evaluated = [any_row[u]["n_schools"] for u in runs]
    skipped = [any_row[u]["n_skipped_schools"] for u in runs]
    qrows = [any_row[u]["n_query_rows"] for u in runs]
    var = [any_row[u]["target_var_train"] for u in runs]
    lines = [f"{len(runs)} runs (seeds x folds); per run: {min(evaluated)}-{max(evaluated)} "
             f"held-out schools evaluated ({sum(evaluated)} in all), {min(skipped)}-"
             f"{max(skipped)} skipped for having fewer than k + 2 = {k + 2} students "
             f"({sum(skipped)} in all), {min(qrows)}-{max(qrows)} query students; target "
             f"variance on the training rows {np.mean(var):.3f} (an MSE of that size means "
             "no skill)."]
    if ref:
        slopes = Counter(tuple(r.get("slope_on") or ()) for r in ref)
        expected = EXPECTED_STRONGEST.get(table)
        lines.append("Random slope on the covariate with the largest |standardised pooled OLS "
                     "coefficient| of each run's training rows: "
                     + ", ".join(f"{'/'.join(s) or 'none'} ({c} runs)" for s, c in slopes.items())
                     + (f" (expected {expected}: " + ("as expected" if set(slopes) == {(expected,)}
                                                     else "NOT always") + ")"
                        if expected else "") + ".")
    for method in ("LMM, random intercept", REFERENCE, SPLINE_LMM):
        rs = [r for r in rows if r["method"] == method]
        if not rs:
            continue
        nonconv = sum(1 for r in rs if r.get("converged") is False)
        errs = sum(1 for r in rs if r.get("error"))
        warn = Counter()
        for r in rs:
            warn.update(r.get("warnings", {}))
        check = [r.get("blup_check_max_abs_diff") for r in rs
                 if r.get("blup_check_max_abs_diff") is not None]
        lines.append(f"{method}: {nonconv} of {len(rs)} fits not converged, {errs} failed; "
                     f"BLUP vs statsmodels' random_effects on a training school: max |diff| "
                     f"{max(check) if check else float('nan'):.1e}; warnings: "
                     + ("; ".join(f"{m} (x{c})" for m, c in warn.items()) or "none"))
    gb = [r for r in rows if r["method"] == GPBOOST and "cov_pars" in r]
    if gb:
        cp = {key: [r["cov_pars"][key] for r in gb] for key in gb[0]["cov_pars"]}
        chk = [r["check_vs_closed_form"] for r in gb]
        lines.append(f"{GPBOOST} (gpboost {gb[0]['gpboost_version']}; random slope on "
                     f"{'/'.join(sorted({s for r in gb for s in r['slope_on']}))}): "
                     f"{min(r['best_params']['num_boost_round'] for r in gb)}-"
                     f"{max(r['best_params']['num_boost_round'] for r in gb)} boosting rounds "
                     "(inner grouped CV); covariance parameters (standardised units): "
                     + ", ".join(f"{key} {min(v):.3g}-{max(v):.3g}" for key, v in cp.items())
                     + "; its new-group prediction vs the closed-form BLUP with its parameters: "
                     f"max |diff| {max(c['max_abs_diff_mean'] for c in chk):.1e} (means), "
                     f"{max(c['max_abs_diff_var'] for c in chk):.1e} (variances).")
    for r in rows:
        if r.get("error"):
            lines.append(f"{r['method']} failed on seed {r['seed']} fold {r['fold']}: "
                         f"{r['error']}")
    warn = Counter()
    for r in rows:
        if not r["method"].startswith("LMM"):
            for m, c in r.get("warnings", {}).items():
                warn[f"{r['method']}: {m}"] += c
    if warn:
        lines.append("Other warnings: " + "; ".join(f"{m} (x{c})" for m, c in warn.items()))
    best = Counter()
    for r in rows:
        if "best_params" in r:
            best[(r["method"], str(r["best_params"]))] += 1
    if best:
        lines.append("Grid-search choices (runs): " + "; ".join(
            f"{m} {p} x{c}" for (m, p), c in sorted(best.items())))
    meta = [r for r in rows if "refit_meta_iterations" in r]
    if meta:
        lines.append("Meta-training tasks (training schools with >= k + n_query students): "
                     f"{min(r['n_train_tasks'] for r in meta)}-"
                     f"{max(r['n_train_tasks'] for r in meta)} per run; refit: "
                     f"{min(r['max_epochs'] for r in meta)}-{max(r['max_epochs'] for r in meta)}"
                     f" epochs = {min(r['refit_meta_iterations'] for r in meta)}-"
                     f"{max(r['refit_meta_iterations'] for r in meta)} meta-iterations.")
    return "\n".join("- " + line for line in lines)


# --------------------------------------------------------------------------- main


@cache
def load_table(table: str, quick: bool):
    data = load_grouped_table(table)
    if quick and table == "Chem97":  # the smoke run keeps a random quarter of the schools
        rng = np.random.default_rng(0)
        schools = np.unique(data.groups)
        keep = np.isin(data.groups, rng.choice(schools, len(schools) // 4, replace=False))
        data.X, data.y, data.groups = data.X[keep], data.y[keep], data.groups[keep]
    return data


def run_unit(unit: dict) -> list[dict]:
    """One (table, seed, fold), in this process or in a worker (``--jobs``)."""
    from threadpoolctl import threadpool_limits

    args = unit["args"]
    C.set_threads(args.threads)
    with threadpool_limits(args.threads):
        return run_fold(unit["table"], load_table(unit["table"], args.quick), seed=unit["seed"],
                        fold=unit["fold"], train_idx=unit["train_idx"],
                        test_idx=unit["test_idx"], ks=unit["ks"], names=unit["names"],
                        args=args)



def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: one seed, the first fold of each table, 100 "
                        "meta-iterations, two grid values, a quarter of Chem97's schools")
    p.add_argument("--tables", default=",".join(TABLES), help="comma-separated: Exam,Chem97")
    p.add_argument("--k", default="5,10", help="support sizes (comma-separated)")
    p.add_argument("--estimators", default="all",
                   help="comma-separated skmeta estimators among " + ",".join(SPECS)
                        + "; 'all' (default: those skmeta has), 'none' for the baselines only")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 2)")
    p.add_argument("--folds", type=int, default=5, help="GroupKFold splits of the schools")
    p.add_argument("--max-folds", type=int, default=None,
                   help="evaluate only the first N folds of each seed (default: all)")
    p.add_argument("--iters", type=int, default=None,
                   help="meta-iterations per grid-search fit (default 300)")
    p.add_argument("--batch-size", type=int, default=16, help="tasks per meta-batch")
    p.add_argument("--n-query", type=int, default=10,
                   help="query students per meta-training task (default 10)")
    p.add_argument("--inner-folds", type=int, default=3,
                   help="GroupKFold splits of the training schools in the grid search")
    p.add_argument("--threads", type=int, default=1,
                   help="torch/BLAS threads per process (default 1)")
    p.add_argument("--jobs", type=int, default=1,
                   help="(seed, fold) runs at once, in separate processes (default 1)")
    p.add_argument("--intervals", action="store_true",
                   help="also give skmeta's estimators split-conformal 90%% intervals (one more "
                        "meta-training per estimator: on 3/4 of the training tasks, calibrated "
                        "on the other 1/4)")
    p.add_argument("--gpboost", choices=("auto", "on", "off"), default="auto",
                   help="the GPBoost baseline (trees + grouped random intercept and slope): "
                        "'auto' (default) runs it when gpboost imports and skips it with a note "
                        "otherwise, 'on' requires it, 'off' leaves it out")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--out", default=None, help="write PREFIX.json and PREFIX.md")
    p.add_argument("--add-to", default=None, metavar="PREFIX",
                   help="run the --estimators on the splits of PREFIX.json (same tables, k, "
                        "seeds, folds, budget) and add their results to it: PREFIX.json and "
                        "PREFIX.md are rewritten; the baselines are recomputed and must agree")
    p.add_argument("--rerender", default=None, metavar="PREFIX",
                   help="recompute the tables of PREFIX.json's recorded runs (no fitting) and "
                        "rewrite PREFIX.json and PREFIX.md")
    args = p.parse_args(argv)
    if args.rerender:
        import json

        payload = json.loads(Path(args.rerender + ".json").read_text())
        payload["rerendered"] = (f"tables recomputed from the recorded runs on "
                                 f"{time.strftime('%Y-%m-%d %H:%M')} by: python "
                                 f"benchmarks/tables.py --rerender {args.rerender}")
        return write_report(payload, out=args.rerender)
    args.seeds = args.seeds or (1 if args.quick else 2)
    args.iters = args.iters or (100 if args.quick else 300)
    if args.max_folds is None and args.quick:
        args.max_folds = 1
    tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    if set(tables) - set(TABLES):
        p.error(f"unknown tables {sorted(set(tables) - set(TABLES))}; choose from {TABLES}")
    ks = [int(v) for v in args.k.split(",") if v.strip()]
    if args.estimators == "all":
        requested = list(SPECS)
    elif args.estimators == "none":
        requested = []
    else:
        requested = [e.strip() for e in args.estimators.split(",") if e.strip()]
        if set(requested) - set(SPECS):
            p.error(f"unknown estimators {sorted(set(requested) - set(SPECS))}; choose from "
                    f"{', '.join(SPECS)}")
    names, missing = available_specs(requested)
    if args.estimators not in ("all", "none"):
        for name in [n for n in requested if n in missing and not SPECS[n].optional]:
            p.error(f"{name}: {missing[name]}")

    gpb_module, gpb_missing = (None, "--gpboost off") if args.gpboost == "off" else import_gpboost()
    if args.gpboost == "on" and gpb_module is None:
        p.error(f"--gpboost on: {gpb_missing}")
    args.run_gpboost = gpb_module is not None
    if args.add_to:  # refuse before fitting anything
        check_add_to(args.add_to, vars(args), tables)
    C.set_threads(args.threads)
    info = C.machine_info()
    C.print_header(TITLE, info)
    print("estimators: " + (", ".join(SPECS[n].label for n in names) or "none")
          + ("; not in this skmeta: " + ", ".join(f"{n} ({why})" for n, why in missing.items())
             if missing else ""), flush=True)
    print(f"GPBoost baseline: gpboost {gpb_module.__version__}" if gpb_module is not None
          else f"GPBoost baseline skipped: {gpb_missing}", flush=True)
    t_start = time.perf_counter()
    records: list[dict] = []
    timings: dict = {}
    for table in tables:
        t_table = time.perf_counter()
        data = load_table(table, args.quick)
        print(f"\n{table}: {len(data.y)} students, {len(np.unique(data.groups))} schools, "
              f"features {data.feature_names}", flush=True)
        units = []
        for seed in range(args.seeds):
            splits = GroupKFold(args.folds, shuffle=True, random_state=seed).split(
                data.X, data.y, data.groups)
            for fold, (train_idx, test_idx) in enumerate(splits):
                if args.max_folds is not None and fold >= args.max_folds:
                    break
                units.append(dict(table=table, seed=seed, fold=fold, train_idx=train_idx,
                                  test_idx=test_idx, ks=ks, names=names, args=args))
        if args.jobs > 1:
            with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
                for out in pool.map(run_unit, units):
                    records += out
        else:
            for unit in units:
                records += run_unit(unit)
        timings[table] = time.perf_counter() - t_table
    total = time.perf_counter() - t_start

    payload = {"info": info, "config": {k: v for k, v in vars(args).items()},
               "estimators": {n: {"label": SPECS[n].label, "class": SPECS[n].cls_name,
                                  "params": {k: repr(v) for k, v in SPECS[n].params.items()},
                                  "grid": SPECS[n].grid} for n in names},
               "estimators_missing": missing, "records": records,
               "command": f"python benchmarks/tables.py {shlex.join(argv or sys.argv[1:])}"
               .rstrip(), "total_seconds": total, "seconds_per_table": timings}
    if args.add_to:
        payload = add_to(args.add_to, payload)
        return write_report(payload, json_path=args.json, out=args.add_to)
    return write_report(payload, json_path=args.json, out=args.out)


# settings that must agree for runs to share a table
SHARED_CONFIG = ("quick", "k", "seeds", "folds", "max_folds", "iters", "batch_size", "n_query",
                 "inner_folds")


def check_add_to(prefix: str, config: dict, tables: list[str]) -> dict:
    """The payload of ``prefix``.json, after checking that a run with ``config`` fits it."""
    import json

    old = json.loads(Path(prefix + ".json").read_text())
    for key in SHARED_CONFIG:
        if old["config"][key] != config[key]:
            raise SystemExit(f"--add-to {prefix}: {key} differs ({old['config'][key]!r} there, "
                             f"{config[key]!r} here); run with the same settings.")
    if set(tables) != {r["table"] for r in old["records"]}:
        raise SystemExit(f"--add-to {prefix}: it holds other tables than {sorted(tables)}.")
    return old


def add_to(prefix: str, new: dict) -> dict:
    """``prefix``.json's payload with ``new``'s estimator records added (or replaced)."""
    old = check_add_to(prefix, new["config"], sorted({r["table"] for r in new["records"]}))

    def key(r):
        return (r["table"], r["seed"], r["fold"], r["k"], r["method"])

    baselines = {key(r): r for r in new["records"] if "best_params" not in r
                 and "refit_meta_iterations" not in r}
    for r in old["records"]:
        b = baselines.get(key(r))
        if b is not None and not np.isclose(b["mean_school_mse"], r["mean_school_mse"],
                                            rtol=1e-9, atol=1e-12, equal_nan=True):
            raise SystemExit(f"--add-to {prefix}: {key(r)} gives {b['mean_school_mse']} here "
                             f"and {r['mean_school_mse']} there; the runs are not comparable.")
    added = {r["method"] for r in new["records"] if key(r) not in baselines}
    records = ([r for r in old["records"] if r["method"] not in added]
               + [r for r in new["records"] if r["method"] in added])
    runs = old.get("runs") or [{"command": old["command"], "total_seconds": old["total_seconds"],
                                "skmeta": old["info"]["skmeta"], "date": old["info"]["date"],
                                "load_avg_1min_at_start": old["info"]["load_avg_1min_at_start"]}]
    runs.append({"command": new["command"], "total_seconds": new["total_seconds"],
                 "skmeta": new["info"]["skmeta"], "date": new["info"]["date"],
                 "load_avg_1min_at_start": new["info"]["load_avg_1min_at_start"],
                 "added": sorted(added), "baselines_agree": len(baselines)})
    return {**old, "records": records, "runs": runs,
            "estimators": {**old["estimators"], **new["estimators"]},
            "estimators_missing": {k: v for k, v in old["estimators_missing"].items()
                                   if k not in new["estimators"]},
            "command": " ; ".join(r["command"] for r in runs),
            "total_seconds": sum(r["total_seconds"] for r in runs),
            "seconds_per_table": {t: old["seconds_per_table"].get(t, 0.0)
                                  + new["seconds_per_table"].get(t, 0.0)
                                  for t in old["seconds_per_table"]}}


def write_report(payload: dict, *, json_path: str | None = None,
                 out: str | None = None) -> dict:
    """Summarise ``payload["records"]``, print the tables and write the files."""
    cfg, info, records = payload["config"], payload["info"], payload["records"]
    tables = list(dict.fromkeys(r["table"] for r in records))
    ks = sorted({r["k"] for r in records})
    sections, summary = [], {}
    for table in tables:
        for k in ks:
            rows, md = summarise(records, table, k)
            summary[f"{table}/k={k}"] = rows
            sections.append(f"\n## {table}, k = {k} support students per held-out school\n\n"
                            f"Query MSE in the target's original units, mean ± sd over runs "
                            f"(seeds x folds). Δ: paired difference to the LMM with a linear "
                            f"random slope, and to the LMM with a spline fixed effect, mean ± "
                            f"sd over runs (negative = better than that LMM), with the number "
                            f"of runs in which the method was better.\n\n"
                            + md + "\n\n" + describe(records, table, k))
    header = (f"{cfg['seeds']} seed(s) x {cfg['folds']}-fold GroupKFold over schools"
              + (f" (first {cfg['max_folds']} fold(s) only)" if cfg["max_folds"] else "")
              + f"; k in {ks}; skmeta estimators tuned by GridSearchCV ({cfg['inner_folds']}-"
              f"fold GroupKFold over the training schools' tasks, task-aware MSE), "
              f"{cfg['iters']} meta-iterations per grid-search fit, meta-batch "
              f"{cfg['batch_size']}, {cfg['n_query']} query students per training task; "
              f"{cfg.get('jobs', 1)} process(es) x {cfg['threads']} thread(s). "
              "LMM BLUP: b = G Z_s^T (Z_s G Z_s^T + sigma^2 I)^-1 (y_s - X_s beta), "
              "prediction X_q beta + Z_q b."
              + (" QUICK RUN: one seed, the first fold, 100 meta-iterations, 2 grid values, "
                 "a quarter of Chem97's schools; not for conclusions." if cfg["quick"] else ""))
    text = header + "\n" + "\n".join(sections)
    total, timings, cmd = (payload["total_seconds"], payload["seconds_per_table"],
                           payload["command"])
    times = ", ".join(f"{t} {s / 60:.1f} min" for t, s in timings.items())
    C.print_header(TITLE + ": results", info)
    print(text)
    print(f"\ncommand: {cmd}  (total {total / 60:.1f} min: {times})")
    payload = {**payload, "summary": summary, "table": text}
    C.save_json(json_path, payload)
    if out:
        C.save_json(out + ".json", payload)
        md_path = Path(out + ".md")
        md_path.write_text(f"# {TITLE}\n\n"
                           f"torch {info['torch']}, skmeta {info['skmeta']}, "
                           f"{info['torch_threads']} torch thread(s), {info['cpu']} "
                           f"({info['cpu_count']} cores), load {info['load_avg_1min_at_start']}"
                           f" at start, {info['date']}\n\n{text}\n\n`{cmd}` "
                           f"(total {total / 60:.1f} min: {times})\n"
                           + "".join(f"\n- run {i + 1}: `{r['command']}` (skmeta "
                                     f"{r['skmeta']}, {r['date']}, {r['total_seconds'] / 60:.1f}"
                                     f" min, load {r['load_avg_1min_at_start']} at start"
                                     + (f"; added {', '.join(r['added'])}, baselines "
                                        f"identical to run 1 ({r['baselines_agree']} records)"
                                        if "added" in r else "") + ")"
                                     for i, r in enumerate(payload.get("runs", [])))
                           + (f"\n({payload['rerendered']})\n" if "rerendered" in payload
                              else ""))
        print(f"wrote {md_path}")
    return payload


if __name__ == "__main__":
    main()
