"""A safe, tamper-evident model file format: tensors plus plain JSON, never pickled code.

``pickle`` (and ``joblib``) run code while loading, so a model file from someone
else can do anything. :func:`save` writes skmeta's own container (format version
2, see :mod:`skmeta._container`): magic bytes, the format version, a JSON header,
the raw bytes of every tensor and a SHA-256 over all of it. There is no pickle in
it; loading parses JSON and reinterprets bytes as tensors.

:func:`load` checks, in this order, before anything is built:

1. what the file is (magic bytes; a pickle, a zip archive, an empty file... are
   named and refused; a zip written by skmeta's format version 1 is read with
   ``torch.load(weights_only=True)``, with a :class:`FutureWarning`);
2. its length against the length its prefix announces (truncation);
3. the SHA-256 over header and tensors (damage, edits);
4. the format version (a newer file asks you to upgrade skmeta);
5. the header: JSON, and every tensor's dtype, shape and place in the file;
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
a file can recompute it. Steps 5 to 7 are what protect you from such files.

Use pickle/joblib for your own files (everything round-trips, including
callbacks); use :func:`save`/:func:`load` for files that cross a trust boundary.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import pickle
import re
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any, BinaryIO

import numpy as np
import torch
from skorch.exceptions import DeviceWarning
from torch import nn

from . import _container, registry
from ._version import __version__

__all__ = ["save", "load", "FORMAT_VERSION"]

#: The file format :func:`save` writes. Version 1 (a ``torch.save`` zip without an
#: integrity check) is still read, with a :class:`FutureWarning`.
FORMAT_VERSION = 2
_V1_MAGIC = "skmeta-model"
_ALWAYS_TRUSTED = ("torch", "skmeta")
#: fitted attributes of version-1 files that are now kept elsewhere (ignored when loading)
_LEGACY_ATTRIBUTES = {"engine_", "engine_timings_"}
_TRAINING_ONLY = ("callbacks", "train_split")
#: Tensor groups of a meta-learner's file besides "module" and "optimizer": group name ->
#: the fitted attribute (an ``nn.Module``, e.g. an ``nn.ParameterDict``) whose state_dict
#: the group holds. It is built by ``initialize()`` and its state loaded after it. Storing
#: more learnable state (such as learned per-parameter inner learning rates) is one entry.
_EXTRA_GROUPS: dict[str, str] = {"inner_state": "inner_state_"}
_ADAPTED_ATTRIBUTES = ("module_class_", "module_kwargs_", "device_", "input_shape_", "y_ndim_",
                       "meta_estimator_", "classes_", "adapt_steps_", "inner_lr_", "step_",
                       "predictive_", "interval_")


# ----------------------------------------------------------------- JSON codec


def _encode(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, type):
        return {"__class__": f"{value.__module__}:{value.__qualname__}"}
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}}
    if isinstance(value, np.ndarray) and (value.dtype.kind in "biufUS" or (
            value.dtype.kind == "O" and all(v is None or isinstance(v, (bool, int, float, str))
                                            for v in value.ravel().tolist()))):
        return {"__array__": value.tolist(), "dtype": value.dtype.str}
    raise ValueError(f"{where}= a {type(value).__name__} instance cannot be stored in the safe "
                     "format (only numbers, "
                     "strings, classes, tuples, lists and dicts can). Pass a class with "
                     "module__* parameters instead of an instance, or use pickle/joblib for "
                     "files you trust.")


def _resolve(path: Any, trusted: tuple[str, ...], file: str) -> type:
    if not isinstance(path, str) or ":" not in path:
        raise ValueError(f"{file!r} is malformed: {path!r} is not a class name.")
    mod_name, _, qual = path.partition(":")
    top = mod_name.split(".")[0]
    if mod_name not in sys.modules and top not in _ALWAYS_TRUSTED + trusted:
        raise ValueError(f"{file!r} names the class {path!r} from module {mod_name!r}, which "
                         "is not imported. Import it first, or pass "
                         f"trusted_modules=({top!r},) if you trust it.")
    try:
        obj: Any = importlib.import_module(mod_name)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{file!r} names the class {path!r}, which cannot be found here "
                         f"({exc}).") from exc
    if not (isinstance(obj, type) and issubclass(obj, (nn.Module, torch.optim.Optimizer))):
        raise ValueError(f"{file!r} names {path!r}, which is not a torch.nn.Module or "
                         "torch.optim.Optimizer class; refusing to load it.")
    return obj


def _decode_array(value: dict, file: str) -> np.ndarray:
    dtype = np.dtype(value["dtype"])
    if dtype.kind == "O":  # labels of mixed Python types (e.g. from a pandas column)
        return np.asarray(value["__array__"], dtype=object)
    natural = np.asarray(value["__array__"])
    if dtype.kind not in "biufUS" or natural.dtype.kind not in "biufUS":
        raise ValueError(f"{file!r} is malformed: an array of dtype {dtype} cannot be stored.")
    if dtype.kind in "US" and dtype.itemsize > natural.dtype.itemsize:
        dtype = natural.dtype  # the same strings: never let a header ask for wider ones
    return natural.astype(dtype)


def _decode(value: Any, trusted: tuple[str, ...], file: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, trusted, file) for v in value]
    if not isinstance(value, dict):
        return value
    if "__class__" in value:
        return _resolve(value["__class__"], trusted, file)
    if "__dtype__" in value:
        dtype = getattr(torch, str(value["__dtype__"]), None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"{file!r} is malformed: unknown dtype {value['__dtype__']!r}.")
        return dtype
    if "__tuple__" in value and isinstance(value["__tuple__"], list):
        return tuple(_decode(v, trusted, file) for v in value["__tuple__"])
    if "__dict__" in value and isinstance(value["__dict__"], dict):
        return {k: _decode(v, trusted, file) for k, v in value["__dict__"].items()}
    if "__array__" in value:
        return _decode_array(value, file)
    raise ValueError(f"{file!r} is malformed: unknown entry {str(value)[:80]!r}.")


# Optimizer states hold tensors, numbers, strings, None and (nested) dicts with int
# or str keys, lists and tuples. They are stored as JSON whose tensors refer by name
# to the "optimizer" tensor group.


def _pack(value: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(value, torch.Tensor):
        name = str(len(tensors))
        tensors[name] = value
        return {"__tensor__": name}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_pack(v, tensors, where) for v in value]
    if isinstance(value, tuple):
        return {"__tuple__": [_pack(v, tensors, where) for v in value]}
    if isinstance(value, dict) and all(isinstance(k, (str, int)) for k in value):
        return {"__items__": [[k, _pack(v, tensors, where)] for k, v in value.items()]}
    raise ValueError(f"{where} holds a {type(value).__name__}, which cannot be stored in the "
                     "safe format (only tensors, numbers, strings, lists, tuples and dicts "
                     "can); use pickle/joblib for files you trust.")


def _unpack(value: Any, tensors: Mapping[str, torch.Tensor], file: str) -> Any:
    if isinstance(value, list):
        return [_unpack(v, tensors, file) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        if value["__tensor__"] not in tensors:
            raise ValueError(f"{file!r} is malformed: the optimizer state refers to a "
                             f"missing tensor {value['__tensor__']!r}.")
        return tensors[value["__tensor__"]].clone()  # a copy: not a view of the file
    if "__tuple__" in value and isinstance(value["__tuple__"], list):
        return tuple(_unpack(v, tensors, file) for v in value["__tuple__"])
    if "__items__" in value and isinstance(value["__items__"], list):
        items = value["__items__"]
        if not all(isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], (str, int))
                   for kv in items):
            raise ValueError(f"{file!r} is malformed: bad optimizer state entry.")
        return {k: _unpack(v, tensors, file) for k, v in items}
    raise ValueError(f"{file!r} is malformed: unknown optimizer state entry "
                     f"{str(value)[:80]!r}.")


# ---------------------------------------------------------------------- save


def _atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
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
    The file (format version :data:`FORMAT_VERSION`) holds a JSON header (the
    parameters, the fitted attributes, the history, the module and optimizer
    classes by import path) and the raw bytes of the network's and the
    optimizer's tensors, under a SHA-256 checksum that :func:`load` verifies
    before it reads anything else. Training-only parameters that are objects
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
        attrs["engines"] = _encode({"chosen": obj.engines_.chosen,
                                    "timings": obj.engines_.timings}, "engines_")
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
        attrs = {k: _encode(getattr(obj, k), k) for k in _ADAPTED_ATTRIBUTES if hasattr(obj, k)}
        groups = {"module": _cpu_state(obj.module_)}
        kind, extra = "adapted", {}
    else:
        raise TypeError(f"skmeta.save stores skmeta meta-learners and adapted models; got "
                        f"{type(obj).__name__}.")
    header = {"skmeta_version": __version__, "kind": kind, "class": type(obj).__name__,
              "params": params, "attrs": attrs, **extra}
    _atomic_write(path, lambda f: _container.write(f, FORMAT_VERSION, header, groups))


# ---------------------------------------------------------------------- load


def _torch_zip_reason(exc: BaseException) -> str:
    """The part of a torch.load error worth showing (never its weights_only advice)."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it names {found.group(1)}, which is not a tensor or plain data"
    return text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__


