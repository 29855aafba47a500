"""The pre-training baseline: joint training on all tasks, then fine-tuning."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from .base import BaseMetaLearner, MetaClassifierMixin, MetaRegressorMixin
from .functional import Learner, TaskBatch
from .parameters import Attribute

__all__ = ["PretrainedRegressor", "PretrainedClassifier", "joint_task_loss"]


def joint_task_loss(learner: Learner, task: TaskBatch, engine: str = "vmap") -> torch.Tensor:
    """The loss of the meta-parameters on one task's pooled support and query data.

    Pre-training's per-task objective: no inner loop; the mean over tasks is
    minimised directly.

    Parameters
    ----------
    learner : skmeta.functional.Learner
        The network and its parameters.
    task : skmeta.functional.TaskBatch
        One task (no task axis; all tasks with ``engine="batched"``).
    engine : {"vmap", "loop", "batched"}, default="vmap"

    Returns
    -------
    loss : Tensor
        A scalar, differentiable with respect to the parameters.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> from skmeta.pretrained import joint_task_loss
    >>> net = nn.Linear(1, 1)
    >>> learner = F.Learner(net, dict(net.named_parameters()), {}, nn.functional.mse_loss,
    ...                     F.sgd(0.1))
    >>> task = F.TaskBatch(*(torch.randn(5, 1) for _ in range(4)))
    >>> joint_task_loss(learner, task).shape
    torch.Size([])
    """
    X, y, mask = task.X_support, task.y_support, None
    if task.X_query is not None:
        axis = 1 if engine == "batched" else 0
        X, y = torch.cat([X, task.X_query], axis), torch.cat([y, task.y_query], axis)
        if task.query_mask is not None:  # padded query rows do not count
            mask = torch.cat([torch.ones(task.y_support.shape[:axis + 1], dtype=torch.bool,
                                         device=X.device), task.query_mask], axis)
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

    supports_batched = supports_query_mask = True

    def task_objective(self, learner, task, engine):
        return joint_task_loss(learner, task, engine)


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

    _attributes = {"pretrain_classes_": Attribute(
        "ndarray", "The pooled training classes, in the order of the pre-training outputs.")}

    def _prepare_fit(self, X, y, groups, **kwargs):
        tasks = super()._prepare_fit(X, y, groups, **kwargs)
        if not (self.warm_start and self.initialized_):
            source = getattr(tasks, "_raw", tasks)
            if hasattr(source, "classes_"):  # an EpisodeSampler knows its pool's classes
                classes = np.asarray(source.classes_)
            else:  # reads every task's labels once
                labels = []
                for i in range(len(tasks)):
                    t = tasks[i]
                    labels.append(np.asarray(t[1]))
                    if len(t) == 4 and t[3] is not None:
                        labels.append(np.asarray(t[3]))
                kinds = {("str" if a.dtype.kind in "USO" else "number") for a in labels}
                if len(kinds) > 1:
                    raise TypeError("The tasks' labels mix types (str and numbers); "
                                    "PretrainedClassifier pools them into one label space, so "
                                    "use labels of one type.")
                classes = np.unique(np.concatenate(labels))
            self.pretrain_classes_ = classes
        return tasks

    def _saved_attributes(self) -> list[str]:
        return super()._saved_attributes() + ["pretrain_classes_"]

    def _adapted_n_outputs(self, classes) -> int:
        return int(self.n_way)  # adaptation uses a fresh n_way head

    def _n_outputs(self) -> int | None:
        return len(self.pretrain_classes_) if hasattr(self, "pretrain_classes_") else None

    def _encode_targets(self, ys, yq, *, rng, where):
        if rng is None:  # adaptation / evaluation: the task's own n_way labels
            return super()._encode_targets(ys, yq, rng=None, where=where)

        def glob(a):
            if a is None:
                return None
            idx = np.searchsorted(self.pretrain_classes_, a)
            idx = np.minimum(idx, len(self.pretrain_classes_) - 1)
            if np.any(self.pretrain_classes_[idx] != a):
                raise ValueError(f"{where} has labels outside the pre-training classes.")
            return idx.astype(np.int64)

        return None, glob(ys), glob(yq)

    def get_adaptation_module(self) -> nn.Module:
        """A copy of the network whose last linear layer is a fresh ``n_way`` head."""
        n_classes = len(self.pretrain_classes_)
        head_name = None
        for name, sub in self.module_.named_modules():
            if isinstance(sub, nn.Linear):
                head_name = name
        head = self.module_.get_submodule(head_name) if head_name else None
        if head is None or head.out_features != n_classes:
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
