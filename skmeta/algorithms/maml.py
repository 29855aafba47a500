"""MAML and first-order MAML (Finn et al., 2017)."""

from __future__ import annotations

from ..estimator import FIRST_ORDER, BaseMetaLearner, MetaClassifierMixin, MetaRegressorMixin

__all__ = ["MAMLRegressor", "MAMLClassifier"]


class _BaseMAML(BaseMetaLearner):
    """Model-agnostic meta-learning: learn phi such that a few inner steps fit a task.

    The meta-objective is the mean query loss after ``inner_steps`` steps of the
    inner rule on each task's support set; its gradient flows through the inner
    steps (second order) unless ``first_order=True``.
    """

    _params = {"first_order": FIRST_ORDER}

    def uses_second_order(self):
        return not self.first_order



_REFERENCES = """
    References
    ----------
    Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of
    Deep Networks", ICML 2017, arXiv:1703.03400.
"""


class MAMLRegressor(MetaRegressorMixin, _BaseMAML):
    __doc__ = """Model-agnostic meta-learning for regression (Finn et al., 2017).

    Learns an initialisation of the network from which ``inner_steps`` gradient
    steps of size ``inner_lr`` on a task's support set fit its query set;
    ``first_order=True`` gives first-order MAML. Read more in the user guide
    (:doc:`/user_guide/concepts`).

    See Also
    --------
    MAMLClassifier, MetaSGDRegressor, ANILRegressor, MAMLPlusPlusRegressor, ReptileRegressor
""" + _REFERENCES + """
    Examples
    --------
    >>> from skmeta import MAMLRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=100, n_samples=20, random_state=0)
    >>> maml = MAMLRegressor(k_shot=10, max_epochs=2, verbose=0, random_state=0).fit(tasks)
    >>> X, y = tasks[0]
    >>> adapted = maml.adapt(X[:10], y[:10])
    >>> adapted.predict(X[10:]).shape
    (10,)
    """


class MAMLClassifier(MetaClassifierMixin, _BaseMAML):
    _param_defaults = {"inner_lr": 0.4}  # measured in docs/user_guide/algorithms.rst
    __doc__ = """Model-agnostic meta-learning for few-shot classification (Finn et al., 2017).

    Learns an initialisation of the network from which ``inner_steps`` gradient
    steps of size ``inner_lr`` on an ``n_way``-way ``k_shot``-shot support set
    classify the task's query set; ``first_order=True`` gives first-order MAML.
    Read more in the user guide (:doc:`/user_guide/concepts`).

    See Also
    --------
    MAMLRegressor, MetaSGDClassifier, ANILClassifier, MAMLPlusPlusClassifier, ReptileClassifier
""" + _REFERENCES + """
    Examples
    --------
    >>> import numpy as np
    >>> from skmeta import MAMLClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(20), 10)            # a pool of 20 classes
    >>> X = rng.normal(size=(200, 4)) + y[:, None] % 5
    >>> clf = MAMLClassifier(n_way=3, k_shot=2, n_query=3, n_episodes=50, inner_lr=0.1,
    ...                      max_epochs=1, verbose=0, random_state=0).fit(X, y)
    >>> adapted = clf.adapt(X[:6], np.array(["a", "a", "b", "b", "c", "c"]))
    >>> adapted.classes_.tolist()
    ['a', 'b', 'c']
    """
