"""The JSON codec of the safe format: plain values, arrays, classes (allow-listed) and
tensors referenced by name, encoded and decoded without ever running code."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

#: module packages whose classes a file may name without trusted_modules
_ALWAYS_TRUSTED = ("torch", "skmeta")


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