def _check_torch_zip(source: str | BinaryIO, what: str) -> None:
    """Refuse a zip that torch.save did not write, before torch reads it.

    torch.save stores every entry uncompressed; a compressed entry could inflate to
    far more memory than the file's size (a "zip bomb"), so it is refused.
    """
    name = repr(source) if isinstance(source, str) else what
    try:
        with zipfile.ZipFile(source) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{name} is not a readable skmeta model file: it is a zip archive "
                         f"that cannot be read ({exc}); it may be truncated or damaged.") from exc
    names = [e.filename for e in entries]
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        raise ValueError(f"{name} is not a skmeta model file: it is a zip archive holding "
                         f"{', '.join(repr(n) for n in names[:3]) or 'nothing'}"
                         f"{', ...' if len(names) > 3 else ''}.")
    packed = [e.filename for e in entries
              if e.compress_type != zipfile.ZIP_STORED or e.compress_size != e.file_size]
    if packed:
        raise ValueError(f"{name} is not a skmeta model file: its zip entries {packed[:3]} are "
                         "compressed, which torch.save never does (a compressed entry could "
                         "inflate far beyond the file's size); refusing to read it.")


def _read_v1(file: str) -> tuple[dict, dict[str, dict[str, torch.Tensor]], Any]:
    """Read a format-version-1 file (a torch zip); return (header, groups, optimizer state)."""
    _check_torch_zip(file, file)
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # not chained: torch's message advises weights_only=False, wrong for untrusted files
        raise ValueError(f"{file!r} is not a skmeta model file: it is a torch.save archive "
                         "holding pickled objects other than tensors and plain data "
                         f"({_torch_zip_reason(exc)}). skmeta.load refused it without running "
                         "them; load it with torch.load or pickle only if you trust "
                         "its source.") from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{file!r} is not a readable skmeta model file: it is a zip archive "
                         f"that torch cannot read ({_torch_zip_reason(exc)}); it may be "
                         "truncated or damaged.") from exc
    header = None
    if isinstance(payload, dict) and isinstance(payload.get("header"), str):
        try:
            header = json.loads(payload["header"])
        except (ValueError, RecursionError):
            header = None
    if not isinstance(header, dict) or header.get("magic") != _V1_MAGIC \
            or not isinstance(payload.get("tensors"), dict):
        raise ValueError(f"{file!r} is not a skmeta model file: it is a torch.save archive "
                         "of something else.")
    version = header.get("format_version")
    if version != 1:
        raise ValueError(f"{file!r} is a torch zip that announces skmeta file format version "
                         f"{version!r}; zip files were only written in format version 1, so it "
                         "is damaged or not a skmeta model file.")
    tensors = payload["tensors"]
    module_state = tensors.get("module")
    if not isinstance(module_state, dict) or \
            not all(isinstance(v, torch.Tensor) for v in module_state.values()):
        raise ValueError(f"{file!r} is malformed: it holds no network weights.")
    optimizer_state = None
    if header.get("kind") == "meta":
        raw = tensors.get("optimizer")
        if not isinstance(raw, torch.Tensor) or raw.dtype is not torch.uint8:
            raise ValueError(f"{file!r} is malformed: it holds no optimizer state.")
        blob = raw.numpy().tobytes()
        _check_torch_zip(io.BytesIO(blob), f"{file!r}'s optimizer state")
        try:
            optimizer_state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ValueError(f"{file!r} is not a skmeta model file: its optimizer state holds "
                             f"pickled objects other than tensors ({_torch_zip_reason(exc)}); "
                             "refused without running them.") from None
        except (RuntimeError, OSError, EOFError) as exc:
            raise ValueError(f"{file!r} is damaged: its optimizer state cannot be read "
                             f"({_torch_zip_reason(exc)}).") from exc
    warnings.warn(f"{file!r} is in skmeta file format version 1, which has no integrity "
                  "check: damage or edits to it cannot be detected. Save it again with "
                  f"skmeta.save to convert it to format version {FORMAT_VERSION} "
                  "(tamper-evident); a future skmeta will stop reading version 1.",
                  FutureWarning, stacklevel=3)
    return header, {"module": module_state}, optimizer_state


