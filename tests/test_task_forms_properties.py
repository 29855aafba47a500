"""Property-based tests over random task collections in every form.

hypothesis draws task collections in all four input forms (a list of ``(X, y)``
pairs, a list of :class:`skmeta.Task`, long format ``X, y, groups`` and a
classifier's labelled pool ``X, y``) with random numbers and sizes of tasks
(empty and tiny ones included), feature counts, dtypes, label types, target
shapes, injected NaN/inf and hyper-parameters. The property: every input either
works (``fit`` one epoch, then ``score``/``score_tasks``/``adapt``/``adapt_tasks``
give finite numbers of the right shapes and classifiers predict the task's own
labels) or is refused with a ``ValueError``/``TypeError`` raised by skmeta (or by
scikit-learn's parameter validation) whose message names the offending task or
parameter -- never an exception from inside torch or numpy.

Alongside the random input, each example computes which tasks are invalid (and
why), so an input that should work must work and an invalid one must be refused.
"""

from __future__ import annotations

import os
import pickle
import re
import traceback
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, assume, event, example, given, note, settings
from hypothesis import strategies as st

import skmeta
from skmeta import (
    MAMLClassifier,
    MAMLRegressor,
    PretrainedClassifier,
    ReptileRegressor,
    Task,
)

torch.set_num_threads(1)

# deterministic in CI (derandomize); no example database written into the repository
# SKMETA_PROPERTY_SCALE=20 runs 20 times as many examples (a deeper local search)
SCALE = float(os.environ.get("SKMETA_PROPERTY_SCALE", "1"))
PROPERTY = dict(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])
TINY = dict(module__hidden=(4,), max_epochs=1, verbose=0, random_state=0)
SKMETA_DIR = os.path.dirname(os.path.abspath(skmeta.__file__)) + os.sep
TASK_RE = re.compile(r"\btask (\d+)\b")

X_DTYPES = ("float64", "float32", "float16", "int64", "int32", "int8", "bool")
LABELS = {
    "int": [0, 1, 2, 3, 4, 5, 6, 7],
    "sparse_int": [-7, 3, 10, 42, 99, 1000, 5, 12],
    "str": ["cat", "dog", "emu", "fox", "gnu", "yak", "owl", "ant"],
    "float": [0.5, -1.25, 2.0, 3.75, 10.0, 1e3, 7.5, 8.25],
    "bool": [False, True],
}
Y_SHAPES = {"1d": None, "col": 1, "2d2": 2, "2d3": 3}  # regression: targets per row
# invalid values of each hyper-parameter (each is refused by scikit-learn's validation)
BAD_VALUES = {"k_shot": [0, -1, 2.5, "3"], "n_query": [0, -2, 1.5], "batch_size": [0, 1.5],
              "n_way": [1, 0, 2.5], "n_episodes": [0, -3]}


# ---------------------------------------------------------------------------
# array makers


def make_X(rng, n, f, dtype):
    if dtype == "bool":
        return rng.random((n, f)) < 0.5
    if dtype.startswith("int"):
        return rng.integers(-5, 6, size=(n, f)).astype(dtype)
    return rng.normal(size=(n, f)).astype(dtype)


def make_y_reg(rng, n, kind, dtype):
    t = Y_SHAPES[kind]
    y = rng.normal(size=(n,) if t is None else (n, t))
    return np.round(3 * y).astype(dtype) if dtype.startswith("int") else y.astype(dtype)


def make_labels(rng, n, c, kind, shuffle):
    """``n`` labels of ``c`` classes, as balanced as possible (round robin)."""
    c = min(c, len(LABELS[kind]))
    y = np.asarray(LABELS[kind][:c])[np.arange(n) % c]
    return rng.permutation(y) if shuffle else y


# ---------------------------------------------------------------------------
# a drawn case: the input, and what skmeta must do with it


@dataclass
class Case:
    form: str
    args: tuple
    kwargs: dict
    hp: dict
    bad_param: str | None = None
    eager: set = field(default_factory=set)  # tasks refused when the input is read
    lazy: set = field(default_factory=set)  # tasks refused when split or encoded
    wide_only: set = field(default_factory=set)  # lazy only for having more classes than n_way
    other_bad: str | None = None  # invalid input not tied to a task index (long format, pool)
    words: tuple = ()  # an error without a task index must contain one of these
    n_tasks: int = 0
    query_sizes: list = field(default_factory=list)  # per task (regression), None if unknown
    adapt: tuple | None = None  # (X_support, y_support, X_eval) of one valid task
    adapt_all: list | None = None  # support sets for adapt_tasks

    @property
    def must_fail(self) -> bool:
        return bool(self.bad_param or self.eager or self.lazy or self.other_bad)


