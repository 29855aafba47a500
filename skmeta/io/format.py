"""A safe, tamper-evident model file format: tensors plus plain JSON, never pickled code.

``pickle`` (and ``joblib``) run code while loading, so a model file from someone
else can do anything. :func:`save` writes a standard safetensors file (format
version 3, see :mod:`skmeta.io.safetensors`): a JSON header describing every tensor,
the raw bytes of the tensors, and in the header's ``__metadata__`` skmeta's own
JSON (parameters, fitted attributes, history) and a SHA-256 digest of all of it.
Any safetensors reader opens the file; there is no pickle in it; loading parses
JSON and reinterprets bytes as tensors.

:func:`load` checks, in this order, before anything is built:

1. what the file is (a safetensors file; skmeta's format-2 container of the
   previous release; a pickle, a zip archive, an empty file... are named and
   refused; a zip written by skmeta's format version 1 is read with
   ``torch.load(weights_only=True)``, with a :class:`FutureWarning`);
2. the header, strictly: its length (at most 100 MB, inside the file), its JSON
   (no duplicate keys, no NaN), every tensor's dtype, shape and byte range;
3. the file's length against the data its header announces (truncation, appended
   bytes), and that the tensors tile the data (no overlap, no hole);
4. the SHA-256 over the metadata and the tensors (damage, edits);
5. the format version (a newer file asks you to upgrade skmeta);
6. the classes it names: the estimator must be one of skmeta's, the module,
   criterion and optimizer ``torch.nn.Module`` or ``torch.optim.Optimizer``
   subclasses from modules that are already imported or named in
   ``trusted_modules``;
7. the network: built first on PyTorch's ``"meta"`` device (no memory) from the
   stored constructor arguments, and every parameter and buffer's name, shape
   and dtype compared with the file's tensors. Only then is it built for real
   and the tensors loaded, so that a file cannot make the loader allocate much
   more than its own size.

The checksum detects damage and edits, not who wrote the file: someone who edits
a file can recompute it. Steps 2, 3, 6 and 7 are what protect you from such files.

Use pickle/joblib for your own files (everything round-trips, including
callbacks); use :func:`save`/:func:`load` for files that cross a trust boundary.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

import torch
from torch import nn

from .._version import __version__
from . import container as _container
from . import safetensors as _safetensors
from .build import _EXTRA_GROUPS, _build
from .codec import _encode, _pack, _unpack
from .legacy import _read_v1

__all__ = ["save", "load", "FORMAT_VERSION", "SafeFileMixin"]

#: The file format :func:`save` writes: a safetensors file (see :mod:`skmeta.io.safetensors`).
#: Version 2 (skmeta's own container, :mod:`skmeta.io.container`) is still read; version 1
#: (a ``torch.save`` zip without an integrity check) too, with a :class:`FutureWarning`.
FORMAT_VERSION = 3
_CONTAINER_VERSION = 2
_TRAINING_ONLY = ("callbacks", "train_split")


# ---------------------------------------------------------------------- save


def _atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Cannot save to {path!r}: the folder {folder!r} does not exist. "
                                "Create it first (os.makedirs(folder, exist_ok=True)).")
    fd, tmp = tempfile.mkstemp(prefix=".skmeta-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu") for k, v in module.state_dict().items()}


def save(obj: Any, path: str | os.PathLike) -> None:
    """Save a meta-learner or an adapted model in skmeta's safe format.

    Parameters
    ----------
    obj : meta-learner or adapted model
        A fitted skmeta estimator, or what its ``adapt`` returned.
    path : str or path-like
        Written atomically: a crash never leaves a half-written file.

    Notes
    -----
    The file (format version :data:`FORMAT_VERSION`) is a safetensors file: the
    raw bytes of the network's and the optimizer's tensors, and in its metadata
    skmeta's JSON header (the parameters, the fitted attributes, the history, the
    module and optimizer classes by import path) and a SHA-256 digest that
    :func:`load` verifies before it builds anything. Training-only parameters that are objects
    (``callbacks``, ``train_split``) are not stored (a warning names them); they
    are None after :func:`load`.

    Examples
    --------
    >>> import os, tempfile
    >>> import skmeta
    >>> from skmeta import MAMLRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=20, random_state=0)
    >>> maml = MAMLRegressor(k_shot=10, max_epochs=1, verbose=0, random_state=0).fit(tasks)
    >>> path = os.path.join(tempfile.mkdtemp(), "maml.skmeta")
    >>> skmeta.save(maml.adapt(*tasks[0]), path)
    >>> skmeta.load(path).predict(tasks[0][0][:2]).shape
    (2,)
    """

    groups: dict[str, dict[str, torch.Tensor]]
    role = getattr(obj, "_skmeta_role", None)
    if role == "meta-learner":
        if not getattr(obj, "initialized_", False) or not hasattr(obj, "input_shape_"):
            raise ValueError("Only a fitted meta-learner can be saved; call fit first.")
        params, dropped = {}, []
        for name, value in obj.get_params(deep=False).items():
            if name in _TRAINING_ONLY and value is not None and not isinstance(value, str):
                dropped.append(name)
                value = None
            params[name] = _encode(value, name)
        if dropped:
            warnings.warn(f"{', '.join(sorted(dropped))} are training-only objects and are "
                          "not stored in the safe format; they will be None after loading.",
                          UserWarning, stacklevel=2)
        attrs = {k: _encode(getattr(obj, k), k) for k in obj._saved_attributes()
                 if hasattr(obj, k)}
        attrs["rng_state"] = _encode(obj.rng_.bit_generator.state, "rng_")
        attrs["engines"] = _encode(obj.engines_.state(), "engines_")
        optimizer_tensors: dict[str, torch.Tensor] = {}
        optimizer_state = _pack(obj.optimizer_.state_dict(), optimizer_tensors, "optimizer_")
        groups = {"module": _cpu_state(obj.module_), "optimizer": optimizer_tensors,
                  **{g: _cpu_state(getattr(obj, a)) for g, a in _EXTRA_GROUPS.items()}}
        kind = "meta"
        extra = {"history": json.dumps(obj.history_.to_list(), default=float),
                 "optimizer_state": optimizer_state}
    elif role == "adapted":
        if not hasattr(obj, "module_"):
            raise ValueError("This adapted model holds no network.")
        if not hasattr(obj, "module_class_"):
            raise ValueError("This adapted model's network was passed as an instance and "
                             "cannot be rebuilt from its class; use pickle/joblib.")
        params = {}
        attrs = {k: _encode(getattr(obj, k), k) for k in obj.saved_fields() if hasattr(obj, k)}
        groups = {"module": _cpu_state(obj.module_)}
        kind, extra = "adapted", {}
    else:
        raise TypeError(f"skmeta.save stores skmeta meta-learners and adapted models; got "
                        f"{type(obj).__name__}.")
    header = {"skmeta_version": __version__, "kind": kind, "class": type(obj).__name__,
              "params": params, "attrs": attrs, **extra}
    _atomic_write(path, lambda f: _safetensors.write(f, FORMAT_VERSION, header, groups,
                                                      writer=__version__))


# ---------------------------------------------------------------------- load


def load(path: str | os.PathLike, *, trusted_modules: Iterable[str] = ()) -> Any:
    """Load a model saved with :func:`save`, without running code from the file.

    The file's header is parsed strictly and its length and SHA-256 checksum are
    verified before anything is built from it, and the network's shapes are
    checked against the file's tensors before any memory is allocated for it (see
    :mod:`skmeta.io.format`).

    Parameters
    ----------
    path : str or path-like
    trusted_modules : iterable of str, default=()
        Top-level packages whose classes the file may name even if they are not
        imported yet (``torch`` and ``skmeta`` are always allowed).

    Returns
    -------
    model : meta-learner or adapted model
        On the device it was saved from when available, else on the CPU.

    Raises
    ------
    ValueError
        With the file's name and what is wrong: not a skmeta model file (and
        what it is instead: empty, a pickle, a zip...), truncated (expected and
        found lengths), failing its checksum (damaged or edited), with a
        malformed header (overlapping or out-of-range tensors, unknown dtypes,
        duplicate keys, an oversized header length), written in a
        newer format version (upgrade skmeta), malformed or inconsistent (its
        network does not match its tensors), or naming a class that is not an
        allowed torch class.

    Warns
    -----
    FutureWarning
        For a file in format version 1, which has no integrity check.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import skmeta
    >>> from skmeta import MAMLClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(10), 6)
    >>> X = rng.normal(size=(60, 3)) + y[:, None]
    >>> clf = MAMLClassifier(n_way=2, k_shot=2, n_query=2, n_episodes=10, max_epochs=1,
    ...                      verbose=0, random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "clf.skmeta")
    >>> clf.save(path)
    >>> loaded = skmeta.load(path)
    >>> type(loaded).__name__, loaded.n_way
    ('MAMLClassifier', 2)
    >>> with open(path, "r+b") as f:  # one damaged bit in the last tensor
    ...     _ = f.seek(-1, os.SEEK_END)
    ...     last = f.read(1)[0]
    ...     _ = f.seek(-1, os.SEEK_END)
    ...     _ = f.write(bytes([last ^ 1]))
    >>> skmeta.load(path)
    Traceback (most recent call last):
    ...
    ValueError: '...clf.skmeta' fails its SHA-256 integrity check: ...
    """
    file = os.fspath(path)
    optimizer_state = None
    try:  # checks 1 to 5 (see the module's docstring)
        _, header, groups = _safetensors.read(file, max_version=FORMAT_VERSION)
    except _safetensors.NotSafetensorsError:
        try:  # the previous release's container
            _, header, groups = _container.read(file, max_version=_CONTAINER_VERSION)
        except _container.NotAContainerError as exc:
            if not exc.torch_zip:
                raise
            header, groups, optimizer_state = _read_v1(file, FORMAT_VERSION)
    budget = os.path.getsize(file)
    try:  # checks 6 and 7, then the model is built
        if header.get("kind") == "meta" and optimizer_state is None:
            optimizer_state = _unpack(header.get("optimizer_state"),
                                      groups.get("optimizer", {}), file)
        return _build(header, groups, optimizer_state, file, tuple(trusted_modules), budget)
    except ValueError as exc:
        if file in str(exc):
            raise
        raise ValueError(f"{file!r} cannot be loaded: {exc}") from exc
    except (KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        raise ValueError(f"{file!r} is malformed: a model cannot be rebuilt from it "
                         f"({type(exc).__name__}: {exc}).") from exc


class SafeFileMixin:
    """``save(path)`` in the safe format, for meta-learners and adapted models alike.

    It needs nothing from the class it is mixed into: :func:`save` decides what to store.
    """

    def save(self, path) -> None:
        """Save in skmeta's safe format (tensors + JSON); see :func:`skmeta.save`.

        Parameters
        ----------
        path : str or path-like
            Written atomically.
        """
        save(self, path)
