"""The estimator shell: where skorch meets scikit-learn.

:class:`BaseMetaLearner` is a :class:`skorch.NeuralNet` whose "samples" are
tasks. skorch's loop runs unchanged (epochs, callbacks, history, checkpoints):
``get_iterator`` yields *meta-batches* of tasks, ``train_step_single`` asks the
algorithm for a meta-gradient (:meth:`BaseMetaLearner.get_meta_gradient`, the
one hook every algorithm implements) and skorch's optimizer step applies it.
The numbers themselves come from the pure functions of :mod:`skmeta.functional`.

Hooks that are safe to override: ``get_meta_gradient`` (the algorithm),
``get_task_loss`` (the loss of one task's predictions), ``train_step_single``,
``validation_step``, ``get_iterator``, ``initialize_module`` and skorch's
callbacks. Do not override ``fit``, ``partial_fit``, ``fit_loop`` or
``run_single_epoch``.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import threading
import time
import warnings
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils import ClassifierTags, RegressorTags
from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.exceptions import DeviceWarning
from torch import nn

from . import distributed as D
from . import functional as F
from .modules import MLP
from .tasks import (
    EpisodeSampler,
    TaskSequence,
    _seed_from,
    as_tasks,
    check_task_arrays,
    check_task_size,
    encode_labels,
    group_by_shape,
    split_task,
)

__all__ = ["BaseMetaLearner", "TaskSplit", "MetaBatch", "AdaptedRegressor", "AdaptedClassifier"]


def _copy_module(module: nn.Module, params: F.Params) -> nn.Module:
    """A copy of ``module`` holding ``params`` (detached) and clones of its buffers.

    Every submodule and every dict attribute (parameters, buffers, submodules,
    hooks) is copied, so the copy is independent; other attributes are shared,
    as they are configuration. Several times cheaper than ``copy.deepcopy``.
    """
    def copy_tree(m: nn.Module, prefix: str) -> nn.Module:
        new = copy.copy(m)
        for key, value in vars(m).items():
            if isinstance(value, dict):
                object.__setattr__(new, key, copy.copy(value))
        for name in m._parameters:
            if m._parameters[name] is not None:
                new._parameters[name] = nn.Parameter(
                    params[prefix + name].detach().clone(), requires_grad=False)
        for name, b in m._buffers.items():
            if b is not None:
                new._buffers[name] = b.detach().clone()
        for name, child in m._modules.items():
            if child is not None:
                new._modules[name] = copy_tree(child, f"{prefix}{name}.")
        return new

    return copy_tree(module, "")


def _warn_on_scale(X: np.ndarray) -> None:
    """Warn when features are far from unit scale: gradient steps then misbehave."""
    X = np.asarray(X, dtype=np.float64)
    biggest = float(np.abs(X).max()) if X.size else 0.0
    spread = float(X.std(axis=0).max()) if len(X) > 1 else 1.0
    if biggest > 1e4 or 0 < spread < 1e-4:
        warnings.warn(f"The features of the first task range up to {biggest:.3g} with a largest "
                      f"standard deviation of {spread:.3g}; fixed inner step sizes work best on "
                      "features of unit scale. Consider StandardScaler (long format in a "
                      "Pipeline) or skmeta.TaskTransformer(StandardScaler()) for task lists.",
                      UserWarning, stacklevel=3)


@contextlib.contextmanager
def _mode(module: nn.Module, *, training: bool):
    """Set ``module``'s training mode for a block, then restore it."""
    before = module.training
    module.train(training)
    try:
        yield module
    finally:
        module.train(before)


class TaskSplit:
    """Hold out a share of the *tasks* for meta-validation (never stratified).

    skmeta's counterpart of :class:`skorch.dataset.ValidSplit`: pass it as
    ``train_split``; each epoch the meta-learner adapts to every validation task's
    support set and records the mean query loss as ``valid_loss``, so
    :class:`skorch.callbacks.EarlyStopping` and checkpoints work over tasks.

    Parameters
    ----------
    cv : int or float, default=5
        An int ``k`` holds out one task in ``k``; a float in (0, 1) is the share
        of tasks held out.
    random_state : int or None, default=None
        ``None`` holds out the first tasks (no shuffling); an int shuffles.

    Examples
    --------
    >>> from skmeta import TaskSplit
    >>> train, valid = TaskSplit(5)(list(range(10)))
    >>> len(train), len(valid)
    (8, 2)
    """

    def __init__(self, cv: int | float = 5, random_state: int | None = None):
        self.cv = cv
        self.random_state = random_state

    def __call__(self, tasks: Sequence, y: Any = None, **kwargs: Any):
        n = len(tasks)
        cv = self.cv
        if isinstance(cv, Integral) and not isinstance(cv, bool) and cv >= 2:
            n_valid = n // cv
        elif isinstance(cv, Real) and 0 < cv < 1:
            n_valid = int(np.ceil(n * cv))
        else:
            raise ValueError(f"The 'cv' parameter of TaskSplit must be an int >= 2 or a float in "
                             f"(0, 1). Got {cv!r} instead.")
        if n_valid < 1 or n_valid >= n:
            raise ValueError(f"TaskSplit(cv={cv!r}) cannot split {n} task(s) into non-empty "
                             "training and validation sets.")
        idx = np.arange(n)
        if self.random_state is not None:
            idx = np.random.default_rng(self.random_state).permutation(n)
        return _Subset(tasks, idx[n_valid:]), _Subset(tasks, idx[:n_valid])

    def __repr__(self) -> str:
        return f"TaskSplit(cv={self.cv!r}, random_state={self.random_state!r})"


class _Subset(Sequence):
    def __init__(self, tasks: Sequence, indices: np.ndarray):
        self.tasks, self.indices = tasks, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        return self.tasks[int(self.indices[i])]