@st.composite
def hyper_params(draw, classification, rng):
    hp = {"k_shot": draw(st.integers(1, 5)),
          "n_query": draw(st.none() | st.integers(1, 5)),
          "batch_size": draw(st.integers(1, 4))}
    if classification:
        hp["n_way"] = draw(st.integers(2, 5))
        hp["n_episodes"] = draw(st.integers(1, 4))
    bad, valid = None, dict(hp)
    if rng.random() < 0.1:  # now and then, one invalid hyper-parameter
        bad = draw(st.sampled_from(sorted(set(hp) & set(BAD_VALUES))))
        hp[bad] = draw(st.sampled_from(BAD_VALUES[bad]))
    return hp, bad, valid  # valid: the drawn values before the bad one, to size the tasks


def _needed(hp, pool=False):
    q = hp["n_query"]
    return hp["k_shot"] + ((15 if pool else 1) if q is None else q)


def _query_size(n, hp):
    """Query examples drawn from a regression task of ``n`` rows."""
    return n - hp["k_shot"] if hp["n_query"] is None else hp["n_query"]


def _class_problems(y, hp, needed, case, i):
    """Record whether task ``i``'s labels can be split and encoded; True if not."""
    classes, counts = np.unique(np.asarray(y).ravel(), return_counts=True)
    small, wide = counts.min() < needed, len(classes) > hp["n_way"]
    if wide and not small:
        case.wide_only.add(i)
    return small or wide


CORRUPTIONS_COMMON = ("nan_X", "inf_X", "features", "empty", "y_len", "X_1d")
CORRUPTIONS = {False: CORRUPTIONS_COMMON + ("nan_y", "inf_y", "y_str", "y_3d"),
               True: CORRUPTIONS_COMMON + ("y_2d", "nan_float_labels", "mixed_labels")}


def corrupt(kind, X, y, rng, classification):
    """Make one task's (X, y) invalid in the way ``kind`` names."""
    X, y = np.array(X), np.array(y)
    n = len(X)
    if kind in ("nan_X", "inf_X"):
        X = X.astype(np.float64)
        if n:
            X[rng.integers(n), rng.integers(X.shape[1])] = np.nan if kind == "nan_X" else -np.inf
        else:
            X = np.full((1, X.shape[1]), np.nan)
            y = y[:1] if len(y) else np.zeros(1)
    elif kind in ("nan_y", "inf_y", "nan_float_labels"):
        y = (np.arange(len(y)) % 2).reshape((-1,) + y.shape[1:]).astype(np.float64) \
            if kind == "nan_float_labels" else y.astype(np.float64)
        if not n:
            X, y = np.zeros((1, X.shape[1])), np.zeros((1,) + y.shape[1:])
        y.reshape(len(y), -1)[rng.integers(len(y)), 0] = np.inf if kind == "inf_y" else np.nan
    elif kind == "features":
        X = np.concatenate([X, np.ones((n, 1), X.dtype)], axis=1)  # one extra feature
    elif kind == "empty":
        X, y = X[:0], y[:0]
    elif kind == "y_len":
        y = y[:-1] if n else np.zeros(1)
    elif kind == "X_1d":
        X = X[:, 0]
    elif kind == "y_str":
        y = np.array(["a"] * len(y))
    elif kind == "y_3d":
        y = np.zeros((n, 1, 2))
    elif kind == "y_2d":
        y = np.stack([y.ravel(), y.ravel()], axis=1)
    elif kind == "mixed_labels":
        if n < 2:
            X, y = np.zeros((2, X.shape[1])), np.zeros(2)
        y = y.ravel().astype(object)
        y[::2] = 1  # ints among the other labels, in one object array
        y[1::2] = "b"
    return X, y


@st.composite
def task_size(draw, hp, rng, c=1):
    """Rows of a task of ``c`` classes: mostly enough for ``hp``, now and then any 0-30."""
    if rng.random() < 0.1:
        return draw(st.integers(0, 30))
    return c * _needed(hp) + draw(st.integers(0, 8))


@st.composite
def task_specs(draw, classification, n_tasks, hp, rng, mix_label_types=True):
    """Per-task sizes, classes, label kinds and target shapes."""
    kinds = [draw(st.sampled_from(sorted(LABELS)))] * n_tasks
    if classification and mix_label_types and draw(st.booleans()):  # types differ by task
        kinds = [draw(st.sampled_from(sorted(LABELS))) for _ in range(n_tasks)]
    y_dtype = draw(st.sampled_from(["float64", "float32", "int64"]))
    n_out = draw(st.sampled_from(["1", "2d2", "2d3"]))  # the same number of targets per task
    n_way = hp.get("n_way", 5)
    specs = []
    for _ in range(n_tasks):
        c = draw(st.integers(1, max(2, n_way)) if rng.random() < 0.9 else st.integers(1, 6))
        y_kind = draw(st.sampled_from(["1d", "col"])) if n_out == "1" else n_out
        specs.append(dict(n=draw(task_size(hp, rng, c if classification else 1)), c=c,
                          label=kinds.pop(), y_kind=y_kind, y_dtype=y_dtype,
                          shuffle=rng.random() < 0.3))
    return specs


class LazyTasks:
    """A lazy task sequence (``__len__`` and ``__getitem__`` only): checked as read."""

    def __init__(self, tasks):
        self._tasks = tasks

    def __len__(self):
        return len(self._tasks)

    def __getitem__(self, i):
        return self._tasks[i]


