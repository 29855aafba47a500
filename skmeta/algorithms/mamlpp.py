"""MAML++: how to train your MAML (Antoniou, Edwards and Storkey, 2019)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions
from skorch.callbacks import Callback, LRScheduler
from torch.optim.lr_scheduler import CosineAnnealingLR

from ..estimator import (
    FIRST_ORDER,
    Attribute,
    BaseMetaLearner,
    MetaClassifierMixin,
    MetaRegressorMixin,
    Param,
)
from ..functional import only, per_step_lr, sgd
from ..modules import BatchNorm

__all__ = ["MAMLPlusPlusRegressor", "MAMLPlusPlusClassifier", "MAMLPlusPlusSchedule",
           "msl_weights"]

_EPOCHS = [Interval(Integral, 0, None, closed="left"), None]


class MAMLPlusPlusSchedule(Callback):
    """MAML++'s epoch schedules, as a skorch callback: at the start of every epoch it
    sets the estimator's ``schedule_`` (derivative order, multi-step loss weights) from
    the epoch's number (``len(net.history) - 1``), like skorch's ``LRScheduler``.

    Examples
    --------
    >>> from skmeta import MAMLPlusPlusRegressor
    >>> est = MAMLPlusPlusRegressor(max_epochs=30, inner_steps=2)
    >>> est.schedule(0)["second_order"], est.schedule(10)["second_order"]
    (False, True)
    """

    def on_epoch_begin(self, net, **kwargs):
        net.schedule_ = net.schedule(max(len(net.history) - 1, 0))


def msl_weights(n_steps: int, epoch: int, msl_epochs: int) -> np.ndarray:
    """The multi-step loss weights of the query losses after each inner step (MAML++, MSL).

    Uniform at epoch 0; every epoch the weights of the steps before the last
    decrease (to at least ``0.03 / n_steps``) and the last step's increases.

    Parameters
    ----------
    n_steps : int
        Inner steps.
    epoch : int
        The current epoch (0-based).
    msl_epochs : int
        Epochs over which the weights are annealed.

    Returns
    -------
    weights : ndarray of shape (n_steps,)

    Examples
    --------
    >>> from skmeta.algorithms.mamlpp import msl_weights
    >>> msl_weights(4, 0, 10).tolist()
    [0.25, 0.25, 0.25, 0.25]
    >>> msl_weights(4, 5, 10).round(4).tolist()
    [0.125, 0.125, 0.125, 0.625]
    """
    w = np.full(n_steps, 1.0 / n_steps)
    decay = 1.0 / n_steps / max(msl_epochs, 1)
    floor = 0.03 / n_steps
    w[:-1] = np.maximum(w[:-1] - epoch * decay, floor)
    w[-1] = min(w[-1] + epoch * (n_steps - 1) * decay, 1.0 - (n_steps - 1) * floor)
    return w


class _BaseMAMLPlusPlus(BaseMetaLearner):
    """MAML with the stabilising and speeding tricks of MAML++, each switchable on its own."""

    _params = {
        "first_order": FIRST_ORDER,
        "multi_step_loss_epochs": Param(
            None, "int or None", "Multi-step loss (MSL): during the first epochs the objective "
            "is a weighted sum of the query losses after every inner step, the weights annealed "
            "toward the last step (:func:`msl_weights`); None means a tenth of ``max_epochs`` "
            "(at least one); 0 turns MSL off.", _EPOCHS),
        "first_order_epochs": Param(
            None, "int or None", "Derivative-order annealing (DA): first-order meta-gradients "
            "during the first epochs, second order after; None means a third of ``max_epochs``; "
            "0 turns DA off (``first_order=True`` is first order throughout).", _EPOCHS),
        "learn_inner_lr": Param(
            True, "bool", "Learned per-layer per-step inner learning rates (LSLR): one rate per "
            "parameter tensor and inner step, initialised to ``inner_lr``.", ["boolean"]),
        "per_step_bn": Param(
            "auto", '{"auto", True, False}', "Per-step batch norm (BNWB + BNRS): every "
            ":class:`skmeta.modules.BatchNorm` layer gets a scale and shift per inner step, "
            "meta-learned and not adapted by the inner loop; its statistics are those of the "
            "batch at each step. ``'auto'`` applies it when the network has such layers.",
            ["boolean", StrOptions({"auto"})]),
        "cosine_annealing": Param(
            True, "bool", "Cosine annealing of the outer learning rate from ``lr`` to "
            "``lr / 100`` over ``max_epochs`` (a skorch ``LRScheduler`` callback).",
            ["boolean"]),
    }
    _param_defaults = {"inner_steps": 5}
    _attributes = {"per_step_bn_": Attribute("list of str", "The per-step batch-norm parameters."),
                   "schedule_": Attribute("dict", "This epoch's place in the schedules, set by the "
                                          ":class:`MAMLPlusPlusSchedule` callback: "
                                          "``second_order`` and the multi-step loss "
                                          "``msl_weights`` (None once it is off).")}

    def _phase_epochs(self, value, share: int) -> int:
        return max(self.max_epochs // share, 1) if value is None else int(value)

    def schedule(self, epoch: int) -> dict:
        """The schedules at ``epoch`` (0-based): derivative order and multi-step loss weights.

        Parameters
        ----------
        epoch : int

        Returns
        -------
        schedule : dict
            ``{"second_order": bool, "msl_weights": ndarray or None}``.
        """
        msl_epochs = self._phase_epochs(self.multi_step_loss_epochs, 10)
        return {"second_order": not self.first_order and
                epoch >= self._phase_epochs(self.first_order_epochs, 3),
                "msl_weights": msl_weights(self.inner_steps, epoch, msl_epochs)
                if epoch < msl_epochs else None}

    def _schedule(self) -> dict:
        return getattr(self, "schedule_", None) or self.schedule(0)

    def uses_second_order(self) -> bool:
        return self._schedule()["second_order"]

    def prepare_module(self, module):
        layers = [(n, m) for n, m in module.named_modules() if isinstance(m, BatchNorm)]
        if self.per_step_bn is True and not any(m.affine for _, m in layers):
            raise ValueError("per_step_bn=True needs affine skmeta.modules.BatchNorm layers "
                             "(skmeta.modules.ConvNet has them); set per_step_bn='auto' or "
                             "False for networks without them.")
        self.per_step_bn_ = []
        if self.per_step_bn:
            for name, bn in layers:
                if bn.affine:
                    bn.per_step(self.inner_steps)
                    self.per_step_bn_ += [f"{name}.weight", f"{name}.bias"]
        return module

    def get_inner_rule(self, inner_lr):
        # LSLR learns its rates (no fixed step size: adapt(inner_lr=...) is refused)
        rule = per_step_lr(inner_lr, self.inner_steps) if self.learn_inner_lr else sgd(inner_lr)
        frozen = frozenset(self.per_step_bn_)
        return only(lambda name: name not in frozen, rule) if frozen else rule

    def task_objective(self, learner, task):
        steps, schedule = self.inner_steps, self._schedule()
        fasts = learner.run_inner(task.X_support, task.y_support, steps=steps,
                                  first_order=not schedule["second_order"])
        weights = schedule["msl_weights"]
        if weights is None:
            return learner.loss(fasts[-1], task.X_query, task.y_query, step=steps - 1,
                                mask=task.query_mask)
        return sum(float(w) * learner.loss(fasts[k + 1], task.X_query, task.y_query, step=k,
                                           mask=task.query_mask)
                   for k, w in enumerate(weights))

    def get_default_callbacks(self):
        callbacks = list(super().get_default_callbacks()) + [("schedule", MAMLPlusPlusSchedule())]
        if self.cosine_annealing:  # set_params builds these too: values are checked at fit
            epochs, lr = self.max_epochs, self.lr if isinstance(self.lr, Real) else 1.0
            callbacks.append(("cosine_annealing", LRScheduler(policy=CosineAnnealingLR, T_max=max(
                epochs if isinstance(epochs, Integral) else 1, 1), eta_min=lr / 100)))
        return callbacks


_REFERENCES = """
    References
    ----------
    Antoniou, Edwards and Storkey, "How to train your MAML", ICLR 2019,
    arXiv:1810.09502.
