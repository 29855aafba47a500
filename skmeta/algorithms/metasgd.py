"""Meta-SGD: MAML with a learned learning rate for every weight (Li et al., 2017)."""

from __future__ import annotations

from ..estimator import FIRST_ORDER, BaseMetaLearner, MetaClassifierMixin, MetaRegressorMixin
from ..functional import learned_lr

__all__ = ["MetaSGDRegressor", "MetaSGDClassifier"]


class _BaseMetaSGD(BaseMetaLearner):
    """Learn the initialisation and, for every element of every parameter, the inner step size.

    The inner step is ``w - alpha * grad`` with ``alpha`` a tensor shaped like
    ``w``, initialised to ``inner_lr`` and meta-learned with the network (it lives
    in ``inner_state_``). The meta-objective is MAML's.
    """

    _params = {"first_order": FIRST_ORDER}
    _param_docs = {"inner_lr": "The initial value of every learned inner learning rate (the "
                   "rates are then meta-learned; ``adapt`` uses the learned ones and refuses an "
                   "``inner_lr`` override)."}

    def get_inner_rule(self, inner_lr):
        return learned_lr(inner_lr)  # no fixed step size: adapt(inner_lr=...) is refused

    def uses_second_order(self):
        return not self.first_order



_REFERENCES = """
    References
    ----------
    Li, Zhou, Chen and Li, "Meta-SGD: Learning to Learn Quickly for Few-Shot
    Learning", 2017, arXiv:1707.09835.
"""


class MetaSGDRegressor(MetaRegressorMixin, _BaseMetaSGD):
    __doc__ = """Meta-SGD for regression: MAML with learned per-weight inner learning rates.

    Meta-learns the network's initialisation together with one inner learning
    rate per weight (``inner_state_``, initialised to ``inner_lr``); ``adapt``
    takes ``adapt_steps`` steps with the learned rates. Usually one inner step
    suffices. Read more in :doc:`/user_guide/algorithms`.

    See Also
    --------
    MAMLRegressor, MetaSGDClassifier, MAMLPlusPlusRegressor
""" + _REFERENCES + """
    Examples
    --------
    >>> from skmeta import MetaSGDRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=100, n_samples=20, random_state=0)
    >>> est = MetaSGDRegressor(k_shot=10, max_epochs=2, verbose=0, random_state=0).fit(tasks)
    >>> sorted(est.inner_state_.tensors())[:2]  # one learned rate per weight
    ['layers.0.bias', 'layers.0.weight']
    >>> X, y = tasks[0]
    >>> est.adapt(X[:10], y[:10]).predict(X[10:]).shape
    (10,)
    """


class MetaSGDClassifier(MetaClassifierMixin, _BaseMetaSGD):
    _param_defaults = {"inner_lr": 0.4}  # measured in docs/user_guide/algorithms.rst
    __doc__ = """Meta-SGD for few-shot classification: MAML with learned per-weight inner rates.

    Meta-learns the network's initialisation together with one inner learning
    rate per weight (``inner_state_``, initialised to ``inner_lr``); ``adapt``
    takes ``adapt_steps`` steps with the learned rates on an ``n_way``-way support
    set. Read more in :doc:`/user_guide/algorithms`.

    See Also
    --------
    MAMLClassifier, MetaSGDRegressor, MAMLPlusPlusClassifier
""" + _REFERENCES + """
    Examples
    --------
    >>> import numpy as np
    >>> from skmeta import MetaSGDClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(20), 10)
    >>> X = rng.normal(size=(200, 4)) + y[:, None] % 5
    >>> clf = MetaSGDClassifier(n_way=3, k_shot=2, n_query=3, n_episodes=50, inner_lr=0.1,
    ...                         max_epochs=1, verbose=0, random_state=0).fit(X, y)
    >>> clf.adapt(X[:6], np.array(["a", "a", "b", "b", "c", "c"])).classes_.tolist()
    ['a', 'b', 'c']
    """
