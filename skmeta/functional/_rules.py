"""Inner-loop rules: which parameters move, how a step moves them, and their learnable state.

A rule is a small immutable value built from pure functions, in the spirit of
optax's ``GradientTransformation``:

* ``init(params) -> state``: the rule's learnable state for the parameters it
  moves (e.g. one learning rate per element), meta-learned with the network;
* ``update(fast, grads, state, step) -> fast``: one inner step; ``step`` is the
  index of the step (0, 1, ...);
* ``selects(name) -> bool``: which parameters the inner loop moves;
* ``run`` (optional): a rule that is not a sequence of gradient steps (a
  closed-form solver) replaces the whole inner loop with it.

Rules compose: :func:`only` restricts any rule to some parameters.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ._bayes import (
    _COVARIANCES,
    _head_params,
    _head_width,
    bayes_head_posterior,
    bayes_linear_posterior,
)
from ._core import Params

__all__ = ["InnerRule", "sgd", "learned_lr", "per_step_lr", "only", "ridge_head", "bayes_head"]


def _every(name: str) -> bool:
    return True


def _no_state(params: Mapping[str, Tensor]) -> Params:
    return {}


class InnerRule(NamedTuple):
    """An inner-loop update rule (see :mod:`skmeta.functional`).

    Attributes
    ----------
    init : callable
        ``init(params) -> state``: the learnable state for the parameters the
        rule moves (``params`` holds exactly those); ``{}`` for none.
    update : callable or None
        ``update(fast, grads, state, step) -> fast``: one inner step on the
        parameters that move (``fast`` and ``grads`` hold exactly those).
    selects : callable
        ``selects(name) -> bool``: whether parameter ``name`` moves in the inner
        loop; the others keep their meta-learned values.
    run : callable or None
        For rules that are not gradient steps (a closed-form solver):
        ``run(learner, X, y, *, steps, first_order, engine) -> list of Params``
        replaces the gradient steps; see :meth:`Learner.run_inner`.
    name : str
        Shown in ``repr``.
    inner_lr : float or None
        The fixed step size of plain gradient steps, which ``adapt(inner_lr=...)`` may
        override; None for rules whose rates are learned or that are not gradient steps.

    Examples
    --------
    >>> import torch
    >>> from skmeta.functional import sgd
    >>> rule = sgd(0.1)
    >>> rule
    InnerRule(sgd(inner_lr=0.1))
    >>> rule.update({"w": torch.ones(2)}, {"w": torch.ones(2)}, {}, 0)["w"].tolist()
    [0.9, 0.9]
    """

    init: Callable[[Mapping[str, Tensor]], Params]
    update: Callable[[Params, Mapping[str, Tensor], Mapping[str, Tensor], int], Params] | None
    selects: Callable[[str], bool] = _every
    run: Callable[..., list[Params]] | None = None
    name: str = "rule"
    inner_lr: float | None = None

    def __repr__(self) -> str:
        return f"InnerRule({self.name})"

    def select(self, params: Mapping[str, Tensor]) -> Params:
        """The entries of ``params`` that this rule moves."""
        return {k: v for k, v in params.items() if self.selects(k)}


def sgd(inner_lr: float) -> InnerRule:
    """Plain gradient steps of size ``inner_lr`` on every selected parameter (MAML).

    Parameters
    ----------
    inner_lr : float
        The step size.

    Returns
    -------
    rule : InnerRule
        Without learnable state.

    Examples
    --------
    >>> import torch
    >>> from skmeta.functional import sgd
    >>> sgd(0.5).update({"w": torch.zeros(1)}, {"w": torch.ones(1)}, {}, 0)
    {'w': tensor([-0.5000])}
    """
    lr = float(inner_lr)

    def update(fast: Params, grads: Mapping[str, Tensor], state: Mapping[str, Tensor],
               step: int) -> Params:
        return {k: p - lr * grads[k] for k, p in fast.items()}

    return InnerRule(_no_state, update, name=f"sgd(inner_lr={inner_lr!r})", inner_lr=lr)


def learned_lr(inner_lr: float) -> InnerRule:
    """A learned learning rate for every element of every selected parameter (Meta-SGD).

    The state holds one tensor of rates per parameter, shaped like it and
    initialised to ``inner_lr``; a step is ``p - rate * grad`` elementwise
    (Li et al., 2017, arXiv:1707.09835).

    Parameters
    ----------
    inner_lr : float
        The initial value of every rate.

    Returns
    -------
    rule : InnerRule

    Examples
    --------
    >>> import torch
    >>> from skmeta.functional import learned_lr
    >>> rule = learned_lr(0.1)
    >>> state = rule.init({"w": torch.zeros(2)})
    >>> state
    {'w': tensor([0.1000, 0.1000])}
    >>> rule.update({"w": torch.zeros(2)}, {"w": torch.ones(2)}, {"w": torch.tensor([1., 2.])}, 0)
    {'w': tensor([-1., -2.])}
    """
    lr = float(inner_lr)

    def init(params: Mapping[str, Tensor]) -> Params:
        return {k: torch.full_like(p.detach(), lr) for k, p in params.items()}

    def update(fast: Params, grads: Mapping[str, Tensor], state: Mapping[str, Tensor],
               step: int) -> Params:
        return {k: p - state[k] * grads[k] for k, p in fast.items()}

    return InnerRule(init, update, name=f"learned_lr(inner_lr={inner_lr!r})")


def per_step_lr(inner_lr: float, n_steps: int) -> InnerRule:
    """A learned learning rate per parameter tensor and per step (MAML++'s LSLR).

    The state holds, for every selected parameter tensor ("layer"), a vector of
    ``n_steps`` rates initialised to ``inner_lr``; step ``k`` uses rate ``k``
    (Antoniou et al., 2019, arXiv:1810.09502). Steps beyond ``n_steps - 1`` (an
    adaptation longer than meta-training's) reuse the last rate.

    Parameters
    ----------
    inner_lr : float
        The initial value of every rate.
    n_steps : int
        The number of inner steps with a rate of their own.

    Returns
    -------
    rule : InnerRule

    Examples
    --------
    >>> import torch
    >>> from skmeta.functional import per_step_lr
    >>> rule = per_step_lr(0.1, 3)
    >>> rule.init({"w": torch.zeros(2, 2)})["w"]
    tensor([0.1000, 0.1000, 0.1000])
    >>> state = {"w": torch.tensor([1., 2., 3.])}
    >>> [rule.update({"w": torch.zeros(1)}, {"w": torch.ones(1)}, state, k)["w"].item()
    ...  for k in (0, 2, 7)]
    [-1.0, -3.0, -3.0]
    """
    lr, n = float(inner_lr), int(n_steps)
    if n < 1:
        raise ValueError(f"per_step_lr needs n_steps >= 1; got {n_steps!r}.")

    def init(params: Mapping[str, Tensor]) -> Params:
        return {k: p.detach().new_full((n,), lr) for k, p in params.items()}

    def update(fast: Params, grads: Mapping[str, Tensor], state: Mapping[str, Tensor],
               step: int) -> Params:
        i = min(int(step), n - 1)
        return {k: p - state[k][i] * grads[k] for k, p in fast.items()}

    return InnerRule(init, update, name=f"per_step_lr(inner_lr={inner_lr!r}, n_steps={n})")


def _matcher(select: str | Iterable[str] | Callable[[str], bool]) -> tuple[Callable, str]:
    if callable(select):
        return select, getattr(select, "__name__", repr(select))
    patterns = [select] if isinstance(select, str) else list(select)

    def matches(name: str) -> bool:
        return any(name == p or name.startswith(p + ".") or fnmatch.fnmatchcase(name, p)
                   for p in patterns)

    return matches, repr(patterns if len(patterns) != 1 else patterns[0])


def only(select: str | Iterable[str] | Callable[[str], bool], rule: InnerRule) -> InnerRule:
    """Restrict ``rule`` to some parameters; the others keep their meta-learned values.

    Parameters
    ----------
    select : str, iterable of str, or callable
        Submodule or parameter names (``"head"`` selects ``head.weight`` and
        ``head.bias``), glob patterns (``"*.bias"``), or a predicate on names.
    rule : InnerRule
        The rule applied to the selected parameters.

    Returns
    -------
    rule : InnerRule
        Moves the parameters that both ``select`` and ``rule`` select (ANIL:
        ``only("head", sgd(inner_lr))``).

    Examples
    --------
    >>> import torch
    >>> from skmeta.functional import only, sgd
    >>> rule = only("head", sgd(0.1))
    >>> sorted(rule.select({"body.weight": torch.zeros(1), "head.weight": torch.zeros(1),
    ...                     "head.bias": torch.zeros(1)}))
    ['head.bias', 'head.weight']
    """
    matches, label = _matcher(select)
    inner = rule.selects

    def selects(name: str) -> bool:
        return bool(matches(name)) and inner(name)

    return rule._replace(selects=selects, name=f"only({label}, {rule.name})")


def ridge_head(head: str, alpha: float = 1.0, *, classification: bool = False,
               prior: str = "zero") -> InnerRule:
    """Solve the linear ``head`` in closed form by ridge regression (R2-D2, ALPaCA).

    Not a sequence of gradient steps: adaptation computes the input features of
    the head once, appends a bias column, and solves the ridge regression of the
    support targets (one-hot rows for classification) on them, differentiably, so
    the features are meta-learned through the solution (Bertinetto et al., 2019).
    With ``prior="learned"`` the ridge penalty pulls the solution toward the head's
    meta-learned weights instead of zero, ``min ||Z W - Y||² + alpha ||W - W0||²``,
    as in ALPaCA's learned prior mean (Harrison et al., 2018): with few support
    examples the solution stays near a head that fits every task on average.
    The state holds the learned ``log(alpha)`` (``"<head>.log_alpha"``) and, for
    classification, a learned log-scale of the logits (``"<head>.log_scale"``).
    The solution is the posterior mean of a Bayesian linear regression with the
    isotropic prior ``N(W0, I / alpha)``, computed by :func:`bayes_linear_posterior`
    (ALPaCA's solver, with a learned full prior covariance: :func:`bayes_head`).
    With ``n`` support examples and ``d`` features the solve is ``n x n``
    (Woodbury) when ``n < d + 1``, else ``(d + 1) x (d + 1)``. Zero steps leave the
    head at its meta-parameters; any number of steps solves once.

    Parameters
    ----------
    head : str
        Name of an ``nn.Linear`` submodule applied last (see :func:`check_head`).
    alpha : float, default=1.0
        The initial regularisation strength (learned).
    classification : bool, default=False
        Targets are one-hot rows (any number of classes: the head is solved per
        task); the logits get a learned scale.
    prior : {"zero", "learned"}, default="zero"
        What the penalty shrinks the head toward: zero (R2-D2), or the head's
        meta-learned weight and bias (regression only: class labels are arbitrary
        per task, so a classifier has no head to shrink toward).

    Returns
    -------
    rule : InnerRule
        Moves the head's weight and bias.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
    >>> rule = F.ridge_head("2", alpha=1e-3)
    >>> params = dict(net.named_parameters())
    >>> learner = F.Learner(net, params, {}, nn.functional.mse_loss, rule,
    ...                     rule.init(rule.select(params)), head="2")
    >>> X = torch.linspace(-1, 1, 20)[:, None]
    >>> fast = learner.run_inner(X, 3 * X, steps=1)[-1]  # one closed-form solve
    >>> bool(learner.loss(fast, X, 3 * X) < 1e-2)
    True
    """
    if prior not in ("zero", "learned"):
        raise ValueError(f"prior must be 'zero' or 'learned', got {prior!r}.")
    if prior == "learned" and classification:
        raise ValueError("prior='learned' is for regression: a classifier's labels are "
                         "arbitrary per task, so it has no head to shrink toward.")
    prefix = head + "."
    log_alpha, log_scale = f"{head}.log_alpha", f"{head}.log_scale"

    def init(params: Mapping[str, Tensor]) -> Params:
        like = next(iter(params.values())).detach()
        state = {log_alpha: like.new_tensor(math.log(alpha))}
        if classification:
            state[log_scale] = like.new_zeros(())
        return state

    def run(learner: Any, X: Tensor, y: Tensor, *, steps: int, first_order: bool = False,
            engine: str = "vmap") -> list[Params]:
        start = learner.start(X)
        if steps == 0:
            return [start]
        features = learner.features(X)  # (n, d); (tasks, n, d) for the batched engine
        ones = features.new_ones(*features.shape[:-1], 1)
        Z = torch.cat([features, ones], -1)
        Y = y.to(Z.dtype)
        Y = Y if Y.dim() == Z.dim() else Y.unsqueeze(-1)
        if prior == "learned":  # shrink toward the meta-learned head
            W0 = torch.cat([start[prefix + "weight"].mT,
                            start[prefix + "bias"].unsqueeze(-2)], -2).to(Z.dtype)
        else:
            W0 = Z.new_zeros(Z.shape[-1], Y.shape[-1])
        # the ridge solution is the posterior mean with the isotropic prior N(W0, I / alpha)
        scale = (-0.5 * learner.state[log_alpha]).exp()
        W = bayes_linear_posterior(Z, Y, W0, scale, covariance=False).mean
        if classification:
            W = W * learner.state[log_scale].exp()
        return [start, {prefix + "weight": W[..., :-1, :].mT, prefix + "bias": W[..., -1, :]}]

    def selects(name: str) -> bool:
        return name in (prefix + "weight", prefix + "bias")

    return InnerRule(init, None, selects, run,
                     name=f"ridge_head({head!r}, alpha={alpha!r}"
                          f"{', classification=True' if classification else ''}"
                          f"{', prior=' + repr(prior) if prior != 'zero' else ''})")


def bayes_head(head: str, *, covariance: str = "full", rank: int = 2, prior_scale: float = 1.0,
               noise_var: float = 1.0) -> InnerRule:
    """Set the linear ``head`` to its Bayesian posterior mean on the support set (ALPaCA).

    The head's input features (with a column of ones when the head has a bias)
    are the regressors of a Bayesian linear regression
    (:func:`bayes_linear_posterior`) whose prior mean is the head's meta-learned
    weights, and whose prior covariance factor and noise variance are learned
    state of the rule (Harrison et al., 2018). Adaptation sets the head to the
    posterior mean; :func:`bayes_head_posterior` gives the whole posterior and
    :func:`bayes_linear_log_likelihood` the meta-training objective.

    Parameters
    ----------
    head : str
        Name of an ``nn.Linear`` submodule applied last (see :func:`check_head`).
    covariance : {"full", "diag", "lowrank", "isotropic"}, default="full"
        The structure of the prior covariance ``L @ L.T`` (relative to the noise):
        a lower-triangular ``L`` (state ``"<head>.prior_tril"``, its diagonal as a
        logarithm); a diagonal (``"<head>.prior_log_std"``); a diagonal plus
        ``rank`` learned directions (``"<head>.prior_log_std"`` and
        ``"<head>.prior_lowrank"``); one scale (``"<head>.prior_log_std"`` of
        shape ``()``, the ridge prior of :func:`ridge_head`).
    rank : int, default=2
        The number of directions of ``"lowrank"``.
    prior_scale : float, default=1.0
        The initial prior standard deviation of every weight (relative to the
        noise's).
    noise_var : float, default=1.0
        The initial noise variance of every output (``"<head>.log_noise"``, one
        per output).

    Returns
    -------
    rule : InnerRule
        Moves the head's weight (and bias).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta import functional as F
    >>> net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
    >>> rule = F.bayes_head("2", covariance="diag")
    >>> params = dict(net.named_parameters())
    >>> state = rule.init(rule.select(params))
    >>> sorted(state)
    ['2.log_noise', '2.prior_log_std']
    >>> learner = F.Learner(net, params, {}, nn.functional.mse_loss, rule, state, head="2")
    >>> X = torch.linspace(-1, 1, 20)[:, None]
    >>> post, noise_var = F.bayes_head_posterior(learner, X, 3 * X)
    >>> post.mean.shape, post.factor.shape  # 8 features and the bias
    (torch.Size([9, 1]), torch.Size([9, 9]))
    """
    if covariance not in _COVARIANCES:
        raise ValueError(f"covariance must be one of {_COVARIANCES}; got {covariance!r}.")
    if int(rank) < 1:
        raise ValueError(f"rank must be at least 1; got {rank!r}.")
    for name, value in (("prior_scale", prior_scale), ("noise_var", noise_var)):
        if not value > 0:
            raise ValueError(f"{name} must be positive; got {value!r}.")
    prefix = head + "."

    def init(params: Mapping[str, Tensor]) -> Params:
        like = params[prefix + "weight"].detach()
        d, m, _ = _head_width(params, head)
        log_s = math.log(prior_scale)
        state = {prefix + "log_noise": like.new_full((m,), math.log(noise_var))}
        if covariance == "full":
            state[prefix + "prior_tril"] = torch.diag(like.new_full((d,), log_s))
        elif covariance == "isotropic":
            state[prefix + "prior_log_std"] = like.new_tensor(log_s)
        else:
            state[prefix + "prior_log_std"] = like.new_full((d,), log_s)
        if covariance == "lowrank":
            state[prefix + "prior_lowrank"] = like.new_zeros((d, int(rank)))
        return state

    def run(learner: Any, X: Tensor, y: Tensor, *, steps: int, first_order: bool = False,
            engine: str = "vmap") -> list[Params]:
        start = learner.start(X, engine)
        if steps == 0:
            return [start]
        post, _ = bayes_head_posterior(learner, X, y, engine=engine, covariance=False)
        return [start, _head_params(post.mean, prefix, prefix + "bias" in start)]

    def selects(name: str) -> bool:
        return name in (prefix + "weight", prefix + "bias")

    args = f"covariance={covariance!r}" + (f", rank={int(rank)}" if covariance == "lowrank"
                                           else "")
    return InnerRule(init, None, selects, run, name=f"bayes_head({head!r}, {args})")
