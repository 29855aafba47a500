"""Checks of one task's arrays and sizes, and of the scale of the features."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["check_task_arrays", "check_features", "check_task_size", "warn_on_scale", "SCALE_LIMIT"]


def check_features(X: Any, *, where: str = "X") -> np.ndarray:
    """Validate and convert a feature array (numeric, finite, at least 2-D).

    Accepts what ``fit`` accepts (arrays, lists, DataFrames); the result is a
    C-contiguous, writable array (copied when ``X`` is read-only or strided, e.g.
    ``X[:, ::-1]``), which PyTorch takes without a warning.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.data.checks import check_features
    >>> check_features(np.arange(6.0).reshape(3, 2)[:, ::-1]).flags["C_CONTIGUOUS"]
    True
    """
    return _check_X(X, where)


def _check_X(X: Any, where: str) -> np.ndarray:
    if X is None:
        raise TypeError(f"{where}: X is None; pass an array-like of shape (n_samples, "
                        "n_features), e.g. a NumPy array or a DataFrame.")
    if hasattr(X, "toarray") and hasattr(X, "nnz"):
        raise TypeError(f"{where}: sparse X is not supported; pass X.toarray().")
    try:
        X = np.asarray(X)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise ValueError(f"{where}: X could not be converted to an array ({exc}).") from exc
    if X.dtype == object:
        try:
            X = X.astype(np.float64)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{where}: X must be numeric; got an object array that does not "
                            "convert to float.") from exc
    if X.dtype.kind == "b":
        X = X.astype(np.float32)
    elif X.dtype.kind in "iu":
        X = X.astype(np.float32 if X.dtype.itemsize <= 2 else np.float64)
    elif X.dtype.kind == "f":
        if X.dtype.itemsize < 4:
            X = X.astype(np.float32)
    else:
        raise TypeError(f"{where}: X must be numeric (bool, int or float); got dtype "
                        f"{X.dtype}. Encode text or categorical features first.")
    if X.ndim < 2:
        raise ValueError(f"{where}: X must have shape (n_samples, n_features) or "
                         f"(n_samples, *input_shape); got shape {X.shape}. Use "
                         "X.reshape(-1, 1) for a single feature.")
    if X.shape[1:] and min(X.shape[1:]) == 0:
        raise ValueError(f"{where}: X has 0 features (shape {X.shape}).")
    if not np.isfinite(X).all():
        raise ValueError(f"{where}: X contains NaN or infinity.")
    return np.require(X, requirements=["C", "W"])  # no negative strides, no read-only views


def _check_y(y: Any, n: int, where: str, classification: bool) -> np.ndarray:
    if y is None:
        raise TypeError(f"{where}: y is None; pass the targets, one per row of X.")
    y = np.asarray(y)
    if classification:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(f"{where}: y must be 1-D for classification; got shape {y.shape}.")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError(f"{where}: y contains NaN or infinity.")
        if y.dtype == object:
            try:
                np.unique(y)
            except TypeError as exc:
                kinds = sorted({type(v).__name__ for v in y})
                raise TypeError(f"{where}: y mixes label types ({', '.join(kinds)}) that cannot "
                                "be ordered; use labels of one type (e.g. all str).") from exc
    else:
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{where}: y must be numeric for regression; got dtype {y.dtype}.")
        if y.ndim not in (1, 2):
            raise ValueError(f"{where}: y must be 1-D or 2-D; got shape {y.shape}.")
        y = y.astype(np.float64 if y.dtype == np.float64 else np.float32)
        if not np.isfinite(y).all():
            raise ValueError(f"{where}: y contains NaN or infinity.")
    if len(y) != n:
        raise ValueError(f"{where}: X and y have different numbers of samples ({n} and {len(y)}).")
    return y


def continuous_targets(y: np.ndarray, where: str) -> str | None:
    """Why ``y``, given as class labels, looks like regression targets (None if it does not).

    Like scikit-learn's ``type_of_target(y) == "continuous"`` (floats that are not all
    whole numbers), and with more than half of the values distinct, so that float
    labels that repeat (a few classes) are left alone.
    """
    y = np.asarray(y)
    if y.dtype.kind != "f" or y.size < 2:
        return None
    finite = y[np.isfinite(y)]
    if np.all(finite == np.round(finite)):
        return None
    distinct = np.unique(finite)
    if len(distinct) <= len(y) / 2:
        return None
    examples = ", ".join(f"{v:.4g}" for v in finite[:3])
    return (f"{where}: y looks continuous ({len(distinct)} distinct "
            f"float values among {len(y)}, e.g. {examples}), but a classifier needs class "
            "labels. For regression tasks use a regressor such as MAMLRegressor, with "
            "fit(X, y, groups=task_ids) or a list of (X, y) pairs, one per task.")


def check_task_arrays(X: Any, y: Any, *, where: str = "task",
                      classification: bool) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert one task's ``X`` and ``y`` (numeric, finite, same length)."""
    X = _check_X(X, where)
    y = _check_y(y, X.shape[0], where, classification)
    if X.shape[0] == 0:
        raise ValueError(f"{where} is empty (no samples).")
    return X, y


