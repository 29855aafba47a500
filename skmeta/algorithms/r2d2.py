"""R2-D2: meta-learning with a differentiable closed-form ridge head (Bertinetto et al., 2019)."""

from __future__ import annotations

from numbers import Real

from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from ..estimator import Attribute, BaseMetaLearner, MetaClassifierMixin, MetaRegressorMixin, Param
from ..functional import example_inputs, head_is_last, last_layer, query_loss, ridge_head

__all__ = ["R2D2Regressor", "R2D2Classifier"]


class _BaseR2D2(BaseMetaLearner):
    """Meta-learn the features; solve the last linear layer per task by ridge regression.

    The inner loop is not gradient steps: the head is the closed-form ridge solution
    on the support set's features (:func:`skmeta.functional.ridge_head`), and the
    query loss is differentiated through it into the body and the learned
    regularisation strength.
    """

    _params = {
        "head": Param(None, "str or None", "The ``nn.Linear`` layer solved per task; it must be "
                      "the network's last operation. None takes the last layer with parameters."),
        "alpha": Param(1.0, "float", "The initial ridge regularisation strength (meta-learned, "
                       "as its logarithm, in ``inner_state_``).",
                       [Interval(Real, 0, None, closed="neither")]),
    }
    _param_docs = {
        "inner_lr": "Unused: the head is solved in closed form, not by gradient steps.",
        "inner_steps": "0 keeps the meta-learned head; 1 or more solves it (once) per task.",
    }
    _attributes = {"head_": Attribute("str", "The layer solved per task.")}

    def prepare_module(self, module):
        name = last_layer(module) if self.head is None else self.head
        if not isinstance(dict(module.named_modules()).get(name), nn.Linear):
            raise ValueError(f"head={name!r} must name an nn.Linear layer of "
                             f"{type(module).__name__} (the layer solved per task).")
        if hasattr(self, "input_shape_") and not head_is_last(
                module, name, example_inputs(module, self.input_shape_, 3)):
            raise ValueError(f"The submodule {name!r} is not the network's last operation: the "
                             "network's output differs from the layer applied to its input, so "
                             "it cannot be solved per task. Choose the last layer as head.")
        self.head_ = name
        return module

    def get_head(self):
        return self.head_

    def get_inner_rule(self, inner_lr):
        # a closed-form solve: no step size (adapt(inner_lr=...) is refused)
        return ridge_head(self.head_, self.alpha, classification=self.get_targets().classification,
                          prior=self.prior)

    def task_objective(self, learner, task):
        return query_loss(learner, task, steps=self.inner_steps)


_REFERENCES = """
    References
    ----------
    Bertinetto, Henriques, Torr and Vedaldi, "Meta-learning with differentiable
    closed-form solvers", ICLR 2019, arXiv:1805.08136. Harrison, Sharma and
    Pavone, "Meta-Learning Priors for Efficient Online Bayesian Regression"
    (ALPaCA), WAFR 2018, arXiv:1807.08912.
"""


class R2D2Regressor(MetaRegressorMixin, _BaseR2D2):
    _params = {"prior": Param("learned", '{"learned", "zero"}', "What the ridge penalty "
                              "shrinks the head toward: the head's meta-learned weights "
                              "(ALPaCA's prior mean), or zero (R2-D2 as published).",
                              [StrOptions({"zero", "learned"})])}
    __doc__ = """R2-D2 for regression: meta-learned features and a ridge head solved per task.

    Adaptation is one closed-form ridge regression of the support targets on the
    network's learned features (Bayesian linear regression on learned features,
    as ALPaCA); the features and the regularisation strength are meta-learned
    through it. By default (``prior="learned"``) the ridge penalty shrinks the head
    toward meta-learned weights rather than zero (ALPaCA's prior mean): with few
    support rows the prediction stays near what fits every task on average, as a
    mixed model's does. ``prior="zero"`` is R2-D2 as published: on sine waves it was
    less accurate with 5 support points (query MSE 0.165 against 0.111) and as
    accurate with 10 and 20, and on the Exam table it was far behind (see
    :doc:`/benchmarks`). Read more in
    :doc:`/user_guide/algorithms`.

    See Also
    --------
    R2D2Classifier, ANILRegressor, MAMLRegressor
""" + _REFERENCES + """
    Examples
    --------
    >>> from skmeta import R2D2Regressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=100, n_samples=20, random_state=0)
    >>> est = R2D2Regressor(k_shot=10, max_epochs=2, verbose=0, random_state=0).fit(tasks)
    >>> sorted(est.inner_state_.tensors())
    ['layers.4.log_alpha']
    >>> X, y = tasks[0]
    >>> est.adapt(X[:10], y[:10]).predict(X[10:]).shape
    (10,)
    """


class R2D2Classifier(MetaClassifierMixin, _BaseR2D2):
    targets = "one-hot"  # ridge regression onto one-hot rows; any number of classes at adapt
    prior = "zero"  # the ridge penalty shrinks toward zero (R2-D2 as published)

    __doc__ = """R2-D2 for few-shot classification: ridge regression onto one-hot targets.

    The head is solved per task by ridge regression of one-hot support labels on
    the learned features, with a learned scale of the logits; because it is
    solved, ``adapt`` accepts tasks with any number of classes (``n_way`` only
    sets the episodes of meta-training). Read more in
    :doc:`/user_guide/algorithms`.

    See Also
    --------
    R2D2Regressor, ANILClassifier, MAMLClassifier
""" + _REFERENCES + """
    Examples
    --------
    >>> import numpy as np
    >>> from skmeta import R2D2Classifier
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(20), 10)
    >>> X = rng.normal(size=(200, 4)) + y[:, None] % 5
    >>> clf = R2D2Classifier(n_way=3, k_shot=2, n_query=3, n_episodes=50, max_epochs=1,
    ...                      verbose=0, random_state=0).fit(X, y)
    >>> clf.adapt(X[:50], y[:50]).classes_.tolist()  # 5 classes, though n_way=3
    [0, 1, 2, 3, 4]
    """