def contain(tasks, container):
    if container == "tuple":
        return tuple(tasks)
    if container == "object array":
        out = np.empty(len(tasks), dtype=object)
        for i, t in enumerate(tasks):
            out[i] = t
        return out
    return LazyTasks(tasks) if container == "lazy" else tasks


@st.composite
def list_cases(draw, classification, form, mix_label_types=True):
    """A list of (X, y) pairs (form "pairs") or of skmeta.Task (form "tasks")."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    hp, bad, valid = draw(hyper_params(classification, rng))
    n_tasks = draw(st.integers(1, 6))
    n_features = draw(st.integers(1, 4))
    specs = draw(task_specs(classification, n_tasks, valid, rng, mix_label_types))
    hp_ok = valid
    one_dtype = draw(st.sampled_from(X_DTYPES))
    per_task_dtype = draw(st.booleans())
    as_lists = rng.random() < 0.15
    corruption = draw(st.sampled_from(CORRUPTIONS[classification])) \
        if rng.random() < 0.2 else None
    if corruption == "features" and n_tasks < 2:
        corruption = None
    where = draw(st.integers(1 if corruption == "features" else 0, n_tasks - 1))
    part = draw(st.sampled_from(["support", "query"]))  # which set a Task corruption hits

    case = Case(form=form, args=(), kwargs={}, hp=hp, bad_param=bad, n_tasks=n_tasks)
    tasks, supports = [], []
    for i, s in enumerate(specs):
        dtype = draw(st.sampled_from(X_DTYPES)) if per_task_dtype else one_dtype
        X = make_X(rng, s["n"], n_features, dtype)
        y = make_labels(rng, s["n"], s["c"], s["label"], s["shuffle"]) if classification \
            else make_y_reg(rng, s["n"], s["y_kind"], s["y_dtype"])
        if classification and s["y_kind"] == "col":
            y = y.reshape(-1, 1)
        if form == "pairs":
            problem = None
            if s["n"] == 0:
                case.eager.add(i)
            elif classification:
                problem = _class_problems(y, hp_ok, _needed(hp_ok), case, i)
            elif s["n"] < _needed(hp_ok):
                problem = "too small"
            if problem:
                case.lazy.add(i)
            case.query_sizes.append(
                None if classification or problem or not s["n"]
                else _query_size(s["n"], hp_ok))
            if corruption and i == where:
                X, y = corrupt(corruption, X, y, rng, classification)
                case.eager.add(i)
            if as_lists and corruption != "mixed_labels":
                X, y = X.tolist(), y.tolist()
            tasks.append((X, y))
            supports.append((X, y))
        else:
            if rng.random() < 0.75:  # support: whole rounds of the classes
                n_s = min(s["c"] * draw(st.integers(1, 5)), max(s["n"] - 1, 0))
            else:
                n_s = draw(st.integers(0, s["n"]))
            no_query = rng.random() < 0.1
            Xs, ys, Xq, yq = X[:n_s], y[:n_s], X[n_s:], y[n_s:]
            if n_s == 0 or (not no_query and len(Xq) == 0):
                case.eager.add(i)
            elif no_query:
                case.lazy.add(i)  # fine to adapt to, not to train on
            elif classification and (
                    len(np.unique(ys)) > hp_ok["n_way"]
                    or not np.isin(np.unique(yq), np.unique(ys)).all()):
                case.lazy.add(i)
                if np.isin(np.unique(yq), np.unique(ys)).all():
                    case.wide_only.add(i)
            case.query_sizes.append(None if classification or no_query else len(Xq))
            if corruption and i == where:
                if part == "support" or no_query:
                    Xs, ys = corrupt(corruption, Xs, ys, rng, classification)
                else:
                    Xq, yq = corrupt(corruption, Xq, yq, rng, classification)
                case.eager.add(i)
            if no_query:
                Xq = yq = None
            tasks.append(Task(Xs, ys, Xq, yq))
            supports.append((Xs, ys))
    container = draw(st.sampled_from(["list", "tuple", "object array", "lazy"]))
    case.args = (contain(tasks, container),)
    case.adapt_all = supports
    good = [i for i in range(n_tasks) if i not in case.eager | case.lazy]
    if good:
        Xs, ys = supports[good[0]]
        case.adapt = (Xs, ys, np.asarray(tasks[good[0]][0]))
    return case


@st.composite
def long_cases(draw, classification):
    """Long format: fit(X, y, groups=...), one task per group id."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    hp, bad, valid = draw(hyper_params(classification, rng))
    n_tasks = draw(st.integers(1, 6))
    n_features = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(X_DTYPES))
    label = draw(st.sampled_from(sorted(LABELS)))
    y_kind = draw(st.sampled_from(["1d", "col"] if classification else sorted(Y_SHAPES)))
    y_dtype = draw(st.sampled_from(["float64", "float32", "int64"]))
    key_kind = draw(st.sampled_from(["int", "str"]))
    interleave = draw(st.booleans())
    corruption = draw(st.sampled_from(["nan_X", "inf_y" if not classification else "y_2d",
                                       "groups_len", "groups_2d", "y_len"])) \
        if rng.random() < 0.25 else None
    n_classes = [draw(st.integers(1, valid.get("n_way", 5))) for _ in range(n_tasks)]
    sizes = [max(1, draw(task_size(valid, rng, c if classification else 1))) for c in n_classes]
    hp_ok = valid
    keys = rng.choice(1000, size=n_tasks, replace=False)
    keys = keys.astype(str) if key_kind == "str" else keys
    Xs, ys, gs = [], [], []
    for n, c, key in zip(sizes, n_classes, keys):
        Xs.append(make_X(rng, n, n_features, dtype))
        ys.append(make_labels(rng, n, c, label, True) if classification
                  else make_y_reg(rng, n, y_kind, y_dtype))
        gs.append(np.full(n, key))
    X, y, groups = np.concatenate(Xs), np.concatenate(ys), np.concatenate(gs)
    if classification and y_kind == "col":
        y = y.reshape(-1, 1)
    if interleave:
        perm = rng.permutation(len(X))
        X, y, groups = X[perm], y[perm], groups[perm]
    case = Case(form="long", args=(), kwargs={}, hp=hp, bad_param=bad, n_tasks=n_tasks,
                words=("X, y", "groups"))
    # tasks come in the order of np.unique(groups)
    order = np.argsort(keys)
    for t, i in enumerate(order):
        n = sizes[i]
        if classification:
            problem = _class_problems(ys[i], hp_ok, _needed(hp_ok), case, t)
        else:
            problem = n < _needed(hp_ok)
        if problem:
            case.lazy.add(t)
        case.query_sizes.append(None if classification or problem else _query_size(n, hp_ok))
    if 0 not in case.lazy:
        first = groups == keys[order[0]]
        case.adapt = (X[first], y[first], X[first])
    if corruption == "nan_X":
        X = X.astype(np.float64)
        X[rng.integers(len(X)), 0] = np.nan
    elif corruption == "inf_y":
        y = y.astype(np.float64)
        y.reshape(len(y), -1)[rng.integers(len(y)), 0] = np.inf
    elif corruption == "y_2d":
        y = np.stack([y.ravel(), y.ravel()], axis=1)
    elif corruption == "groups_len":
        groups = groups[:-1]
    elif corruption == "groups_2d":
        groups = np.stack([groups, groups], axis=1)
    elif corruption == "y_len":
        y = y[1:]
    case.other_bad = corruption
    case.args, case.kwargs = (X, y), {"groups": groups}
    return case


