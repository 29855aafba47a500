"""Adapting a fitted scikit-learn Pipeline that ends in a meta-learner."""

from __future__ import annotations

from typing import Any

from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

__all__ = ["adapt_pipeline"]


def adapt_pipeline(pipeline: Pipeline, X_support: Any, y_support: Any, **adapt_params: Any
                   ) -> Pipeline:
    """Adapt the meta-learner at the end of a fitted pipeline to one task.

    The support set is transformed by the pipeline's fitted preprocessing steps,
    the final meta-learner adapts to it, and a new pipeline is returned that
    shares the fitted preprocessing steps and ends in the adapted model: it
    predicts on *raw* features.

    Parameters
    ----------
    pipeline : Pipeline
        Fitted, ending in a skmeta meta-learner.
    X_support, y_support : array-like
        The new task's support set, in raw features.
    **adapt_params
        ``steps`` / ``lr`` overrides for ``adapt``.

    Returns
    -------
    adapted : Pipeline
        ``Pipeline(pre-processing steps..., adapted model)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skmeta import MAMLRegressor
    >>> from skmeta.pipeline import adapt_pipeline
    >>> rng = np.random.default_rng(0)
    >>> X, groups = rng.normal(size=(200, 3)) * 100, np.repeat(np.arange(20), 10)
    >>> y = X[:, 0] / 100 + groups % 3
    >>> pipe = make_pipeline(StandardScaler(), MAMLRegressor(k_shot=5, max_epochs=1, verbose=0))
    >>> pipe = pipe.fit(X, y, mamlregressor__groups=groups)
    >>> adapted = adapt_pipeline(pipe, X[:5], y[:5])
    >>> adapted.predict(X[5:8]).shape
    (3,)
    """
    if not isinstance(pipeline, Pipeline):
        raise TypeError(f"adapt_pipeline needs a sklearn Pipeline; got {type(pipeline).__name__}.")
    name, final = pipeline.steps[-1]
    if not hasattr(final, "adapt"):
        raise TypeError(f"The last step {name!r} of the pipeline is a {type(final).__name__}, not "
                        "a skmeta meta-learner.")
    check_is_fitted(final)
    Xt = X_support
    for _, step in pipeline.steps[:-1]:
        if step is not None and step != "passthrough":
            Xt = step.transform(Xt)
    adapted = final.adapt(Xt, y_support, **adapt_params)
    return Pipeline(pipeline.steps[:-1] + [(name, adapted)])
