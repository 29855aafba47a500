"""The pre-training baseline: joint training on all tasks, then fine-tuning."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..estimator import Attribute, BaseMetaLearner, MetaClassifierMixin, MetaRegressorMixin
from ..functional import Learner, TaskBatch, last_layer

__all__ = ["PretrainedRegressor", "PretrainedClassifier", "joint_task_loss"]


def joint_task_loss(learner: Learner, task: TaskBatch, engine: str | None = None
                    ) -> torch.Tensor:
    """The loss of the meta-parameters on one task's pooled support and query data.

    Pre-training's per-task objective: no inner loop; the mean over tasks is
    minimised directly.

    Parameters
    ----------
    learner : skmeta.functional.Learner
        The network and its parameters.
    task : skmeta.functional.TaskBatch
        One task (no task axis).
    engine : {"vmap", "loop", "batched"} or None, default=None
        Not needed: the engine that runs it binds the learner (see
        :func:`skmeta.functional.map_tasks`); None uses ``learner.engine``.

    Returns
    -------
    loss : Tensor
        A scalar, differentiable with respect to the parameters.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> from skmeta.algorithms.pretrained import joint_task_loss
    >>> net = nn.Linear(1, 1)
    >>> learner = F.Learner(net, dict(net.named_parameters()), {}, nn.functional.mse_loss,
    ...                     F.sgd(0.1))
    >>> task = F.TaskBatch(*(torch.randn(5, 1) for _ in range(4)))
    >>> joint_task_loss(learner, task).shape
    torch.Size([])
    """
    X, y, mask = task.pooled()
    return learner.loss({}, X, y, engine=engine, mask=mask)


class _BasePretrained(BaseMetaLearner):
    """Plain joint training on the pooled data of all training tasks.

    The "model pre-training" baseline of Finn et al. (2017): one network is
    trained with the outer optimizer on every training task's examples (support
    and query pooled), with no inner loop; ``adapt`` then fine-tunes it with
    ``adapt_steps`` gradient steps of size ``inner_lr``, exactly like the
    meta-learners, so that comparisons differ only in how the start was learned.
    ``inner_steps`` is used only as the default of ``adapt_steps``. The history's
    ``train_loss`` is the joint training loss (before any adaptation).
    """

    def task_objective(self, learner, task):
        return joint_task_loss(learner, task)


class PretrainedRegressor(MetaRegressorMixin, _BasePretrained):
    __doc__ = """Pre-training baseline for regression: joint training, then fine-tuning.

    One network is fitted to the pooled examples of all training tasks; ``adapt``
    fine-tunes it on a new task's support set with the same inner steps as the
    meta-learners (Finn et al., 2017, "pretrained" baseline). Read more in the
    user guide (:doc:`/user_guide/concepts`).

    See Also
    --------
    MAMLRegressor, ReptileRegressor

    Examples
    --------
    >>> from skmeta import PretrainedRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=100, n_samples=20, random_state=0)
    >>> pre = PretrainedRegressor(k_shot=10, adapt_steps=5, max_epochs=2, verbose=0,
    ...                           random_state=0).fit(tasks)
    >>> X, y = tasks[0]
    >>> pre.adapt(X[:10], y[:10]).predict(X[10:]).shape
    (10,)
    """


class PretrainedClassifier(MetaClassifierMixin, _BasePretrained):
    __doc__ = """Pre-training baseline for few-shot classification.

    One network is trained as an ordinary classifier over *all* classes of the training tasks
    pooled (their labels are taken as global class labels); to adapt to a new ``n_way`` task its
    last linear layer is replaced by a fresh, zero-initialised ``n_way`` head and the whole
    network is fine-tuned on the support set with ``adapt_steps`` steps of size ``inner_lr``.
    Read more in the user guide (:doc:`/user_guide/concepts`).

    See Also
    --------
    MAMLClassifier, ReptileClassifier

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta import PretrainedClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(20), 10)
    >>> X = rng.normal(size=(200, 4)) + y[:, None] % 5
    >>> pre = PretrainedClassifier(n_way=3, k_shot=2, n_query=3, n_episodes=50, adapt_steps=5,
    ...                            max_epochs=1, verbose=0, random_state=0).fit(X, y)
    >>> len(pre.pretrain_classes_)
    20
    >>> pre.adapt(X[:6], np.array([0, 0, 1, 1, 2, 2])).predict(X[:6]).shape
    (6,)
    """

    targets = "pooled-labels"  # one label space over the training tasks, n_way per task after
    _attributes = {"pretrain_classes_": Attribute(
        "ndarray", "The pooled training classes, in the order of the pre-training outputs.",
        saved=True)}

    def get_adaptation_module(self) -> nn.Module:
        """A copy of the network whose last linear layer is a fresh ``n_way`` head."""
        n_classes = len(self.pretrain_classes_)
        head_name = last_layer(self.module_, nn.Linear)
        head = self.module_.get_submodule(head_name)
        if head.out_features != n_classes:
            raise ValueError("PretrainedClassifier needs a network whose last layer is an "
                             f"nn.Linear with one output per pre-training class ({n_classes}).")
        module = copy.deepcopy(self.module_)
        new_head = nn.Linear(head.in_features, int(self.n_way), bias=head.bias is not None,
                             device=head.weight.device, dtype=head.weight.dtype)
        nn.init.zeros_(new_head.weight)
        if new_head.bias is not None:
            nn.init.zeros_(new_head.bias)
        parent_name, _, attr = head_name.rpartition(".")
        setattr(module.get_submodule(parent_name) if parent_name else module, attr, new_head)
        return module
