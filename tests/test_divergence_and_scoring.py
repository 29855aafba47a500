"""Guarded adaptation (divergence), scores that rank models as their errors do, the engine log."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import GridSearchCV, cross_val_score
from skorch.callbacks import Callback

from skmeta import MAMLClassifier, MAMLRegressor, MetaSGDRegressor
from skmeta.metrics import get_task_scorer
from skmeta.modules import MLP

FAST = dict(max_epochs=1, verbose=0, random_state=0)


@pytest.fixture
def maml(sinusoid_tasks):
    return MAMLRegressor(k_shot=10, **FAST).fit(sinusoid_tasks)


# ------------------------------------------------------- guarded adaptation


@pytest.mark.parametrize("kwargs", [dict(inner_lr=1e30), dict(adapt_steps=1000, inner_lr=1.0)])
def test_adapt_refuses_non_finite_weights_naming_inner_lr_and_steps(maml, sinusoid_tasks,
                                                                     kwargs):
    X, y = sinusoid_tasks[0]
    with pytest.raises(FloatingPointError, match=r"not finite after \d+ step\(s\) with inner_lr="):
        maml.adapt(X[:10], y[:10], **kwargs)
    with pytest.raises(FloatingPointError, match="some tasks"):
        maml.adapt_tasks([(X[:10], y[:10]), (X[10:], y[10:])], **kwargs)


def test_adapt_warns_when_weights_explode_but_stay_finite(maml, sinusoid_tasks):
    X, y = sinusoid_tasks[0]
    with pytest.warns(RuntimeWarning, match=r"inner_lr=1000000\.0: it has probably diverged"):
        maml.adapt(X[:10], y[:10], inner_lr=1e6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        maml.adapt(X[:10], y[:10], adapt_steps=10, inner_lr=0.01)  # ordinary fine-tuning


def test_learned_rates_are_named_in_the_divergence_message(sinusoid_tasks):
    est = MetaSGDRegressor(k_shot=10, **FAST).fit(sinusoid_tasks)
    with torch.no_grad():
        for r in est.inner_state_.parameters():
            r.fill_(1e30)
    X, y = sinusoid_tasks[0]
    with pytest.raises(FloatingPointError, match="learned inner learning rates"):
        est.adapt(X[:10], y[:10])


def test_score_reports_diverged_tasks_as_nan(maml, sinusoid_tasks):
    diverging = maml.set_params(inner_lr=1e30)
    with pytest.warns(RuntimeWarning, match="diverged on 60 of 60 task"):
        scores = diverging.score_tasks(sinusoid_tasks)
    assert np.isnan(scores).all()
    with pytest.warns(RuntimeWarning, match="score is NaN"):
        assert np.isnan(diverging.score(sinusoid_tasks))


def test_adapted_model_refuses_non_finite_outputs(maml, sinusoid_tasks):
    X, y = sinusoid_tasks[0]
    adapted = maml.adapt(X[:10], y[:10])
    with torch.no_grad():
        adapted.module_.layers[0].weight.fill_(float("inf"))
    with pytest.raises(FloatingPointError, match=r"adapted with 1 step\(s\) of inner_lr=0.01"):
        adapted.predict(X)


# ----------------------------------------------------------------- scores


def test_pooled_r2_ranks_models_as_their_squared_error_does():
    targets = MAMLRegressor().get_targets()
    # task 0 has a tiny query variance: a mean of per-task R² is dominated by it
    y = torch.tensor([[[0.0], [0.02]], [[-3.0], [3.0]]])
    close = torch.tensor([[[0.5], [-0.5]], [[-2.9], [2.9]]])   # MSE 0.13, bad on task 0
    far = torch.tensor([[[0.0], [0.0]], [[0.0], [0.0]]])       # MSE 4.5, fine on task 0
    s_close, num_c, den_c = targets.group_scores(y, close, None)
    s_far, num_f, den_f = targets.group_scores(y, far, None)
    assert ((close - y) ** 2).mean() < ((far - y) ** 2).mean()
    assert s_close.mean() < s_far.mean()  # the mean of per-task R² ranks them wrong
    assert targets.summarise(s_close, num_c, den_c) > targets.summarise(s_far, num_f, den_f)
    assert targets.summarise(s_close, num_c, den_c) == pytest.approx(
        1 - float(((close - y) ** 2).sum()) / (0.0002 + 18.0), rel=1e-6)


@pytest.mark.parametrize("scoring", ["neg_mean_squared_error", "r2"])
def test_scoring_strings_fail_loudly_before_meta_training(sinusoid_tasks, scoring):
    search = GridSearchCV(MAMLRegressor(k_shot=10, **FAST), {"inner_lr": [0.01, 0.1]}, cv=2,
                          scoring=scoring)
    with pytest.raises(ValueError, match="get_task_scorer"):
        search.fit(sinusoid_tasks)  # every fit fails at once with the fix named
    with pytest.raises(ValueError, match=r"get_task_scorer\('neg_mean_squared_error'\)"):
        cross_val_score(MAMLRegressor(k_shot=10, **FAST), sinusoid_tasks, cv=2,
                        scoring=scoring, error_score="raise")
    ok = cross_val_score(MAMLRegressor(k_shot=10, **FAST), sinusoid_tasks, cv=2,
                         scoring=get_task_scorer(scoring))
    assert np.isfinite(ok).all()


def test_classifier_scoring_string_fails_loudly(pool):
    X, y = pool
    tasks = [(X[np.isin(y, [a, a + 1, a + 2])], y[np.isin(y, [a, a + 1, a + 2])])
             for a in range(0, 18, 3)]
    with pytest.raises(ValueError, match="'accuracy'"):
        cross_val_score(MAMLClassifier(n_way=3, k_shot=2, **FAST), tasks, cv=2,
                        scoring="accuracy", error_score="raise")


# ----------------------------------------------------------- clear errors


def test_module_input_size_mismatch_is_explained(sinusoid_tasks):
    with pytest.raises(ValueError, match=r"module fails on examples of shape \(1,\).*in_features"):
        MAMLRegressor(module=MLP, module__in_features=2, k_shot=10, **FAST).fit(sinusoid_tasks)


def test_single_adapt_names_the_support_set(maml):
    with pytest.raises(ValueError, match=r"the support set \(X_support, y_support\): y contains"):
        maml.adapt(np.zeros((2, 1)), np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="X_support has input shape"):
        maml.adapt(np.zeros((3, 2)), np.zeros(3))


def test_too_small_tasks_are_all_named_when_all_are(sinusoid_tasks):
    with pytest.raises(ValueError, match=r"every task \(task 0 to task 59\) has 20 samples"):
        MAMLRegressor(k_shot=20, **FAST).fit(sinusoid_tasks)
    one = [(np.zeros((1, 1)), np.zeros(1))]
    with pytest.raises(ValueError, match="task 0 has 1 sample but"):
        MAMLRegressor(k_shot=1, **FAST).fit(one)


def test_engine_records_adapt_and_an_interrupted_fit(sinusoid_tasks):
    class Interrupt(Callback):
        def on_batch_end(self, net, **kwargs):
            raise KeyboardInterrupt

    est = MAMLRegressor(k_shot=10, callbacks=[Interrupt()], **FAST).fit(sinusoid_tasks)
    assert est.engine_["train"] in {"batched", "vmap", "loop"}
    X, y = sinusoid_tasks[0]
    est.adapt(X[:10], y[:10])
    assert est.engine_["adapt"] in {"batched", "vmap", "loop"}


def test_auto_engine_says_why_the_first_epochs_are_slow(sinusoid_tasks, capsys):
    MAMLRegressor(k_shot=10, max_epochs=1, verbose=1, random_state=0).fit(sinusoid_tasks)
    assert "timing the batched and loop engines" in capsys.readouterr().out
    MAMLRegressor(k_shot=10, engine="vmap", max_epochs=1, verbose=1,
                  random_state=0).fit(sinusoid_tasks)
    assert "timing" not in capsys.readouterr().out


def test_score_uses_mse_consistently_with_a_task_scorer(maml, sinusoid_tasks):
    neg = get_task_scorer("neg_mean_squared_error")(maml, sinusoid_tasks)
    assert neg == pytest.approx(-np.mean(maml.score_tasks(sinusoid_tasks,
                                                          metric=mean_squared_error)))
