"""skmeta's model file: a safetensors file with skmeta's JSON and a SHA-256 in its metadata.

No pickle anywhere: reading parses JSON and reinterprets bytes as tensors
(:func:`torch.frombuffer`), nothing else. The layout is safetensors'
(https://huggingface.co/docs/safetensors), so any safetensors reader opens the
file and sees the network's tensors::

    offset 0      N: the header's length, 8 bytes, unsigned little-endian
    offset 8      the header: N bytes of UTF-8 JSON, padded with spaces
                  {"__metadata__": {str: str},
                   "<group>/<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
    offset 8 + N  the data: every tensor's bytes, at [b, e) from here, with no gap and
                  no overlap, up to the end of the file

The tensors are named ``group/name`` (``module/0.weight``, ``optimizer/3``,
``inner_state/...``). ``__metadata__`` holds (all strings)::

    "format": "pt"                      what Hugging Face tools expect of PyTorch tensors
    "skmeta.format_version": "3"
    "skmeta.version": the skmeta that wrote it
    "skmeta.header": skmeta's JSON header (parameters, fitted attributes, history...)
    "skmeta.sha256": the integrity digest, see :func:`digest`

The digest covers the metadata (all but itself), every tensor's name, dtype and
shape, and every tensor's bytes: what the file *means*, not how a writer laid it
out, so that a file written by the official ``safetensors`` package with the same
tensors and metadata (e.g. after ``safetensors.torch.load_file`` and ``save_file``)
still verifies. Since the tensors must tile the data exactly and the header may
hold no whitespace but its trailing spaces, every byte of a file skmeta wrote is
still under the check. These metadata keys and the digest keep their meaning in
every later format version, so that any reader can tell a damaged file from a
newer one.

Reading checks, in this order, before anything is built: the header's length
(at most 100 MB, inside the file), its JSON (strict: no duplicate keys, no NaN,
no whitespace but the trailing padding), every tensor entry (known dtype, shape
matching its byte range), the file's length against the data the entries announce
(truncation, appended bytes), that the tensors tile the data section (no overlap,
no hole), the SHA-256, then the format version and skmeta's JSON. Memory used
while reading is the file's size.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from typing import Any, BinaryIO

import torch

FORMAT_KEY, VERSION_KEY, WRITER_KEY = "format", "skmeta.format_version", "skmeta.version"
HEADER_KEY, DIGEST_KEY = "skmeta.header", "skmeta.sha256"
#: the largest header safetensors itself accepts
MAX_HEADER = 100_000_000
_LENGTH = 8
_CHUNK = 1 << 22

#: dtypes a file may hold, by their safetensors names.
DTYPES: dict[str, torch.dtype] = {
    "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32,
    "F64": torch.float64, "C64": torch.complex64, "U8": torch.uint8, "I8": torch.int8,
    "I16": torch.int16, "I32": torch.int32, "I64": torch.int64, "BOOL": torch.bool,
}
_NAMES = {dtype: name for name, dtype in DTYPES.items()}
_ITEMSIZE = {name: torch.empty((), dtype=dtype).element_size() for name, dtype in DTYPES.items()}
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}


class NotSafetensorsError(ValueError):
    """The file does not start like a safetensors file (skmeta's format 3)."""


def _as_bytes(t: torch.Tensor) -> memoryview:
    flat = t.reshape(-1)
    if flat.dtype is not torch.uint8:
        flat = flat.view(torch.uint8)
    return memoryview(flat.numpy()).cast("B")


def digest(metadata: Mapping[str, str],
           tensors: Mapping[str, tuple[str, list[int], bytes | memoryview]]) -> str:
    """The SHA-256 (hex) of a file's metadata (but its digest) and its tensors.

    ``tensors`` maps each name to ``(safetensors dtype, shape, raw bytes)``.
    """
    table = [[name, tensors[name][0], list(tensors[name][1])] for name in sorted(tensors)]
    meta = {k: v for k, v in metadata.items() if k != DIGEST_KEY}
    h = hashlib.sha256(b"skmeta safetensors digest 1\n")
    h.update(json.dumps({"metadata": meta, "tensors": table}, sort_keys=True,
                        separators=(",", ":")).encode("utf-8"))
    h.update(b"\n")
    for name in sorted(tensors):
        h.update(tensors[name][2])
    return h.hexdigest()


def tensor_digest(metadata: Mapping[str, str], tensors: Mapping[str, torch.Tensor]) -> str:
    """:func:`digest` of CPU tensors (e.g. to seal a file another writer writes)."""
    return digest(metadata, {k: (_NAMES[t.dtype], list(t.shape), _as_bytes(t.contiguous()))
                             for k, t in tensors.items()})


def write(f: BinaryIO, version: int, header: Mapping[str, Any],
          groups: Mapping[str, Mapping[str, torch.Tensor]], *, writer: str = "") -> int:
    """Write a model file to the binary file ``f``; return the number of bytes written.

    Tensors are copied to the CPU and made contiguous; their bytes are written as
    they are in memory (little-endian machines only).
    """
    if sys.byteorder != "little":  # pragma: no cover - no big-endian CI
        raise OSError("skmeta's model format is little-endian; saving on a big-endian "
                      "machine is not supported.")
    tensors: dict[str, torch.Tensor] = {}
    for group, named in groups.items():
        if "/" in group:
            raise ValueError(f"Tensor group names cannot hold '/'; got {group!r}.")
        for name, tensor in named.items():
            if not isinstance(tensor, torch.Tensor) or tensor.layout is not torch.strided \
                    or tensor.is_quantized or tensor.dtype not in _NAMES:
                raise ValueError(f"{group}/{name}: only dense tensors of the dtypes "
                                 f"{', '.join(str(d).removeprefix('torch.') for d in _NAMES)} "
                                 "can be stored; got "
                                 f"{getattr(tensor, 'dtype', type(tensor).__name__)}.")
            tensors[f"{group}/{name}"] = tensor.detach().to("cpu").contiguous()
    metadata = {FORMAT_KEY: "pt", VERSION_KEY: str(version), WRITER_KEY: writer,
                HEADER_KEY: json.dumps(header, separators=(",", ":"))}
    metadata[DIGEST_KEY] = tensor_digest(metadata, tensors)
    # larger items first, as safetensors does: every tensor starts aligned to its item size
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    table: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for key in order:
        t = tensors[key]
        end = offset + t.numel() * t.element_size()
        table[key] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape),
                      "data_offsets": [offset, end]}
        offset = end
    head = json.dumps(table, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    f.write(len(head).to_bytes(_LENGTH, "little"))
    f.write(head)
    for key in order:
        f.write(_as_bytes(tensors[key]))
    return _LENGTH + len(head) + offset


def sniff(start: bytes, size: int) -> bool:
    """Whether a file of ``size`` bytes starting with ``start`` (9 bytes when the file
    has them) is to be read as safetensors: a header length under 4 GiB then ``{``, or a
    file cut inside its first 9 bytes whose high length bytes are zero."""
    if len(start) >= _LENGTH + 1:
        n = int.from_bytes(start[:_LENGTH], "little")
        return start[_LENGTH:_LENGTH + 1] == b"{" and 2 <= n < 1 << 32
    # cut inside the length: small header lengths have zero high bytes
    return 1 <= len(start) <= _LENGTH and len(start) >= 4 and not any(start[3:])


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str | bytes, *, allow_nan: bool = False) -> Any:
    """``json.loads``, refusing duplicate keys (and NaN/Infinity unless ``allow_nan``)."""
    if allow_nan:
        return json.loads(text, object_pairs_hook=_strict_object)
    return json.loads(text, object_pairs_hook=_strict_object, parse_constant=_no_constant)


