"""The estimator shell: where skorch meets scikit-learn.

:class:`BaseMetaLearner` is a :class:`skorch.NeuralNet` whose "samples" are
tasks. skorch's loop runs unchanged (epochs, callbacks, history, checkpoints):
``get_iterator`` yields meta-batches of tasks (:mod:`skmeta.batching`),
``train_step_single`` asks the algorithm for a meta-gradient and skorch's
optimizer step applies it. The numbers come from the pure functions of
:mod:`skmeta.functional`; engines, processes, targets and adapted models each
live in a module of their own (:mod:`skmeta.engines`, :mod:`skmeta.distributed`,
:mod:`skmeta.targets`, :mod:`skmeta.adapted`).

An algorithm provides its inner-loop rule (``get_inner_rule``) and its per-task
objective (``task_objective``, or ``task_pseudo_gradient``); the "Extending" guide
lists every hook that is safe to override. Do not override ``fit``,
``partial_fit``, ``fit_loop`` or ``run_single_epoch``.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import threading
from numbers import Integral
from typing import Any

import numpy as np
import torch
from sklearn.utils._param_validation import validate_parameter_constraints
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from torch import nn

from . import distributed as D
from . import functional as F
from . import parameters
from ._features import note_features
from .adaptation import AdaptationMixin
from .batching import MetaBatch, MetaBatchIterator, TaskSplit, make_meta_batch
from .engines import EngineChooser
from .inner_state import InnerState, ParamsFileMixin
from .metrics import check_scoring_context
from .modules import MLP
from .parameters import SHARED_ATTRIBUTES, SHARED_PARAMS, Attribute, Param, install
from .persistence import save as _save
from .registry import register
from .targets import MetaClassifierMixin, MetaRegressorMixin
from .tasks import TaskSequence, _seed_from, as_tasks, warn_on_scale

__all__ = ["BaseMetaLearner", "MetaRegressorMixin", "MetaClassifierMixin", "MetaBatch",
           "TaskSplit", "InnerState"]

_UNSET: Any = object()


class BaseMetaLearner(AdaptationMixin, ParamsFileMixin, NeuralNet):
    """Shared machinery of skmeta's meta-learners (not for direct use).

    See the module docstring for what an algorithm provides.
    """

    _params: dict[str, Param] = SHARED_PARAMS
    _attributes: dict[str, Attribute] = SHARED_ATTRIBUTES
    _skmeta_role = "meta-learner"
    _skmeta_kind: str | None = None  # "regressor" or "classifier", from the target mixin

    # Fitted state starts as class attributes, so that __init__ sets parameters only
    # (skorch sets these three in __init__; its code only needs them to exist).
    history_ = None
    initialized_ = False
    virtual_params_: dict = {}

    # skorch attributes that skmeta does not expose as parameters
    iterator_train = None
    iterator_valid = None
    dataset = None
    predict_nonlinearity = None
    use_caching = "auto"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        owner = next(k for k in cls.__mro__ if "__init__" in vars(k))
        own = getattr(owner.__init__, "_skmeta_generated", False) or owner is BaseMetaLearner
        install(cls, BaseMetaLearner._store if own else None)
        register(cls)

    def __init__(self, module=MLP, **kwargs):
        self._store(module, **kwargs)

    def _store(self, module, **kwargs) -> None:
        # NeuralNet.__init__ would add skorch parameters that do not apply to tasks
        # (iterator_*, dataset, predict_nonlinearity, use_caching); we store ours and
        # reproduce the rest of its bookkeeping. vars().update bypasses skorch's
        # __setattr__, which treats torch modules set after construction specially.
        values = {"module": module}
        for name, p in self._param_table.items():
            if name != "module":
                values[name] = kwargs.pop(name, p.default)
        vars(self).update(values)
        self._check_deprecated_params(**kwargs)
        for fitted in ("history", "initialized_", "virtual_params_"):
            if fitted in kwargs:  # skorch's private constructor arguments
                setattr(self, fitted if fitted.endswith("_") else "history_", kwargs.pop(fitted))
        self._params_to_validate = set(kwargs.keys())
        vars(self).update(kwargs)

    # ------------------------------------------------------------------ params

    def _get_param_names(self):
        # skorch lists every public attribute; drop private bookkeeping such as
        # _params_to_validate, which skorch itself leaks into get_params.
        return [k for k in super()._get_param_names() if not k.startswith("_")]

    def set_params(self, **params):
        """Set parameters (validated when fitting starts, as scikit-learn recommends).

        Parameters
        ----------
        **params : dict
            Parameter names mapped to their new values, including ``module__*``,
            ``optimizer__*`` and ``callbacks__*``.

        Returns
        -------
        self : object
        """
        if "callbacks" in params:
            callbacks = params["callbacks"]
            # skorch initialises the callbacks now, from the value already set: set it
            # first, and leave a value that is not a list to the check at fit
            vars(self)["callbacks"] = callbacks
            if not (callbacks is None or isinstance(callbacks, (list, tuple))
                    or (isinstance(callbacks, str) and callbacks == "disable")):
                del params["callbacks"]
        return super().set_params(**params)

    def _check_params(self) -> None:
        parameters.check_classes_not_names(self)  # module="MLP": not called as a class
        validate_parameter_constraints(self._parameter_constraints,
                                       self.get_params(deep=False),
                                       caller_name=type(self).__name__)

    def _validate_params(self):
        known = (set(self._get_param_names()) | set(self._param_table)) \
            - self._params_to_validate
        for key in sorted(self._params_to_validate):
            if "__" in key or key.endswith("_") or key in self.prefixes_:
                continue
            if any(key.startswith(p) for p in self.prefixes_):
                continue  # skorch explains the missing double underscore
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{type(self).__name__} got an unexpected parameter {key!r}.{hint}")
        super()._validate_params()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False  # tasks carry their own targets
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------- fitting entry

    def fit(self, X, y=None, groups=None, **fit_params):
        """Meta-train on tasks.

        Parameters
        ----------
        X : sequence of tasks, or array-like
            A sequence of ``(X, y)`` pairs or of :class:`~skmeta.Task`; or, with
            ``y`` and ``groups``, long-format data (one row per example); or, for
            classifiers, with ``y`` only, a labelled pool to draw episodes from.
        y : array-like, default=None
            Targets of long-format data or of the pool; None for task sequences.
        groups : array-like of shape (n_samples,), default=None
            Task id of every row of long-format data.
        **fit_params : dict
            Passed on to skorch (e.g. for callbacks).

        Returns
        -------
        self : object
            The meta-trained estimator.
        """
        tasks = self._prepare_fit(X, y, groups, reset=not (self.warm_start and self.initialized_))
        if not self.warm_start or not self.initialized_:
            self.initialize()
            self._check_module_io(tasks)
        NeuralNet.partial_fit(self, tasks, None, _routing_method="fit", **fit_params)
        return self._sync_ranks()

    def partial_fit(self, X, y=None, classes=None, groups=None, **fit_params):
        """Continue meta-training for ``max_epochs`` more epochs, without re-initialising.

        Accepts the same task forms as :meth:`fit` (``classes`` is accepted for
        scikit-learn compatibility and unused: each task brings its own classes).
        A ``KeyboardInterrupt`` stops training cleanly after the last completed
        meta-update.

        Parameters
        ----------
        X, y, groups : see :meth:`fit`
        classes : ignored
        **fit_params : dict
            Passed on to skorch.

        Returns
        -------
        self : object
        """
        tasks = self._prepare_fit(X, y, groups, reset=not self.initialized_)
        if not self.initialized_:
            self.initialize()
            self._check_module_io(tasks)
        NeuralNet.partial_fit(self, tasks, None, **fit_params)
        return self._sync_ranks()

    def _check_module_io(self, tasks) -> None:
        """Fail early, and clearly, when the network's input or output does not fit the tasks."""
        X0 = tasks[0][0][:4]
        name = type(self).__name__
        try:
            with torch.no_grad(), self._functional_lock:
                out = self.module_(self._to_tensor(X0))
        except RuntimeError as exc:
            raise ValueError(f"The module fails on examples of shape {tuple(X0.shape[1:])} "
                             f"({int(np.prod(X0.shape[1:]))} values each): {exc}. Set the "
                             "module's input size to match the data (e.g. module__in_features) "
                             "or leave it unset for the estimator to fill in.") from exc
        expected = self._n_outputs()
        if out.dim() != 2 or out.shape[0] != len(X0) or out.shape[1] != expected:
            what = f"n_way={self.n_way} logits" if self._classification else \
                f"{expected} output(s), one per target"
            raise ValueError(f"The module maps {len(X0)} examples to an output of shape "
                             f"{tuple(out.shape)}; {name} needs shape ({len(X0)}, {expected}): "
                             f"{what}. Set the module's output size (e.g. module__n_outputs) "
                             "to match.")

    def _prepare_fit(self, X, y, groups, *, reset: bool = True) -> TaskSequence:
        check_scoring_context(self)
        self._check_params()
        D.check_not_skorch_accelerate(self)
        group = self._group()
        group.check_device(type(self).__name__)
        group.ensure(type(self).__name__)
        tasks = self._as_tasks(X, y, groups)
        first = tasks[0]
        X0, y0 = first[0], first[1]
        if self.initialized_ and hasattr(self, "input_shape_"):
            self._check_input_shape(X0, "The tasks' X")
        else:
            self.input_shape_ = tuple(X0.shape[1:])
            self._set_target_info(y0)
        note_features(self, X, reset=reset)  # feature_names_in_, n_features_in_
        warn_on_scale(X0)
        return tasks

    def _as_tasks(self, X, y=None, groups=None) -> TaskSequence:
        return as_tasks(X, y, groups, classification=self._classification,
                        pool_sampler=self._pool_sampler())

    # ------------------------------------------------------------- processes

    def _group(self) -> D.LocalGroup:
        """The processes this estimator runs on (see :mod:`skmeta.distributed`)."""
        return D.TorchGroup(self.device) if self.distributed else D.LocalGroup(self.device)

    def _shared_random_state(self):
        """``random_state``; on several ranks, unless it is an int, one seed drawn by rank 0."""
        group = self._group()
        if isinstance(self.random_state, Integral) or group.world_size == 1:
            return self.random_state
        return group.shared_seed(_seed_from(self.random_state))

    def _sync_ranks(self):
        """Give every rank rank 0's meta-parameters (at ``initialize``, and after ``fit``:
        callbacks such as ``Checkpoint(load_best=True)`` run on rank 0 only)."""
        with self._functional_lock:
            self._group().sync(self.module_, self.inner_state_)
        return self

    def notify(self, method_name, **cb_kwargs):
        """Call the net's and the callbacks' ``method_name``; on ranks other than 0,
        skip the callbacks that write (see :func:`skmeta.distributed.runs_on_rank`)."""
        group = self._group()
        if group.rank == 0:
            return super().notify(method_name, **cb_kwargs)
        getattr(self, method_name)(self, **cb_kwargs)
        for _, cb in self.callbacks_:
            if group.runs(cb):
                getattr(cb, method_name)(self, **cb_kwargs)

    # ---------------------------------------------------------- initialisation

    def initialize(self):
        """Initialise module, inner state, criterion, optimizer, history and random streams."""
        group = self._group()
        seed = int(np.random.SeedSequence(_seed_from(self.random_state)).generate_state(1)[0])
        self.seed_ = group.shared_seed(seed)  # every rank draws what rank 0 draws
        self.rng_ = np.random.default_rng([self.seed_, 0])
        self.engines_ = EngineChooser(self.engine, group.device, self._announce)
        super().initialize()
        return self._sync_ranks()  # e.g. a module instance loaded on rank 0 only

    def _announce(self, message: str) -> None:
        if self.verbose and self._group().rank == 0:
            print(message)  # noqa: T201 - skorch's log channel: printed only with verbose

    @property
    def engine_(self) -> dict[str, str]:
        """``{"train": engine, "adapt": engine}``: what ran (or was decided) per kind of work."""
        check_is_fitted(self, "engines_")
        return self.engines_.summary()

    def get_module_kwargs(self) -> dict:
        """``module__*`` parameters, with sizes filled in from the data.

        Sizes are filled in only for a module *class* whose constructor has an
        ``in_features`` and/or ``n_outputs`` parameter that was not set.
        """
        kwargs = self.get_params_for("module")
        if isinstance(self.module, nn.Module) or not callable(self.module):
            return kwargs
        try:
            sig = inspect.signature(self.module).parameters
        except (TypeError, ValueError):
            return kwargs
        shape = getattr(self, "input_shape_", None)
        if "in_features" in sig and "in_features" not in kwargs and shape is not None:
            kwargs["in_features"] = int(np.prod(shape))
        if "n_outputs" in sig and "n_outputs" not in kwargs:
            n_out = self._n_outputs()
            if n_out is not None:
                kwargs["n_outputs"] = n_out
        return kwargs

    def initialize_module(self):
        """Build the module (seeded by ``random_state``) and its inner rule's learnable state."""
        kwargs = self.get_module_kwargs()
        device = self._group().device
        devices = [torch.device(device)] if str(device).startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):  # leaves the global RNG untouched
            torch.manual_seed(int(np.random.SeedSequence([self.seed_, 2]).generate_state(1)[0]))
            module = self.prepare_module(self.initialized_instance(self.module, kwargs))
        self.module_ = module
        rule = self.get_inner_rule()
        self.inner_state_ = InnerState(rule.init(rule.select(dict(module.named_parameters()))))
        if isinstance(self.module, nn.Module) and "module" not in self.cuda_dependent_attributes_:
            # a module passed as an instance must also load on a machine without CUDA
            self.cuda_dependent_attributes_ = self.cuda_dependent_attributes_ + ["module"]
        return self

    def prepare_module(self, module: nn.Module) -> nn.Module:
        """Adjust a freshly built network for the algorithm (hook; unchanged by default).

        Runs inside the seeded random stream of the initialisation, so random draws
        here are reproducible and leave the global generators alone.
        """
        return module

    def initialize_criterion(self):
        kwargs = self.get_params_for("criterion")
        self.criterion_ = self.initialized_instance(self.criterion, kwargs)
        return self

    # -------------------------------------------------------- the algorithm

    def get_inner_rule(self, inner_lr: float | None = None) -> F.InnerRule:
        """The inner-loop rule (hook): plain gradient steps of size ``inner_lr`` by default.

        Parameters
        ----------
        inner_lr : float or None, default=None
            An override of the ``inner_lr`` parameter (from ``adapt``); None uses it.
        """
        return F.sgd(self.inner_lr if inner_lr is None else inner_lr)

    def get_head(self) -> str | None:
        """The submodule the inner loop adapts alone, computing its input once (hook)."""
        return None

    def learner(self, module: nn.Module | None = None, *, inner_lr: float | None = None
                ) -> F.Learner:
        """The network (``module_`` by default) with its rule and state, as one value."""
        if module is None or module is self.module_:
            module = self.module_
            params, buffers, state = self._tensors()
        else:
            params, buffers = dict(module.named_parameters()), dict(module.named_buffers())
            state = self.inner_state_.tensors()
        # the criterion itself, unless get_task_loss is overridden (the batched engine
        # computes the usual criteria per task without vmap)
        loss_fn = self.criterion_ if type(self).get_task_loss is BaseMetaLearner.get_task_loss \
            else self.get_task_loss
        return F.Learner(module, dict(params), dict(buffers), loss_fn,
                         self.get_inner_rule(inner_lr), dict(state), head=self.get_head())

    def get_task_loss(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """Loss of one task's predictions (support or query); the criterion by default."""
        return self.criterion_(y_pred, y_true)

    def task_objective(self, learner: F.Learner, task: F.TaskBatch, engine: str) -> torch.Tensor:
        """The per-task objective whose mean over tasks is minimised (hook)."""
        raise NotImplementedError(f"{type(self).__name__} defines neither task_objective nor "
                                  "task_pseudo_gradient.")

    task_pseudo_gradient = None  # (learner, task, engine) -> (loss, {name: pseudo-gradient})
    supports_batched = False  # True: the per-task function runs with engine="batched" too
    supports_query_mask = False  # True: it passes task.query_mask to the learner's loss

    def _batched(self, kind: str, module: nn.Module) -> tuple[bool, str]:
        """Whether the batched engine can run ``kind`` work on ``module``, and why not."""
        if kind == "train" and not self.supports_batched:
            return False, (f"{type(self).__name__}'s per-task function does not declare "
                           "supports_batched")
        return F.batchable(module)

    def _uses_second_order(self) -> bool:
        """Whether meta-gradients differentiate through the inner steps (hook; used to choose
        the engine): by default, when the algorithm has a ``first_order`` parameter set to False.
        """
        return "first_order" in self._param_table and not self.first_order

    def _tensors(self) -> tuple[F.Params, F.Params, F.Params]:
        """``module_``'s parameters and buffers and the rule's state (cached per module)."""
        cache = self.__dict__.get("_tensors_")
        if cache is None or cache[0] is not self.module_ or cache[1] is not self.inner_state_:
            cache = (self.module_, self.inner_state_, dict(self.module_.named_parameters()),
                     dict(self.module_.named_buffers()), self.inner_state_.tensors())
            self.__dict__["_tensors_"] = cache
        return cache[2], cache[3], cache[4]

    def _meta_parameters(self) -> dict[str, torch.Tensor]:
        params, _, state = self._tensors()
        out = {f"module_.{k}": p for k, p in params.items()}
        out.update({f"inner_state_.{k}": p for k, p in state.items()})
        return out

    def _set_training(self, training=True):
        # skorch sets the mode of every module at every step; only change what differs
        if any(m.training != training for m in (*self.module_.modules(),
                                                 *self.inner_state_.modules())):
            super()._set_training(training)

    def get_meta_gradient(self, batch: MetaBatch, engine: str) -> tuple[torch.Tensor, F.Params]:
        """``(mean loss, gradient for every meta-parameter)`` of a meta-batch.

        Differentiates the mean of :meth:`task_objective`, or averages
        :meth:`task_pseudo_gradient`, over the batch's tasks. Keys are
        ``"module_.<name>"`` and ``"inner_state_.<name>"``.
        """
        learner = self.learner()
        wrt = self._meta_parameters()
        if self.task_pseudo_gradient is None:
            objective = functools.partial(self.task_objective, learner)
            return F.meta_gradient(objective, batch.task_batches, wrt, engine=engine,
                                   chunk_size=self.chunk_size)
        fn = functools.partial(self.task_pseudo_gradient, learner.detached())
        loss, pseudo = F.mean_over_tasks(fn, batch.task_batches, engine=engine,
                                         chunk_size=self.chunk_size)
        grads = {k: torch.zeros_like(p) for k, p in wrt.items()}
        grads.update({f"module_.{k}": g for k, g in pseudo.items()})
        return loss, grads

    # ------------------------------------------------------------- meta-batches

    def get_dataset(self, X, y=None):
        return X

    def get_split_datasets(self, X, y=None, **fit_params):
        if not self.train_split:
            return X, None
        train, valid = self.train_split(X)
        return (TaskSequence(train, classification=self._classification),
                TaskSequence(valid, classification=self._classification))

    def get_iterator(self, dataset, training=False):
        """An iterable of :class:`MetaBatch` (shuffled when ``training``)."""
        return MetaBatchIterator(self, dataset, training)

    def _dtype(self) -> torch.dtype:
        for p in self._tensors()[0].values():
            if p.is_floating_point():
                return p.dtype
        return torch.get_default_dtype()

    def _to_tensor(self, a: np.ndarray | None, target: bool = False) -> torch.Tensor | None:
        if a is None:
            return None
        device = self._group().device
        if target and self._classification:
            return torch.as_tensor(a, dtype=torch.long, device=device)
        return torch.as_tensor(a, dtype=self._dtype(), device=device)

    def get_meta_batch(self, tasks, indices, rng: np.random.Generator, *, training: bool,
                       need_query: bool = True) -> MetaBatch:
        """Split tasks ``indices`` into support and query sets and stack them by shape."""
        return make_meta_batch(tasks, indices, rng, k_shot=self.k_shot, n_query=self.n_query,
                               classification=self._classification, encode=self._encode_targets,
                               to_tensor=self._to_tensor, training=training,
                               need_query=need_query, pad_queries=self._pads_queries())

    def _pads_queries(self) -> bool:
        """Whether query sets of different lengths are padded into one group (see
        :func:`skmeta.batching.make_meta_batch`): the algorithm passes ``query_mask`` on
        and the loss can leave padded rows out."""
        return self.supports_query_mask and \
            type(self).get_task_loss is BaseMetaLearner.get_task_loss and \
            F.maskable(self.criterion_)

    # ------------------------------------------------------------------- steps

    @property
    def _functional_lock(self) -> threading.RLock:
        # functional_call swaps tensors into the module while it runs: serialise
        return self.__dict__.setdefault("_lock_", threading.RLock())

    def train_step_single(self, batch: MetaBatch, **fit_params):
        """Compute the meta-gradient of one meta-batch and store it in ``.grad``.

        On several ranks, this rank computes its share of the tasks and the
        mean over the whole meta-batch is all-reduced (:mod:`skmeta.distributed`).
        """
        self._set_training(True)
        trainable = [(k, p) for k, p in self._meta_parameters().items() if p.requires_grad]
        second = self._uses_second_order()

        def compute(b: MetaBatch) -> list[torch.Tensor]:
            with self._functional_lock:
                loss, grads = self.engines_.run("train", self.module_, len(b),
                                                lambda e: self.get_meta_gradient(b, e),
                                                second_order=second, batched=functools.partial(
                                                    self._batched, "train", self.module_))
            return [loss] + [grads[k] for k, _ in trainable]

        def zeros() -> list[torch.Tensor]:
            device = trainable[0][1].device
            return [torch.zeros((), dtype=self._dtype(), device=device)] + \
                [torch.zeros_like(p) for _, p in trainable]

        loss, *values = self._group().mean_over_tasks(
            batch, compute, zeros, what=f"the meta-step of epoch {len(self.history)}")
        # one reduction checks everything: NaN/inf in any gradient propagates to the sum
        total = loss + torch.stack([g.sum() for g in values]).sum() if values else loss
        if not torch.isfinite(total):
            self._raise_non_finite(loss, dict(zip([k for k, _ in trainable], values)))
        for (_, p), g in zip(trainable, values):
            p.grad = g if p.grad is None else p.grad + g
        return {"loss": loss, "y_pred": None}

    def _raise_non_finite(self, loss, grads):
        where = (f"the meta-loss became {loss.item()}" if not torch.isfinite(loss) else
                 "the meta-gradient of " + repr(next(k for k, g in grads.items()
                                                     if not torch.isfinite(g).all())) +
                 " is not finite")
        raise FloatingPointError(
            f"At epoch {len(self.history)}, {where}; the inner learning rate "
            f"(inner_lr={self.inner_lr}) or the meta learning rate (lr={self.lr}) is probably "
            "too large, or the features are far from unit scale. The meta-parameters of the "
            "last finite meta-update were kept.")

    def validation_step(self, batch: MetaBatch, **fit_params):
        """Mean post-adaptation query loss of a meta-batch of validation tasks.

        On several ranks, each evaluates its share and the mean is all-reduced,
        so callbacks such as early stopping decide the same on every rank.
        """
        def compute(b: MetaBatch) -> list[torch.Tensor]:
            losses, _ = self._evaluate(b, self._adapt_steps(), None, strict=True)
            return [torch.stack(losses).mean()]

        (loss,) = self._group().mean_over_tasks(
            batch, compute, lambda: [torch.zeros((), dtype=self._dtype(),
                                                 device=self._group().device)],
            what=f"meta-validation in epoch {len(self.history)}")
        return {"loss": loss, "y_pred": None}

    def _adapt_steps(self) -> int:
        return self.inner_steps if self.adapt_steps is None else self.adapt_steps

    def _saved_attributes(self) -> list[str]:
        """Fitted attributes (other than tensors) that :func:`skmeta.save` stores."""
        return ["input_shape_", "n_outputs_", "seed_", "feature_names_in_"]

    def save(self, path) -> None:
        """Save in skmeta's safe format (tensors + JSON); see :func:`skmeta.save`.

        Parameters
        ----------
        path : str or path-like
            Written atomically.
        """
        _save(self, path)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_lock_", None)
        state.pop("_tensors_", None)
        return state
