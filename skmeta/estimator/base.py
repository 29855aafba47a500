"""The estimator shell: where skorch meets scikit-learn.

:class:`BaseMetaLearner` is a :class:`skorch.NeuralNet` whose "samples" are
tasks. skorch's loop runs unchanged (epochs, callbacks, history, checkpoints):
``get_iterator`` yields meta-batches of tasks (:mod:`skmeta.data.metabatch`),
``train_step_single`` asks the algorithm for a meta-gradient and skorch's
optimizer step applies it.

The shell holds its collaborators as objects and passes them what they need: a
target strategy (:mod:`skmeta.estimator.targets`), an engine chooser
(:mod:`skmeta.estimator.engines`), an adapter (:mod:`skmeta.estimator.adaptation`)
and a process group (:mod:`skmeta.parallel`). It calls only the algorithm's
documented hooks (the "Extending" guide lists them): ``get_inner_rule``,
``task_objective`` or ``task_pseudo_gradient``, the ``targets`` strategy,
``uses_second_order``, ``prepare_module``, ``get_head`` and
``get_adaptation_module``; schedules are skorch callbacks. It never asks which
algorithm it runs. Do not override ``fit``, ``partial_fit``, ``fit_loop`` or
``run_single_epoch``.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, validate_parameter_constraints
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .. import functional as F
from ..data import MetaBatch, TaskSequence, check_task_arrays, seed_from
from ..io import SafeFileMixin
from .adaptation import AdaptationContext, Adapter
from .features import check_feature_names
from .hooks import per_task_function, supports
from .inner_state import InnerState
from .targets import MetaClassifierMixin, MetaRegressorMixin
from .training import TaskNet

__all__ = ["BaseMetaLearner", "MetaRegressorMixin", "MetaClassifierMixin", "InnerState"]

_DEPRECATED: Any = object()  # the default of adapt's deprecated ``steps`` / ``lr`` keywords
_STEPS = {"adapt_steps": [Interval(Integral, 0, None, closed="left")],
          "inner_lr": [Interval(Real, 0, None, closed="neither"), None]}


@functools.cache
def _resolves_inner_lr(cls: type) -> bool:
    """Whether ``cls.get_inner_rule`` is the hook of skmeta 0.1, ``get_inner_rule(inner_lr=None)``
    (None meaning the estimator's rate), which out-of-tree plugins may still define."""
    param = inspect.signature(cls.get_inner_rule).parameters.get("inner_lr")
    return param is not None and param.default is None


class BaseMetaLearner(SafeFileMixin, TaskNet):
    """Shared machinery of skmeta's meta-learners (not for direct use).

    See the module docstring for what an algorithm provides.
    """

    def initialize_module(self):
        """Build the module (seeded by ``random_state``) and its inner rule's learnable state."""
        kwargs = self.get_module_kwargs()
        device = self._group().device
        devices = [torch.device(device)] if str(device).startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):  # leaves the global RNG untouched
            torch.manual_seed(int(np.random.SeedSequence([self.seed_, 2]).generate_state(1)[0]))
            module = self.prepare_module(self.initialized_instance(self.module, kwargs))
        self.module_ = module
        rule = self.inner_rule()
        self.inner_state_ = InnerState(rule.init(rule.select(dict(module.named_parameters()))))
        if isinstance(self.module, nn.Module) and "module" not in self.cuda_dependent_attributes_:
            # a module passed as an instance must also load on a machine without CUDA
            self.cuda_dependent_attributes_ = self.cuda_dependent_attributes_ + ["module"]
        return self

    # ------------------------------------------------- the algorithm's hooks

    def get_inner_rule(self, inner_lr: float) -> F.InnerRule:
        """The inner-loop rule (hook): plain gradient steps of size ``inner_lr`` by default.

        Parameters
        ----------
        inner_lr : float
            The step size: the ``inner_lr`` parameter, or ``adapt``'s override.
        """
        return F.sgd(inner_lr)

    def prepare_module(self, module: nn.Module) -> nn.Module:
        """Adjust a freshly built network for the algorithm (hook; unchanged by default).

        Runs inside the seeded random stream of the initialisation, so random draws
        here are reproducible and leave the global generators alone.
        """
        return module

    def get_head(self) -> str | None:
        """The submodule the inner loop adapts alone, computing its input once (hook)."""
        return None

    def get_adaptation_module(self) -> nn.Module:
        """The network that ``adapt``, ``score`` and meta-validation fine-tune (hook): the
        meta-learned module itself by default (pre-training swaps in a fresh head)."""
        return self.module_

    def finish_adapted(self, adapted: list, support: F.TaskBatch) -> None:
        """Complete the models adapted to tasks of one shape (hook; nothing by default).

        An algorithm with more to say than the adapted weights stores it here, e.g. a
        posterior for ``predict(X, return_std=True)`` (``AdaptedRegressor.predictive_``).

        Parameters
        ----------
        adapted : list of AdaptedRegressor or AdaptedClassifier
            The models, in the order of the tasks of ``support``.
        support : skmeta.functional.TaskBatch
            Their support sets (encoded targets), with a leading task axis.
        """

    def task_objective(self, learner: F.Learner, task: F.TaskBatch) -> torch.Tensor:
        """The per-task objective whose mean over tasks is minimised (hook).

        By default the query loss after ``inner_steps`` steps of the inner rule
        (:func:`skmeta.functional.query_loss`), differentiated through the inner steps
        when :meth:`uses_second_order` says so. ``learner`` is bound to the engine that
        runs the task; an algorithm that steps with a pseudo-gradient instead defines
        ``task_pseudo_gradient(learner, task)`` (see :mod:`skmeta.estimator.hooks`).
        """
        return F.query_loss(learner, task, steps=self.inner_steps,
                            first_order=not self.uses_second_order())

    task_pseudo_gradient = None  # (learner, task) -> (loss, {name: pseudo-gradient})
    supports_batched = None  # only for the older (learner, task, engine) hook form: hooks.py

    # ------------------------------------------------- rules and learners

    def inner_rule(self, inner_lr: float | None = None) -> F.InnerRule:
        """The algorithm's rule at the estimator's ``inner_lr``, or at ``inner_lr`` if given.

        The one place where ``adapt(inner_lr=...)`` is resolved: a rule without a fixed
        step size (learned rates, a closed-form solve) refuses an override.
        """
        if _resolves_inner_lr(type(self)):  # the hook of skmeta 0.1: it resolves the rate
            return self.get_inner_rule(inner_lr)
        rule = self.get_inner_rule(float(self.inner_lr))
        if inner_lr is None:
            return rule
        if rule.inner_lr is None:
            raise ValueError(f"{type(self).__name__} adapts with {self._rates(rule)}, which "
                             "adapt(inner_lr=...) cannot override: leave inner_lr unset, or "
                             "use an estimator whose inner rule has a fixed step size.")
        return self.get_inner_rule(float(inner_lr))

    def _rates(self, rule: F.InnerRule) -> str:
        """The inner learning rate(s) a rule uses, in words (for messages)."""
        if rule.inner_lr is not None:
            return f"inner_lr={rule.inner_lr}"
        if rule.update is not None:
            return (f"the learned inner learning rates of {rule.name} (initialised at "
                    f"inner_lr={self.inner_lr})")
        return f"the inner rule {rule.name}, solved in closed form"

    def learner(self, module: nn.Module | None = None, *, inner_lr: float | None = None
                ) -> F.Learner:
        """The network (``module_`` by default) with its rule and state, as one value."""
        if module is None or module is self.module_:
            module = self.module_
            params, buffers, state = self._tensors()
        else:
            params, buffers = dict(module.named_parameters()), dict(module.named_buffers())
            state = self.inner_state_.tensors()
        return F.Learner(module, dict(params), dict(buffers), self.criterion_,
                         self.inner_rule(inner_lr), dict(state), head=self.get_head())

    def _batched(self, kind: str, module: nn.Module) -> tuple[bool, str]:
        """Whether the batched engine can run ``kind`` work on ``module``, and why not."""
        if kind == "train" and not supports(self, self.supports_batched):
            return False, (f"{type(self).__name__}'s per-task function has the older form "
                           "(learner, task, engine) and does not declare supports_batched")
        return F.batchable(module)

    # ------------------------------------------------------- meta-gradients

    def get_meta_gradient(self, batch: MetaBatch, engine: str) -> tuple[torch.Tensor, F.Params]:
        """``(mean loss, gradient for every meta-parameter)`` of a meta-batch.

        Differentiates the mean of :meth:`task_objective`, or averages
        :meth:`task_pseudo_gradient`, over the batch's tasks. Keys are
        ``"module_.<name>"`` and ``"inner_state_.<name>"``.
        """
        learner = self.learner()
        wrt = self._meta_parameters()
        if self.task_pseudo_gradient is None:
            fn, bound = per_task_function(self, learner)
            return F.meta_gradient(fn, batch.task_batches, wrt, engine=engine,
                                   chunk_size=self.chunk_size, learner=bound)
        fn, bound = per_task_function(self, learner.detached())
        loss, pseudo = F.mean_over_tasks(fn, batch.task_batches, engine=engine,
                                         chunk_size=self.chunk_size, learner=bound)
        grads = {k: torch.zeros_like(p) for k, p in wrt.items()}
        grads.update({f"module_.{k}": g for k, g in pseudo.items()})
        return loss, grads

    def validation_step(self, batch: MetaBatch, **fit_params):
        """Mean post-adaptation query loss of a meta-batch of validation tasks.

        On several ranks, each evaluates its share and the mean is all-reduced,
        so callbacks such as early stopping decide the same on every rank.
        """
        adapter = self._adapter()

        def compute(b: MetaBatch) -> list[torch.Tensor]:
            losses, _ = adapter.evaluate(b, self._adapt_steps(), strict=True)
            return [torch.stack(losses).mean()]

        (loss,) = self._group().mean_over_tasks(
            batch, compute, lambda: [torch.zeros((), dtype=self._dtype(),
                                                 device=self._group().device)],
            what=f"meta-validation in epoch {len(self.history)}")
        return {"loss": loss, "y_pred": None}

    # ------------------------------------------------------------- adaptation

    def _adapt_steps(self) -> int:
        return self.inner_steps if self.adapt_steps is None else self.adapt_steps

    def _adapter(self, inner_lr: float | None = None) -> Adapter:
        """The adaptation service, over this estimator's network, rule, engines and targets."""
        module = self.get_adaptation_module()
        with self._functional_lock:
            learner = self.learner(module, inner_lr=inner_lr)
        return Adapter(AdaptationContext(
            owner=type(self).__name__, module=module, learner=learner,
            rates=self._rates(learner.rule), engines=self.engines_,
            batched=functools.partial(self._batched, "adapt", module), loss=self.criterion_,
            targets=self.get_targets(), to_tensor=self._to_tensor, lock=self._functional_lock,
            chunk_size=self.chunk_size))

    def adapt(self, X_support, y_support, *, adapt_steps: int | None = None,
              inner_lr: float | None = None, steps=_DEPRECATED, lr=_DEPRECATED):
        """Adapt the meta-learned initialisation to one task.

        Runs the inner loop (``adapt_steps`` steps of the algorithm's inner rule,
        e.g. gradient steps of size ``inner_lr``) on the support set, from the
        meta-parameters. The meta-learner itself is left untouched.

        Parameters
        ----------
        X_support : array-like of shape (n_support, \\*input_shape)
            The task's support examples.
        y_support : array-like of shape (n_support,) or (n_support, n_targets)
            Their targets (any labels, for classifiers).
        adapt_steps : int, default=None
            Number of inner steps; None uses the estimator's ``adapt_steps``
            (itself ``inner_steps`` by default); 0 returns the meta-parameters as
            a model.
        inner_lr : float, default=None
            Step size; None uses the estimator's ``inner_lr`` (rules with learned
            inner learning rates or a closed-form solve refuse an override).
        steps, lr : deprecated
            Old names of ``adapt_steps`` and ``inner_lr``.

        Returns
        -------
        adapted : AdaptedRegressor or AdaptedClassifier
            A small, picklable, fitted estimator for this task.

        Raises
        ------
        FloatingPointError
            If the adapted weights are not finite (``inner_lr`` too large).
        """
        check_is_fitted(self, ["module_", "input_shape_"])
        check_task_arrays(X_support, y_support, where="the support set (X_support, y_support)",
                          classification=self._classification)  # errors in adapt's words
        return self.adapt_tasks([(X_support, y_support)], adapt_steps=adapt_steps,
                                inner_lr=inner_lr, steps=steps, lr=lr)[0]

    def adapt_tasks(self, tasks, *, adapt_steps: int | None = None,
                    inner_lr: float | None = None, steps=_DEPRECATED, lr=_DEPRECATED) -> list:
        """Adapt to many tasks at once (vectorised when shapes agree).

        Parameters
        ----------
        tasks : sequence of (X_support, y_support) pairs or of :class:`~skmeta.Task`
            Only the support sets are used.
        adapt_steps, inner_lr, steps, lr : see :meth:`adapt`

        Returns
        -------
        adapted : list of AdaptedRegressor or AdaptedClassifier
        """
        check_is_fitted(self, ["module_", "input_shape_"])
        adapt_steps, inner_lr = self._check_adapt_args(adapt_steps, inner_lr, steps, lr)
        tasks = list(tasks)
        check_feature_names(self, tasks)  # DataFrame columns, as scikit-learn checks them
        seq = TaskSequence(tasks, classification=self._classification)
        single, supports = len(seq) == 1, []
        for i in range(len(seq)):
            Xs, ys = seq[i][0], seq[i][1]  # a Task's support set, or an (X, y) pair
            self._check_input_shape(Xs, "X_support" if single else f"task {i}: X_support")
            if not self._classification:
                n_targets = 1 if np.ndim(ys) == 1 else np.shape(ys)[1]
                if n_targets != self.n_outputs_:
                    raise ValueError(f"{'y_support' if single else f'task {i}'} has "
                                     f"{n_targets} target(s) but {type(self).__name__} was "
                                     f"fitted on {self.n_outputs_}.")
            supports.append((Xs, ys))
        adapter = self._adapter(inner_lr)
        rule, targets = adapter.context.learner.rule, adapter.context.targets
        label = rule.inner_lr if rule.inner_lr is not None else "learned"
        rebuild = {}
        if not isinstance(self.module, nn.Module):  # rebuildable from its class (safe format)
            rebuild = {"module_class_": self.module, "module_kwargs_": self.get_module_kwargs()}

        def make_model(module, classes, y_ndim):
            kwargs = dict(rebuild.get("module_kwargs_", {}))
            if "n_outputs" in kwargs:
                kwargs["n_outputs"] = targets.adapted_n_outputs(classes)
            fields = {**rebuild, "module_kwargs_": kwargs} if rebuild else {}
            return targets.adapted_class.from_task(
                module, classes=classes, y_ndim=y_ndim, device=self._group().device,
                input_shape=self.input_shape_, meta_estimator=type(self).__name__,
                adapt_steps=adapt_steps, inner_lr=label,
                feature_names_in_=getattr(self, "feature_names_in_", None), **fields)

        return adapter.adapt(supports, adapt_steps, make_model, self.finish_adapted)

    def _check_adapt_args(self, adapt_steps, inner_lr, steps, lr) -> tuple[int, float | None]:
        for old, new, value in (("steps", "adapt_steps", steps), ("lr", "inner_lr", lr)):
            if value is not _DEPRECATED:
                warnings.warn(f"The {old!r} keyword of adapt, adapt_tasks and adapt_pipeline is "
                              f"deprecated and will be removed in skmeta 0.3; use {new}=.",
                              FutureWarning, stacklevel=4)
        adapt_steps = steps if adapt_steps is None and steps is not _DEPRECATED else adapt_steps
        inner_lr = lr if inner_lr is None and lr is not _DEPRECATED else inner_lr
        adapt_steps = self._adapt_steps() if adapt_steps is None else adapt_steps
        validate_parameter_constraints(
            _STEPS, {"adapt_steps": adapt_steps, "inner_lr": inner_lr},
            caller_name=f"{type(self).__name__}.adapt")
        return int(adapt_steps), None if inner_lr is None else float(inner_lr)

    def _score(self, X, y, groups, metric) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        check_is_fitted(self, ["module_", "input_shape_"])
        self._check_params()
        check_feature_names(self, X)
        tasks = self._as_tasks(X, y, groups)
        seed = self.seed_ if self.random_state is None else seed_from(self.random_state)
        rng = np.random.default_rng([seed, 3])
        batches = (self.get_meta_batch(tasks, np.arange(start, min(start + 256, len(tasks))),
                                       rng, training=False)
                   for start in range(0, len(tasks), 256))
        return self._adapter().score(batches, self._adapt_steps(), metric)

    def score(self, X, y=None, groups=None, sample_weight=None):
        """The score after adaptation: pooled R² (regressors) or mean accuracy (classifiers).

        Each task is adapted on its support set (``k_shot`` examples, per class
        for classifiers, drawn with ``random_state``) and predicts its query set.
        Regressors report the R² of the query predictions pooled over tasks
        (``1 - sum of squared errors / sum over tasks of the squared deviations
        from each task's query mean``), which ranks models as their squared error
        does; classifiers the accuracy averaged over tasks. Accepts the task forms
        of :meth:`fit`. Per-task scores: :meth:`score_tasks`.

        Parameters
        ----------
        X, y, groups : see :meth:`fit`
        sample_weight : None
            Must be None: every task counts equally.

        Returns
        -------
        score : float
            NaN (with a RuntimeWarning) if adaptation diverged on some task.
        """
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__}.score weighs tasks, not examples; "
                             "per-example sample_weight is not supported.")
        scores, num, den = self._score(X, y, groups, None)
        if not np.isfinite(scores).all():
            return float("nan")
        return self.get_targets().summarise(scores, num, den)

    def score_tasks(self, X, y=None, groups=None, *, metric=None) -> np.ndarray:
        """Per-task scores after adaptation.

        Parameters
        ----------
        X, y, groups : see :meth:`fit`
        metric : callable, default=None
            ``metric(y_true, y_pred)`` on the query set; R² (regressors) or
            accuracy (classifiers) by default.

        Returns
        -------
        scores : ndarray of shape (n_tasks,)
            NaN (with a RuntimeWarning) for tasks on which adaptation diverged.
        """
        return self._score(X, y, groups, metric)[0]

    def predict(self, X):
        """Not available on the meta-learner: adapt first.

        Raises
        ------
        TypeError
            Always; use ``adapt(X_support, y_support).predict(X)``
            (``adapt_steps=0`` predicts with the meta-parameters themselves).
        """
        raise TypeError(f"{type(self).__name__}.predict needs a task: call "
                        "adapt(X_support, y_support) and predict with the adapted model it "
                        "returns (adapt(..., adapt_steps=0) predicts with the meta-parameters). "
                        "For GridSearchCV/cross_val_score scoring, use the default (score) or "
                        "skmeta.metrics.get_task_scorer(...) instead of a scikit-learn "
                        "scoring string.")

    def predict_proba(self, X):
        """Not available on the meta-learner: adapt first (see :meth:`predict`)."""
        self.predict(X)

    # ------------------------------------------------------------------ saving

    def _saved_attributes(self) -> list[str]:
        """Fitted attributes (other than tensors) that :func:`skmeta.save` stores: those
        declared ``saved`` in the class's attribute table."""
        return [k for k, a in self._attribute_table.items() if a.saved]

