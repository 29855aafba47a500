"""A safe model file format: tensors plus plain JSON, never pickled code.

``pickle`` (and ``joblib``) run code while loading, so a model file from someone
else can do anything. :func:`save` writes only tensors (read back with
``torch.load(weights_only=True)``) and JSON; classes (the module, criterion and
optimizer) are stored by import path and, when loading, must be subclasses of
``torch.nn.Module`` or ``torch.optim.Optimizer`` from modules that are already
imported or that you name in ``trusted_modules``. Files are written atomically.

Use pickle/joblib for your own files (everything round-trips, including
callbacks); use :func:`save`/:func:`load` for files that cross a trust boundary.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["save", "load", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_MAGIC = "skmeta-model"
_ALWAYS_TRUSTED = ("torch", "skmeta")
_TRAINING_ONLY = ("callbacks", "train_split")


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
    if isinstance(value, np.ndarray):
        return {"__array__": value.tolist(), "dtype": value.dtype.str}
    raise ValueError(f"{where}= a {type(value).__name__} instance cannot be stored in the safe "
                     "format (only numbers, "
                     "strings, classes, tuples, lists and dicts can). Pass a class with "
                     "module__* parameters instead of an instance, or use pickle/joblib for "
                     "files you trust.")


def _resolve(path: str, trusted: tuple[str, ...]) -> type:
    mod_name, _, qual = path.partition(":")
    top = mod_name.split(".")[0]
    if mod_name not in sys.modules and top not in _ALWAYS_TRUSTED + trusted:
        raise ValueError(f"The file names the class {path!r} from module {mod_name!r}, which is "
                         "not imported. Import it first, or pass "
                         f"trusted_modules=({top!r},) if you trust it.")
    obj: Any = importlib.import_module(mod_name)
    for part in qual.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, (nn.Module, torch.optim.Optimizer))):
        raise ValueError(f"The file names {path!r}, which is not a torch.nn.Module or "
                         "torch.optim.Optimizer class; refusing to load it.")
    return obj


def _decode(value: Any, trusted: tuple[str, ...]) -> Any:
    if isinstance(value, list):
        return [_decode(v, trusted) for v in value]
    if not isinstance(value, dict):
        return value
    if "__class__" in value:
        return _resolve(value["__class__"], trusted)
    if "__dtype__" in value:
        return getattr(torch, value["__dtype__"])
    if "__tuple__" in value:
        return tuple(_decode(v, trusted) for v in value["__tuple__"])
    if "__dict__" in value:
        return {k: _decode(v, trusted) for k, v in value["__dict__"].items()}
    if "__array__" in value:
        return np.asarray(value["__array__"], dtype=np.dtype(value["dtype"]))
    raise ValueError(f"Unknown entry {value!r} in the model file.")


# ---------------------------------------------------------------- save / load


def _atomic_write(path: str | os.PathLike, payload: dict) -> None:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".skmeta-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}


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
    Training-only parameters that are objects (``callbacks``, ``train_split``)
    are not stored (a warning names them); they are None after :func:`load`.

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
    from . import __version__

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
        history = json.dumps(obj.history_.to_list(), default=float)
        tensors = {"module": _cpu_state(obj.module_),
                   "inner_state": _cpu_state(obj.inner_state_)}
        opt = obj.optimizer_.state_dict()
        buf = io.BytesIO()
        torch.save(opt, buf)  # optimizer state holds tensors, numbers and lists only
        kind, extra = "meta", {"history": history}
        tensors["optimizer"] = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
    elif role == "adapted":
        if not hasattr(obj, "module_"):
            raise ValueError("This adapted model holds no network.")
        if not hasattr(obj, "module_class_"):
            raise ValueError("This adapted model's network was passed as an instance and "
                             "cannot be rebuilt from its class; use pickle/joblib.")
        params = {}
        attrs = {k: _encode(getattr(obj, k), k) for k in
                 ("module_class_", "module_kwargs_", "device_", "input_shape_", "y_ndim_",
                  "meta_estimator_", "classes_", "adapt_steps_", "inner_lr_", "step_")
                 if hasattr(obj, k)}
        tensors = {"module": _cpu_state(obj.module_)}
        kind, extra = "adapted", {}
    else:
        raise TypeError(f"skmeta.save stores skmeta meta-learners and adapted models; got "
                        f"{type(obj).__name__}.")
    header = {"magic": _MAGIC, "format_version": FORMAT_VERSION, "skmeta_version": __version__,
              "kind": kind, "class": type(obj).__name__, "params": params, "attrs": attrs,
              **extra}
    _atomic_write(path, {"header": json.dumps(header), "tensors": tensors})


def load(path: str | os.PathLike, *, trusted_modules: Iterable[str] = ()) -> Any:
    """Load a model saved with :func:`save`, without running code from the file.

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
        If the file is not a skmeta model file, comes from a newer format, or
        names a class that is not an allowed torch class.

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
    """
    from skorch.exceptions import DeviceWarning

    from . import __version__
    from .adapted import AdaptedClassifier, AdaptedRegressor
    from .registry import find

    trusted = tuple(trusted_modules)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        header = json.loads(payload["header"])
    except (OSError, FileNotFoundError):
        raise
    except Exception as exc:  # unpickling refused or not our layout: say so, keep the cause
        raise ValueError(f"{os.fspath(path)!r} is not a skmeta model file (or it holds "
                         f"objects other than tensors and JSON): {exc}") from exc
    if not isinstance(header, dict) or header.get("magic") != _MAGIC:
        raise ValueError(f"{os.fspath(path)!r} is not a skmeta model file.")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{os.fspath(path)!r} was written by skmeta "
                         f"{header.get('skmeta_version')} in file format {version}; this skmeta "
                         f"({__version__}) reads formats up to {FORMAT_VERSION}. Upgrade "
                         "skmeta to load it.")
    adapted = {c.__name__: c for c in (AdaptedRegressor, AdaptedClassifier)}
    cls = adapted.get(header["class"]) if header["kind"] == "adapted" else find(header["class"])
    if cls is None:
        raise ValueError(f"Unknown model class {header['class']!r} in {os.fspath(path)!r}.")
    attrs = {k: _decode(v, trusted) for k, v in header["attrs"].items()}
    tensors = payload["tensors"]
    if header["kind"] == "adapted":
        module = attrs["module_class_"](**attrs["module_kwargs_"])
        module.load_state_dict(tensors["module"])
        module.eval()
        model = cls()
        for k, v in attrs.items():
            setattr(model, k, v)
        model.module_ = module
        model.input_shape_ = tuple(model.input_shape_)
        model.n_features_in_ = int(np.prod(model.input_shape_))
        model.__setstate__(dict(model.__dict__))  # moves to the device, or CPU with a warning
        return model
    params = {k: _decode(v, trusted) for k, v in header["params"].items()}
    est = cls(**params)
    device = params.get("device") or "cpu"
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        warnings.warn(f"The model was saved from {device}, which is not available here; it "
                      "was loaded on the CPU.", DeviceWarning, stacklevel=2)
        est.set_params(device="cpu")
    rng_state = attrs.pop("rng_state")
    attrs.pop("engines", None)
    for k in ("engine_", "engine_timings_"):  # format-1 files of skmeta 0.1.0.dev0
        attrs.pop(k, None)
    for k, v in attrs.items():
        setattr(est, k, v)
    est.input_shape_ = tuple(est.input_shape_)
    est.initialize()
    est.module_.load_state_dict(tensors["module"])
    if "inner_state" in tensors:
        est.inner_state_.load_state_dict(tensors["inner_state"])
    opt_state = torch.load(io.BytesIO(tensors["optimizer"].numpy().tobytes()),
                           map_location=est.device or "cpu", weights_only=True)
    est.optimizer_.load_state_dict(opt_state)
    est.rng_.bit_generator.state = rng_state
    from skorch.history import History

    est.history_ = History(json.loads(header["history"]))
    engines = attrs.get("engines", {})
    est.engines_.chosen.update(engines.get("chosen", {}))
    est.engines_.timings.update(engines.get("timings", {}))
    if "seed_" in attrs:
        est.seed_ = attrs["seed_"]
    return est