"""


class MAMLPlusPlusRegressor(MetaRegressorMixin, _BaseMAMLPlusPlus):
    __doc__ = """MAML++ for regression: MAML with MSL, DA, LSLR, per-step batch norm and CA.

    The defaults are the paper's recipe; every trick has a parameter of its own, so
    a grid search or an ablation can turn each off (all off: second-order MAML).

    See Also
    --------
    MAMLRegressor, MetaSGDRegressor, MAMLPlusPlusClassifier
""" + _REFERENCES + """
    Examples
    --------
    >>> from skmeta import MAMLPlusPlusRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=100, n_samples=20, random_state=0)
    >>> est = MAMLPlusPlusRegressor(k_shot=10, inner_steps=2, verbose=0).fit(tasks)
    >>> est.inner_state_.tensors()["layers.0.weight"].shape  # one rate per step
    torch.Size([2])
    """


class MAMLPlusPlusClassifier(MetaClassifierMixin, _BaseMAMLPlusPlus):
    _param_defaults = {"inner_lr": 0.1}  # measured in docs/user_guide/algorithms.rst
    __doc__ = """MAML++ for few-shot classification (the paper's recipe, each trick switchable).

    Multi-step loss (MSL), derivative-order annealing (DA), learned per-layer per-step inner
    learning rates (LSLR), per-step batch norm (BNWB/BNRS, with :class:`skmeta.modules.ConvNet`)
    and cosine annealing of the meta learning rate (CA). With all of them off this is
    second-order MAML. Read more in :doc:`/user_guide/algorithms`.

    See Also
    --------
    MAMLClassifier, MetaSGDClassifier, MAMLPlusPlusRegressor
""" + _REFERENCES + """
    Examples
    --------
    >>> import numpy as np
    >>> from skmeta import MAMLPlusPlusClassifier
    >>> from skmeta.modules import ConvNet
    >>> X = np.random.default_rng(0).normal(size=(40, 1, 8, 8)).astype("float32")
    >>> y = np.repeat(np.arange(10), 4)
    >>> clf = MAMLPlusPlusClassifier(module=ConvNet, module__n_filters=4, module__n_blocks=2,
    ...                              module__image_size=8, n_way=2, k_shot=1, n_query=1,
    ...                              n_episodes=4, inner_steps=2, verbose=0).fit(X, y)
    >>> clf.module_.features[1].weight.shape  # a scale per inner step and channel
    torch.Size([2, 4])
    """
