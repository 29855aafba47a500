"""The learnable state of an inner-loop rule, kept as modules skorch trains, moves and saves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from . import functional as F

__all__ = ["InnerState", "ParamsFileMixin"]


def _escape(name: str) -> str:
    return name.replace(".", "/")


class InnerState(nn.Module):
    """The learnable state of an inner-loop rule, as a module skorch trains, moves and saves.

    Parameters
    ----------
    state : mapping of str to Tensor
        From the rule's ``init`` (e.g. Meta-SGD's per-element learning rates).

    Examples
    --------
    >>> import torch
    >>> from skmeta.base import InnerState
    >>> state = InnerState({"layers.0.weight": torch.full((2, 2), 0.01)})
    >>> list(state.tensors()), sum(p.numel() for p in state.parameters())
    (['layers.0.weight'], 4)
    """

    def __init__(self, state: Mapping[str, torch.Tensor]):
        super().__init__()
        self.values = nn.ParameterDict({_escape(k): nn.Parameter(v.detach().clone())
                                        for k, v in state.items()})

    def tensors(self) -> F.Params:
        """The state under the parameter names it belongs to."""
        return {k.replace("/", "."): v for k, v in self.values.items()}


class _Learned:
    """``module_`` and ``inner_state_`` as one state dict (skorch's ``f_params`` file)."""

    _PREFIX = "__inner_state__."

    def __init__(self, net: Any):
        self.net = net

    def state_dict(self) -> dict:
        state = self.net.module_.state_dict()
        state.update({self._PREFIX + k: v for k, v in self.net.inner_state_.state_dict().items()})
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        own = {k[len(self._PREFIX):]: v for k, v in state.items() if k.startswith(self._PREFIX)}
        self.net.module_.load_state_dict({k: v for k, v in state.items()
                                          if not k.startswith(self._PREFIX)})
        self.net.inner_state_.load_state_dict(own)


class ParamsFileMixin:
    """skorch's ``save_params``/``load_params`` for meta-learners: the network and the rule's
    learned state travel together in ``f_params`` (and so in ``Checkpoint``)."""

    def _get_module(self, name, msg):
        if name in ("module_", "module") and self.initialized_:
            return _Learned(self)
        return super()._get_module(name, msg)

    def save_params(self, f_params=None, f_optimizer=None, f_criterion=None, f_history=None,
                    use_safetensors=False, **kwargs):
        """Save the meta-parameters, optimizer state and history (skorch's format).

        ``f_params`` holds the network's state dict together with the inner rule's
        learned state (keys starting with ``__inner_state__.``; none for plain gradient
        steps), so :class:`skorch.callbacks.Checkpoint` and :meth:`load_params` restore
        both. The file is written with :func:`torch.save` (pickle): for files that cross
        a trust boundary use :meth:`save` instead.

        Parameters
        ----------
        f_params, f_optimizer, f_criterion, f_history : str, path or file, default=None
            Where to write each part; None skips it.
        use_safetensors : bool, default=False
            As in skorch (tensors only: not for the optimizer).
        **kwargs
            ``f_<name>`` for other modules, as in skorch.

        Examples
        --------
        >>> import os, tempfile
        >>> from skmeta import MetaSGDRegressor
        >>> from skmeta.datasets import make_sinusoid_tasks
        >>> tasks = make_sinusoid_tasks(n_tasks=20, random_state=0)
        >>> est = MetaSGDRegressor(k_shot=10, max_epochs=1, verbose=0, random_state=0).fit(tasks)
        >>> path = os.path.join(tempfile.mkdtemp(), "params.pt")
        >>> est.save_params(f_params=path)
        >>> twin = MetaSGDRegressor(k_shot=10, max_epochs=1, verbose=0, random_state=1)
        >>> twin = twin.fit(tasks[:5])  # any fit builds networks of the right shapes
        >>> twin.load_params(f_params=path)
        >>> bool((twin.inner_state_.tensors()["layers.0.weight"]
        ...       == est.inner_state_.tensors()["layers.0.weight"]).all())
        True
        """
        return super().save_params(f_params=f_params, f_optimizer=f_optimizer,
                                   f_criterion=f_criterion, f_history=f_history,
                                   use_safetensors=use_safetensors, **kwargs)

    def load_params(self, f_params=None, f_optimizer=None, f_criterion=None, f_history=None,
                    checkpoint=None, use_safetensors=False, **kwargs):
        """Load what :meth:`save_params` (or a ``Checkpoint``) wrote into a fitted estimator.

        The network and the inner rule's learned state are restored together from
        ``f_params``. The estimator must have networks of the same shapes (fit it, even
        briefly, or ``initialize()`` it after setting ``input_shape_``). The files are read
        with :func:`torch.load`: load only files you trust (:func:`skmeta.load` reads the
        safe format).

        Parameters
        ----------
        f_params, f_optimizer, f_criterion, f_history : str, path or file, default=None
            What to read; None skips it.
        checkpoint : skorch.callbacks.Checkpoint, default=None
            Read the files this checkpoint wrote.
        use_safetensors : bool, default=False
            As in skorch.
        **kwargs
            ``f_<name>`` for other modules, as in skorch.

        Examples
        --------
        See :meth:`save_params`.

        >>> from skmeta import MAMLRegressor
        >>> hasattr(MAMLRegressor, "load_params")
        True
        """
        return super().load_params(f_params=f_params, f_optimizer=f_optimizer,
                                   f_criterion=f_criterion, f_history=f_history,
                                   checkpoint=checkpoint, use_safetensors=use_safetensors,
                                   **kwargs)