def _spec(tensors: Mapping[str, torch.Tensor]) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    return {k: (tuple(v.shape), v.dtype) for k, v in tensors.items()}


def _describe_spec(spec: tuple[tuple[int, ...], torch.dtype]) -> str:
    return f"{list(spec[0])} {str(spec[1]).removeprefix('torch.')}"


def _network(cls: Any, kwargs: dict) -> str:
    """``Class(**kwargs)`` for messages, shortened (a file may hold long arguments)."""
    text = f"{getattr(cls, '__name__', cls)}(**{kwargs})"
    return text if len(text) <= 200 else text[:197] + "..."


def _nbytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _checked_module(build: Callable[[dict], nn.Module], kwargs: dict,
                    expected: Mapping[str, torch.Tensor] | None, *, file: str, what: str,
                    budget: int) -> None:
    """Build ``build(kwargs)`` on the meta device and compare it with the file's tensors.

    ``expected=None`` (a module whose state is not stored, like the criterion) only
    bounds its tensors by ``budget`` bytes. Nothing is allocated: meta tensors
    have shapes and no storage.
    """
    meta_kwargs = {**kwargs, "device": "meta"} if "device" in kwargs else kwargs
    try:
        with torch.device("meta"):
            probe = build(meta_kwargs)
    except Exception as exc:  # the constructor's own error: any type, reported with the file
        raise ValueError(f"{file!r}: {what} cannot be built on PyTorch's 'meta' device from "
                         f"the arguments the file stores ({type(exc).__name__}: {exc}). "
                         "skmeta builds it there first to check its shapes against the file "
                         "before allocating memory; the file is inconsistent, or the module's "
                         "constructor does not support torch.device('meta').") from exc
    if not isinstance(probe, nn.Module):
        raise ValueError(f"{file!r}: {what} is not a torch.nn.Module.")
    state = probe.state_dict()
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{file!r}: {what} has state other than tensors, which the safe "
                         "format does not store.")
    not_stored = [b for n, b in probe.named_buffers() if n not in state]
    if expected is not None:
        got, want = _spec(state), _spec(expected)
        if got != want:
            problems = [f"{k}: built {_describe_spec(got[k])}, file {_describe_spec(want[k])}"
                        for k in sorted(got.keys() & want.keys()) if got[k] != want[k]]
            problems += [f"{k}: not in the file" for k in sorted(got.keys() - want.keys())]
            problems += [f"{k}: in the file only" for k in sorted(want.keys() - got.keys())]
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise ValueError(
                f"{file!r} is inconsistent: {what} built from the constructor arguments it "
                f"stores ({_nbytes(state.values())} bytes of tensors) does not match its "
                f"tensors ({_nbytes(expected.values())} bytes): {'; '.join(problems[:5])}"
                f"{more}. The file was edited or written by another program; nothing was "
                "allocated.")
    else:
        not_stored += list(state.values())
    if _nbytes(not_stored) > budget:
        raise ValueError(f"{file!r}: {what} built from the arguments the file stores would "
                         f"allocate {_nbytes(not_stored)} bytes of tensors that the file does "
                         f"not hold (more than the file's {budget} bytes); refusing to build "
                         "it.")


