"""MAML and first-order MAML (Finn et al., 2017)."""

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
from .modules import MLP

__all__ = ["MAMLRegressor", "MAMLClassifier"]


class _BaseMAML(BaseMetaLearner):
    """Model-agnostic meta-learning: learn phi such that a few inner steps fit a task.

    The meta-objective is the mean query loss after ``inner_steps`` steps of
    size ``inner_lr`` on each task's support set; its gradient flows through the
    inner steps (second order) unless ``first_order=True``.
    """

    _parameter_constraints = {**BaseMetaLearner._parameter_constraints,
                              "first_order": ["boolean"]}

    def __init__(self, module=MLP, *, optimizer=torch.optim.Adam, lr=1e-3, inner_steps=1,
                 first_order=False, **kwargs):
        self.first_order = first_order
        super().__init__(module, optimizer=optimizer, lr=lr, inner_steps=inner_steps, **kwargs)

    @property
    def _second_order(self) -> bool:
        return not self.first_order

    def get_meta_gradient(self, batch: MetaBatch, engine: str):
        params, buffers = self._named_tensors()
        return F.maml_meta_gradient(self.module_, params, buffers, batch.task_batches,
                                    loss_fn=self.get_task_loss, inner_lr=self.inner_lr,
                                    steps=self.inner_steps, first_order=self.first_order,
                                    engine=engine, chunk_size=self.chunk_size)


_PARAMS = """
    Parameters
    ----------
    module : torch.nn.Module class or instance, default=skmeta.modules.MLP
        The network. A class is instantiated with the ``module__*`` parameters;
        its ``in_features`` and ``n_outputs`` are filled in from the data when the
        constructor has them and they are not set.
    criterion : torch loss class, default={criterion}
        The loss of a task's predictions, used for inner and outer updates.
    optimizer : torch optimizer class, default={optimizer}
        The outer (meta) optimizer; ``optimizer__*`` parameters are routed to it.
    lr : float, default={lr}
        The outer (meta) learning rate.
    inner_steps : int, default={inner_steps}
        Inner gradient steps per task during meta-training.
    inner_lr : float, default=0.01
        Inner (adaptation) step size.
    adapt_steps : int or None, default=None
        Steps taken by :meth:`adapt` and :meth:`score`; None means ``inner_steps``.
{extra}    k_shot : int, default=5
        Support examples per task{per_class}.
    n_query : int or None, default=None
        Query examples per task{per_class}; None takes all the rest.
    max_epochs : int, default=10
        Epochs; an epoch is one pass over the training tasks.
    batch_size : int, default=25
        Tasks per meta-update (the meta-batch).
    engine : {{"auto", "vmap", "loop"}}, default="auto"
        ``"vmap"`` vectorises the inner loops of equally shaped tasks,
        ``"loop"`` runs tasks one by one (the reference). ``"auto"`` times both on
        the first meta-batches and keeps the faster; it uses the loop for modules
        that vmap cannot run exactly (see :func:`skmeta.functional.vmap_support`).
    chunk_size : int or None, default=None
        At most this many tasks are vectorised at once (bounds memory).
    random_state : int, RandomState instance or None, default=None
        Seeds the module's initialisation, the task order, the support/query
        splits and the episodes; the global torch and numpy RNGs are not touched.
    train_split : callable or None, default=None
        A split of the *tasks* for meta-validation, e.g. :class:`skmeta.TaskSplit`;
        None disables validation.
    callbacks : list of skorch callbacks, "disable" or None, default=None
    warm_start : bool, default=False
        Continue from the current meta-parameters when ``fit`` is called again.
    verbose : int, default=1
        skorch's per-epoch log (0 is silent).
    device : str or torch.device, default="cpu"
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    distributed : bool, default=False
        Data-parallel meta-training over the ``torch.distributed`` process group
        (e.g. launched with ``torchrun``): each process computes its share of every
        meta-batch and the meta-gradients are averaged across processes, giving the
        meta-parameters of a one-process run with the same ``random_state``. See
        :mod:`skmeta.distributed` and the "Scaling out" guide.
    compile : bool, default=False
        Passed to skorch (``torch.compile`` of the module).
    torch_load_kwargs : dict or None, default=None
        Passed to skorch for loading parameters.
    **kwargs
        ``module__*``, ``criterion__*``, ``optimizer__*`` and ``callbacks__*``.

    Attributes
    ----------
    module_ : torch.nn.Module
        The network holding the meta-parameters.
    history_ : skorch.History
        Per epoch: ``train_loss`` (mean post-adaptation query loss) and, with a
        ``train_split``, ``valid_loss``.
    input_shape_ : tuple
        Shape of one example.
    engine_ : dict
        The engine chosen for ``"train"`` and ``"adapt"`` (with ``engine="auto"``).
"""

_CLF_EXTRA = """    n_way : int, default=5
        Classes per task: the network's output size. Each task's labels map to
        outputs in sorted order at adaptation (randomly permuted during
        meta-training, so no output is tied to a class).
    n_episodes : int, default=1000
        Episodes per epoch when fitting on a labelled pool ``fit(X, y)``.
"""
_FO = """    first_order : bool, default=False
        Drop the second-order terms of the meta-gradient (first-order MAML).
"""


def _doc(summary: str, body: str, extra: str, classifier: bool, **defaults) -> str:
    per_class = " and class" if classifier else ""
    return summary + _PARAMS.format(extra=extra, per_class=per_class.replace(" and", " per"),
                                    **defaults) + body


class MAMLRegressor(_RegressorShell, _BaseMAML):
    __doc__ = _doc(
        """Model-agnostic meta-learning for regression (Finn et al., 2017).
""", """
    See Also
    --------
    MAMLClassifier, ReptileRegressor

    References
    ----------
    Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of
    Deep Networks", ICML 2017, arXiv:1703.03400.

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
""", _FO, False, criterion="torch.nn.MSELoss", optimizer="torch.optim.Adam", lr="1e-3",
        inner_steps="1")


class MAMLClassifier(_ClassifierShell, _BaseMAML):
    __doc__ = _doc(
        """Model-agnostic meta-learning for few-shot classification (Finn et al., 2017).
""", """
    See Also
    --------
    MAMLRegressor, ReptileClassifier

    References
    ----------
    Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of
    Deep Networks", ICML 2017, arXiv:1703.03400.

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
""", _CLF_EXTRA + _FO, True, criterion="torch.nn.CrossEntropyLoss",
        optimizer="torch.optim.Adam", lr="1e-3", inner_steps="1")
    _parameter_constraints = {**_BaseMAML._parameter_constraints, **CLASSIFIER_CONSTRAINTS}

