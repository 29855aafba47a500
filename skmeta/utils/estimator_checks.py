"""The contract every skmeta meta-learner honours, as checks any package can run.

skmeta runs these on each of its estimators; a plugin package runs them on its own,
the way scikit-learn's :func:`~sklearn.utils.estimator_checks.parametrize_with_checks`
is used for scikit-learn estimators::

    from skmeta.utils.estimator_checks import parametrize_with_checks
    from my_package import MyMetaRegressor

    @parametrize_with_checks([MyMetaRegressor()])
    def test_skmeta_contract(estimator, check):
        check(estimator)

Every check fits small copies of the estimator (one epoch on a dozen tiny tasks) and
raises an ``AssertionError`` naming what failed. They cover: the signature, docstring and
``get_params`` agree; scikit-learn's parameter checks; fitting on every task form;
reproducibility; ``adapt`` leaving the meta-learner untouched and returning a small
picklable model; scores; pickling and resuming; the safe file format; ``clone`` and
``GridSearchCV``; validation of parameters at ``fit``; and, optionally, that two
``torch.distributed`` processes give the parameters of one.
"""

from __future__ import annotations

import inspect
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from sklearn.base import clone, is_classifier

__all__ = ["check_estimator", "parametrize_with_checks", "yield_checks"]


# ----------------------------------------------------------------------- data


def _pool(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(12), 8)
    centers = rng.normal(scale=3.0, size=(12, 4))
    return (centers[y] + rng.normal(size=(len(y), 4))).astype(np.float32), y


def _task_forms(estimator) -> dict[str, tuple]:
    """``{form: (args, kwargs)}`` for ``fit``: every task form the estimator accepts."""
    from skmeta import Task
    from skmeta.datasets import make_sinusoid_tasks

    if is_classifier(estimator):
        X, y = _pool()
        pairs = [(X[(y >= a) & (y < a + 3)], y[(y >= a) & (y < a + 3)]) for a in range(0, 12, 3)]
        pairs = pairs * 2
        tasks = [Task(Xt[::2], yt[::2], Xt[1::2], yt[1::2]) for Xt, yt in pairs]
        groups = np.concatenate([np.full(len(p[0]), i) for i, p in enumerate(pairs)])
        long = (np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]))
        return {"pairs": ((pairs,), {}), "tasks": ((tasks,), {}),
                "long": ((*long,), {"groups": groups}), "pool": ((X, y), {})}
    pairs = make_sinusoid_tasks(n_tasks=12, n_samples=16, random_state=0)
    tasks = [Task(Xt[:8], yt[:8], Xt[8:], yt[8:]) for Xt, yt in pairs]
    groups = np.repeat(np.arange(len(pairs)), 16)
    long = (np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]))
    return {"pairs": ((pairs,), {}), "tasks": ((tasks,), {}),
            "long": ((*long,), {"groups": groups})}


def _small(estimator, **params):
    """A clone with a tiny budget (one epoch, small meta-batches, a small MLP).

    ``engine="auto"`` becomes ``"loop"``: the automatic choice depends on timings, so
    two runs may pick different engines, whose results agree only to rounding.
    """
    from skmeta.modules import MLP

    small = dict(max_epochs=1, batch_size=4, verbose=0, random_state=0, k_shot=2)
    if estimator.engine == "auto":
        small["engine"] = "loop"
    if is_classifier(estimator):
        small.update(n_way=3, n_query=2, n_episodes=6)
    est = clone(estimator).set_params(**{**small, **params})
    if est.module is MLP:
        est.set_params(module__hidden=(8,))
    return est


def _state(est) -> dict[str, torch.Tensor]:
    out = {f"module_.{k}": v.detach().cpu().clone() for k, v in est.module_.state_dict().items()}
    out.update({f"inner_state_.{k}": v.detach().cpu().clone()
                for k, v in est.inner_state_.state_dict().items()})
    return out


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _support(estimator) -> tuple[np.ndarray, Any]:
    (args, _), = [v for k, v in _task_forms(estimator).items() if k == "pairs"]
    X, y = args[0][0]
    return X, y


# --------------------------------------------------------------------- checks


def check_signature_docstring_and_params(estimator) -> None:
    """``__init__``'s signature, the docstring's Parameters and ``get_params`` agree."""
    cls = type(estimator)
    sig = {k: p.default for k, p in inspect.signature(cls).parameters.items()
           if p.kind is not inspect.Parameter.VAR_KEYWORD}
    doc = inspect.getdoc(cls) or ""
    match = re.search(r"^Parameters\n-+\n(.*?)(?:^\S[^\n]*\n-+\n|\Z)", doc, re.M | re.S)
    assert match, f"{cls.__name__}: the docstring has no Parameters section"
    documented = re.findall(r"^(\w+) : ", match.group(1), re.M)
    assert documented == list(sig), (f"{cls.__name__}: documented parameters {documented} "
                                     f"differ from the signature {list(sig)}")
    params = cls().get_params(deep=False)
    missing = set(sig) - set(params)
    assert not missing, f"{cls.__name__}: get_params lacks {sorted(missing)}"
    for name, default in sig.items():
        assert params[name] is default or params[name] == default, \
            f"{cls.__name__}: get_params()[{name!r}] is not the signature's default"


