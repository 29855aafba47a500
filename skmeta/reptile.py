"""Reptile (Nichol, Achiam and Schulman, 2018)."""

from __future__ import annotations

import torch

from . import functional as F
from .base import (
    CLASSIFIER_CONSTRAINTS,
    BaseMetaLearner,
    MetaBatch,
    _ClassifierShell,
    _RegressorShell,
)
from .maml import _CLF_EXTRA, _doc
from .modules import MLP

__all__ = ["ReptileRegressor", "ReptileClassifier"]


class _BaseReptile(BaseMetaLearner):
    """Reptile: move the initialisation toward the weights adapted to each task.

    For every task of a meta-batch, ``inner_steps`` SGD steps of size
    ``inner_lr`` on its support set take phi to W; the outer optimizer then steps
    with the pseudo-gradient ``phi - mean(W)``. With the default plain SGD of
    learning rate ``lr`` this is ``phi <- phi + lr * (mean(W) - phi)``.
    """

    def __init__(self, module=MLP, *, optimizer=torch.optim.SGD, lr=1.0, inner_steps=5,
                 **kwargs):
        super().__init__(module, optimizer=optimizer, lr=lr, inner_steps=inner_steps, **kwargs)

    def get_meta_gradient(self, batch: MetaBatch, engine: str):
        params, buffers = self._named_tensors()
        return F.reptile_meta_gradient(self.module_, params, buffers, batch.task_batches,
                                       loss_fn=self.get_task_loss, inner_lr=self.inner_lr,
                                       steps=self.inner_steps, engine=engine,
                                       chunk_size=self.chunk_size)


_REFS = """
    References
    ----------
    Nichol, Achiam and Schulman, "On First-Order Meta-Learning Algorithms",
    arXiv:1803.02999, 2018.
"""


class ReptileRegressor(_RegressorShell, _BaseReptile):
    __doc__ = _doc(
        """Reptile for regression (Nichol et al., 2018).
""", """
    See Also
    --------
    ReptileClassifier, MAMLRegressor
""" + _REFS + """
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
""", "", False, criterion="torch.nn.MSELoss", optimizer="torch.optim.SGD", lr="1.0",
        inner_steps="5")


class ReptileClassifier(_ClassifierShell, _BaseReptile):
    __doc__ = _doc(
        """Reptile for few-shot classification (Nichol et al., 2018).
""", """
    See Also
    --------
    ReptileRegressor, MAMLClassifier
""" + _REFS + """
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
""", _CLF_EXTRA, True, criterion="torch.nn.CrossEntropyLoss", optimizer="torch.optim.SGD",
        lr="1.0", inner_steps="5")
    _parameter_constraints = {**_BaseReptile._parameter_constraints, **CLASSIFIER_CONSTRAINTS}
