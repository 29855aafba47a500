"""Building what a checked file describes: networks first on the meta device and compared
with the file's tensors, then for real; meta-learners and adapted models from the header."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from skorch.exceptions import DeviceWarning
from torch import nn

from .. import registry
from .codec import _decode

#: fitted attributes of version-1 files that are now kept elsewhere (ignored when loading)
_LEGACY_ATTRIBUTES = {"engine_", "engine_timings_"}
#: Tensor groups of a meta-learner's file besides "module" and "optimizer": group name ->
#: the fitted attribute (an ``nn.Module``, e.g. an ``nn.ParameterDict``) whose state_dict
#: the group holds. It is built by ``initialize()`` and its state loaded after it. Storing
#: more learnable state (such as learned per-parameter inner learning rates) is one entry.
_EXTRA_GROUPS: dict[str, str] = {"inner_state": "inner_state_"}



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
    unknown = sorted(set(attrs) - set(cls.saved_fields()))
    if unknown:
        raise ValueError(f"{file!r} is malformed: unknown attributes {unknown}.")
    _check_adapted_numbers(attrs, file)
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


def _check_adapted_numbers(attrs: dict, file: str) -> None:
    """An adapted model's recorded steps and rate are what adapt could have used."""
    for key in ("adapt_steps_", "step_"):
        value = attrs.get(key)
        if value is not None and not (type(value) is int and 0 <= value < 2**31):
            raise ValueError(f"{file!r} stores invalid hyper-parameters: {key}={value!r} is not "
                             "a non-negative integer. The file was edited or damaged.")
    rate = attrs.get("inner_lr_")
    if isinstance(rate, (int, float)) and not isinstance(rate, bool) \
            and not (np.isfinite(rate) and rate > 0):
        raise ValueError(f"{file!r} stores invalid hyper-parameters: inner_lr_={rate!r} is not "
                         "a finite positive number. The file was edited or damaged.")


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
    try:  # the checks fit makes: a file cannot bring inner_lr=inf or NaN
        est._check_params()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{file!r} stores invalid hyper-parameters: {exc} The file was "
                         "edited or damaged; nothing was built.") from exc
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
    est.n_features_in_ = int(np.prod(est.input_shape_))
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
    try:
        est.engines_.restore(engines)
    except ValueError as exc:
        raise ValueError(f"{file!r} is malformed: {exc}.") from exc
    if "seed_" in attrs:  # initialize() drew a new one
        est.seed_ = attrs["seed_"]
    return est