class MetaBatch:
    """A meta-batch: tasks split into support/query sets, grouped by shape.

    Attributes
    ----------
    groups : list of (positions, TaskBatch)
        Equally shaped tasks stacked as tensors; ``positions`` are the tasks'
        places in the meta-batch.
    classes : list of ndarray or None
        Classifiers: each task's original labels (output ``i`` is ``classes[t][i]``).
    indices : list of int
        The tasks' indices in the task sequence.
    """

    def __init__(self, groups: list, classes: list | None, indices: list[int]):
        self.groups = groups
        self.classes = classes
        self.indices = indices

    @property
    def task_batches(self) -> list[F.TaskBatch]:
        return [b for _, b in self.groups]

    def __len__(self) -> int:
        return len(self.indices)

    def shard(self, start: int, stop: int) -> MetaBatch:
        """The tasks at positions ``start`` to ``stop - 1``, as a meta-batch of their own."""
        groups = []
        for positions, b in self.groups:
            keep = [j for j, p in enumerate(positions) if start <= p < stop]
            if not keep:
                continue
            if keep == list(range(keep[0], keep[-1] + 1)):  # contiguous: views, no copy
                sub = F.TaskBatch(*(None if t is None else t[keep[0]:keep[-1] + 1] for t in b))
            else:
                idx = torch.as_tensor(keep, device=b.X_support.device)
                sub = F.TaskBatch(*(None if t is None else t.index_select(0, idx) for t in b))
            groups.append(([positions[j] - start for j in keep], sub))
        classes = None if self.classes is None else self.classes[start:stop]
        return MetaBatch(groups, classes, self.indices[start:stop])

    @property
    def shape_key(self) -> tuple:
        return tuple((len(pos), tuple(b.X_support.shape[1:]), None if b.X_query is None else
                      tuple(b.X_query.shape[1:])) for pos, b in self.groups)


_SHUFFLE_LIMIT = 10_000_000  # above this many tasks, an epoch samples tasks with replacement


class _TaskIterator:
    """Iterable over the meta-batches of one epoch (re-iterable every epoch)."""

    def __init__(self, net: BaseMetaLearner, tasks: Sequence, training: bool):
        self.net, self.tasks, self.training = net, tasks, training

    def __len__(self) -> int:
        return int(np.ceil(len(self.tasks) / self.net.batch_size))

    def __iter__(self):
        net = self.net
        if self.training:
            rng = net.rng_
            n = len(self.tasks)
            if n > _SHUFFLE_LIMIT:  # a huge lazy sequence: sample, never list every index
                for _ in range(len(self)):
                    idx = rng.integers(0, n, size=net.batch_size)
                    yield net.get_meta_batch(self.tasks, idx, rng, training=True)
                return
            order = rng.permutation(n)
        else:  # the same validation splits every epoch
            rng = np.random.default_rng([net.seed_, 1])
            order = np.arange(len(self.tasks))
        for start in range(0, len(order), net.batch_size):
            yield net.get_meta_batch(self.tasks, order[start:start + net.batch_size], rng,
                                     training=self.training)


