"""R2-D2: meta-learning with a differentiable closed-form ridge head (Bertinetto et al., 2019)."""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from .base import BaseMetaLearner, MetaClassifierMixin, MetaRegressorMixin
from .functional import Learner, check_head, query_loss, ridge_head
from .parameters import Attribute, Param

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
        name = self.head
        if name is None:
            name = [n for n, m in module.named_modules() if n and
                    list(m.parameters(recurse=False))][-1]
        layer = dict(module.named_modules()).get(name)
        if not isinstance(layer, nn.Linear):
            raise ValueError(f"head={name!r} must name an nn.Linear layer of "
                             f"{type(module).__name__} (the layer solved per task).")
        self.head_ = name
        if hasattr(self, "input_shape_"):
            learner = Learner(module, dict(module.named_parameters()), {}, self.get_task_loss,
                              self.get_inner_rule(), head=name)
            X = next(module.parameters()).new_empty((3, *self.input_shape_)).normal_()
            check_head(learner, X)  # the solved layer must be the network's last operation
        return module

    def get_head(self):
        return self.head_

    def get_inner_rule(self, inner_lr=None):
        if inner_lr is not None:
            raise ValueError(f"{type(self).__name__} solves its head in closed form; "
                             "adapt(inner_lr=...) does not apply.")
        return ridge_head(self.head_, self.alpha, classification=self._classification,
                          prior=getattr(self, "prior", "zero"))

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

    def _encode_targets(self, ys, yq, *, rng, where):
        n_way = self.n_way if rng is not None else max(self.n_way, len(np.unique(ys)))
        classes, ys, yq = super()._encode_targets(ys, yq, rng=rng, where=where, n_way=n_way)
        return classes, np.eye(n_way if rng is not None else len(classes),
                               dtype=np.int64)[ys], yq  # one-hot rows: the ridge targets

    def _adapted_n_outputs(self, classes) -> int:
        return len(classes)