def check_sklearn_parameters(estimator) -> None:
    """scikit-learn's parameter checks that apply to meta-learners."""
    from sklearn.utils.estimator_checks import (
        check_estimator_repr,
        check_get_params_invariance,
        check_no_attributes_set_in_init,
        check_parameters_default_constructible,
        check_set_params,
    )

    name = type(estimator).__name__
    for check in (check_parameters_default_constructible, check_no_attributes_set_in_init,
                  check_get_params_invariance, check_set_params, check_estimator_repr):
        check(name, clone(estimator))
    twin = clone(estimator)
    assert twin.get_params(deep=False).keys() == estimator.get_params(deep=False).keys()


def check_fit_on_every_task_form(estimator) -> None:
    """``fit`` accepts task lists, ``Task`` objects, long format (and pools for classifiers)."""
    for form, (args, kwargs) in _task_forms(estimator).items():
        est = _small(estimator).fit(*args, **kwargs)
        loss = est.history[-1, "train_loss"]
        assert np.isfinite(loss), f"{form}: training loss {loss}"


def check_reproducible(estimator) -> None:
    """The same ``random_state`` gives the same meta-parameters (and learned inner state)."""
    args, kwargs = _task_forms(estimator)["pairs"]
    a = _small(estimator).fit(*args, **kwargs)
    b = _small(estimator).fit(*args, **kwargs)
    assert _same(_state(a), _state(b)), "two fits with random_state=0 differ"


def check_adapt(estimator) -> None:
    """``adapt`` leaves the meta-learner untouched and returns a small picklable fitted model."""
    from skmeta import AdaptedClassifier, AdaptedRegressor

    args, kwargs = _task_forms(estimator)["pairs"]
    est = _small(estimator).fit(*args, **kwargs)
    before = _state(est)
    X, y = _support(estimator)
    adapted = est.adapt(X, y)
    assert _same(before, _state(est)), "adapt changed the meta-learner"
    kind = AdaptedClassifier if is_classifier(est) else AdaptedRegressor
    assert isinstance(adapted, kind), type(adapted)
    assert all(not p.requires_grad and p.grad_fn is None for p in adapted.module_.parameters())
    pred = adapted.predict(X)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(adapted)).predict(X), pred)
    if is_classifier(est):
        assert set(np.unique(pred)) <= set(np.unique(y)), "predicted labels outside the task"
    zero = est.adapt(X, y, adapt_steps=0)
    assert zero.predict(X).shape == pred.shape


def check_score(estimator) -> None:
    """``score`` is finite and at most 1; ``score_tasks`` scores every task."""
    args, kwargs = _task_forms(estimator)["pairs"]
    est = _small(estimator).fit(*args, **kwargs)
    score = est.score(*args, **kwargs)
    assert np.isfinite(score) and score <= 1, score
    assert est.score_tasks(*args, **kwargs).shape == (len(args[0]),)


def check_pickle_and_resume(estimator) -> None:
    """A pickled meta-learner continues training where it stopped (``partial_fit``)."""
    args, kwargs = _task_forms(estimator)["pairs"]
    est = _small(estimator).fit(*args, **kwargs)
    again = pickle.loads(pickle.dumps(est))
    assert _same(_state(est), _state(again))
    est.partial_fit(*args, **kwargs)
    again.partial_fit(*args, **kwargs)
    assert len(again.history) == 2 and _same(_state(est), _state(again)), \
        "a pickled estimator does not resume exactly"


def check_safe_save_load(estimator) -> None:
    """``save`` / ``skmeta.load`` round-trip the meta-learner and its adapted models."""
    import skmeta

    args, kwargs = _task_forms(estimator)["pairs"]
    est = _small(estimator).fit(*args, **kwargs)
    X, y = _support(estimator)
    with tempfile.TemporaryDirectory() as folder:
        est.save(os.path.join(folder, "meta.skmeta"))
        loaded = skmeta.load(os.path.join(folder, "meta.skmeta"))
        assert type(loaded) is type(est) and _same(_state(est), _state(loaded))
        adapted = est.adapt(X, y)
        adapted.save(os.path.join(folder, "adapted.skmeta"))
        np.testing.assert_array_equal(skmeta.load(os.path.join(folder, "adapted.skmeta"))
                                      .predict(X), adapted.predict(X))


def check_grid_search(estimator) -> None:
    """``GridSearchCV`` over ``inner_lr`` on a task list gives finite scores."""
    from sklearn.model_selection import GridSearchCV

    args, _ = _task_forms(estimator)["pairs"]
    grid = GridSearchCV(_small(estimator), {"inner_lr": [0.003, 0.01]}, cv=2,
                        error_score="raise")
    grid.fit(*args)
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()


