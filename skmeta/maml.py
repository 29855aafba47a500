"""MAML and first-order MAML (Finn et al., 2017)."""

from __future__ import annotations

from .base import BaseMetaLearner, MetaClassifierMixin, MetaRegressorMixin
from .functional import Learner, TaskBatch
from .parameters import Param

__all__ = ["MAMLRegressor", "MAMLClassifier", "maml_task_loss"]


def maml_task_loss(learner: Learner, task: TaskBatch, *, steps: int, first_order: bool = False,
                   engine: str = "vmap"):
    """MAML's per-task objective: the query loss after ``steps`` inner steps.

    Parameters
    ----------
    learner : skmeta.functional.Learner
        The network, its meta-parameters and its inner-loop rule.
    task : skmeta.functional.TaskBatch
        One task (no task axis), with a query set.
    steps : int
        Inner steps on the support set.
    first_order : bool, default=False
        Treat the inner gradients as constants (first-order MAML).
    engine : {"vmap", "loop"}, default="vmap"

    Returns
    -------
    loss : Tensor
        A scalar, differentiable with respect to the meta-parameters.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> from skmeta.maml import maml_task_loss
    >>> net = nn.Linear(1, 1)
    >>> learner = F.Learner(net, dict(net.named_parameters()), {}, nn.functional.mse_loss,
    ...                     F.sgd(0.1))
    >>> batch = F.TaskBatch(*(torch.randn(3, 5, 1) for _ in range(4)))
    >>> loss, grads = F.meta_gradient(lambda task, engine: maml_task_loss(
    ...     learner, task, steps=2, engine=engine), [batch], learner.params)
    >>> sorted(grads)
    ['bias', 'weight']
    """
    if task.X_query is None:
        raise ValueError("Meta-training needs a query set for every task (X_query, y_query).")
    fasts = learner.run_inner(task.X_support, task.y_support, steps=steps,
                              first_order=first_order, engine=engine)
    return learner.loss(fasts[-1], task.X_query, task.y_query, step=max(steps - 1, 0))


class _BaseMAML(BaseMetaLearner):
    """Model-agnostic meta-learning: learn phi such that a few inner steps fit a task.

    The meta-objective is the mean query loss after ``inner_steps`` steps of the
    inner rule on each task's support set; its gradient flows through the inner
    steps (second order) unless ``first_order=True``.
    """

    _params = {"first_order": Param(False, "bool", "Drop the second-order terms of the "
                                    "meta-gradient (first-order MAML).", ["boolean"])}

    def _uses_second_order(self) -> bool:
        return not self.first_order

    def task_objective(self, learner, task, engine):
        return maml_task_loss(learner, task, steps=self.inner_steps,
                              first_order=self.first_order, engine=engine)


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
