"""ALPaCA: a Bayesian linear head with a meta-learned prior on meta-learned features.

Harrison, Sharma and Pavone (2018). The network's last ``nn.Linear`` layer is
solved per task as an exact Bayesian linear regression of the support targets
on the layer's input features; its prior mean (the layer's meta-learned
weights), prior covariance and noise variance are meta-learned with the features
by maximising the exact posterior-predictive likelihood of each query point
given the support set. With the features ``[1, x]``
(:class:`skmeta.modules.LinearFeatures`) this is the linear mixed model with a
random intercept and random slopes, and the posterior mean is the BLUP.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from .. import functional as F
from ..estimator import Attribute, BaseMetaLearner, MetaRegressorMixin, Param

__all__ = ["ALPaCARegressor"]


class ALPaCARegressor(MetaRegressorMixin, BaseMetaLearner):
    _params = {
        "head": Param(None, "str or None", "The ``nn.Linear`` layer solved per task; it must be "
                      "the network's last operation. None takes the last layer with parameters."),
        "covariance": Param("full", '{"full", "diag", "lowrank", "isotropic"}',
                            "The structure of the learned prior covariance of the head's "
                            "weights: a full matrix (through a Cholesky factor), a diagonal, "
                            "a diagonal plus ``rank`` learned directions, or one scale (the "
                            "ridge prior of ``R2D2Regressor``). With few training tasks "
                            "(tens of groups), ``'diag'`` or ``'lowrank'`` overfit less.",
                            [StrOptions({"full", "diag", "lowrank", "isotropic"})]),
        "rank": Param(2, "int", "The number of learned directions of ``covariance='lowrank'``.",
                      [Interval(Integral, 1, None, closed="left")]),
        "prior_scale": Param(1.0, "float", "The initial prior standard deviation of each head "
                             "weight, relative to the noise's (learned).",
                             [Interval(Real, 0, None, closed="neither")]),
        "noise_var": Param(1.0, "float", "The initial noise variance of each target (learned).",
                           [Interval(Real, 0, None, closed="neither")]),
        "objective": Param("nll", '{"nll", "mse"}', "The meta-training loss: the exact "
                           "negative log-likelihood of each query point under the posterior "
                           "predictive given the support (ALPaCA's), or the squared error "
                           "of the posterior mean (the noise variance is then not learned).",
                           [StrOptions({"nll", "mse"})]),
        "covariance_reg": Param(0.0, "float", "A Gaussian hyperprior on the off-diagonal "
                                "entries of the prior covariance's factor (``'full'``) or on "
                                "its learned directions (``'lowrank'``): this weight times "
                                "their mean square is added to the meta-loss, pulling the "
                                "prior toward a diagonal one.",
                                [Interval(Real, 0, None, closed="left")]),
    }
    _param_docs = {
        "inner_lr": "Unused: the head is solved in closed form, not by gradient steps.",
        "inner_steps": "0 keeps the meta-learned head (the prior mean); 1 or more solves it "
                       "(once) per task.",
    }
    _param_defaults = {"lr": 3e-3}
    _attributes = {"head_": Attribute("str", "The layer solved per task.")}

    __doc__ = """ALPaCA: Bayesian linear regression on meta-learned features (Harrison 2018).

    Adaptation is one exact Bayesian linear regression of the support targets on
    the network's last hidden features (the input of the last ``nn.Linear``,
    plus a constant when it has a bias). The prior of each target's head weights
    is ``N(W0, noise_var * L @ L.T)``: the prior mean ``W0`` is the head's
    meta-learned weights, the factor ``L`` (of the structure ``covariance``) and
    the noise variance are meta-learned in ``inner_state_``; the adapted model
    holds the posterior mean and answers ``predict(X, return_std=True)`` with the
    posterior predictive standard deviation. Meta-training maximises the exact
    posterior-predictive likelihood of each query point given its task's support
    set. Several targets share the features and the prior's shape, each with its
    own noise variance.

    With :class:`skmeta.modules.LinearFeatures` (features ``[1, x]``) it is the
    linear mixed model with a random intercept and slopes: ``W0`` is the fixed
    effect, ``noise_var * L @ L.T`` the random effects' covariance, and the
    adapted prediction the BLUP. :class:`R2D2Regressor` with ``prior="learned"``
    is the special case with an isotropic prior and no predictive variance.
    Read more in :doc:`/user_guide/algorithms` and :doc:`/user_guide/uncertainty`.

    See Also
    --------
    R2D2Regressor, skmeta.intervals.ConformalMetaRegressor

    References
    ----------
    Harrison, Sharma and Pavone, "Meta-Learning Priors for Efficient Online
    Bayesian Regression", WAFR 2018, arXiv:1807.08912.

    Examples
    --------
    >>> from skmeta import ALPaCARegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=100, n_samples=20, random_state=0)
    >>> est = ALPaCARegressor(k_shot=5, max_epochs=2, verbose=0, random_state=0).fit(tasks)
    >>> sorted(est.inner_state_.tensors())
    ['layers.4.log_noise', 'layers.4.prior_tril']
    >>> X, y = tasks[0]
    >>> mean, std = est.adapt(X[:5], y[:5]).predict(X[5:], return_std=True)
    >>> mean.shape, std.shape, bool((std > 0).all())
    ((15,), (15,), True)
    """

    def prepare_module(self, module: nn.Module) -> nn.Module:
        name = F.last_layer(module) if self.head is None else self.head
        if not isinstance(dict(module.named_modules()).get(name), nn.Linear):
            raise ValueError(f"head={name!r} must name an nn.Linear layer of "
                             f"{type(module).__name__} (the layer solved per task).")
        if hasattr(self, "input_shape_") and not F.head_is_last(
                module, name, F.example_inputs(module, self.input_shape_, 3)):
            raise ValueError(f"The submodule {name!r} is not the network's last operation: the "
                             "network's output differs from the layer applied to its input, so "
                             "it cannot be solved per task. Choose the last layer as head.")
        self.head_ = name
        return module

    def get_head(self) -> str:
        return self.head_

    def get_inner_rule(self, inner_lr: float) -> F.InnerRule:
        # a closed-form solve: no step size (adapt(inner_lr=...) is refused)
        return F.bayes_head(self.head_, covariance=self.covariance, rank=self.rank,
                            prior_scale=self.prior_scale, noise_var=self.noise_var)

    def _penalty(self, learner: F.Learner) -> torch.Tensor | float:
        if not self.covariance_reg:
            return 0.0
        state = learner.state
        tril = state.get(self.head_ + ".prior_tril")
        extra = tril.tril(-1) if tril is not None else state.get(self.head_ + ".prior_lowrank")
        if extra is None:
            return 0.0
        return self.covariance_reg * extra.square().mean()

    def task_objective(self, learner: F.Learner, task: F.TaskBatch) -> torch.Tensor:
        if task.X_query is None:
            raise ValueError("Meta-training needs a query set for every task (X_query, y_query).")
        if self.inner_steps == 0:
            return F.query_loss(learner, task, steps=0) + self._penalty(learner)
        nll = self.objective == "nll"
        post, noise_var = F.bayes_head_posterior(learner, task.X_support, task.y_support,
                                                 covariance=nll)
        Phi = F.bayes_head_features(learner, task.X_query)
        y = task.y_query.to(Phi.dtype)
        y = y if y.dim() == Phi.dim() else y.unsqueeze(-1)
        if nll:  # per query point, per target
            per_row = -F.bayes_linear_log_likelihood(post, Phi, y, noise_var) / y.shape[-1]
        else:
            per_row = (Phi @ post.mean - y).square().mean(-1)
        if task.query_mask is None:
            loss = per_row.mean(-1)
        else:
            keep = task.query_mask.to(per_row.dtype)
            loss = (per_row * keep).sum(-1) / keep.sum(-1)
        return loss + self._penalty(learner)

    def finish_adapted(self, adapted: list, support: F.TaskBatch) -> None:
        """Store each task's posterior in its adapted model, for ``predict(return_std=True)``."""
        with torch.no_grad():
            learner = self.learner().detached()
            for j, model in enumerate(adapted):
                post, noise_var = F.bayes_head_posterior(learner, support.X_support[j],
                                                         support.y_support[j])
                model.predictive_ = {
                    "kind": "bayes_linear", "head": self.head_,
                    "bias": self.head_ + ".bias" in learner.params,
                    "factor": post.factor.detach().cpu().numpy().astype(np.float64),
                    "noise_var": noise_var.detach().cpu().numpy().astype(np.float64)}

    def get_prior(self) -> dict:
        """The learned prior of the head's weights, as arrays.

        Returns
        -------
        prior : dict
            ``"mean"`` of shape (d, n_outputs): the head's weights (the bias
            last), the fixed effects of a mixed model; ``"covariance"`` of shape
            (d, d): the prior covariance of each target's weights relative to the
            noise (times ``noise_var`` it is the random effects' covariance);
            ``"noise_var"`` of shape (n_outputs,).

        Examples
        --------
        >>> from skmeta import ALPaCARegressor
        >>> from skmeta.datasets import make_sinusoid_tasks
        >>> tasks = make_sinusoid_tasks(n_tasks=20, random_state=0)
        >>> est = ALPaCARegressor(k_shot=5, max_epochs=1, verbose=0, random_state=0)
        >>> prior = est.fit(tasks).get_prior()
        >>> prior["mean"].shape, prior["covariance"].shape, prior["noise_var"].shape
        ((41, 1), (41, 41), (1,))
        """
        learner = self.learner().detached()
        mean, factor, noise_var = F.bayes_head_prior(learner)
        d = mean.shape[0]
        if factor.dim() == 0:
            factor = factor * torch.eye(d, dtype=mean.dtype)
        return {"mean": mean.cpu().numpy(), "covariance": (factor @ factor.mT).cpu().numpy(),
                "noise_var": noise_var.cpu().numpy()}
