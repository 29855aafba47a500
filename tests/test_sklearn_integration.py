"""scikit-learn and skorch integration: params, clone, model selection, pipelines, callbacks."""

import numpy as np
import pytest
import sklearn
import torch
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import (
    check_dont_overwrite_parameters,
    check_estimator_repr,
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)
from skorch.callbacks import (
    Checkpoint,
    EarlyStopping,
    GradientNormClipping,
    LRScheduler,
    ProgressBar,
)

from skmeta import (
    MAMLClassifier,
    MAMLRegressor,
    PretrainedClassifier,
    PretrainedRegressor,
    ReptileClassifier,
    ReptileRegressor,
    TaskSplit,
    TaskTransformer,
)
from skmeta.metrics import get_task_scorer, make_task_scorer
from skmeta.pipeline import adapt_pipeline

ALL = [MAMLRegressor, MAMLClassifier, ReptileRegressor, ReptileClassifier, PretrainedRegressor,
       PretrainedClassifier]
FAST = dict(max_epochs=1, verbose=0, random_state=0)


@pytest.mark.parametrize("Est", ALL)
def test_get_params_roundtrip_and_no_private_names(Est):
    est = Est(inner_lr=0.05, inner_steps=2, k_shot=3, module__hidden=(8,), random_state=1)
    params = est.get_params()
    assert not [k for k in params if k.startswith("_")]
    for name in ["module", "criterion", "optimizer", "lr", "max_epochs", "batch_size",
                 "train_split", "callbacks", "device", "verbose", "inner_lr", "inner_steps",
                 "adapt_steps", "k_shot", "n_query", "random_state", "module__hidden"]:
        assert name in params, name
    if is_classifier(est):
        assert params["n_way"] == 5
    if "MAML" in Est.__name__:
        assert params["first_order"] is False
    twin = clone(est)
    assert twin.get_params(deep=False).keys() == est.get_params(deep=False).keys()
    assert twin.inner_lr == 0.05 and twin.module__hidden == (8,)
    est.set_params(inner_lr=0.2, module__hidden=(4,))
    assert est.inner_lr == 0.2 and est.get_params()["module__hidden"] == (4,)


@pytest.mark.parametrize("Est", ALL)
def test_sklearn_api_checks(Est):
    # The checks that apply to meta-learners. The rest of check_estimator assumes
    # fit(X, y) on plain samples, which meta-learners read as a task pool (classifiers)
    # or refuse without groups (regressors), and predict on the meta-learner itself,
    # which needs adapt first; those expected failures are documented in the user guide.
    name = Est.__name__
    est = Est(**FAST)
    check_parameters_default_constructible(name, est)
    check_no_attributes_set_in_init(name, est)
    check_get_params_invariance(name, est)
    check_set_params(name, est)
    check_estimator_repr(name, est)


def test_dont_overwrite_parameters_on_pool_fit():
    # check_dont_overwrite_parameters fits on a small random (X, y): a classifier pool
    check_dont_overwrite_parameters("MAMLClassifier",
                                    MAMLClassifier(n_way=2, k_shot=1, n_query=1, n_episodes=4,
                                                   **FAST))


def test_tags():
    assert is_regressor(MAMLRegressor()) and is_regressor(ReptileRegressor())
    assert is_classifier(MAMLClassifier()) and is_classifier(ReptileClassifier())
    assert not MAMLRegressor().__sklearn_tags__().target_tags.required


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_grid_search_over_inner_lr(sinusoid_tasks, n_jobs):
    gs = GridSearchCV(MAMLRegressor(k_shot=10, **FAST), {"inner_lr": [1e-3, 1e-2, 1e-1]}, cv=3,
                      n_jobs=n_jobs)
    gs.fit(sinusoid_tasks)
    assert gs.best_params_["inner_lr"] in {1e-3, 1e-2, 1e-1}
    assert np.isfinite(gs.cv_results_["mean_test_score"]).all()
    adapted = gs.best_estimator_.adapt(*sinusoid_tasks[0])
    assert adapted.predict(sinusoid_tasks[0][0]).shape == (20,)


def test_grid_search_n_jobs_agree(sinusoid_tasks):
    grid = {"inner_lr": [1e-2, 1e-1]}
    a = GridSearchCV(MAMLRegressor(k_shot=10, **FAST), grid, cv=2).fit(sinusoid_tasks)
    b = GridSearchCV(MAMLRegressor(k_shot=10, **FAST), grid, cv=2, n_jobs=2).fit(sinusoid_tasks)
    np.testing.assert_allclose(a.cv_results_["mean_test_score"],
                               b.cv_results_["mean_test_score"], rtol=1e-5)


