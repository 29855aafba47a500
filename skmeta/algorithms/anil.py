"""ANIL: almost no inner loop, only the head adapts (Raghu et al., 2020)."""

from __future__ import annotations

from ..estimator import (
    FIRST_ORDER,
    Attribute,
    BaseMetaLearner,
    MetaClassifierMixin,
    MetaRegressorMixin,
    Param,
)
from ..functional import example_inputs, head_is_last, last_layer, only, sgd

__all__ = ["ANILRegressor", "ANILClassifier"]


class _BaseANIL(BaseMetaLearner):
    """MAML whose inner loop moves only the head; the outer loop trains every parameter.

    When the head is the network's last operation, the body's features of a task
    are computed once and the inner steps run the head alone, so a meta-iteration
    and ``adapt`` cost little more than a forward pass of the body.
    """

    _params = {
        "first_order": FIRST_ORDER,
        "head": Param(None, "str, list of str or None",
                      "The submodule(s) the inner loop adapts (names as in "
                      "``module.named_modules()``); None takes the network's last layer with "
                      "parameters. The outer loop trains every parameter."),
    }
    _attributes = {
        "head_": Attribute("list of str", "The adapted submodules.", saved=True),
        "head_only_": Attribute("bool", "Whether the inner loop runs the head alone on features "
                                "computed once per task (the head is the network's last "
                                "operation), rather than the whole network at every step.",
                                saved=True),
    }

    def prepare_module(self, module):
        names = self.head if self.head is not None else [last_layer(module)]
        names = [names] if isinstance(names, str) else list(names)
        known = dict(module.named_modules())
        for name in names:
            if name not in known or not list(known[name].parameters()):
                raise ValueError(f"head={name!r} names no submodule with parameters of "
                                 f"{type(module).__name__}; choose among "
                                 f"{[n for n, m in known.items() if n and list(m.parameters())]}.")
        self.head_ = names
        # the head alone on features computed once, when it is the network's last operation
        # (else still exact: the whole network runs at every step)
        self.head_only_ = len(names) == 1 and hasattr(self, "input_shape_") and head_is_last(
            module, names[0], example_inputs(module, self.input_shape_))
        return module

    def get_head(self):
        return self.head_[0] if self.head_only_ else None

    def get_inner_rule(self, inner_lr):
        return only(self.head_, sgd(inner_lr))

    def uses_second_order(self):
        return not self.first_order



_REFERENCES = """
    References
    ----------
    Raghu, Raghu, Bengio and Vinyals, "Rapid Learning or Feature Reuse? Towards
    Understanding the Effectiveness of MAML", ICLR 2020, arXiv:1909.09157.
"""


class ANILRegressor(MetaRegressorMixin, _BaseANIL):
    __doc__ = """ANIL for regression: meta-learn features, adapt only the head.

    The inner loop (meta-training, ``adapt`` and ``score``) takes ``inner_steps``
    gradient steps on the head alone (``head``, by default the last layer with
    parameters); the outer loop trains the whole network. Read more in
    :doc:`/user_guide/algorithms`.

    See Also
    --------
    MAMLRegressor, ANILClassifier, R2D2Regressor
""" + _REFERENCES + """
    Examples
    --------
    >>> from skmeta import ANILRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=100, n_samples=20, random_state=0)
    >>> anil = ANILRegressor(k_shot=10, max_epochs=2, verbose=0, random_state=0).fit(tasks)
    >>> anil.head_, anil.head_only_
    (['layers.4'], True)
    >>> X, y = tasks[0]
    >>> anil.adapt(X[:10], y[:10], adapt_steps=5).predict(X[10:]).shape
    (10,)
    """


class ANILClassifier(MetaClassifierMixin, _BaseANIL):
    _param_defaults = {"inner_lr": 0.4}  # measured in docs/user_guide/algorithms.rst
    __doc__ = """ANIL for few-shot classification: meta-learn features, adapt only the head.

    The inner loop (meta-training, ``adapt`` and ``score``) takes ``inner_steps``
    gradient steps on the head alone (``head``, by default the last layer with
    parameters); the outer loop trains the whole network. On a convolutional
    network the body's features are computed once per task, which makes a
    meta-iteration and ``adapt`` much cheaper than MAML's. Read more in
    :doc:`/user_guide/algorithms`.

    See Also
    --------
    MAMLClassifier, ANILRegressor, R2D2Classifier
""" + _REFERENCES + """
    Examples
    --------
    >>> import numpy as np
    >>> from skmeta import ANILClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(20), 10)
    >>> X = rng.normal(size=(200, 4)) + y[:, None] % 5
    >>> clf = ANILClassifier(n_way=3, k_shot=2, n_query=3, n_episodes=50, inner_lr=0.5,
    ...                      max_epochs=1, verbose=0, random_state=0).fit(X, y)
    >>> clf.adapt(X[:6], np.array(["a", "a", "b", "b", "c", "c"])).classes_.tolist()
    ['a', 'b', 'c']
    """
