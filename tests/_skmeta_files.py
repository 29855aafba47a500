"""Test helpers that write skmeta model files the way an editor or an old skmeta would."""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Callable

import torch

from skmeta.io import safetensors as _safetensors
from skmeta.io.format import FORMAT_VERSION, _encode


def rewrite(path: str | os.PathLike, edit: Callable[[dict], None] | None = None, *,
            version: int = FORMAT_VERSION,
            groups_edit: Callable[[dict], None] | None = None) -> None:
    """Edit a skmeta file's header (and tensors) and write it back with a valid digest.

    This is what someone who edits a file on purpose can do: the digest then
    passes, and only the loader's other checks can catch the edit.
    """
    _, header, groups = _safetensors.read(path, max_version=FORMAT_VERSION)
    groups = {g: {k: t.clone() for k, t in ts.items()} for g, ts in groups.items()}
    if edit is not None:
        edit(header)
    if groups_edit is not None:
        groups_edit(groups)
    with open(path, "wb") as f:
        _safetensors.write(f, version, header, groups,
                           writer=str(header.get("skmeta_version", "")))


def save_v1(obj, path: str | os.PathLike) -> None:
    """Write ``obj`` exactly as skmeta's format version 1 did (a torch.save zip)."""
    from skmeta import __version__
    from skmeta.estimator import BaseMetaLearner

    def cpu_state(module):
        return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}

    if isinstance(obj, BaseMetaLearner):
        params = {}
        for name, value in obj.get_params(deep=False).items():
            if name in ("callbacks", "train_split") and value is not None \
                    and not isinstance(value, str):
                value = None
            params[name] = _encode(value, name)
        attrs = {k: _encode(getattr(obj, k), k) for k in obj._saved_attributes()
                 if hasattr(obj, k)}
        attrs["rng_state"] = _encode(obj.rng_.bit_generator.state, "rng_")
        buf = io.BytesIO()
        torch.save(obj.optimizer_.state_dict(), buf)
        tensors = {"module": cpu_state(obj.module_),
                   "optimizer": torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)}
        kind, extra = "meta", {"history": json.dumps(obj.history_.to_list(), default=float)}
    else:
        params = {}
        attrs = {k: _encode(getattr(obj, k), k) for k in
                 ("module_class_", "module_kwargs_", "device_", "input_shape_", "y_ndim_",
                  "meta_estimator_", "classes_") if hasattr(obj, k)}
        tensors = {"module": cpu_state(obj.module_)}
        kind, extra = "adapted", {}
    header = {"magic": "skmeta-model", "format_version": 1, "skmeta_version": __version__,
              "kind": kind, "class": type(obj).__name__, "params": params, "attrs": attrs,
              **extra}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save({"header": json.dumps(header), "tensors": tensors}, path)


def rewrite_v1(path: str | os.PathLike, edit: Callable[[dict], None]) -> None:
    """Edit a format-1 file's header (format 1 has no checksum to recompute)."""
    payload = torch.load(path, weights_only=True)
    header = json.loads(payload["header"])
    edit(header)
    payload["header"] = json.dumps(header)
    torch.save(payload, path)


def read_raw(path: str | os.PathLike) -> tuple[dict, bytes]:
    """A skmeta file's safetensors header (tensor table and metadata) and its data bytes."""
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_raw(path: str | os.PathLike, table: dict, data: bytes, *, reseal: bool = True) -> None:
    """Write a safetensors header and data as they are; with ``reseal``, recompute the
    skmeta digest first wherever the edited table still lets one compute it."""
    if reseal:
        meta = table.get("__metadata__")
        try:
            tensors = {k: (e["dtype"], e["shape"], data[e["data_offsets"][0]:e["data_offsets"][1]])
                       for k, e in table.items() if k != "__metadata__"}
            meta[_safetensors.DIGEST_KEY] = _safetensors.digest(meta, tensors)
        except (KeyError, TypeError, IndexError, ValueError, AttributeError):
            pass  # not computable: the edit itself must be refused
    head = json.dumps(table, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little") + head + data)


def rewrite_raw(path: str | os.PathLike, edit: Callable[[dict], None]) -> None:
    """Edit a skmeta file's safetensors header as it is, tensor table included, keeping
    the data bytes; recompute the digest where possible (as an editor would)."""
    table, data = read_raw(path)
    edit(table)
    write_raw(path, table, data)