def test_cross_val_score_and_task_scorers(sinusoid_tasks):
    est = MAMLRegressor(k_shot=10, **FAST)
    r2 = cross_val_score(est, sinusoid_tasks, cv=3)
    assert r2.shape == (3,)
    neg_mse = cross_val_score(est, sinusoid_tasks, cv=3,
                              scoring=get_task_scorer("neg_mean_squared_error"))
    assert (neg_mse < 0).all()
    fitted = clone(est).fit(sinusoid_tasks)
    scorer = make_task_scorer(mean_squared_error, greater_is_better=False)
    assert scorer(fitted, sinusoid_tasks) == pytest.approx(
        -np.mean(fitted.score_tasks(sinusoid_tasks, metric=mean_squared_error)))
    with pytest.raises(ValueError, match="Unknown task scorer"):
        get_task_scorer("mse")


def test_classifier_grid_search_on_task_list(pool):
    X, y = pool
    tasks = [(X[np.isin(y, [a, a + 1, a + 2])], y[np.isin(y, [a, a + 1, a + 2])])
             for a in range(0, 18, 2)]
    gs = GridSearchCV(MAMLClassifier(n_way=3, k_shot=2, **FAST), {"inner_lr": [0.01, 0.3]},
                      cv=3, scoring=get_task_scorer("accuracy")).fit(tasks)
    assert 0 <= gs.best_score_ <= 1


def _long_format(tasks):
    X = np.concatenate([t[0] for t in tasks]) * 50.0 + 3.0
    y = np.concatenate([t[1] for t in tasks])
    groups = np.repeat(np.arange(len(tasks)), [len(t[0]) for t in tasks])
    return X, y, groups


def test_pipeline_with_scaler_group_kfold_and_metadata_routing(sinusoid_tasks):
    X, y, groups = _long_format(sinusoid_tasks)
    with sklearn.config_context(enable_metadata_routing=True):
        maml = MAMLRegressor(k_shot=10, **FAST).set_fit_request(groups=True) \
            .set_score_request(groups=True)
        pipe = Pipeline([("scale", StandardScaler()), ("maml", maml)])
        gs = GridSearchCV(pipe, {"maml__inner_lr": [1e-2, 1e-1]}, cv=GroupKFold(3))
        gs.fit(X, y, groups=groups)
        assert np.isfinite(gs.best_score_)
        scores = cross_val_score(pipe, X, y, cv=GroupKFold(3), params={"groups": groups})
        assert np.isfinite(scores).all()
    fitted = gs.best_estimator_
    adapted = adapt_pipeline(fitted, X[groups == 0][:10], y[groups == 0][:10])
    assert isinstance(adapted, Pipeline)
    pred = adapted.predict(X[groups == 0][10:])
    # the adapted pipeline predicts on raw features, through the fitted scaler
    direct = fitted[-1].adapt(fitted[0].transform(X[groups == 0][:10]), y[groups == 0][:10])
    np.testing.assert_allclose(pred, direct.predict(fitted[0].transform(X[groups == 0][10:])),
                               rtol=1e-6)


def test_pipeline_without_routing_passes_groups_by_step_name(sinusoid_tasks):
    X, y, groups = _long_format(sinusoid_tasks)
    pipe = make_pipeline(StandardScaler(), MAMLRegressor(k_shot=10, **FAST))
    pipe.fit(X, y, mamlregressor__groups=groups)
    with pytest.raises(ValueError, match="groups"):
        make_pipeline(StandardScaler(), MAMLRegressor(k_shot=10, **FAST)).fit(X, y)


def test_task_transformer_in_pipeline(sinusoid_tasks):
    scaled_tasks = [(X * 100.0, y) for X, y in sinusoid_tasks]
    pipe = Pipeline([("scale", TaskTransformer(StandardScaler())),
                     ("maml", MAMLRegressor(k_shot=10, **FAST))])
    pipe.fit(scaled_tasks)
    pooled = np.concatenate([t[0] for t in scaled_tasks])
    assert pipe[0].transformer_.mean_ == pytest.approx(pooled.mean(0), rel=1e-5)
    assert np.isfinite(pipe.score(scaled_tasks))
    X, y = scaled_tasks[0]
    assert adapt_pipeline(pipe, X[:10], y[:10]).predict(X[10:]).shape == (10,)
    assert cross_val_score(pipe, scaled_tasks, cv=2,
                           scoring=get_task_scorer("neg_mean_squared_error")).shape == (2,)