@st.composite
def pool_cases(draw):
    """A classifier's labelled pool fit(X, y), drawn into n_way-way k_shot-shot episodes."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    hp, bad, valid = draw(hyper_params(True, rng))
    n_features = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(X_DTYPES))
    label = draw(st.sampled_from(sorted(LABELS)))
    needed = _needed(valid, pool=True)
    counts = draw(st.lists(st.integers(0, 22) if rng.random() < 0.25 else
                           st.integers(needed, needed + 5), min_size=1, max_size=8))
    column = draw(st.booleans())
    corruption = draw(st.sampled_from(["nan_X", "y_2d", "y_len", "empty", "mixed_labels"])) \
        if rng.random() < 0.25 else None
    counts = counts[:len(LABELS[label])]
    y = np.repeat(np.asarray(LABELS[label][:len(counts)]), counts)
    X = make_X(rng, len(y), n_features, dtype)
    perm = rng.permutation(len(y))
    X, y = X[perm], y[perm]
    eligible = sum(c >= _needed(valid, pool=True) for c in counts)
    case = Case(form="pool", args=(), kwargs={}, hp=hp, bad_param=bad,
                n_tasks=valid["n_episodes"],
                words=("pool", "n_way", "k_shot", "n_query"))
    if not len(y) or eligible < valid["n_way"]:
        case.other_bad = "too few eligible classes"
    present = np.unique(y)[:valid["n_way"]] if len(y) else []
    sel = np.isin(y, present)
    if len(y):
        case.adapt = (X[sel], y[sel], X)
    if corruption:
        X, y = corrupt(corruption, X, y, rng, True)
        case.other_bad = corruption
    case.args = (X, y.reshape(-1, 1) if column and y.ndim == 1 else y)
    return case


# ---------------------------------------------------------------------------
# the property


def check_error(exc: BaseException, case: Case) -> None:
    """``exc`` is a clear refusal by skmeta of an input that ``case`` says is invalid."""
    frames = traceback.extract_tb(exc.__traceback__)
    origin = f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}"
    assert isinstance(exc, (ValueError, TypeError)), \
        f"{type(exc).__name__} instead of ValueError/TypeError, from {origin}: {exc}"
    assert frames[-1].filename.startswith(SKMETA_DIR) or \
        frames[-1].filename.endswith("_param_validation.py"), \
        f"{type(exc).__name__} raised outside skmeta ({origin}): {exc}"
    msg = str(exc)
    if case.bad_param:
        assert f"'{case.bad_param}'" in msg, f"message does not name {case.bad_param}: {msg}"
        return
    if not case.must_fail:
        pytest.fail(f"valid input refused: {type(exc).__name__}: {msg}")
    named = {int(i) for i in TASK_RE.findall(msg)}
    if case.eager or case.lazy:
        bad = case.eager | case.lazy
        if named & bad:
            return
        if case.other_bad and any(w in msg for w in case.words):
            return
        pytest.fail(f"message names task(s) {sorted(named)}, not one of the offending "
                    f"task(s) {sorted(bad)}: {msg}")
    assert any(w in msg for w in case.words), \
        f"message names none of {case.words} for {case.other_bad}: {msg}"


def check_fitted(est, case: Case, classification: bool) -> None:
    """Scores and adapted models of a fitted estimator are finite and shaped right."""
    scores = est.score_tasks(*case.args, **case.kwargs)
    assert scores.shape == (case.n_tasks,), (scores.shape, case.n_tasks)
    sizes = case.query_sizes or [None] * case.n_tasks
    for t, (s, q) in enumerate(zip(scores, sizes)):
        assert np.isfinite(s), f"task {t}: score {s} with {q} query examples"
        if classification:
            assert 0.0 <= s <= 1.0, f"task {t}: accuracy {s}"
    mean = est.score(*case.args, **case.kwargs)
    assert isinstance(mean, float) and np.isfinite(mean), (mean, scores)
    if classification or case.n_tasks == 1:  # accuracy: mean over tasks; R²: pooled
        assert np.isclose(mean, scores.mean()), (mean, scores)
    else:
        assert mean <= 1.0 + 1e-9, mean
    if case.adapt is None:
        return
    Xs, ys, X_eval = case.adapt
    ys_arr = np.asarray(ys)
    adapted = est.adapt(Xs, ys)
    pred = adapted.predict(X_eval)
    n = len(X_eval)
    if classification:
        classes = np.unique(ys_arr.ravel())
        assert pred.shape == (n,), pred.shape
        assert np.isin(pred, classes).all(), f"predicted {set(pred)} not in support {classes}"
        assert np.array_equal(adapted.classes_, classes)
        proba = adapted.predict_proba(X_eval)
        assert proba.shape == (n, len(classes))
        assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    else:
        expected = (n,) if ys_arr.ndim == 1 else (n, ys_arr.shape[1])
        assert pred.shape == expected, (pred.shape, expected)
        assert np.isfinite(pred).all()
    if case.adapt_all is not None:  # list forms: case.adapt is the first task's support set
        models = est.adapt_tasks(case.adapt_all)
        assert len(models) == len(case.adapt_all)
        out = models[0].predict_proba if classification else models[0].predict
        ref = adapted.predict_proba if classification else adapted.predict
        np.testing.assert_allclose(out(X_eval), ref(X_eval), rtol=1e-3, atol=1e-4,
                                   err_msg="adapt_tasks and adapt disagree on task 0")
    est.partial_fit(*case.args, **case.kwargs)  # one more epoch, on the same tasks
    assert np.isfinite(est.score_tasks(*case.args, **case.kwargs)).all()


def run_case(make_estimator, case: Case, classification: bool, n_way_at_fit=True) -> None:
    """Fit on ``case``; check the refusal, or the fitted estimator's scores and models.

    ``n_way_at_fit=False`` (the pre-training baseline, which trains on pooled labels)
    lets ``fit`` accept tasks with more classes than ``n_way``; scoring them must
    then be refused.
    """
    note(f"case: form={case.form} ({type(case.args[0]).__name__}) hp={case.hp} "
         f"bad_param={case.bad_param} eager={sorted(case.eager)} lazy={sorted(case.lazy)} "
         f"other_bad={case.other_bad}")
    est = make_estimator(case.hp)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            est.fit(*case.args, **case.kwargs)
        except Exception as exc:  # noqa: BLE001 -- the property is about what is raised
            note(f"raised {type(exc).__name__}: {exc}")
            event(f"refused: {type(exc).__name__}")
            check_error(exc, case)
            return
        event("fitted")
        if not n_way_at_fit and case.wide_only and not case.eager and not case.bad_param \
                and not case.other_bad and case.lazy == case.wide_only:
            with pytest.raises((ValueError, TypeError)) as info:
                est.score(*case.args, **case.kwargs)
            check_error(info.value, case)
            return
        assert not case.must_fail, "invalid input accepted silently"
        check_fitted(est, case, classification)
    broadcast = [str(w.message) for w in caught if "target size" in str(w.message)]
    assert not broadcast, f"targets silently broadcast: {broadcast[0]}"


def maml(classification, **extra):
    def make(hp):
        cls = MAMLClassifier if classification else MAMLRegressor
        return cls(**hp, **TINY, **extra)

    return make


ENGINES = st.sampled_from(["auto", "auto", "loop", "vmap", "batched"])


@pytest.mark.parametrize("form", ["pairs", "tasks"])
@settings(max_examples=int(60 * SCALE), **PROPERTY)
@given(data=st.data())
def test_regression_task_lists(form, data):
    case = data.draw(list_cases(False, form))
    engine, first_order = data.draw(ENGINES), data.draw(st.booleans())
    run_case(maml(False, engine=engine, first_order=first_order), case, False)


@pytest.mark.parametrize("form", ["pairs", "tasks"])
@settings(max_examples=int(60 * SCALE), **PROPERTY)
@given(data=st.data())
def test_classification_task_lists(form, data):
    case = data.draw(list_cases(True, form))
    engine, first_order = data.draw(ENGINES), data.draw(st.booleans())
    run_case(maml(True, engine=engine, first_order=first_order), case, True)


@pytest.mark.parametrize("classification", [False, True], ids=["regression", "classification"])
@settings(max_examples=int(50 * SCALE), **PROPERTY)
@given(data=st.data())
def test_long_format(classification, data):
    case = data.draw(long_cases(classification))
    run_case(maml(classification), case, classification)


@settings(max_examples=int(50 * SCALE), **PROPERTY)
@given(case=pool_cases())
def test_classifier_pool(case):
    run_case(maml(True), case, True)


@settings(max_examples=int(20 * SCALE), **PROPERTY)
@given(data=st.data())
def test_reptile_regressor(data):
    case = data.draw(st.sampled_from(["pairs", "tasks"]).flatmap(
        lambda form: list_cases(False, form)) | long_cases(False))
    run_case(lambda hp: ReptileRegressor(**hp, **TINY), case, False)


@settings(max_examples=int(20 * SCALE), **PROPERTY)
@given(data=st.data())
def test_pretrained_classifier(data):
    case = data.draw(list_cases(True, "pairs", mix_label_types=False) | pool_cases())
    run_case(lambda hp: PretrainedClassifier(**hp, **TINY), case, True, n_way_at_fit=False)


# ---------------------------------------------------------------------------
# adapt and predict on new tasks, after meta-training


def _fitted(est, classification, n_outputs=None):
    rng = np.random.default_rng(0)
    tasks = []
    for _ in range(4):
        X = rng.normal(size=(12, 2))
        y = make_labels(rng, 12, 3, "int", True) if classification else \
            rng.normal(size=(12,) if n_outputs is None else (12, n_outputs))
        tasks.append((X, y))
    return est.fit(tasks)


@pytest.fixture(scope="module")
def fitted():
    """Meta-learners fitted on 2 features: 1 target, 2 targets, and 3-way classification."""
    small = dict(TINY, k_shot=2, batch_size=2)
    return {"reg": _fitted(MAMLRegressor(**small), False),
            "reg2": _fitted(MAMLRegressor(**small), False, n_outputs=2),
            "clf": _fitted(MAMLClassifier(n_way=3, **small), True)}


@st.composite
def adapt_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    which = draw(st.sampled_from(["reg", "reg2", "clf"]))
    classification = which == "clf"
    n = draw(st.integers(1, 10) if rng.random() < 0.8 else st.integers(0, 10))
    f = 2 if rng.random() < 0.8 else draw(st.integers(1, 4))
    X = make_X(rng, n, f, draw(st.sampled_from(X_DTYPES)))
    if classification:
        c = draw(st.integers(1, 3) if rng.random() < 0.8 else st.integers(1, 6))
        y = make_labels(rng, n, c, draw(st.sampled_from(sorted(LABELS))), True)
        if draw(st.booleans()):
            y = y.reshape(-1, 1)
    else:
        kind = "2d2" if which == "reg2" else draw(st.sampled_from(["1d", "col"]))
        y = make_y_reg(rng, n, kind, draw(st.sampled_from(["float64", "float32", "int64"])))
    bad = []
    if n == 0:
        bad.append("empty")
    if f != 2:
        bad.append("features")
    if classification and len(np.unique(y)) > 3:
        bad.append("n_way")
    corruption = draw(st.sampled_from(sorted(CORRUPTIONS[classification])))
    if rng.random() < 0.25 and corruption not in ("features", "y_3d"):
        X, y = corrupt(corruption, X, y, rng, classification)
        bad.append(corruption)
    steps = draw(st.sampled_from([None, 0, 1, 3]) if rng.random() < 0.9
                 else st.sampled_from([-1, 1.5, "2"]))
    lr = draw(st.sampled_from([None, 0.1]) if rng.random() < 0.9
              else st.sampled_from([0.0, -0.5, "fast"]))
    if not (steps is None or isinstance(steps, int) and steps >= 0):
        bad.append("adapt_steps")
    if not (lr is None or isinstance(lr, float) and lr > 0):
        bad.append("inner_lr")
    n_new = draw(st.integers(1, 6))
    X_new = make_X(rng, n_new, 2, draw(st.sampled_from(X_DTYPES)))
    new_bad = None
    if rng.random() < 0.2:
        new_bad = draw(st.sampled_from(["nan", "features", "1d", "empty"]))
        X_new = {"nan": np.where(np.eye(n_new, 2, dtype=bool), np.nan, X_new.astype(float)),
                 "features": np.ones((n_new, 3)), "1d": X_new[:, 0],
                 "empty": X_new[:0]}[new_bad]
    return which, X, y, steps, lr, bad, X_new, new_bad


def _meta_state(est):
    return {k: v.clone() for k, v in est.module_.state_dict().items()}


@settings(max_examples=int(80 * SCALE), **PROPERTY)
@given(case=adapt_cases())
def test_adapt_and_predict_on_new_tasks(fitted, case):
    """adapt works on any valid support set (and leaves the meta-learner alone) or refuses
    it clearly; the adapted model predicts the task's labels, with the right shapes."""
    which, X, y, steps, lr, bad, X_new, new_bad = case
    est = fitted[which]
    before = _meta_state(est)
    note(f"{which}: X {np.shape(X)} y {np.shape(y)} steps={steps!r} lr={lr!r} bad={bad}")
    try:
        adapted = est.adapt(X, y, adapt_steps=steps, inner_lr=lr)
    except Exception as exc:  # noqa: BLE001
        note(f"raised {type(exc).__name__}: {exc}")
        event(f"adapt refused: {type(exc).__name__}")
        params = tuple(f"'{w}'" for w in bad if w in ("adapt_steps", "inner_lr"))
        check_error(exc, Case("adapt", (), {}, {}, other_bad=",".join(bad) or None,
                              words=params or ("task", "X_support", "y_support")))
        return
    finally:
        after = _meta_state(est)
        assert all(torch.equal(before[k], after[k]) for k in before), "meta-learner changed"
    assert not bad, f"invalid adapt input accepted silently ({bad})"
    event("adapted")
    try:
        pred = adapted.predict(X_new)
    except Exception as exc:  # noqa: BLE001
        note(f"predict raised {type(exc).__name__}: {exc}")
        assert new_bad, f"valid X refused by predict: {exc!r}"
        check_error(exc, Case("predict", (), {}, {}, other_bad=new_bad, words=("X",)))
        return
    assert new_bad in (None, "empty"), f"invalid X accepted by predict ({new_bad})"
    n = len(X_new)
    y_arr = np.asarray(y)
    if which == "clf":
        classes = np.unique(y_arr.ravel())
        assert pred.shape == (n,)
        assert np.isin(pred, classes).all(), f"predicted {set(pred)} not in support {classes}"
        proba = adapted.predict_proba(X_new)
        assert proba.shape == (n, len(classes))
        assert np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    else:
        assert pred.shape == ((n,) if y_arr.ndim == 1 else (n, y_arr.shape[1]))
        assert np.isfinite(pred).all()
    again = pickle.loads(pickle.dumps(adapted)).predict(X_new)
    np.testing.assert_array_equal(again, pred)