def _load_state(module: nn.Module, state: Mapping[str, torch.Tensor], file: str) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:  # shapes were checked on the meta device; a module may differ
        raise ValueError(f"{file!r} is inconsistent: its tensors do not fit the network "
                         f"{type(module).__name__} ({exc}).") from exc


def load(path: str | os.PathLike, *, trusted_modules: Iterable[str] = ()) -> Any:
    """Load a model saved with :func:`save`, without running code from the file.

    The file's length and SHA-256 checksum are verified before its header is
    read, and the network's shapes are checked against the file's tensors before
    any memory is allocated for it (see :mod:`skmeta.persistence`).

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
        found lengths), failing its checksum (damaged or edited), written in a
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
    >>> with open(path, "r+b") as f:  # one damaged byte
    ...     _ = f.seek(100)
    ...     _ = f.write(b"?")
    >>> skmeta.load(path)
    Traceback (most recent call last):
    ...
    ValueError: '...clf.skmeta' fails its SHA-256 integrity check: ...
    """
    file = os.fspath(path)
    optimizer_state = None
    try:  # checks 1 to 5 (see the module's docstring)
        _, header, groups = _container.read(file, max_version=FORMAT_VERSION)
    except _container.NotAContainerError as exc:
        if not exc.torch_zip:
            raise
        header, groups, optimizer_state = _read_v1(file)
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