def test_adapt_pipeline_errors(sinusoid_tasks):
    with pytest.raises(TypeError, match="Pipeline"):
        adapt_pipeline(MAMLRegressor(), *sinusoid_tasks[0])
    with pytest.raises(TypeError, match="meta-learner"):
        adapt_pipeline(make_pipeline(StandardScaler()), *sinusoid_tasks[0])


# ------------------------------------------------------------------ callbacks


def test_history_records_post_adaptation_query_loss(sinusoid_tasks):
    est = MAMLRegressor(k_shot=10, max_epochs=2, verbose=0, random_state=0,
                        train_split=TaskSplit(5)).fit(sinusoid_tasks)
    assert len(est.history) == 2
    assert {"train_loss", "valid_loss", "dur"} <= set(est.history[-1])
    # valid_loss is the mean post-adaptation query loss on the held-out tasks
    batch = est.history[-1, "batches", 0]
    assert batch["train_batch_size"] == 25
    assert est.history[-1, "train_batch_count"] == 2  # 48 training tasks / 25


def test_early_stopping_on_meta_validation(sinusoid_tasks):
    est = MAMLRegressor(k_shot=10, max_epochs=50, lr=0.5, verbose=0, random_state=0,
                        train_split=TaskSplit(0.25, random_state=0),
                        callbacks=[EarlyStopping(monitor="valid_loss", patience=2)])
    est.fit(sinusoid_tasks)
    assert len(est.history) < 50


def test_checkpoint_and_load_params(sinusoid_tasks, tmp_path):
    cp = Checkpoint(dirname=str(tmp_path), monitor="valid_loss_best")
    est = MAMLRegressor(k_shot=10, max_epochs=3, verbose=0, random_state=0,
                        train_split=TaskSplit(5), callbacks=[cp]).fit(sinusoid_tasks)
    new = MAMLRegressor(k_shot=10, verbose=0, random_state=1)
    new.fit(sinusoid_tasks[:5])  # initialise with the right shapes (a short fit)
    new.load_params(checkpoint=cp)
    best = int(np.argmin(est.history[:, "valid_loss"]))
    assert len(new.history) == best + 1
    X, y = sinusoid_tasks[0]
    if best == len(est.history) - 1:
        np.testing.assert_allclose(new.adapt(X, y).predict(X), est.adapt(X, y).predict(X))


def test_progress_bar_lr_scheduler_and_gradient_clipping(sinusoid_tasks, capsys):
    est = MAMLRegressor(k_shot=10, max_epochs=2, verbose=0, random_state=0, callbacks=[
        ProgressBar(),
        LRScheduler(policy="StepLR", step_size=1, gamma=0.5),
        GradientNormClipping(gradient_clip_value=1e-3),
    ]).fit(sinusoid_tasks)
    assert est.optimizer_.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.25)
    clipped = MAMLRegressor(k_shot=10, max_epochs=1, lr=1.0, optimizer=torch.optim.SGD,
                            verbose=0, random_state=0,
                            callbacks=[GradientNormClipping(gradient_clip_value=1e-4)])
    start = MAMLRegressor(k_shot=10, max_epochs=0, verbose=0, random_state=0).fit(sinusoid_tasks)
    clipped.fit(sinusoid_tasks)
    moved = sum((p - q).norm() ** 2 for p, q in zip(clipped.module_.parameters(),
                                                      start.module_.parameters())) ** 0.5
    assert moved <= 3 * 1e-4 + 1e-6  # three meta-updates (60 tasks / 25) of norm <= 1e-4


def test_verbose_prints_skorch_table(sinusoid_tasks, capsys):
    MAMLRegressor(k_shot=10, max_epochs=1, verbose=1, random_state=0).fit(sinusoid_tasks)
    out = capsys.readouterr().out
    assert "train_loss" in out and "epoch" in out


def test_warm_start_and_partial_fit_continue(sinusoid_tasks):
    est = MAMLRegressor(k_shot=10, max_epochs=1, verbose=0, random_state=0).fit(sinusoid_tasks)
    est.partial_fit(sinusoid_tasks)
    assert len(est.history) == 2
    est.set_params(warm_start=True).fit(sinusoid_tasks)
    assert len(est.history) == 3
    est.set_params(warm_start=False).fit(sinusoid_tasks)
    assert len(est.history) == 1


def test_task_split_errors():
    with pytest.raises(ValueError, match="cv"):
        TaskSplit(1)(list(range(10)))
    with pytest.raises(ValueError, match="cannot split"):
        TaskSplit(5)(list(range(3)))
    train, valid = TaskSplit(0.3, random_state=0)(list(range(10)))
    assert sorted(list(train) + list(valid)) == list(range(10))