def check_parameters_validated_at_fit(estimator) -> None:
    """Invalid hyper-parameters are accepted by ``__init__`` and refused by ``fit``."""
    from sklearn.utils._param_validation import InvalidParameterError

    args, kwargs = _task_forms(estimator)["pairs"]
    est = _small(estimator, inner_lr=-1)  # no error yet
    try:
        est.fit(*args, **kwargs)
    except InvalidParameterError as exc:
        assert "inner_lr" in str(exc), exc
    else:
        raise AssertionError("fit accepted inner_lr=-1")


def check_two_ranks_equal_one_process(estimator) -> None:
    """``distributed=True`` on two ``torch.distributed`` processes equals one process."""
    import multiprocessing

    args, kwargs = _task_forms(estimator)["pairs"]
    reference = _state(_small(estimator, batch_size=5, max_epochs=2).fit(*args, **kwargs))
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as folder:
        outs = [os.path.join(folder, f"rank{r}.pt") for r in range(2)]
        est = _small(estimator, batch_size=5, max_epochs=2, distributed=True)
        procs = [ctx.Process(target=_rank_worker, args=(r, os.path.join(folder, "store"), est,
                                                          outs[r])) for r in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(180)
        for p in procs:
            if p.is_alive():
                p.kill()
        states = [torch.load(out, weights_only=False) for out in outs if os.path.exists(out)]
    assert len(states) == 2, "a rank failed or hung: " + repr([p.exitcode for p in procs])
    for rank, state in enumerate(states):
        assert not isinstance(state, str), f"rank {rank} failed:\n{state}"
        assert _same(states[0], state), "the ranks hold different parameters"
        for k, v in reference.items():
            torch.testing.assert_close(state[k], v, rtol=1e-4, atol=2e-5, msg=k)


def _rank_worker(rank: int, store: str, estimator, out: str) -> None:
    import traceback

    torch.set_num_threads(1)
    dist = torch.distributed
    dist.init_process_group("gloo", store=dist.FileStore(store, 2), rank=rank, world_size=2)
    try:
        args, kwargs = _task_forms(estimator)["pairs"]
        result: Any = _state(estimator.fit(*args, **kwargs))
    except Exception:  # reported to the parent through the result file
        result = traceback.format_exc()
    torch.save(result, out)
    dist.barrier()
    dist.destroy_process_group()


# ----------------------------------------------------------------- running them


def yield_checks(estimator, *, distributed: bool = False) -> Iterator[Callable]:
    """The checks of the contract, as functions of the estimator.

    Parameters
    ----------
    estimator : meta-learner
        An unfitted instance (its parameters are kept; the budget is made small).
    distributed : bool, default=False
        Include the two-process check (spawns two processes; a few seconds).

    Yields
    ------
    check : callable
        ``check(estimator)``; raises ``AssertionError`` on failure.

    Examples
    --------
    >>> from skmeta import MAMLRegressor
    >>> from skmeta.utils.estimator_checks import yield_checks
    >>> [c.__name__ for c in yield_checks(MAMLRegressor())][:2]
    ['check_signature_docstring_and_params', 'check_sklearn_parameters']
    """
    yield check_signature_docstring_and_params
    yield check_sklearn_parameters
    yield check_fit_on_every_task_form
    yield check_reproducible
    yield check_adapt
    yield check_score
    yield check_pickle_and_resume
    yield check_safe_save_load
    yield check_grid_search
    yield check_parameters_validated_at_fit
    if distributed and torch.distributed.is_available():
        yield check_two_ranks_equal_one_process


def check_estimator(estimator, *, distributed: bool = False) -> None:
    """Run every check of the contract on ``estimator``.

    Parameters
    ----------
    estimator : meta-learner
        An unfitted instance.
    distributed : bool, default=False
        Include the two-process check.

    Raises
    ------
    AssertionError
        Naming the first check that fails, with its reason.

    Examples
    --------
    >>> from skmeta import ReptileRegressor
    >>> from skmeta.utils.estimator_checks import check_estimator
    >>> check_estimator(ReptileRegressor())  # doctest: +SKIP
    """
    for check in yield_checks(estimator, distributed=distributed):
        try:
            check(estimator)
        except AssertionError as exc:
            raise AssertionError(f"{type(estimator).__name__} fails {check.__name__}: "
                                 f"{exc}") from exc


def parametrize_with_checks(estimators: Iterable, *, distributed: bool = False):
    """A pytest decorator running every check on every estimator (one test each).

    Parameters
    ----------
    estimators : iterable of meta-learners
        Unfitted instances.
    distributed : bool, default=False
        Include the two-process check.

    Returns
    -------
    decorator : callable
        ``pytest.mark.parametrize("estimator, check", ...)`` with readable ids.

    Examples
    --------
    >>> from skmeta import MAMLRegressor
    >>> from skmeta.utils.estimator_checks import parametrize_with_checks
    >>> @parametrize_with_checks([MAMLRegressor()])
    ... def test_contract(estimator, check):
    ...     check(estimator)
    """
    import pytest

    cases = [(est, check) for est in estimators
             for check in yield_checks(est, distributed=distributed)]
    ids = [f"{type(est).__name__}-{check.__name__}" for est, check in cases]
    return pytest.mark.parametrize("estimator, check", cases, ids=ids)