_SHARED_CONSTRAINTS: dict[str, list] = {
    "lr": [Interval(Real, 0, None, closed="neither")],
    "max_epochs": [Interval(Integral, 0, None, closed="left")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "inner_lr": [Interval(Real, 0, None, closed="neither")],
    "inner_steps": [Interval(Integral, 1, None, closed="left")],
    "adapt_steps": [Interval(Integral, 0, None, closed="left"), None],
    "k_shot": [Interval(Integral, 1, None, closed="left")],
    "n_query": [Interval(Integral, 1, None, closed="left"), None],
    "engine": [StrOptions({"auto", "vmap", "loop"})],
    "chunk_size": [Interval(Integral, 1, None, closed="left"), None],
    "random_state": ["random_state"],
    "warm_start": ["boolean"],
    "verbose": [Interval(Integral, 0, None, closed="left"), "boolean"],
    "device": [str, torch.device, None],
    "train_split": [callable, None],
    "callbacks": [list, StrOptions({"disable"}), None],
    "distributed": ["boolean"],
}


class BaseMetaLearner(NeuralNet):
    """Shared machinery of skmeta's meta-learners (not for direct use).

    Subclasses implement :meth:`get_meta_gradient`; the classifier/regressor
    specifics live in :class:`_RegressorShell` and :class:`_ClassifierShell`.
    """

    _parameter_constraints: dict[str, list] = dict(_SHARED_CONSTRAINTS)
    _estimator_kind = "meta-learner"
    _classification = False
    _second_order = False  # does the meta-gradient differentiate through inner steps?

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

    def __init__(self, module=MLP, *, criterion, optimizer, lr, inner_steps, max_epochs=10,
                 batch_size=25, inner_lr=0.01, adapt_steps=None, k_shot=5, n_query=None,
                 engine="auto", chunk_size=None, random_state=None, train_split=None,
                 callbacks=None, warm_start=False, verbose=1, device="cpu", distributed=False,
                 compile=False, torch_load_kwargs=None, **kwargs):
        # NeuralNet.__init__ would add skorch parameters that do not apply to tasks
        # (iterator_*, dataset, predict_nonlinearity, use_caching); we store ours and
        # reproduce the rest of its bookkeeping. vars().update bypasses skorch's
        # __setattr__, which treats torch modules set after construction specially.
        vars(self).update(
            module=module, criterion=criterion, optimizer=optimizer, lr=lr,
            max_epochs=max_epochs, batch_size=batch_size, inner_lr=inner_lr,
            inner_steps=inner_steps, adapt_steps=adapt_steps, k_shot=k_shot, n_query=n_query,
            engine=engine, chunk_size=chunk_size, random_state=random_state,
            train_split=train_split, callbacks=callbacks, warm_start=warm_start,
            verbose=verbose, device=device, distributed=distributed, compile=compile,
            torch_load_kwargs=torch_load_kwargs)
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

    def _check_params(self) -> None:
        validate_parameter_constraints(self._parameter_constraints,
                                       self.get_params(deep=False),
                                       caller_name=type(self).__name__)

    def _validate_params(self):
        known = (set(self._get_param_names()) | set(self._parameter_constraints)) \
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

    # ------------------------------------------------------------ fitting entry

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
        tasks = self._prepare_fit(X, y, groups)
        if not self.warm_start or not self.initialized_:
            self.initialize()
            self._check_module_output(tasks)
        NeuralNet.partial_fit(self, tasks, None, _routing_method="fit", **fit_params)
        return self._sync_ranks()

    def partial_fit(self, X, y=None, classes=None, groups=None, **fit_params):
        """Continue meta-training for ``max_epochs`` more epochs, without re-initialising.

        Accepts the same task forms as :meth:`fit` (``classes`` is accepted for
        scikit-learn compatibility and unused: each task brings its own classes).
        A ``KeyboardInterrupt`` stops training cleanly after the last completed
        meta-update.
        """
        tasks = self._prepare_fit(X, y, groups)
        if not self.initialized_:
            self.initialize()
            self._check_module_output(tasks)
        NeuralNet.partial_fit(self, tasks, None, **fit_params)
        return self._sync_ranks()

    def _check_module_output(self, tasks) -> None:
        """Fail early, and clearly, when the network's output does not fit the tasks."""
        X0 = tasks[0][0][:4]
        with torch.no_grad(), self._functional_lock:
            out = self.module_(self._to_tensor(X0))
        expected = self._n_outputs()
        if out.dim() != 2 or out.shape[0] != len(X0) or out.shape[1] != expected:
            what = f"n_way={self.n_way} logits" if self._classification else \
                f"{expected} output(s), one per target"
            raise ValueError(f"The module maps {len(X0)} examples to an output of shape "
                             f"{tuple(out.shape)}; {type(self).__name__} needs shape "
                             f"({len(X0)}, {expected}): {what}. Set the module's output size "
                             "(e.g. module__n_outputs) to match.")

    def _prepare_fit(self, X, y, groups) -> TaskSequence:
        self._check_params()
        D.check_not_skorch_accelerate(self)
        self._check_device_available()
        self._ensure_distributed()
        tasks = self._as_tasks(X, y, groups)
        first = tasks[0]
        X0 = first[0]
        y0 = first[1]
        if self.initialized_ and hasattr(self, "input_shape_"):
            if tuple(X0.shape[1:]) != tuple(self.input_shape_):
                raise ValueError(f"The tasks have input shape {tuple(X0.shape[1:])} but "
                                 f"{type(self).__name__} was fitted on {self.input_shape_}.")
        else:
            self.input_shape_ = tuple(X0.shape[1:])
            self._set_target_info(y0)
        _warn_on_scale(X0)
        return tasks

    def _as_tasks(self, X, y=None, groups=None) -> TaskSequence:
        return as_tasks(X, y, groups, classification=self._classification,
                        pool_sampler=self._pool_sampler())

    def _pool_sampler(self):
        return None

    def _check_device_available(self) -> None:
        try:
            dev = torch.device(self.device if self.device is not None else "cpu")
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"The 'device' parameter of {type(self).__name__} must name a "
                             f"torch device such as 'cpu', 'cuda' or 'cuda:1'. Got "
                             f"{self.device!r} instead.") from exc
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"device={self.device!r} was requested but CUDA is not "
                                 "available on this machine (torch.cuda.is_available() is "
                                 "False). Use device='cpu' or install a CUDA build of torch.")
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise ValueError(f"device={self.device!r} was requested but only "
                                 f"{torch.cuda.device_count()} CUDA device(s) exist.")

    # ------------------------------------------------------------- distributed

    @property
    def _device(self):
        """The device tensors are made on (``device``; Accelerate overrides it)."""
        return self.device

    def _ensure_distributed(self) -> None:
        if self.distributed:
            D.ensure_process_group(type(self).__name__, self._device)

    def _world(self) -> tuple[int, int]:
        """``(rank, world_size)`` of this meta-training run; ``(0, 1)`` on one process."""
        return D.rank_and_world() if self.distributed else (0, 1)

    def _shared_random_state(self):
        """``random_state``; on several ranks, unless it is an int, one seed drawn by rank 0."""
        if isinstance(self.random_state, Integral) or self._world()[1] == 1:
            return self.random_state
        return D.broadcast_seed(_seed_from(self.random_state), self._device)

    def _sync_ranks(self):
        """Give every rank rank 0's parameters (at ``initialize``, and after ``fit``: callbacks
        such as ``Checkpoint(load_best=True)`` run on rank 0 only)."""
        if self._world()[1] > 1:
            with self._functional_lock:
                D.broadcast_module(self.module_)
        return self

    def notify(self, method_name, **cb_kwargs):
        """Call the net's and the callbacks' ``method_name``; on ranks other than 0,
        skip the callbacks that write (see :func:`skmeta.distributed.runs_on_rank`)."""
        rank = self._world()[0]
        if rank == 0:
            return super().notify(method_name, **cb_kwargs)
        getattr(self, method_name)(self, **cb_kwargs)
        for _, cb in self.callbacks_:
            if D.runs_on_rank(cb, rank):
                getattr(cb, method_name)(self, **cb_kwargs)

    # ---------------------------------------------------------- initialisation

    def initialize(self):
        """Initialise module, criterion, optimizer, history and random streams."""
        seed = _seed_from(self.random_state)
        ss = np.random.SeedSequence(seed)
        self.seed_ = int(ss.generate_state(1)[0])
        if self._world()[1] > 1:  # every rank draws what rank 0 draws
            self.seed_ = D.broadcast_seed(self.seed_, self._device)
        self.rng_ = np.random.default_rng([self.seed_, 0])
        self.engine_ = {}
        self.engine_timings_ = {}
        super().initialize()
        return self._sync_ranks()  # e.g. a module instance loaded on rank 0 only

    def get_module_kwargs(self) -> dict:
        """``module__*`` parameters, with sizes filled in from the data.

        Sizes are filled in only for a module *class* whose constructor has an
        ``in_features`` and/or ``n_outputs`` parameter that was not set.
        """
        kwargs = self.get_params_for("module")
        if isinstance(self.module, nn.Module) or not callable(self.module):
            return kwargs
        try:
            import inspect

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
        """Build the module; its initial weights are seeded by ``random_state``."""
        kwargs = self.get_module_kwargs()
        devices = [torch.device(self._device)] if str(self._device).startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):  # leaves the global RNG untouched
            torch.manual_seed(int(np.random.SeedSequence([self.seed_, 2]).generate_state(1)[0]))
            module = self.initialized_instance(self.module, kwargs)
        self.module_ = module
        if isinstance(self.module, nn.Module) and "module" not in self.cuda_dependent_attributes_:
            # a module passed as an instance must also load on a machine without CUDA
            self.cuda_dependent_attributes_ = self.cuda_dependent_attributes_ + ["module"]
        return self

    def initialize_criterion(self):
        kwargs = self.get_params_for("criterion")
        self.criterion_ = self.initialized_instance(self.criterion, kwargs)
        return self

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
        return _TaskIterator(self, dataset, training)

    def _dtype(self) -> torch.dtype:
        with self._functional_lock:  # another thread may have tensors swapped in
            for p in self.module_.parameters():
                if p.is_floating_point():
                    return p.dtype
        return torch.get_default_dtype()

    def _to_tensor(self, a: np.ndarray | None, target: bool = False) -> torch.Tensor | None:
        if a is None:
            return None
        if target and self._classification:
            return torch.as_tensor(a, dtype=torch.long, device=self._device)
        return torch.as_tensor(a, dtype=self._dtype(), device=self._device)

    def get_meta_batch(self, tasks: Sequence, indices, rng: np.random.Generator, *,
                       training: bool, need_query: bool = True) -> MetaBatch:
        """Split tasks ``indices`` into support and query sets and stack them by shape."""
        stacked = None if self._classification else getattr(tasks, "stacked", lambda: None)()
        if stacked is not None:
            return self._stacked_meta_batch(stacked, np.asarray(indices, dtype=np.int64), rng,
                                            need_query)
        split, classes = [], []
        for i in indices:
            i = int(i)
            where = f"task {i}"
            Xs, ys, Xq, yq = split_task(tasks[i], k_shot=self.k_shot, n_query=self.n_query,
                                        rng=rng, classification=self._classification,
                                        where=where, need_query=need_query)
            cls, ys, yq = self._encode_targets(ys, yq, rng=rng if training else None,
                                               where=where)
            split.append((Xs, ys, Xq, yq))
            classes.append(cls)
        groups = []
        for positions, (Xs, ys, Xq, yq) in group_by_shape(split):
            groups.append((positions, F.TaskBatch(
                self._to_tensor(Xs), self._to_tensor(ys, True), self._to_tensor(Xq),
                self._to_tensor(yq, True))))
        return MetaBatch(groups, classes if self._classification else None,
                         [int(i) for i in indices])

    def _stacked_meta_batch(self, stacked, idx: np.ndarray, rng: np.random.Generator,
                            need_query: bool) -> MetaBatch:
        """Fast path: equally sized (X, y) regression tasks, split with one vectorised draw."""
        X_all, y_all = stacked
        n = X_all.shape[1]
        k = self.k_shot
        check_task_size(n, k_shot=k, n_query=self.n_query, need_query=need_query,
                        where=f"task {int(idx[0])}")
        perms = np.argsort(rng.random((len(idx), n)), axis=1)  # one permutation per task
        X = X_all[idx[:, None], perms]
        y = y_all[idx[:, None], perms]
        if y.ndim == 2:
            y = y[..., None]
        q_end = n if self.n_query is None else k + self.n_query
        batch = F.TaskBatch(self._to_tensor(X[:, :k]), self._to_tensor(y[:, :k]),
                            self._to_tensor(X[:, k:q_end]), self._to_tensor(y[:, k:q_end]))
        return MetaBatch([(list(range(len(idx))), batch)], None, idx.tolist())

    # ----------------------------------------------------------------- engines

    @property
    def _functional_lock(self) -> threading.RLock:
        # functional_call swaps tensors into the module while it runs: serialise
        return self.__dict__.setdefault("_lock_", threading.RLock())

    def _named_tensors(self) -> tuple[F.Params, F.Params]:
        return dict(self.module_.named_parameters()), dict(self.module_.named_buffers())

    def _engine_for(self, kind: str, batch: MetaBatch | None = None) -> str:
        """The engine for ``kind`` ('train' or 'adapt'): fixed, or chosen by timing."""
        if self.engine == "loop":
            return "loop"
        if self.engine == "auto" and kind in self.engine_:
            return self.engine_[kind]
        second_order = kind == "train" and self._second_order
        ok, reason = F.vmap_support(self.module_, second_order=second_order)
        if self.engine == "vmap":
            if not ok:
                raise ValueError(f"engine='vmap' cannot run this module: {reason}. Use "
                                 "engine='loop' or 'auto', or skmeta.modules.BatchNorm.")
            return "vmap"
        if not ok:
            self.engine_[kind] = "loop"
            return "loop"
        if kind in self.engine_:
            return self.engine_[kind]
        if batch is None or len(batch) < 2:
            return "vmap"
        on_cpu = torch.device(self._device or "cpu").type == "cpu"
        if on_cpu and any(isinstance(m, nn.modules.conv._ConvNd) for m in self.module_.modules()):
            # measured on CPU: vmapped convolutions run grouped, 3-6x slower than the loop
            self.engine_[kind] = "loop"
            return "loop"
        # 'auto': time both engines on the first meta-batches (warm-up, then timed)
        trials = self.engine_timings_.setdefault(kind, {"vmap": [], "loop": []})
        candidate = "vmap" if len(trials["vmap"]) <= len(trials["loop"]) else "loop"
        return candidate

    def _record_engine_time(self, kind: str, engine: str, seconds: float) -> None:
        if self.engine != "auto" or kind in self.engine_:
            return
        trials = self.engine_timings_.setdefault(kind, {"vmap": [], "loop": []})
        trials[engine].append(seconds)
        if len(trials["vmap"]) >= 2 and len(trials["loop"]) >= 2:
            # the first call of each is a warm-up
            self.engine_[kind] = min(("vmap", "loop"), key=lambda e: min(trials[e][1:]))

    def _timed(self, kind: str, batch: MetaBatch | None, fn):
        engine = self._engine_for(kind, batch)
        if str(self._device).startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn(engine)
        if str(self._device).startswith("cuda"):
            torch.cuda.synchronize()
        if batch is not None and len(batch) >= 2:
            self._record_engine_time(kind, engine, time.perf_counter() - t0)
        return out

    # ------------------------------------------------------------------- steps

    def get_task_loss(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """Loss of one task's predictions (support or query); the criterion by default."""
        return self.criterion_(y_pred, y_true)

    def get_meta_gradient(self, batch: MetaBatch, engine: str) -> tuple[torch.Tensor, F.Params]:
        """Return ``(mean query loss, gradient for each meta-parameter)``.

        The one hook every algorithm implements, with the functions of
        :mod:`skmeta.functional`.
        """
        raise NotImplementedError

    def train_step_single(self, batch: MetaBatch, **fit_params):
        """Compute the meta-gradient of one meta-batch and store it in ``.grad``.

        On several ranks, this rank computes its share of the tasks and the
        mean over the whole meta-batch is all-reduced (:mod:`skmeta.distributed`).
        """
        self._set_training(True)
        trainable = [(name, p) for name, p in self.module_.named_parameters() if p.requires_grad]

        def meta_gradient(b: MetaBatch) -> list[torch.Tensor]:
            with self._functional_lock:
                loss, grads = self._timed("train", b,
                                          lambda engine: self.get_meta_gradient(b, engine))
            return [loss] + [grads[name] for name, _ in trainable]

        def zeros() -> list[torch.Tensor]:
            device = trainable[0][1].device
            return [torch.zeros((), dtype=self._dtype(), device=device)] + \
                [torch.zeros_like(p) for _, p in trainable]

        loss, *values = self._mean_over_tasks(batch, meta_gradient, zeros,
                                              what=f"the meta-step of epoch {len(self.history)}")
        grads = {name: g for (name, _), g in zip(trainable, values)}
        # one reduction checks everything: NaN/inf in any gradient propagates to the sum
        total = loss + torch.stack([grads[name].sum() for name, _ in trainable]).sum()
        if not torch.isfinite(total):
            self._raise_non_finite(loss, grads, trainable)
        for name, p in trainable:
            p.grad = grads[name] if p.grad is None else p.grad + grads[name]
        return {"loss": loss, "y_pred": None}

    def _mean_over_tasks(self, batch: MetaBatch, compute, zeros, *, what: str) -> list:
        """``compute(batch)``: tensors that are means over the meta-batch's tasks.

        On several ranks, ``compute`` runs on this rank's share of the tasks and the
        mean over the whole meta-batch is all-reduced; a rank that fails contributes
        ``zeros()`` and a failure flag, so every rank raises (see
        :func:`skmeta.distributed.all_reduce_mean`).
        """
        rank, world = self._world()
        if world == 1:
            return compute(batch)
        start, stop = D.shard_bounds(len(batch), rank, world)
        values, error = None, None
        try:
            local = batch.shard(start, stop)
            if len(local):
                values = compute(local)
        except Exception as exc:  # the other ranks must learn of it
            error = exc
        return D.all_reduce_mean(zeros() if values is None else values, weight=stop - start,
                                 total=len(batch), error=error, what=what)

    def _raise_non_finite(self, loss, grads, trainable):
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"The meta-loss became {loss.item()} at epoch {len(self.history)}; the inner "
                f"learning rate (inner_lr={self.inner_lr}) or the meta learning rate "
                f"(lr={self.lr}) is probably too large, or the features are far from unit "
                "scale. The meta-parameters of the last finite meta-update were kept.")
        for name, _ in trainable:
            if not torch.isfinite(grads[name]).all():
                raise FloatingPointError(
                    f"The meta-gradient of {name!r} is not finite; lower inner_lr "
                    f"({self.inner_lr}) or lr ({self.lr}). The meta-parameters of the last "
                    "finite meta-update were kept.")
        raise FloatingPointError("The meta-gradient overflowed when summed; lower lr.")

    def _saved_attributes(self) -> list[str]:
        """Fitted attributes (other than tensors) that :func:`skmeta.save` stores."""
        return ["input_shape_", "n_outputs_", "seed_", "engine_", "engine_timings_"]

    def save(self, path) -> None:
        """Save in skmeta's safe format (tensors + JSON); see :func:`skmeta.save`."""
        from .persistence import save

        save(self, path)

    def get_adaptation_module(self) -> nn.Module:
        """The network that ``adapt``, ``score`` and meta-validation fine-tune.

        The meta-learned module itself by default; an algorithm whose adaptation
        starts from another network (e.g. a fresh classification head) overrides it.
        """
        return self.module_

    def _adapt_groups(self, batch: MetaBatch, module: nn.Module, *, steps: int,
                      inner_lr: float, kind: str = "adapt") -> list[F.Params]:
        """Adapted parameters of ``module`` for every group of ``batch`` (stacked per group)."""

        def run(engine):
            # read the parameters under the lock: another thread may have swapped them
            params, buffers = dict(module.named_parameters()), dict(module.named_buffers())
            return [F.adapt(module, params, buffers, b, loss_fn=self.get_task_loss,
                            inner_lr=inner_lr, steps=steps, engine=engine,
                            chunk_size=self.chunk_size)
                    for b in batch.task_batches]

        with self._functional_lock, _mode(module, training=True):
            # inner steps run in training mode, as during meta-training
            return self._timed(kind, batch, run)

    def _evaluate(self, batch: MetaBatch, *, steps: int | None = None,
                  inner_lr: float | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Adapt on the support sets; return per-task query losses and predictions."""
        steps = self._adapt_steps() if steps is None else steps
        inner_lr = self.inner_lr if inner_lr is None else inner_lr
        module = self.get_adaptation_module()
        fasts = self._adapt_groups(batch, module, steps=steps, inner_lr=inner_lr)
        losses: list = [None] * len(batch)
        preds: list = [None] * len(batch)
        engine = self._engine_for("adapt")  # as chosen for the adaptation just run
        with self._functional_lock, _mode(module, training=False):
            buffers = dict(module.named_buffers())
            for (positions, b), fast in zip(batch.groups, fasts):
                out = F.predict(module, fast, buffers, b.X_query, engine=engine,
                                chunk_size=self.chunk_size)
                with torch.no_grad():
                    for j, pos in enumerate(positions):
                        losses[pos] = self.get_task_loss(out[j], b.y_query[j])
                        preds[pos] = out[j]
        return losses, preds

    def validation_step(self, batch: MetaBatch, **fit_params):
        """Mean post-adaptation query loss of a meta-batch of validation tasks.

        On several ranks, each evaluates its share and the mean is all-reduced,
        so callbacks such as early stopping decide the same on every rank.
        """
        (loss,) = self._mean_over_tasks(
            batch, lambda b: [torch.stack(self._evaluate(b)[0]).mean()],
            lambda: [torch.zeros((), dtype=self._dtype(), device=self._device)],
            what=f"meta-validation in epoch {len(self.history)}")
        return {"loss": loss, "y_pred": None}

    def _adapt_steps(self) -> int:
        return self.inner_steps if self.adapt_steps is None else self.adapt_steps

    # ------------------------------------------------------------ adapt, score

    def _check_adapt_args(self, steps, lr) -> tuple[int, float]:
        check_is_fitted(self, ["module_", "input_shape_"])
        steps = self._adapt_steps() if steps is None else steps
        lr = self.inner_lr if lr is None else lr
        validate_parameter_constraints(
            {"steps": [Interval(Integral, 0, None, closed="left")],
             "lr": [Interval(Real, 0, None, closed="neither")]},
            {"steps": steps, "lr": lr}, caller_name=f"{type(self).__name__}.adapt")
        return int(steps), float(lr)

    def adapt(self, X_support, y_support, *, steps: int | None = None, lr: float | None = None):
        """Adapt the meta-learned initialisation to one task.

        Takes ``steps`` (default ``adapt_steps``) gradient steps of size ``lr``
        (default ``inner_lr``) on the support set, from the meta-parameters. The
        meta-learner itself is left untouched.

        Parameters
        ----------
        X_support : array-like of shape (n_support, \\*input_shape)
        y_support : array-like of shape (n_support,) or (n_support, n_targets)
        steps : int, default=None
            Number of adaptation steps; 0 returns the meta-parameters as a model.
        lr : float, default=None
            Adaptation step size.

        Returns
        -------
        adapted : AdaptedRegressor or AdaptedClassifier
            A small, picklable, fitted estimator for this task.
        """
        return self.adapt_tasks([(X_support, y_support)], steps=steps, lr=lr)[0]

    def adapt_tasks(self, tasks, *, steps: int | None = None, lr: float | None = None) -> list:
        """Adapt to many tasks at once (vectorised when shapes agree).

        Parameters
        ----------
        tasks : sequence of (X_support, y_support) pairs or of :class:`~skmeta.Task`
            Only the support sets are used.
        steps, lr : see :meth:`adapt`

        Returns
        -------
        adapted : list of AdaptedRegressor or AdaptedClassifier
        """
        steps, lr = self._check_adapt_args(steps, lr)
        seq = TaskSequence(list(tasks), classification=self._classification)
        split, classes, y_ndims = [], [], []
        for i in range(len(seq)):
            t = seq[i]
            Xs, ys = t[0], t[1]  # a Task's support set, or an (X, y) pair
            self._check_input_shape(Xs, f"task {i}")
            if not self._classification:
                n_targets = 1 if np.ndim(ys) == 1 else np.shape(ys)[1]
                if n_targets != self.n_outputs_:
                    raise ValueError(f"task {i}: y_support has {n_targets} target(s) but "
                                     f"{type(self).__name__} was fitted on {self.n_outputs_}.")
            cls, ys_enc, _ = self._encode_targets(ys, None, rng=None, where=f"task {i}")
            split.append((Xs, ys_enc, None, None))
            classes.append(cls)
            y_ndims.append(np.ndim(ys))
        out: list = [None] * len(split)
        module = self.get_adaptation_module()
        for positions, (Xs, ys, _, _) in group_by_shape(split):
            batch = MetaBatch([(list(range(len(positions))),
                                F.TaskBatch(self._to_tensor(Xs), self._to_tensor(ys, True)))],
                              None, positions)
            fast = self._adapt_groups(batch, module, steps=steps, inner_lr=lr)[0]
            with self._functional_lock:  # copying must not see another call's swapped tensors
                for j, pos in enumerate(positions):
                    out[pos] = self._make_adapted(module, {k: v[j] for k, v in fast.items()},
                                                  classes[pos], y_ndims[pos])
        return out

    def _check_input_shape(self, X: np.ndarray, where: str) -> None:
        if tuple(X.shape[1:]) != tuple(self.input_shape_):
            raise ValueError(f"{where}: X has input shape {tuple(X.shape[1:])} but "
                             f"{type(self).__name__} was fitted on {self.input_shape_}.")

    def _make_adapted(self, module: nn.Module, fast: F.Params, classes, y_ndim: int):
        copied = _copy_module(module, fast)
        copied.eval()
        adapted = self._adapted_class()._from_meta(self, copied, classes, y_ndim)
        if not isinstance(self.module, nn.Module):  # rebuildable from its class (safe format)
            kwargs = self.get_module_kwargs()
            if "n_outputs" in kwargs:
                kwargs["n_outputs"] = self._adapted_n_outputs()
            adapted.module_class_ = self.module
            adapted.module_kwargs_ = kwargs
        return adapted

    def _adapted_n_outputs(self) -> int:
        """Output size of the adaptation module (to rebuild adapted models from their class)."""
        return int(self._n_outputs())

    def _iter_score_batches(self, tasks: TaskSequence, batch_size: int = 256):
        rng = np.random.default_rng([_seed_from(self.random_state) if self.random_state
                                     is not None else self.seed_, 3])
        for start in range(0, len(tasks), batch_size):
            idx = np.arange(start, min(start + batch_size, len(tasks)))
            yield self.get_meta_batch(tasks, idx, rng, training=False)

    def score(self, X, y=None, groups=None, sample_weight=None):
        """Mean score over tasks after adaptation (R² or accuracy).

        Each task is adapted on its support set (``k_shot`` examples, per class
        for classifiers, drawn with ``random_state``) and scored on its query set;
        the per-task scores are averaged. Accepts the task forms of :meth:`fit`.
        ``sample_weight`` exists for scikit-learn's API and must be None: every
        task counts equally.
        """
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__}.score averages per-task scores, each task "
                             "counting once; per-example sample_weight is not supported.")
        return float(np.mean(self.score_tasks(X, y, groups)))

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
        """
        check_is_fitted(self, ["module_", "input_shape_"])
        self._check_params()
        tasks = self._as_tasks(X, y, groups)
        scores = []
        for batch in self._iter_score_batches(tasks):
            _, preds = self._evaluate(batch)
            if metric is None:  # vectorised over the tasks of each group
                batch_scores = np.empty(len(batch))
                for positions, b in batch.groups:
                    pred = torch.stack([preds[p] for p in positions])
                    batch_scores[positions] = self._default_scores(batch, positions, b, pred)
                scores.extend(batch_scores)
            else:
                for t, pred in enumerate(preds):
                    scores.append(self._task_score(batch, t, pred, metric))
        return np.asarray(scores, dtype=float)

    def predict(self, X):
        """Not available on the meta-learner: adapt first.

        Raises
        ------
        TypeError
            Always; use ``adapt(X_support, y_support).predict(X)`` (``steps=0``
            predicts with the meta-parameters themselves).
        """
        raise TypeError(f"{type(self).__name__}.predict needs a task: call "
                        "adapt(X_support, y_support) and predict with the adapted model it "
                        "returns (adapt(..., steps=0) predicts with the meta-parameters). "
                        "For GridSearchCV/cross_val_score scoring, use the default (score) or "
                        "skmeta.metrics.get_task_scorer(...) instead of a scikit-learn "
                        "scoring string.")

    def predict_proba(self, X):
        """Not available on the meta-learner: adapt first (see :meth:`predict`)."""
        self.predict(X)

    # ----------------------------------------------------------------- pickling

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_lock_", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)


# ---------------------------------------------------------------------------
# classifier / regressor specifics


class _RegressorShell:
    """Regression specifics (mixed in before the algorithm's base class)."""

    _classification = False
    _estimator_kind = "regressor"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "regressor"
        tags.regressor_tags = RegressorTags()
        return tags

    def __init__(self, module=MLP, *, criterion=nn.MSELoss, **kwargs):
        super().__init__(module, criterion=criterion, **kwargs)

    def _set_target_info(self, y0: np.ndarray) -> None:
        self.n_outputs_ = 1 if y0.ndim == 1 else int(y0.shape[1])

    def _n_outputs(self) -> int | None:
        return getattr(self, "n_outputs_", None)

    def _encode_targets(self, ys, yq, *, rng, where):
        def two_d(a):
            return None if a is None else (a.reshape(-1, 1) if a.ndim == 1 else a)

        return None, two_d(ys), two_d(yq)

    def _task_score(self, batch: MetaBatch, t: int, pred: torch.Tensor, metric) -> float:
        from sklearn.metrics import r2_score

        pos, b = _locate(batch, t)
        y_true = b.y_query[pos].detach().cpu().numpy()
        y_pred = pred.detach().cpu().numpy()
        return float((metric or r2_score)(y_true, y_pred))

    def _default_scores(self, batch: MetaBatch, positions, b: F.TaskBatch,
                        pred: torch.Tensor) -> np.ndarray:
        """R² of every task of a group, as sklearn's r2_score (uniform average, finite)."""
        y = b.y_query.to(torch.float64)
        p = pred.to(torch.float64).reshape(y.shape)
        ss_res = ((y - p) ** 2).sum(1)
        ss_tot = ((y - y.mean(1, keepdim=True)) ** 2).sum(1)
        r2 = 1 - ss_res / torch.where(ss_tot > 0, ss_tot, torch.ones_like(ss_tot))
        r2 = torch.where(ss_tot > 0, r2, (ss_res == 0).to(r2.dtype))
        return r2.mean(-1).cpu().numpy()

    def _adapted_class(self):
        return AdaptedRegressor


class _ClassifierShell:
    """Classification specifics (mixed in before the algorithm's base class)."""

    _classification = True
    _estimator_kind = "classifier"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags()
        return tags

    def __init__(self, module=MLP, *, criterion=nn.CrossEntropyLoss, n_way=5, n_episodes=1000,
                 **kwargs):
        self.n_way = n_way
        self.n_episodes = n_episodes
        super().__init__(module, criterion=criterion, **kwargs)

    def _set_target_info(self, y0: np.ndarray) -> None:
        self.n_outputs_ = int(self.n_way)

    def _n_outputs(self) -> int | None:
        return int(self.n_way)

    def _pool_sampler(self):
        def sampler(X, y):
            return EpisodeSampler(X, y, n_way=self.n_way, k_shot=self.k_shot,
                                  n_query=15 if self.n_query is None else self.n_query,
                                  n_episodes=self.n_episodes,
                                  random_state=self._shared_random_state())

        return sampler

    def _encode_targets(self, ys, yq, *, rng, where):
        perm = None if rng is None else rng.permutation(self.n_way)
        return encode_labels(ys, yq, n_way=self.n_way, where=where, permutation=perm)

    def _task_score(self, batch: MetaBatch, t: int, pred: torch.Tensor, metric) -> float:
        from sklearn.metrics import accuracy_score

        pos, b = _locate(batch, t)
        classes = batch.classes[t]
        y_true = classes[b.y_query[pos].cpu().numpy()]
        y_pred = classes[pred[:, :len(classes)].argmax(-1).cpu().numpy()]
        return float((metric or accuracy_score)(y_true, y_pred))

    def _default_scores(self, batch: MetaBatch, positions, b: F.TaskBatch,
                        pred: torch.Tensor) -> np.ndarray:
        """Accuracy of every task of a group, predicting among each task's own classes."""
        n_cls = torch.tensor([len(batch.classes[p]) for p in positions], device=pred.device)
        outside = torch.arange(pred.shape[-1], device=pred.device) >= n_cls[:, None, None]
        logits = pred.masked_fill(outside, float("-inf"))
        return (logits.argmax(-1) == b.y_query).to(torch.float64).mean(1).cpu().numpy()

    def _adapted_class(self):
        return AdaptedClassifier


def _locate(batch: MetaBatch, t: int) -> tuple[int, F.TaskBatch]:
    for positions, b in batch.groups:
        if t in positions:
            return positions.index(t), b
    raise IndexError(t)


CLASSIFIER_CONSTRAINTS = {
    "n_way": [Interval(Integral, 2, None, closed="left")],
    "n_episodes": [Interval(Integral, 1, None, closed="left")],
}


# ---------------------------------------------------------------------------
# adapted models


class _AdaptedModel(BaseEstimator):
    """A model adapted to one task: a module copy with the task's weights.

    Plain and small: it holds a copy of the network with the adapted weights as
    leaf tensors (no autograd graph), the device and, for classifiers, the task's
    labels. It pickles with pickle and joblib; a model adapted on CUDA loads on a
    machine without CUDA (on the CPU, with a warning).
    """

    @classmethod
    def _from_meta(cls, meta: BaseMetaLearner, module: nn.Module, classes, y_ndim: int):
        self = cls()
        self.module_ = module
        self.device_ = str(meta._device) if meta._device is not None else "cpu"
        self.input_shape_ = tuple(meta.input_shape_)
        self.n_features_in_ = int(np.prod(self.input_shape_))
        self.y_ndim_ = y_ndim
        self.meta_estimator_ = type(meta).__name__
        if classes is not None:
            self.classes_ = classes
        return self

    def _forward(self, X) -> torch.Tensor:
        if not hasattr(self, "module_"):
            raise NotFittedError(f"This {type(self).__name__} holds no model; get one from "
                                 "a meta-learner's adapt(X_support, y_support).")
        X, _ = check_task_arrays(X, np.zeros(len(X)), where="X", classification=True)
        if tuple(X.shape[1:]) != self.input_shape_:
            raise ValueError(f"X has input shape {tuple(X.shape[1:])} but the model was adapted "
                             f"on {self.input_shape_}.")
        dtype = next((p.dtype for p in self.module_.parameters() if p.is_floating_point()),
                     torch.float32)
        with torch.no_grad():
            return self.module_(torch.as_tensor(X, dtype=dtype, device=self.device_))

    def __getstate__(self):
        state = self.__dict__.copy()
        if not str(self.device_).startswith("cpu"):
            state["module_"] = copy.deepcopy(self.module_).to("cpu")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        dev = torch.device(self.device_)
        if dev.type == "cuda":
            if torch.cuda.is_available():
                self.module_ = self.module_.to(dev)
            else:
                warnings.warn(f"This model was adapted on {self.device_}, which is not available "
                              "here; it was loaded on the CPU.", DeviceWarning, stacklevel=2)
                self.device_ = "cpu"

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "module_")

    def save(self, path) -> None:
        """Save in skmeta's safe format (tensors + JSON); see :func:`skmeta.save`."""
        from .persistence import save

        save(self, path)

    def fit(self, X, y=None):
        """Not supported: adapted models come from a meta-learner's ``adapt``.

        Raises
        ------
        TypeError
            Always; call ``meta_learner.adapt(X_support, y_support)`` instead.
        """
        raise TypeError(f"{type(self).__name__} is made by a meta-learner's adapt(X_support, "
                        "y_support); to adapt to other data, call adapt on the meta-learner.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(from {getattr(self, 'meta_estimator_', '?')})"


class AdaptedRegressor(RegressorMixin, _AdaptedModel):
    """A regressor adapted to one task by :meth:`BaseMetaLearner.adapt`.

    Attributes
    ----------
    module_ : torch.nn.Module
        The network with the task's adapted weights (evaluation mode).
    device_ : str
    n_features_in_ : int

    Examples
    --------
    >>> import pickle
    >>> from skmeta import MAMLRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=20, random_state=0)
    >>> maml = MAMLRegressor(k_shot=10, max_epochs=1, verbose=0, random_state=0).fit(tasks)
    >>> X, y = tasks[0]
    >>> adapted = maml.adapt(X[:10], y[:10], steps=5)
    >>> type(adapted).__name__, adapted.predict(X[10:]).shape
    ('AdaptedRegressor', (10,))
    >>> (pickle.loads(pickle.dumps(adapted)).predict(X) == adapted.predict(X)).all()
    np.True_
    """

    def predict(self, X):
        """Predict targets for ``X`` with the adapted weights.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
            1-D when the support targets were 1-D.
        """
        out = self._forward(X).cpu().numpy()
        return out.ravel() if self.y_ndim_ == 1 and out.ndim == 2 and out.shape[1] == 1 else out


class AdaptedClassifier(ClassifierMixin, _AdaptedModel):
    """A classifier adapted to one task by :meth:`BaseMetaLearner.adapt`.

    Attributes
    ----------
    classes_ : ndarray
        The task's labels (from the support set), in output order.
    module_ : torch.nn.Module
    device_ : str
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta import MAMLClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(10), 6)
    >>> X = rng.normal(size=(60, 3)) + y[:, None]
    >>> clf = MAMLClassifier(n_way=2, k_shot=2, n_query=2, n_episodes=10, max_epochs=1,
    ...                      verbose=0, random_state=0).fit(X, y)
    >>> adapted = clf.adapt(X[:12], np.repeat(["cat", "dog"], 6))
    >>> adapted.classes_.tolist(), adapted.predict_proba(X[:1]).shape
    (['cat', 'dog'], (1, 2))
    """

    def predict_proba(self, X):
        """Class probabilities of the task's classes, in the order of ``classes_``."""
        logits = self._forward(X)[:, :len(self.classes_)]
        return torch.softmax(logits, dim=-1).cpu().numpy()

    def predict(self, X):
        """The most likely of the task's labels for every row of ``X``."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