def read(path: str | os.PathLike, *, max_version: int
         ) -> tuple[int, dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """Read and verify a model file; return ``(version, header, groups)``.

    The tensors of ``groups`` are views of one buffer holding the file (or copies,
    when a foreign writer left one unaligned); copy what you keep. Raises
    :class:`NotSafetensorsError` when the file does not start like a safetensors
    file and ``ValueError`` for every other problem; messages name the file.
    """
    name = repr(os.fspath(path))
    if sys.byteorder != "little":  # pragma: no cover - no big-endian CI
        raise ValueError(f"{name}: skmeta's model format is little-endian; loading on a "
                         "big-endian machine is not supported.")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        start = f.read(_LENGTH + 1)
        if not sniff(start, size):
            raise NotSafetensorsError(f"{name} is not a safetensors file.")
        if size <= _LENGTH:
            raise ValueError(f"{name} is truncated: a skmeta model file has at least "
                             f"{_LENGTH + 2} bytes, this one has {size}.")
        n = int.from_bytes(start[:_LENGTH], "little")
        if n > MAX_HEADER:
            raise ValueError(f"{name} is malformed: its header announces {n} bytes, more than "
                             f"the {MAX_HEADER} that safetensors allows (damaged, or not a "
                             "skmeta model file).")
        if _LENGTH + n > size:
            raise ValueError(f"{name} is truncated: its header announces {n} bytes, the file "
                             f"has {size} bytes in all (an interrupted download or copy?).")
        buf = bytearray(size)
        view = memoryview(buf)
        view[:len(start)] = start
        pos = len(start)
        while pos < size:
            got = f.readinto(view[pos:min(size, pos + _CHUNK)])
            if not got:
                raise ValueError(f"{name} is truncated: expected {size} bytes, could read "
                                 f"{pos} (the file shrank while it was read).")
            pos += got
    table = _header(bytes(view[_LENGTH:_LENGTH + n]), name)
    data_start = _LENGTH + n
    metadata, entries = _entries(table, name)
    end = max((e[2][1] for e in entries.values()), default=0)
    if size < data_start + end:
        raise ValueError(f"{name} is truncated: expected {data_start + end} bytes, found {size} "
                         "(an interrupted download or copy?).")
    if size > data_start + end:
        raise ValueError(f"{name} has {size} bytes but its header announces "
                         f"{data_start + end}: bytes were appended to it or it is damaged.")
    _check_tiling(entries, name)
    data = view[data_start:]
    raw = {k: (e[0], e[1], data[e[2][0]:e[2][1]]) for k, e in entries.items()}
    expected = metadata.get(DIGEST_KEY)
    if not isinstance(expected, str) or digest(metadata, raw) != expected:
        raise ValueError(f"{name} fails its SHA-256 integrity check: it was damaged (disk, "
                         "transfer) or edited after skmeta wrote it. Refusing to load it; "
                         "get an intact copy.")
    version = _version(metadata, max_version, name)
    try:
        header = parse_json(metadata[HEADER_KEY], allow_nan=True)  # Python writes NaN
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{name} is malformed: skmeta's header is not valid JSON "
                         f"({exc}).") from exc
    if not isinstance(header, dict):
        raise ValueError(f"{name} is malformed: skmeta's header is not a JSON object.")
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, (dtype, shape, (begin, stop)) in entries.items():
        group, _, tensor_name = key.partition("/")
        groups.setdefault(group, {})[tensor_name] = _tensor(buf, data_start + begin,
                                                            data_start + stop, dtype, shape,
                                                            name, key)
    return version, header, groups