def n_needed(k_shot: int, n_query: int | None) -> int:
    return k_shot + (1 if n_query is None else n_query)


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def check_task_size(n: int, *, k_shot: int, n_query: int | None, need_query: bool = True,
                    where: str = "task") -> None:
    """Refuse a regression task of ``n`` samples that is too small for its split."""
    needed = n_needed(k_shot, n_query) if need_query else k_shot
    if n < needed:
        query = ("" if not need_query else
                 f" + {'at least 1' if n_query is None else n_query} query")
        raise ValueError(f"{where} has "
                         f"{count(n, 'sample')} but k_shot={k_shot} support{query} "
                         f"sample(s) need {needed}. Lower k_shot/n_query or drop small tasks.")


#: features whose root mean square exceeds this (or that reach 100 times it) make a fixed
#: inner step explode: a gradient step's effect on the output grows with the square of the
#: features' size (features of 20 to 80, such as ages, already need scaling)
SCALE_LIMIT = 10.0


def warn_on_scale(X: np.ndarray) -> None:
    """Warn when features are far from unit scale or do not vary: gradient steps misbehave.

    A gradient step on a first layer moves the output by about ``inner_lr`` times
    the squared size of the features, so features around 1e3 (or 1e2 with offsets,
    e.g. ``X * 1000 + 5000``) make a fixed ``inner_lr`` diverge. Checked on the
    first task: its root mean square above :data:`SCALE_LIMIT` or its largest value
    above 100 times that, or every feature constant (or varying by less than 1e-4).
    """
    X = np.asarray(X, dtype=np.float64)
    X = X.reshape(len(X), -1) if X.ndim > 1 else X.reshape(-1, 1)
    X = X[np.isfinite(X).all(1)]
    if not X.size:
        return
    biggest = float(np.abs(X).max())
    rms = float(np.sqrt(np.mean(X ** 2)))
    spread = float(X.std(axis=0).max()) if len(X) > 1 else 1.0
    advice = ("Consider StandardScaler (long format in a Pipeline) or "
              "skmeta.TaskTransformer(StandardScaler()) for task lists.")
    if rms > SCALE_LIMIT or biggest > 100 * SCALE_LIMIT:
        warnings.warn(f"The features of the first task have a root mean square of {rms:.3g} and "
                      f"reach {biggest:.3g}; fixed inner step sizes work on features of unit "
                      "scale (a gradient step's effect grows with the square of the features' "
                      "size, so adaptation may diverge silently to huge predictions). "
                      + advice, UserWarning, stacklevel=4)
    elif spread < 1e-4:
        what = "constant" if spread == 0 else f"nearly constant (largest standard deviation " \
            f"{spread:.3g})"
        warnings.warn(f"Every feature of the first task is {what}: a task's examples cannot be "
                      "told apart, and fixed inner step sizes work on features of unit scale. "
                      "Check the feature columns; " + advice[0].lower() + advice[1:],
                      UserWarning, stacklevel=4)
