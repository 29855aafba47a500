"""Bayesian linear regression in closed form: the posterior, its predictive and its likelihood.

The model, for ``m`` outputs and ``d`` features ``phi(x)`` (a row of ``Phi``)::

    W[:, j] ~ N(M0[:, j], noise_var[j] * L @ L.T)      (the prior, per output j)
    y[j] | x, W ~ N(phi(x) @ W[:, j], noise_var[j])    (the likelihood)

The prior covariance is *relative to the noise variance* (the conjugate
matrix-normal prior of ALPaCA, Harrison et al., 2018): the posterior covariance
of every output is then ``noise_var[j] * G @ G.T`` with one factor ``G`` shared by
the outputs, and the posterior mean does not depend on the noise at all. ``L``
is any factor of shape ``(d, r)`` (a Cholesky factor, a diagonal, a diagonal next
to a low-rank block, ...) or a scalar ``s`` for ``s * I``; it need not be square
nor invertible. Everything is computed in the whitened coordinates
``Psi = Phi @ L``, where the only system solved is ``I + Psi.T @ Psi`` (or, for the
mean alone with fewer rows than columns, ``I + Psi @ Psi.T``): symmetric with
eigenvalues at least 1, so its Cholesky factorisation (for the covariance) and its LU
solve (for the mean alone) are stable in float32.

A ridge regression ``min ||Phi W - Y||^2 + alpha ||W - M0||^2`` is the posterior mean
with ``L = alpha ** -0.5`` (:func:`ridge_head`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ._core import Params

__all__ = ["BayesLinearPosterior", "bayes_linear_posterior", "bayes_linear_predict",
           "bayes_linear_log_likelihood", "bayes_head_prior", "bayes_head_features",
           "bayes_head_posterior"]


class BayesLinearPosterior(NamedTuple):
    """The posterior of a Bayesian linear regression (see :func:`bayes_linear_posterior`).

    Attributes
    ----------
    mean : Tensor of shape (..., d, m)
        The posterior mean of the weights (one column per output).
    factor : Tensor of shape (..., d, r) or None
        The covariance of column ``j`` of the weights is
        ``noise_var[j] * factor @ factor.mT``; None when only the mean was asked for.

    Examples
    --------
    A prior is a posterior before any data: the same value.

    >>> import torch
    >>> from skmeta.functional import BayesLinearPosterior, bayes_linear_predict
    >>> prior = BayesLinearPosterior(torch.zeros(2, 1), torch.eye(2))
    >>> bayes_linear_predict(prior, torch.ones(1, 2), torch.tensor(1.0))[1]  # 1 * (1 + 2)
    tensor([[3.]])
    """

    mean: Tensor
    factor: Tensor | None


def _whiten(Phi: Tensor, factor: Tensor) -> Tensor:
    return Phi * factor if factor.dim() == 0 else Phi @ factor


def _targets(Y: Tensor, Phi: Tensor) -> Tensor:
    Y = Y.to(Phi.dtype)
    return Y if Y.dim() == Phi.dim() else Y.unsqueeze(-1)


def bayes_linear_posterior(Phi: Tensor, Y: Tensor, prior_mean: Tensor, prior_factor: Tensor, *,
                           mask: Tensor | None = None, covariance: bool = True
                           ) -> BayesLinearPosterior:
    """The exact posterior of the weights of a Bayesian linear regression.

    Differentiable in every argument, and composes with :func:`torch.func.vmap`;
    leading batch axes (tasks) are allowed on ``Phi``, ``Y``, ``mask`` and, with the
    same leading shape, ``prior_mean``.

    Parameters
    ----------
    Phi : Tensor of shape (..., n, d)
        The features of the ``n`` observed rows.
    Y : Tensor of shape (..., n, m) or (..., n)
        Their targets.
    prior_mean : Tensor of shape (d, m)
        The prior mean ``M0`` of the weights.
    prior_factor : Tensor of shape (d, r), or a scalar tensor
        A factor ``L`` of the prior covariance relative to the noise variance
        (``L @ L.T``; a scalar ``s`` means ``s**2 * I``).
    mask : Tensor of shape (..., n) or None, default=None
        False (or 0) for padded rows, which are ignored.
    covariance : bool, default=True
        Also return the factor of the posterior covariance. With False and
        ``n < r``, the mean is solved as an ``n x n`` system (Woodbury).

    Returns
    -------
    posterior : BayesLinearPosterior
        ``mean`` of shape (..., d, m) and ``factor`` of shape (..., d, r) (None
        without ``covariance``).

    Examples
    --------
    One feature, a prior ``N(0, 1 * noise_var)`` on its weight, two observations:

    >>> import torch
    >>> from skmeta.functional import bayes_linear_posterior
    >>> Phi, Y = torch.tensor([[1.0], [1.0]]), torch.tensor([2.0, 4.0])
    >>> post = bayes_linear_posterior(Phi, Y, torch.zeros(1, 1), torch.tensor(1.0))
    >>> post.mean  # (2 + 4) / (2 + 1): the mean shrunk toward 0
    tensor([[2.]])
    >>> post.factor @ post.factor.mT  # the variance 1 / (1 + 2), times noise_var
    tensor([[0.3333]])
    """
    Y = _targets(Y, Phi)
    if mask is not None:
        keep = mask.to(Phi.dtype).unsqueeze(-1)
        Phi, Y = Phi * keep, Y * keep
    residual = Y - Phi @ prior_mean.to(Phi.dtype)
    Psi = _whiten(Phi, prior_factor.to(Phi.dtype))
    n, r = Psi.shape[-2:]

    def unwhiten(V: Tensor) -> Tensor:
        return prior_factor * V if prior_factor.dim() == 0 else prior_factor @ V

    # the mean alone: one solve of a symmetric system with eigenvalues >= 1 (well
    # conditioned), by LU, which is faster than a Cholesky factorisation and its backward
    # pass at these sizes
    if not covariance and n < r:  # Woodbury: L Psi^T (I + Psi Psi^T)^-1 R
        eye = torch.eye(n, dtype=Phi.dtype, device=Phi.device)
        V = Psi.mT @ torch.linalg.solve(Psi @ Psi.mT + eye, residual)
        return BayesLinearPosterior(prior_mean + unwhiten(V), None)
    eye = torch.eye(r, dtype=Phi.dtype, device=Phi.device)
    if not covariance:
        return BayesLinearPosterior(prior_mean + unwhiten(torch.linalg.solve(
            Psi.mT @ Psi + eye, Psi.mT @ residual)), None)
    C = torch.linalg.cholesky(Psi.mT @ Psi + eye)  # A = I + Psi^T Psi = C C^T
    Ct_inv = torch.linalg.solve_triangular(C, eye.expand_as(C), upper=False).mT  # C^-T
    factor = unwhiten(Ct_inv)  # G = L C^-T: G G^T = L A^-1 L^T
    mean = prior_mean + factor @ (Ct_inv.mT @ (Psi.mT @ residual))
    return BayesLinearPosterior(mean, factor)


def bayes_linear_predict(posterior: BayesLinearPosterior, Phi: Tensor, noise_var: Tensor
                         ) -> tuple[Tensor, Tensor]:
    """The posterior predictive mean and variance of the targets at new features.

    Parameters
    ----------
    posterior : BayesLinearPosterior
        From :func:`bayes_linear_posterior` (with ``covariance=True``), or the
        prior itself, ``BayesLinearPosterior(prior_mean, prior_factor)``.
    Phi : Tensor of shape (..., n, d)
        The features of the new rows.
    noise_var : Tensor of shape (m,) or a scalar tensor
        The noise variance of each output.

    Returns
    -------
    mean, var : Tensor of shape (..., n, m)
        ``var = noise_var * (1 + ||Phi @ factor||^2)``: the noise plus the
        uncertainty of the weights.

    Examples
    --------
    >>> import torch
    >>> from skmeta.functional import bayes_linear_posterior, bayes_linear_predict
    >>> Phi, Y = torch.tensor([[1.0], [1.0]]), torch.tensor([2.0, 4.0])
    >>> post = bayes_linear_posterior(Phi, Y, torch.zeros(1, 1), torch.tensor(1.0))
    >>> mean, var = bayes_linear_predict(post, torch.tensor([[1.0]]), torch.tensor(0.5))
    >>> mean.item(), round(var.item(), 4)  # 0.5 * (1 + 1/3)
    (2.0, 0.6667)
    """
    if posterior.factor is None:
        raise ValueError("bayes_linear_predict needs the posterior covariance: call "
                         "bayes_linear_posterior(..., covariance=True).")
    mean = Phi @ posterior.mean.to(Phi.dtype)
    spread = _whiten(Phi, posterior.factor.to(Phi.dtype)).square().sum(-1, keepdim=True)
    return mean, noise_var.to(Phi.dtype) * (1 + spread)


def bayes_linear_log_likelihood(posterior: BayesLinearPosterior, Phi: Tensor, Y: Tensor,
                                noise_var: Tensor) -> Tensor:
    """The log-density of each row's targets under the posterior predictive.

    With the posterior of a task's support set, this is ALPaCA's objective: the
    exact log-likelihood of each query row given the support (a Gaussian with
    the variance of :func:`bayes_linear_predict`), summed over the outputs.

    Parameters
    ----------
    posterior : BayesLinearPosterior
        With its ``factor``.
    Phi : Tensor of shape (..., n, d)
        The features of the rows.
    Y : Tensor of shape (..., n, m) or (..., n)
        Their targets.
    noise_var : Tensor of shape (m,) or a scalar tensor

    Returns
    -------
    log_density : Tensor of shape (..., n)
        One value per row (padded rows included: mask them out of any mean).

    Examples
    --------
    >>> import torch
    >>> from skmeta.functional import BayesLinearPosterior, bayes_linear_log_likelihood
    >>> prior = BayesLinearPosterior(torch.zeros(1, 1), torch.tensor(0.0))  # weight 0, known
    >>> ll = bayes_linear_log_likelihood(prior, torch.ones(1, 1), torch.zeros(1), torch.tensor(1.0))
    >>> round(ll.item(), 4)  # log N(0; 0, 1)
    -0.9189
    """
    mean, var = bayes_linear_predict(posterior, Phi, noise_var)
    Y = _targets(Y, Phi)
    return (-0.5 * ((Y - mean).square() / var + var.log() + math.log(2 * math.pi))).sum(-1)


# ------------------------------------------------------------------ the head as a rule

_COVARIANCES = ("full", "diag", "lowrank", "isotropic")


def _head_width(params: Mapping[str, Tensor], head: str) -> tuple[int, int, bool]:
    weight = params[head + ".weight"]
    bias = head + ".bias" in params
    return weight.shape[-1] + bias, weight.shape[-2], bias


def _head_params(W: Tensor, prefix: str, bias: bool) -> Params:
    if bias:
        return {prefix + "weight": W[..., :-1, :].mT, prefix + "bias": W[..., -1, :]}
    return {prefix + "weight": W.mT}


def bayes_head_prior(learner: Any) -> tuple[Tensor, Tensor, Tensor]:
    """The prior of a :func:`bayes_head` learner: its mean, covariance factor and noise.

    Parameters
    ----------
    learner : Learner
        With a :func:`bayes_head` rule and its state.

    Returns
    -------
    prior_mean : Tensor of shape (d, m)
        The head's meta-learned weights (with the bias as the last row).
    prior_factor : Tensor of shape (d, r), or a scalar for ``"isotropic"``
        ``L``: the prior covariance of each output's weights is ``noise_var * L @ L.T``.
    noise_var : Tensor of shape (m,)

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> rule = F.bayes_head("head", covariance="lowrank", rank=1)
    >>> net = nn.Sequential()
    >>> net.add_module("head", nn.Linear(3, 2))
    >>> params = dict(net.named_parameters())
    >>> learner = F.Learner(net, params, {}, nn.functional.mse_loss, rule,
    ...                     rule.init(rule.select(params)), head="head")
    >>> [tuple(t.shape) for t in F.bayes_head_prior(learner)]
    [(4, 2), (4, 5), (2,)]
    """
    head = learner.head
    prefix = head + "."
    state, params = learner.state, learner.params
    W = params[prefix + "weight"].mT
    if prefix + "bias" in params:
        W = torch.cat([W, params[prefix + "bias"].unsqueeze(-2)], -2)
    if prefix + "prior_tril" in state:
        raw = state[prefix + "prior_tril"]
        factor = raw.tril(-1) + torch.diag_embed(raw.diagonal(dim1=-2, dim2=-1).exp())
    else:
        log_std = state[prefix + "prior_log_std"]
        factor = log_std.exp() if log_std.dim() == 0 else torch.diag_embed(log_std.exp())
        if prefix + "prior_lowrank" in state:
            factor = torch.cat([factor, state[prefix + "prior_lowrank"]], -1)
    return W, factor, state[prefix + "log_noise"].exp()


def bayes_head_features(learner: Any, X: Tensor, *, engine: str | None = None) -> Tensor:
    """The regressors of a :func:`bayes_head`: the head's input, with ones for its bias.

    Parameters
    ----------
    learner : Learner
        With a ``head``.
    X : Tensor of shape (n, \\*input_shape), or (n_tasks, n, ...) with ``engine="batched"``
    engine : {"vmap", "loop", "batched"} or None, default=None
        None: the engine the learner is bound to (see :meth:`Learner.bind`).

    Returns
    -------
    Phi : Tensor of shape (..., n, d)

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> net = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1))
    >>> rule = F.bayes_head("2")
    >>> params = dict(net.named_parameters())
    >>> learner = F.Learner(net, params, {}, nn.functional.mse_loss, rule, head="2")
    >>> F.bayes_head_features(learner, torch.zeros(5, 1)).shape
    torch.Size([5, 5])
    """
    features = learner.features(X, engine=engine)
    if learner.head + ".bias" not in learner.params:
        return features
    return torch.cat([features, features.new_ones(*features.shape[:-1], 1)], -1)


def bayes_head_posterior(learner: Any, X: Tensor, y: Tensor, *, engine: str | None = None,
                         mask: Tensor | None = None, covariance: bool = True
                         ) -> tuple[BayesLinearPosterior, Tensor]:
    """The posterior of a :func:`bayes_head` given a support set, and the noise variance.

    Parameters
    ----------
    learner : Learner
        With a :func:`bayes_head` rule and its state.
    X, y : Tensor
        The support set (with a leading task axis for ``engine="batched"``).
    engine : {"vmap", "loop", "batched"} or None, default=None
        None: the engine the learner is bound to (see :meth:`Learner.bind`).
    mask : Tensor or None, default=None
        False for padded support rows.
    covariance : bool, default=True
        Also compute the posterior covariance factor.

    Returns
    -------
    posterior : BayesLinearPosterior
    noise_var : Tensor of shape (m,)

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> net = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1))
    >>> rule = F.bayes_head("2", covariance="lowrank", rank=1)
    >>> params = dict(net.named_parameters())
    >>> learner = F.Learner(net, params, {}, nn.functional.mse_loss, rule,
    ...                     rule.init(rule.select(params)), head="2")
    >>> post, noise_var = F.bayes_head_posterior(learner, torch.randn(3, 1), torch.randn(3))
    >>> post.factor.shape, noise_var  # the prior's factor: 4 features + bias, 5 + 1 columns
    (torch.Size([5, 6]), tensor([1.]))
    """
    prior_mean, prior_factor, noise_var = bayes_head_prior(learner)
    Phi = bayes_head_features(learner, X, engine=engine)
    post = bayes_linear_posterior(Phi, y, prior_mean, prior_factor, mask=mask,
                                  covariance=covariance)
    return post, noise_var