def _header(head: bytes, name: str) -> dict[str, Any]:
    body = head.rstrip(b" ")
    if not (body.startswith(b"{") and body.endswith(b"}")):
        raise ValueError(f"{name} is malformed: its header is not a JSON object padded with "
                         "spaces.")
    if any(c in body for c in b"\t\n\r"):  # never inside JSON strings: between tokens
        raise ValueError(f"{name} is malformed: its header holds whitespace other than its "
                         "trailing padding.")
    try:
        table = parse_json(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{name} is malformed: its header is not valid JSON ({exc}).") from exc
    if not isinstance(table, dict):
        raise ValueError(f"{name} is malformed: its header is not a JSON object.")
    return table


def _entries(table: dict[str, Any], name: str
             ) -> tuple[dict[str, str], dict[str, tuple[str, list[int], tuple[int, int]]]]:
    metadata = table.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError(f"{name} is malformed: its __metadata__ is not a table of strings.")
    if HEADER_KEY not in metadata:
        raise ValueError(f"{name} is not a skmeta model file: it is a safetensors file without "
                         "skmeta's metadata (tensors only, e.g. weights written by another "
                         "library); load it with safetensors and put the weights into a "
                         "module yourself.")
    entries = {}
    for key, entry in table.items():
        if key == "__metadata__":
            continue

        def bad(why: str, key: str = key) -> ValueError:
            return ValueError(f"{name} is malformed: tensor {key!r} {why}.")

        if "/" not in key:
            raise bad("is not named group/name")
        if not isinstance(entry, dict) or set(entry) != _ENTRY_KEYS:
            raise bad(f"is not described by exactly {sorted(_ENTRY_KEYS)}")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise bad(f"has the unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
        if not isinstance(shape, list) or not isinstance(offsets, list) or len(offsets) != 2 \
                or not all(type(v) is int and 0 <= v < 2**62 for v in shape + offsets):
            raise bad("has a shape or data_offsets that are not non-negative integers")
        numel = 1
        for d in shape:
            numel *= d
        begin, stop = offsets
        if stop < begin or stop - begin != numel * _ITEMSIZE[dtype]:
            raise bad(f"has shape {shape} of {dtype} ({numel * _ITEMSIZE[dtype]} bytes) but "
                      f"data_offsets {offsets}")
        entries[key] = (dtype, shape, (begin, stop))
    return metadata, entries


def _check_tiling(entries: dict[str, tuple[str, list[int], tuple[int, int]]],
                  name: str) -> None:
    position = 0
    for key, (_, _, (begin, stop)) in sorted(entries.items(), key=lambda kv: kv[1][2]):
        if begin != position:
            what = "overlaps the tensor before it" if begin < position else \
                "leaves a hole before it"
            raise ValueError(f"{name} is malformed: tensor {key!r} (data_offsets {begin}, "
                             f"{stop}) {what}; tensors must tile the data exactly.")
        position = stop


def _version(metadata: dict[str, str], max_version: int, name: str) -> int:
    text = metadata.get(VERSION_KEY, "")
    if not text.isdigit() or len(text) > 6:
        raise ValueError(f"{name} is malformed: its format version {text!r} is not a number.")
    version = int(text)
    if version > max_version:
        writer = metadata.get(WRITER_KEY, "")
        writer = f" (written by skmeta {writer})" if writer else ""
        raise ValueError(f"{name} is in skmeta file format version {version}{writer}, newer "
                         f"than this skmeta reads (up to {max_version}). Upgrade skmeta "
                         "(pip install --upgrade skmeta) to load it.")
    if version != max_version:
        raise ValueError(f"{name} announces skmeta file format version {version}, which was "
                         "never written as a safetensors file: it is not a valid skmeta "
                         "model file.")
    return version


def _tensor(buf: bytearray, begin: int, stop: int, dtype_name: str, shape: list[int],
            name: str, key: str) -> torch.Tensor:
    dtype = DTYPES[dtype_name]
    numel = (stop - begin) // _ITEMSIZE[dtype_name]
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    if dtype is torch.bool and max(memoryview(buf)[begin:stop]) > 1:
        raise ValueError(f"{name} is malformed: tensor {key!r} holds booleans other than 0 "
                         "and 1.")
    source: bytearray = buf
    if begin % _ITEMSIZE[dtype_name]:  # a foreign writer's unaligned tensor: copy it
        source, begin = bytearray(buf[begin:stop]), 0
    return torch.frombuffer(source, dtype=dtype, count=numel, offset=begin).view(shape)
