"""Hugging Face Accelerate: its processes as a group, and the mixin that runs a meta-learner on it.

See :mod:`skmeta.parallel` for how data-parallel meta-training works.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from .groups import TorchGroup

__all__ = ["AccelerateMixin", "AcceleratorGroup", "check_not_skorch_accelerate"]

try:  # skorch.hf imports no Hugging Face library at import time
    from skorch.hf import AccelerateMixin as _SkorchAccelerateMixin
except ImportError:  # pragma: no cover - very old skorch
    class _SkorchAccelerateMixin:  # type: ignore[no-redef]
        """Stand-in when skorch has no Accelerate integration."""


class AcceleratorGroup(TorchGroup):
    """The processes of a Hugging Face ``Accelerator`` (see :class:`AccelerateMixin`).

    Parameters
    ----------
    accelerator : accelerate.Accelerator
        Its ``device``, ``process_index`` and ``num_processes`` are used.
    """

    def __init__(self, accelerator):
        super().__init__(accelerator.device)
        self.accelerator = accelerator

    @property
    def rank(self) -> int:
        return int(self.accelerator.process_index)

    @property
    def world_size(self) -> int:
        return int(self.accelerator.num_processes)

    def ensure(self, owner: str) -> None:
        acc = self.accelerator
        if str(getattr(acc, "mixed_precision", "no")) == "fp16":
            raise ValueError(
                f"{owner}: Accelerator(mixed_precision='fp16') is not supported: its gradient "
                "scaler expects a scaled loss, not a meta-gradient. Use mixed_precision='bf16' "
                "or 'no'.")
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched > 1 and int(acc.num_processes) != launched:
            raise ValueError(
                f"{owner}: the launcher started {launched} processes but the Accelerator sees "
                f"{acc.num_processes}: every process would meta-train on its own. On CPUs pass "
                "Accelerator(cpu=True); on GPUs launch with 'accelerate launch --multi_gpu' or "
                "torchrun.")
        if int(getattr(acc, "gradient_accumulation_steps", 1)) > 1:
            raise ValueError(
                f"{owner}: Accelerator(gradient_accumulation_steps>1) is not supported: "
                "accumulation scales a loss, not a meta-gradient. Raise batch_size (tasks per "
                "meta-update) instead, with chunk_size to bound memory.")


def check_not_skorch_accelerate(net) -> None:
    """Refuse skorch's own AccelerateMixin on a meta-learner, naming skmeta's."""
    if isinstance(net, _SkorchAccelerateMixin) and not isinstance(net, AccelerateMixin):
        raise TypeError(
            f"{type(net).__name__} uses skorch.hf.AccelerateMixin, whose training step is a "
            "forward/backward pass on samples; meta-learners need "
            "skmeta.parallel.AccelerateMixin instead (same usage: put it first in the "
            "bases and pass accelerator=Accelerator(...)).")


class AccelerateMixin(_SkorchAccelerateMixin):
    """Run a skmeta meta-learner under Hugging Face Accelerate.

    skorch's :class:`skorch.hf.AccelerateMixin` assumes a forward/backward
    step on mini-batches of samples; this mixin keeps its launcher, device
    placement, optimizer wrapper and ``accelerator.autocast`` (bf16), and
    replaces the parts that do not apply to meta-learning (gradient accumulation
    is refused; the log prints on the main process only): the meta-step is
    skmeta's own (the network is *not* wrapped in ``DistributedDataParallel``,
    whose hooks never see gradients computed with :mod:`torch.func`), and with
    several processes the meta-batch is divided and all-reduced exactly as with
    ``distributed=True`` (see :mod:`skmeta.parallel`).

    Put it first in the bases and pass ``accelerator=Accelerator(...)``; leave
    ``device`` at None (Accelerate places the network). Requires the
    ``accelerate`` package (``pip install "skmeta[distributed]"``).

    Parameters
    ----------
    accelerator : accelerate.Accelerator
        ``mixed_precision`` may be ``"no"`` or ``"bf16"``; ``"fp16"`` is refused
        (its gradient scaler needs a scaled loss, which a meta-gradient is not).
    unwrap_after_train : bool, default=True
        As in skorch.

    Examples
    --------
    >>> from accelerate import Accelerator
    >>> from skmeta import MAMLRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> from skmeta.parallel import AccelerateMixin
    >>> class AcceleratedMAML(AccelerateMixin, MAMLRegressor):
    ...     pass
    >>> tasks = make_sinusoid_tasks(n_tasks=20, random_state=0)
    >>> net = AcceleratedMAML(accelerator=Accelerator(cpu=True), max_epochs=1,
    ...                       verbose=0, random_state=0).fit(tasks)
    >>> net.adapt(*tasks[0]).predict(tasks[0][0][:2]).shape
    (2,)
    """

    def _group(self) -> AcceleratorGroup:
        """The accelerator's processes (replaces the estimator's process group)."""
        return AcceleratorGroup(self.accelerator)

    def initialize(self):
        """Initialise as the skmeta estimator does, then hand the optimizer to Accelerate."""
        super(_SkorchAccelerateMixin, self).initialize()
        self._initialize_accelerator()
        return self

    def _initialize_accelerator(self):
        if self._wrapped_with_accelerator:
            return self
        try:
            from accelerate.optimizer import AcceleratedOptimizer
        except ImportError as exc:  # pragma: no cover - an Accelerator implies accelerate
            raise ImportError("skmeta's AccelerateMixin needs the accelerate package: "
                              "pip install 'skmeta[distributed]'") from exc

        for name in self._criteria:  # the module itself is placed by initialize_module
            criterion = getattr(self, name + "_")
            if isinstance(criterion, nn.Module):
                criterion.to(self.accelerator.device)
        for name in self._optimizers:
            optimizer = getattr(self, name + "_")
            if isinstance(optimizer, torch.optim.Optimizer) and \
                    not isinstance(optimizer, AcceleratedOptimizer):
                setattr(self, name + "_", self.accelerator.prepare(optimizer))
        self._wrapped_with_accelerator = True
        return self

    def _initialize_callbacks(self):
        # skorch's 'auto' sink (accelerator.print) would print even with verbose=0;
        # PrintLog runs on the main process only here anyway. The parameter keeps 'auto'.
        auto = isinstance(self.callbacks__print_log__sink, str) and \
            self.callbacks__print_log__sink == "auto"
        if auto:
            self.callbacks__print_log__sink = print
        try:
            return super(_SkorchAccelerateMixin, self)._initialize_callbacks()
        finally:
            if auto:
                self.callbacks__print_log__sink = "auto"

    def get_iterator(self, dataset, training=False):
        # meta-batches are divided among ranks by the step, not by a sampler
        return super(_SkorchAccelerateMixin, self).get_iterator(dataset, training=training)

    def train_step_single(self, batch, **fit_params):
        with self.accelerator.autocast():
            return super(_SkorchAccelerateMixin, self).train_step_single(batch, **fit_params)

    def save_params(self, *args, **kwargs):
        """Save on the main process only (callbacks that save run on rank 0 only)."""
        if self.accelerator.is_main_process:
            super(_SkorchAccelerateMixin, self).save_params(*args, **kwargs)

    def load_params(self, *args, **kwargs):
        """Load on every process, onto the accelerator's device."""
        previous = self.device
        if previous is None:
            self.device = str(self.accelerator.device)
        try:
            super(_SkorchAccelerateMixin, self).load_params(*args, **kwargs)
        finally:
            self.device = previous

    def initialize_module(self):
        """Build the module as the estimator does and place it on the accelerator's device.

        Placed, not wrapped in ``DistributedDataParallel``: the meta-step is functional.
        """
        super().initialize_module()
        self.module_.to(self.accelerator.device)
        return self