# ---------------------------------------------------------------------------
# narrower properties, each over one kind of input that skmeta got wrong when written
# (their explicit @example is the minimal reproduction)

BUG_PROPERTY = dict(PROPERTY, phases=(Phase.explicit, Phase.generate))  # no slow shrinking


def _unorderable(n, rng, kind):
    """``n`` labels or group ids in one object array that numpy cannot sort."""
    values = {"int_str": [1, "b"], "str_none": ["a", None], "float_str": [0.5, "x"]}[kind]
    out = np.empty(n, dtype=object)
    out[:] = [values[i % 2] for i in rng.permutation(n)]
    return out


@settings(max_examples=int(20 * SCALE), **PROPERTY)
@given(form=st.sampled_from(["pairs", "tasks", "pool", "long", "adapt"]),
       kind=st.sampled_from(["int_str", "str_none", "float_str"]), n=st.integers(2, 20),
       seed=st.integers(0, 2**32 - 1))
@example(form="pool", kind="int_str", n=2, seed=0)
def test_labels_of_mixed_types_are_refused_clearly(fitted, form, kind, n, seed):
    """Labels numpy cannot sort (1 and 'b', 'a' and None in one object array)."""
    rng = np.random.default_rng(seed)
    X, y, good = rng.normal(size=(n, 2)), _unorderable(n, rng, kind), np.arange(n) % 2
    est = MAMLClassifier(n_way=2, k_shot=1, n_query=1, n_episodes=2, **TINY)
    call, words = {
        "pairs": (lambda: est.fit([(X, good), (X, y)]), ("task 1",)),
        "tasks": (lambda: est.fit([Task(X, y, X, y)]), ("task 0",)),
        "pool": (lambda: est.fit(X, y), ("pool",)),
        "long": (lambda: est.fit(X, y, groups=np.zeros(n)), ("X, y", "task 0")),
        "adapt": (lambda: fitted["clf"].adapt(X, y), ("task 0", "y_support")),
    }[form]
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    check_error(info.value, Case(form, (), {}, {}, other_bad=kind, words=words))


