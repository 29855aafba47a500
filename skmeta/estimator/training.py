"""skorch's training loop on tasks: :class:`TaskNet`.

A :class:`TaskNet` is a :class:`skorch.NeuralNet` whose "samples" are tasks:
``fit`` turns any task form into a :class:`~skmeta.data.TaskSequence`, skorch's loop
runs unchanged (epochs, callbacks, history, checkpoints), ``get_iterator`` yields
meta-batches (:mod:`skmeta.data.metabatch`), and ``train_step_single`` computes the
meta-gradient of one (``get_meta_gradient``, which the estimator provides) on this
process's share of its tasks and stores it in ``.grad`` for skorch's optimizer step.
The estimator holds its collaborators as objects: the process group
(:mod:`skmeta.parallel`), the engine chooser (:mod:`skmeta.estimator.engines`) and
the target strategy (:mod:`skmeta.estimator.targets`).
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet

from .. import functional as F
from .. import parallel as D
from ..data import (
    EpisodeSampler,
    MetaBatch,
    MetaBatchIterator,
    TaskSequence,
    as_tasks,
    make_meta_batch,
    seed_from,
    stacked_epoch,
    warn_on_scale,
)
from ..metrics import check_scoring_context
from .diagnostics import warn_if_loss_at_chance
from .engines import EngineChooser
from .features import note_features
from .hooks import supports
from .inner_state import LearnedState
from .network import check_io, fill_sizes
from .parameters import ParameterizedNet
from .targets import Targets, make_targets

__all__ = ["TaskNet"]


class TaskNet(ParameterizedNet):
    """skorch's loop on tasks (see the module docstring); the base of every meta-learner.

    It calls three methods its subclass provides: ``get_meta_gradient(batch,
    engine)`` (the meta-gradient of a meta-batch), ``_batched(kind, module)``
    (whether the batched engine applies) and ``initialize_module()``; and the
    hooks ``uses_second_order()`` and ``get_targets()``, which have defaults here.
    """

    _classification = False
    targets = "regression"  # the target strategy's name (see skmeta.estimator.targets)
    supports_query_mask = None  # only for the older (learner, task, engine) hook form: hooks.py

    def get_targets(self) -> Targets:
        """The target strategy named by the ``targets`` class attribute, with its fitted state."""
        return make_targets(self.targets, getattr(self, "n_way", None),
                            lambda name: getattr(self, name))

    def uses_second_order(self) -> bool:
        """Whether meta-gradients differentiate through the inner steps now (hook; False by
        default). ``engine="auto"`` then avoids layers whose vmapped second derivatives
        are wrong (:func:`skmeta.functional.vmap_support`)."""
        return False

    def get_meta_gradient(self, batch: MetaBatch, engine: str):
        """``(mean loss, gradient for every meta-parameter)`` of a meta-batch (provided by
        the estimator)."""
        raise NotImplementedError

    def _batched(self, kind: str, module) -> tuple[bool, str]:
        return False, "not offered"

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
        initializing = not self.warm_start or not self.initialized_
        tasks = self._prepare_fit(X, y, groups, initializing)
        if initializing:
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
        initializing = not self.initialized_
        tasks = self._prepare_fit(X, y, groups, initializing)
        if initializing:
            self.initialize()
            self._check_module_io(tasks)
        NeuralNet.partial_fit(self, tasks, None, **fit_params)
        return self._sync_ranks()

    def _check_module_io(self, tasks) -> None:
        outputs = f"n_way={self.n_way} logits" if self._classification else \
            f"{self.get_targets().n_outputs()} output(s), one per target"
        with self._functional_lock:
            check_io(self.module_, self._to_tensor(tasks[0][0][:4]),
                     self.get_targets().n_outputs(), owner=type(self).__name__, outputs=outputs)

    def _prepare_fit(self, X, y, groups, initializing: bool) -> TaskSequence:
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
        if initializing or not hasattr(self, "n_outputs_"):  # what the network's outputs mean
            vars(self).update(self.get_targets().fit(tasks, y0))
        note_features(self, X, reset=initializing)  # feature_names_in_, n_features_in_
        warn_on_scale(X0)
        return tasks

    def _as_tasks(self, X, y=None, groups=None) -> TaskSequence:
        sampler = None
        if self._classification:
            def sampler(X, y):
                return EpisodeSampler(X, y, n_way=self.n_way, k_shot=self.k_shot,
                                      n_query=15 if self.n_query is None else self.n_query,
                                      n_episodes=self.n_episodes,
                                      random_state=self._shared_random_state())
        return as_tasks(X, y, groups, classification=self._classification, pool_sampler=sampler)

    def _check_input_shape(self, X: np.ndarray, what: str) -> None:
        if tuple(X.shape[1:]) != tuple(self.input_shape_):
            raise ValueError(f"{what} has input shape {tuple(X.shape[1:])} but "
                             f"{type(self).__name__} was fitted on {self.input_shape_}.")

    def on_train_end(self, net, **kwargs):
        super().on_train_end(net, **kwargs)
        if self.get_targets().classification:  # a loss still at ln(n_way) learned nothing
            warn_if_loss_at_chance(self)

    # ------------------------------------------------------------- processes

    def _group(self) -> D.LocalGroup:
        """The processes this estimator runs on (see :mod:`skmeta.parallel`)."""
        return D.TorchGroup(self.device) if self.distributed else D.LocalGroup(self.device)

    def _shared_random_state(self):
        """``random_state``; on several ranks, unless it is an int, one seed drawn by rank 0."""
        group = self._group()
        if isinstance(self.random_state, (int, np.integer)) or group.world_size == 1:
            return self.random_state
        return group.shared_seed(seed_from(self.random_state))

    def _sync_ranks(self):
        """Give every rank rank 0's meta-parameters (at ``initialize``, and after ``fit``:
        callbacks such as ``Checkpoint(load_best=True)`` run on rank 0 only)."""
        with self._functional_lock:
            self._group().sync(self.module_, self.inner_state_)
        return self

    def notify(self, method_name, **cb_kwargs):
        """Call the net's and the callbacks' ``method_name``; on ranks other than 0,
        skip the callbacks that write (see :func:`skmeta.parallel.runs_on_rank`)."""
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
        seed = int(np.random.SeedSequence(seed_from(self.random_state)).generate_state(1)[0])
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
        return fill_sizes(self.module, self.get_params_for("module"),
                          getattr(self, "input_shape_", None), self.get_targets().n_outputs())

    def initialize_criterion(self):
        kwargs = self.get_params_for("criterion")
        self.criterion_ = self.initialized_instance(self.criterion, kwargs)
        return self

    def _get_module(self, name, msg):
        # skorch's f_params (save_params, load_params, Checkpoint) holds the network and
        # the inner rule's learned state together
        if name in ("module_", "module") and self.initialized_:
            return LearnedState(self.module_, self.inner_state_)
        return super()._get_module(name, msg)

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


    # ------------------------------------------------------------------ steps

    @property
    def _functional_lock(self) -> threading.RLock:
        # functional_call swaps tensors into the module while it runs: serialise
        return self.__dict__.setdefault("_lock_", threading.RLock())

    def train_step_single(self, batch: MetaBatch, **fit_params):
        """Compute the meta-gradient of one meta-batch and store it in ``.grad``.

        On several ranks, this rank computes its share of the tasks and the
        mean over the whole meta-batch is all-reduced (:mod:`skmeta.parallel`).
        """
        self._set_training(True)
        trainable = [(k, p) for k, p in self._meta_parameters().items() if p.requires_grad]
        second = self.uses_second_order()

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
        flat = torch.cat([loss.reshape(1), *(g.reshape(-1) for g in values)])
        if not torch.isfinite(flat).all():  # one check: NaN/inf in the loss or any gradient
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
        """An iterable of :class:`~skmeta.data.MetaBatch` (shuffled when ``training``)."""
        rng = self.rng_ if training else np.random.default_rng([self.seed_, 1])  # same splits
        return MetaBatchIterator(dataset, batch_size=self.batch_size, rng=rng,
                                 make_batch=self.get_meta_batch, training=training,
                                 epoch_batches=self._epoch_meta_batches)

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
                               classification=self._classification,
                               encode=self.get_targets().encode, to_tensor=self._to_tensor,
                               training=training, need_query=need_query,
                               pad_queries=self._pads_queries())

    def _epoch_meta_batches(self, tasks, order, rng, *, training):
        """An epoch's meta-batches assembled at once (:func:`skmeta.data.stacked_epoch`), where
        every task is a regression task of equal size; None to draw them one by one."""
        if self._classification or type(self).get_meta_batch is not TaskNet.get_meta_batch:
            return None
        return stacked_epoch(tasks, order, rng, batch_size=self.batch_size, k_shot=self.k_shot,
                             n_query=self.n_query, to_tensor=self._to_tensor)

    def _pads_queries(self) -> bool:
        """Whether query sets of different lengths are padded into one group (see
        :func:`skmeta.data.make_meta_batch`): the algorithm passes ``query_mask`` on
        and the loss can leave padded rows out."""
        return supports(self, self.supports_query_mask) and F.maskable(self.criterion_)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_lock_", None)
        state.pop("_tensors_", None)
        return state
