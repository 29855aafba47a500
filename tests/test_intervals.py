"""Prediction intervals for a new task: split conformal across tasks, and interval scorers."""

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.model_selection import GridSearchCV

import skmeta
from skmeta import (
    ALPaCARegressor,
    ANILRegressor,
    MAMLPlusPlusRegressor,
    MAMLRegressor,
    MetaSGDRegressor,
    PretrainedRegressor,
    R2D2Regressor,
    ReptileRegressor,
)
from skmeta.datasets import make_sinusoid_tasks
from skmeta.intervals import ConformalMetaRegressor, conformal_quantile, interval_predictions
from skmeta.metrics import coverage_score, gaussian_nll_score, get_task_scorer, mean_width_score

FAST = dict(max_epochs=1, verbose=0, random_state=0, module__hidden=(16, 16))
REGRESSORS = [MAMLRegressor, MetaSGDRegressor, ANILRegressor, MAMLPlusPlusRegressor,
              R2D2Regressor, ReptileRegressor, PretrainedRegressor, ALPaCARegressor]


def test_conformal_quantile_weighs_tasks_equally_and_is_split_conformal_for_single_scores():
    scores = [[float(i)] for i in range(1, 20)]  # 19 tasks of one score: ordinary split conformal
    # the ceil((n + 1) * 0.9) = 18th smallest of 19
    assert conformal_quantile(scores, 0.9) == 18.0
    # a task with many rows does not outweigh the others
    assert conformal_quantile([[0.0] * 100, [10.0], [10.0]], 0.5) == 10.0
    assert conformal_quantile([[1.0], [2.0]], 0.9) == np.inf  # too few tasks for the level
    with pytest.raises(ValueError, match="at least one task"):
        conformal_quantile([], 0.9)


def test_interval_metrics():
    assert coverage_score([0, 1, 2, 3], [0, 0, 0, 0], [1, 1, 1, 1]) == 0.5
    assert mean_width_score([0, 1], [1, 3]) == 1.5
    np.testing.assert_allclose(gaussian_nll_score([1.0, 2.0], [0.0, 0.0], [1.0, 2.0]),
                               -norm.logpdf([1.0, 2.0], 0, [1.0, 2.0]).mean())


@pytest.mark.parametrize("Est", REGRESSORS)
def test_conformal_intervals_cover_new_tasks_at_the_stated_level(Est):
    train = make_sinusoid_tasks(n_tasks=50, n_samples=15, random_state=0)
    held_out = make_sinusoid_tasks(n_tasks=200, n_samples=15, random_state=1)
    new = make_sinusoid_tasks(n_tasks=300, n_samples=15, random_state=2)
    est = Est(k_shot=5, **FAST).fit(train)
    conformal = ConformalMetaRegressor(est, prefit=True, random_state=0).conformalize(held_out)
    assert conformal.n_conformalize_tasks_ == 200
    assert conformal.conformity_score_ == ("normalized" if Est is ALPaCARegressor
                                           else "absolute")
    preds = interval_predictions(conformal, new)
    coverage = np.mean([coverage_score(y, lo, hi) for y, _, lo, hi, _ in preds])
    assert 0.86 <= coverage <= 0.94, coverage  # marginal over new tasks
    # the calibrated interval is the adapted model's prediction +- the quantile
    X, y = new[0]
    model = conformal.adapt(X[:5], y[:5])
    y_pred, y_pis = model.predict_interval(X[5:])
    np.testing.assert_array_equal(y_pred, model.predict(X[5:]))
    half = (y_pis[:, 1, 0] - y_pis[:, 0, 0]) / 2
    if Est is ALPaCARegressor:  # wider where the posterior is less sure
        np.testing.assert_allclose(half, conformal.quantile_ *
                                   model.predict(X[5:], return_std=True)[1], rtol=1e-6)
    else:
        np.testing.assert_allclose(half, conformal.quantile_, rtol=1e-6)


def test_calibration_survives_pickle_and_save(tmp_path):
    tasks = make_sinusoid_tasks(n_tasks=80, n_samples=15, random_state=0)
    conformal = ConformalMetaRegressor(MAMLRegressor(k_shot=5, **FAST), random_state=0,
                                       confidence_level=0.8).fit(tasks)
    assert conformal.n_conformalize_tasks_ == 20
    X, y = tasks[0]
    model = conformal.adapt(X[:5], y[:5])
    model.save(tmp_path / "m.skmeta")
    loaded = skmeta.load(tmp_path / "m.skmeta")
    np.testing.assert_array_equal(loaded.predict_interval(X)[1], model.predict_interval(X)[1])
    with pytest.raises(ValueError, match="calibrated for confidence_level=0.8"):
        model.predict_interval(X, confidence_level=0.9)


def test_intervals_are_refused_clearly_where_they_do_not_exist():
    tasks = make_sinusoid_tasks(n_tasks=30, n_samples=15, random_state=0)
    maml = MAMLRegressor(k_shot=5, **FAST).fit(tasks)
    X, y = tasks[0]
    with pytest.raises(ValueError, match="ConformalMetaRegressor"):
        maml.adapt(X[:5], y[:5]).predict_interval(X)
    with pytest.raises(TypeError, match="ConformalMetaRegressor"):
        get_task_scorer("coverage")(maml, tasks)
    with pytest.raises(ValueError, match="'absolute'"):
        ConformalMetaRegressor(maml, prefit=True, conformity_score="normalized").conformalize(
            tasks)
    with pytest.raises(ValueError, match="conformalize"):
        ConformalMetaRegressor(maml, prefit=True).fit(tasks)
    with pytest.raises(ValueError, match="conformalize_size"):
        ConformalMetaRegressor(maml, conformalize_size=30).fit(tasks)
    with pytest.warns(RuntimeWarning, match="infinite"):
        ConformalMetaRegressor(maml, prefit=True).conformalize(tasks[:3])
    with pytest.raises(ValueError, match="k_shot=5"):
        ConformalMetaRegressor(maml, prefit=True).conformalize([(X[:5], y[:5])])


def test_interval_scorers_in_grid_search():
    tasks = make_sinusoid_tasks(n_tasks=120, n_samples=15, random_state=0)
    search = GridSearchCV(
        ConformalMetaRegressor(R2D2Regressor(k_shot=5, **FAST), random_state=0,
                               conformalize_size=0.5),
        {"confidence_level": [0.5, 0.9]},
        scoring={"coverage": get_task_scorer("coverage"),
                 "width": get_task_scorer("neg_mean_width"),
                 "nll": get_task_scorer("neg_gaussian_nll")},
        refit="nll", cv=2).fit(tasks)
    coverage = search.cv_results_["mean_test_coverage"]
    assert abs(coverage[0] - 0.5) < 0.12 and abs(coverage[1] - 0.9) < 0.08
    width = -search.cv_results_["mean_test_width"]
    assert width[0] < width[1]
    assert np.isfinite(search.best_score_)
    alpaca = ALPaCARegressor(k_shot=5, **FAST).fit(tasks)  # its own Gaussian intervals
    assert 0 < get_task_scorer("coverage")(alpaca, tasks[:20]) <= 1
    assert np.isfinite(get_task_scorer("neg_gaussian_nll")(alpaca, tasks[:20]))
