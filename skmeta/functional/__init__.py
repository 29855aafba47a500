"""The pure functional core of skmeta.

Everything here works on *parameter dictionaries* (``{name: tensor}``) and a
module used only as a function through :func:`torch.func.functional_call`; nothing
here edits ``module._parameters``, knows about skorch or holds state between
calls. The estimators (:mod:`skmeta.estimator` and one module per algorithm) are a
thin shell around these functions.

The pieces, in the order data flows through them:

* :class:`TaskBatch`: tasks of equal shapes stacked along a leading *task axis*.
* :class:`InnerRule`: an inner-loop rule, a small immutable value of pure
  functions that says which parameters move (``selects``), how a step moves them
  (``update(fast, grads, state, step)``) and what learnable state it carries
  (``init(params)``). Built-in rules: :func:`sgd` (MAML), :func:`learned_lr`
  (Meta-SGD), :func:`per_step_lr` (MAML++), :func:`ridge_head` (a closed-form
  head, R2-D2: a rule that is not gradient steps), :func:`bayes_head` (a
  Bayesian linear head with a learned prior, ALPaCA), and :func:`only` restricts
  any rule to some parameters (ANIL).
* :func:`bayes_linear_posterior`, :func:`bayes_linear_predict` and
  :func:`bayes_linear_log_likelihood`: exact Bayesian linear regression (the
  solver of :func:`ridge_head` and :func:`bayes_head`).
* :class:`Learner`: the network with its meta-parameters, rule and state; its
  :meth:`~Learner.run_inner` is the one inner loop that meta-training,
  meta-validation, ``adapt`` and ``score`` all run.
* :func:`map_tasks`: the one place a per-task function is mapped over a
  meta-batch, with three engines that compute the same numbers: ``"vmap"``
  vectorises the tasks (:func:`torch.func.vmap` over :func:`torch.func.grad`);
  ``"loop"`` runs one task after another with :func:`torch.autograd.grad`, the
  reference implementation the others are tested against; ``"batched"`` runs
  every task at once with batched products (:func:`batched_forward`, for networks
  traced with :mod:`torch.fx` whose layers are registered,
  :func:`register_batched_layer`). The per-task function is written for one task
  and never names its engine: the engine binds the :class:`Learner` it receives
  (:meth:`Learner.bind`).
  :func:`meta_gradient` (of a per-task objective, e.g. :func:`query_loss`,
  MAML's query loss after the inner loop) and :func:`mean_over_tasks` (of a
  per-task pseudo-gradient, e.g. Reptile's) build on it, as do :func:`adapt`
  and :func:`predict`.

Examples
--------
MAML's meta-gradient, written with the core:

>>> import torch
>>> from torch import nn
>>> from skmeta import functional as F
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> net = nn.Linear(1, 1)
>>> learner = F.Learner(net, dict(net.named_parameters()), {}, nn.functional.mse_loss,
...                     F.sgd(0.1))
>>> batch = F.TaskBatch(torch.randn(4, 5, 1), torch.randn(4, 5, 1),
...                     torch.randn(4, 5, 1), torch.randn(4, 5, 1))
>>> def objective(learner, task):  # one task; the engine binds the learner
...     fasts = learner.run_inner(task.X_support, task.y_support, steps=1)
...     return learner.loss(fasts[-1], task.X_query, task.y_query)
>>> loss, grads = F.meta_gradient(objective, [batch], learner.params, learner=learner)
>>> sorted(grads), grads["weight"].shape
(['bias', 'weight'], torch.Size([1, 1]))
>>> fast = F.adapt(learner, batch, steps=3)
>>> fast["weight"].shape  # one set of adapted weights per task
torch.Size([4, 1, 1])
"""

from ._batched import maskable, masked_loss, per_task_loss
from ._bayes import (
    BayesLinearPosterior,
    bayes_head_features,
    bayes_head_posterior,
    bayes_head_prior,
    bayes_linear_log_likelihood,
    bayes_linear_posterior,
    bayes_linear_predict,
)
from ._core import (
    ENGINES,
    Engine,
    LossFn,
    Params,
    TaskBatch,
    current_step,
    forward,
    inner_step,
    map_tasks,
    mean_over_tasks,
    meta_gradient,
    vmap_support,
)
from ._heads import example_inputs, head_is_last, last_layer
from ._inner import Learner, adapt, check_head, predict, query_loss
from ._layers import (
    BatchedLayerFn,
    NotBatchable,
    batch_norm_per_task,
    batchable,
    batched_forward,
    batched_layer,
    register_batched_layer,
)
from ._rules import InnerRule, bayes_head, learned_lr, only, per_step_lr, ridge_head, sgd

__all__ = [
    "Params",
    "LossFn",
    "Engine",
    "ENGINES",
    "TaskBatch",
    "forward",
    "current_step",
    "inner_step",
    "InnerRule",
    "sgd",
    "learned_lr",
    "per_step_lr",
    "only",
    "ridge_head",
    "BayesLinearPosterior",
    "bayes_linear_posterior",
    "bayes_linear_predict",
    "bayes_linear_log_likelihood",
    "bayes_head",
    "bayes_head_prior",
    "bayes_head_features",
    "bayes_head_posterior",
    "Learner",
    "query_loss",
    "check_head",
    "last_layer",
    "head_is_last",
    "example_inputs",
    "adapt",
    "predict",
    "map_tasks",
    "meta_gradient",
    "mean_over_tasks",
    "vmap_support",
    "batchable",
    "batched_forward",
    "register_batched_layer",
    "batch_norm_per_task",
    "batched_layer",
    "BatchedLayerFn",
    "NotBatchable",
    "maskable",
    "masked_loss",
    "per_task_loss",
]