def _decode_table(header: dict, key: str, trusted: tuple[str, ...], file: str) -> dict:
    table = header.get(key)
    if not isinstance(table, dict):
        raise ValueError(f"{file!r} is malformed: its {key!r} entry is not a table.")
    return {k: _decode(v, trusted, file) for k, v in table.items()}


def _build(header: dict, groups: dict[str, dict[str, torch.Tensor]], optimizer_state: Any,
           file: str, trusted: tuple[str, ...], budget: int) -> Any:
    kind, name = header.get("kind"), header.get("class")
    role = {"adapted": "adapted", "meta": "meta-learner"}.get(kind)
    cls = (registry.find_adapted(name) if kind == "adapted" else registry.find(name)) \
        if isinstance(name, str) else None
    if role is None or cls is None or getattr(cls, "_skmeta_role", None) != role:
        raise ValueError(f"Unknown model class {name!r} (kind {kind!r}) in {file!r}: a skmeta "
                         "model file holds one of skmeta's meta-learners or adapted models.")
    if "module" not in groups:
        raise ValueError(f"{file!r} is malformed: it holds no network weights.")
    attrs = _decode_table(header, "attrs", trusted, file)
    if kind == "adapted":
        return _build_adapted(cls, attrs, groups, file, budget)
    params = _decode_table(header, "params", trusted, file)
    return _build_meta(cls, params, attrs, header, groups, optimizer_state, file, budget)


def _build_adapted(cls: type, attrs: dict, groups: dict, file: str, budget: int) -> Any:
    unknown = sorted(set(attrs) - set(_ADAPTED_ATTRIBUTES))
    if unknown:
        raise ValueError(f"{file!r} is malformed: unknown attributes {unknown}.")
    module_class, kwargs = attrs.get("module_class_"), attrs.get("module_kwargs_")
    if not (isinstance(module_class, type) and issubclass(module_class, nn.Module)) \
            or not isinstance(kwargs, dict):
        raise ValueError(f"{file!r} is malformed: it names no network class and arguments.")
    what = f"the network {_network(module_class, kwargs)}"
    _checked_module(lambda kw: module_class(**kw), kwargs, groups["module"], file=file,
                    what=what, budget=budget)
    module = module_class(**kwargs)  # shapes checked: allocates what the file holds
    _load_state(module, groups["module"], file)
    module.eval()
    model = cls()
    for k, v in attrs.items():
        setattr(model, k, v)
    model.module_ = module
    model.input_shape_ = tuple(model.input_shape_)
    model.n_features_in_ = int(np.prod(model.input_shape_))
    model.__setstate__(dict(model.__dict__))  # moves to the device, or CPU with a warning
    return model


