"""Reptile (Nichol, Achiam and Schulman, 2018)."""

from __future__ import annotations

import torch

from ..estimator import BaseMetaLearner, MetaClassifierMixin, MetaRegressorMixin
from ..functional import Learner, Params, TaskBatch

__all__ = ["ReptileRegressor", "ReptileClassifier", "reptile_pseudo_gradient"]


def reptile_pseudo_gradient(learner: Learner, task: TaskBatch, *, steps: int,
                            engine: str | None = None) -> tuple[torch.Tensor, Params]:
    """Reptile's per-task pseudo-gradient ``phi - W``.

    ``W`` are the parameters after ``steps`` inner steps from ``phi`` on the
    task's support set. An outer optimizer stepping with the mean of this
    "gradient" moves ``phi`` toward the adapted weights: with plain SGD of
    learning rate ``eps``, ``phi <- phi + eps * (mean_t W_t - phi)``.

    Parameters
    ----------
    learner : skmeta.functional.Learner
        The network, its (detached) meta-parameters and its inner-loop rule.
    task : skmeta.functional.TaskBatch
        One task (no task axis).
    steps : int
        Inner steps.
    engine : {"vmap", "loop", "batched"} or None, default=None
        Not needed: the engine that runs it binds the learner (see
        :func:`skmeta.functional.map_tasks`); None uses ``learner.engine``.

    Returns
    -------
    loss : Tensor
        The query loss after adaptation, for monitoring (NaN without a query set).
    pseudo_gradient : dict of str to Tensor
        ``phi - W`` for every parameter (zero for those the rule does not move).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> from skmeta.algorithms.reptile import reptile_pseudo_gradient
    >>> net = nn.Linear(1, 1)
    >>> learner = F.Learner(net, dict(net.named_parameters()), {}, nn.functional.mse_loss,
    ...                     F.sgd(0.1)).detached()
    >>> batch = F.TaskBatch(*(torch.randn(3, 5, 1) for _ in range(2)))
    >>> loss, pseudo = F.mean_over_tasks(lambda learner, task: reptile_pseudo_gradient(
    ...     learner, task, steps=5), [batch], learner=learner)
    >>> sorted(pseudo), bool(torch.isnan(loss))
    (['bias', 'weight'], True)
    """
    if engine is not None:
        learner = learner.bind(engine)
    fast = learner.run_inner(task.X_support, task.y_support, steps=steps)[-1]
    adapted = learner.merged(fast)
    pseudo = {k: p - adapted[k] for k, p in learner.params.items()}
    if task.X_query is None:  # a constant: NaN for every task
        loss = task.X_support.new_full((), float("nan"))
    else:
        loss = learner.loss(fast, task.X_query, task.y_query, step=max(steps - 1, 0),
                            mask=task.query_mask)
    return loss, pseudo


class _BaseReptile(BaseMetaLearner):
    """Reptile: move the initialisation toward the weights adapted to each task.

    For every task of a meta-batch, ``inner_steps`` SGD steps of size
    ``inner_lr`` on its support set take phi to W; the outer optimizer then steps
    with the pseudo-gradient ``phi - mean(W)``. With the default plain SGD of
    learning rate ``lr`` this is ``phi <- phi + lr * (mean(W) - phi)``.
    """

    _param_defaults = {"optimizer": torch.optim.SGD, "lr": 1.0, "inner_steps": 5}

    def task_pseudo_gradient(self, learner, task):
        return reptile_pseudo_gradient(learner, task, steps=self.inner_steps)


_REFERENCES = """
    References
    ----------
    Nichol, Achiam and Schulman, "On First-Order Meta-Learning Algorithms",
    arXiv:1803.02999, 2018.
"""


class ReptileRegressor(MetaRegressorMixin, _BaseReptile):
    __doc__ = """Reptile for regression (Nichol et al., 2018).

    Moves the initialisation toward the weights that ``inner_steps`` gradient
    steps reach on each task; the history's ``train_loss`` is the query loss after
    those steps (for monitoring only). Read more in the user guide
    (:doc:`/user_guide/concepts`).

    See Also
    --------
    ReptileClassifier, MAMLRegressor
""" + _REFERENCES + """
    Examples
    --------
    >>> from skmeta import ReptileRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=100, n_samples=20, random_state=0)
    >>> reptile = ReptileRegressor(k_shot=10, lr=0.1, max_epochs=2, verbose=0,
    ...                            random_state=0).fit(tasks)
    >>> X, y = tasks[0]
    >>> reptile.adapt(X[:10], y[:10]).predict(X[10:]).shape
    (10,)
    """


class ReptileClassifier(MetaClassifierMixin, _BaseReptile):
    _param_defaults = {"inner_lr": 0.1}  # measured in docs/user_guide/algorithms.rst
    __doc__ = """Reptile for few-shot classification (Nichol et al., 2018).

    Moves the initialisation toward the weights that ``inner_steps`` gradient
    steps reach on each ``n_way``-way episode. Read more in the user guide
    (:doc:`/user_guide/concepts`).

    See Also
    --------
    ReptileRegressor, MAMLClassifier
""" + _REFERENCES + """
    Examples
    --------
    >>> import numpy as np
    >>> from skmeta import ReptileClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(20), 10)
    >>> X = rng.normal(size=(200, 4)) + y[:, None] % 5
    >>> clf = ReptileClassifier(n_way=3, k_shot=2, n_query=3, n_episodes=50, inner_lr=0.1,
    ...                         max_epochs=1, verbose=0, random_state=0).fit(X, y)
    >>> clf.adapt(X[:6], y[:6]).predict(X[:6]).shape
    (6,)
    """