@settings(max_examples=int(6 * SCALE), **BUG_PROPERTY)
@given(classification=st.booleans(),
       kind=st.sampled_from(["int_str", "str_none", "float_str"]), n=st.integers(2, 20),
       seed=st.integers(0, 2**32 - 1))
@example(classification=False, kind="int_str", n=2, seed=0)
def test_group_ids_of_mixed_types_are_refused_clearly(classification, kind, n, seed):
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(n, 2)), np.arange(n) % 2
    est = MAMLClassifier(n_way=2, k_shot=1, **TINY) if classification else \
        MAMLRegressor(k_shot=1, **TINY)
    with pytest.raises((ValueError, TypeError)) as info:
        est.fit(X, y, groups=_unorderable(n, rng, kind))
    check_error(info.value, Case("long", (), {}, {}, other_bad=kind, words=("groups",)))


@st.composite
def target_count_cases(draw):
    counts = draw(st.lists(st.sampled_from(["1d", "col", "2d2", "2d3"]), min_size=2,
                           max_size=5).filter(lambda ks: len({Y_SHAPES[k] or 1 for k in ks}) > 1))
    return draw(st.sampled_from(["pairs", "tasks"])), counts, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=int(12 * SCALE), **BUG_PROPERTY)
@given(case=target_count_cases())
@example(case=("pairs", ["2d2", "2d3"], 0))
@example(case=("pairs", ["1d", "2d2"], 0))
def test_regression_tasks_with_different_target_counts_are_refused(case):
    form, kinds, seed = case
    rng = np.random.default_rng(seed)
    tasks = []
    for kind in kinds:
        X, y = rng.normal(size=(8, 2)), make_y_reg(rng, 8, kind, "float64")
        tasks.append((X, y) if form == "pairs" else Task(X[:4], y[:4], X[4:], y[4:]))
    first = next(i for i, k in enumerate(kinds) if (Y_SHAPES[k] or 1) != (Y_SHAPES[kinds[0]] or 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # torch's "target size" broadcast warning
        with pytest.raises((ValueError, TypeError)) as info:
            MAMLRegressor(k_shot=2, batch_size=len(tasks), **TINY).fit(tasks)
    check_error(info.value, Case(form, (), {}, {}, eager={first}))


@settings(max_examples=int(10 * SCALE), **BUG_PROPERTY)
@given(which=st.sampled_from(["reg", "reg2"]), kind=st.sampled_from(["1d", "col", "2d2", "2d3"]),
       n=st.integers(1, 8))
@example(which="reg", kind="2d3", n=2)
@example(which="reg2", kind="1d", n=2)
def test_adapt_with_another_number_of_targets_is_refused(fitted, which, kind, n):
    expected = 1 if which == "reg" else 2
    assume((Y_SHAPES[kind] or 1) != expected)
    X, y = np.ones((n, 2)), make_y_reg(np.random.default_rng(0), n, kind, "float64")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        with pytest.raises((ValueError, TypeError)) as info:
            fitted[which].adapt(X, y)
    check_error(info.value, Case("adapt", (), {}, {}, other_bad=kind,
                                 words=("task 0", "y_support", "target")))


@settings(max_examples=int(15 * SCALE), **PROPERTY)
@given(form=st.sampled_from(["pairs", "tasks", "long"]), k_shot=st.integers(1, 5),
       n_tasks=st.integers(1, 4))
@example(form="pairs", k_shot=1, n_tasks=1)
def test_regression_score_with_one_query_example(form, k_shot, n_tasks):
    """Tasks of k_shot + 1 rows (n_query=None): one query example each. score must give a
    finite number, or refuse with an error naming n_query or the task."""
    rng = np.random.default_rng(0)
    data = [(rng.normal(size=(k_shot + 1, 2)), rng.normal(size=k_shot + 1))
            for _ in range(n_tasks)]
    args, kwargs = {
        "pairs": ((data,), {}),
        "tasks": (([Task(X[:k_shot], y[:k_shot], X[k_shot:], y[k_shot:]) for X, y in data],),
                  {}),
        "long": ((np.concatenate([X for X, _ in data]), np.concatenate([y for _, y in data])),
                 {"groups": np.repeat(np.arange(n_tasks), k_shot + 1)}),
    }[form]
    est = MAMLRegressor(k_shot=k_shot, n_query=None, batch_size=2, **TINY).fit(*args, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            score = est.score(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            check_error(exc, Case(form, (), {}, {}, other_bad="one query example",
                                  words=("n_query", "task")))
            return
    assert np.isfinite(score), f"score is {score}"


@settings(max_examples=int(8 * SCALE), **BUG_PROPERTY)
@given(kinds=st.lists(st.sampled_from(sorted(LABELS)), min_size=2, max_size=4).filter(
    lambda ks: "str" in ks and len(set(ks)) > 1))
@example(kinds=["str", "float"])
def test_pretrained_classifier_with_label_types_differing_between_tasks(kinds):
    """Works as MAMLClassifier does, or refuses with a message about the label types."""
    rng = np.random.default_rng(0)
    tasks = [(rng.normal(size=(6, 2)), make_labels(rng, 6, 2, k, False)) for k in kinds]
    est = PretrainedClassifier(n_way=2, k_shot=1, n_query=1, **TINY)
    try:
        est.fit(tasks)
    except (ValueError, TypeError) as exc:
        check_error(exc, Case("pairs", (), {}, {}, other_bad="label types", words=("type",)))
        return
    assert np.isfinite(est.score(tasks))