def _build_meta(cls: type, params: dict, attrs: dict, header: dict, groups: dict,
                optimizer_state: Any, file: str, budget: int) -> Any:
    from skorch.history import History

    for key in params:  # skorch's constructor also takes some fitted state: not from files
        if key.endswith("_") or key == "history":
            raise ValueError(f"{file!r} is malformed: {key!r} is not a parameter.")
    try:
        est = cls(**params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{file!r} stores parameters that {cls.__name__} does not take "
                         f"({exc}); it was written by another skmeta version, or edited.") from exc
    allowed = set(est._saved_attributes()) | {"rng_state", "engines"} | _LEGACY_ATTRIBUTES
    unknown = sorted(set(attrs) - allowed)
    if unknown or "rng_state" not in attrs or "input_shape_" not in attrs:
        raise ValueError(f"{file!r} is malformed: its fitted attributes are "
                         f"{sorted(attrs)}, expected those of {sorted(allowed)}.")
    device = params.get("device") or "cpu"
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        warnings.warn(f"The model was saved from {device}, which is not available here; it "
                      "was loaded on the CPU.", DeviceWarning, stacklevel=3)
        est.set_params(device="cpu")
    rng_state = attrs.pop("rng_state")
    engines = attrs.pop("engines", {})
    for k in _LEGACY_ATTRIBUTES:
        attrs.pop(k, None)
    for k, v in attrs.items():
        setattr(est, k, v)
    est.input_shape_ = tuple(est.input_shape_)
    # check every network initialize() builds on the meta device before allocating it
    kwargs = est.get_module_kwargs()
    _checked_module(lambda kw: est.initialized_instance(est.module, kw), kwargs,
                    groups["module"], file=file, budget=budget,
                    what=f"the network {_network(est.module, kwargs)}")
    if isinstance(est.criterion, type):
        _checked_module(lambda kw: est.initialized_instance(est.criterion, kw),
                        est.get_params_for("criterion"), None, file=file, budget=budget,
                        what=f"the criterion {est.criterion.__name__}")
    est.initialize()
    _load_state(est.module_, groups["module"], file)
    for group, attribute in _EXTRA_GROUPS.items():
        if group not in groups and not getattr(est, attribute).state_dict():
            continue  # nothing to restore (files written before the group existed)
        if group not in groups:
            raise ValueError(f"{file!r} holds no {group!r} tensors, which {cls.__name__} "
                             f"needs for {attribute}; it was written by an older skmeta. Load "
                             "it with that version and save it again, or use pickle/joblib.")
        _load_state(getattr(est, attribute), groups[group], file)
    try:
        est.optimizer_.load_state_dict(optimizer_state)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{file!r} is inconsistent: its optimizer state does not fit the "
                         f"optimizer {type(est.optimizer_).__name__} ({exc}).") from exc
    try:
        est.rng_.bit_generator.state = rng_state
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{file!r} is malformed: bad random-generator state ({exc}).") from exc
    history = json.loads(header["history"])
    if not isinstance(history, list):
        raise ValueError(f"{file!r} is malformed: its history is not a list.")
    est.history_ = History(history)
    if not isinstance(engines, dict) or not all(isinstance(engines.get(k, {}), dict)
                                                for k in ("chosen", "timings")):
        raise ValueError(f"{file!r} is malformed: bad engine choices {engines!r}.")
    est.engines_.chosen.update(engines.get("chosen", {}))
    est.engines_.timings.update(engines.get("timings", {}))
    if "seed_" in attrs:  # initialize() drew a new one
        est.seed_ = attrs["seed_"]
    return est
