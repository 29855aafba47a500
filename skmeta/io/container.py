"""skmeta's format-2 container, read only: a JSON header and tensor blobs under a SHA-256.

The previous release wrote this layout (format version 2); :func:`skmeta.save` now writes a
safetensors file (format version 3, :mod:`skmeta.io.safetensors`). The reader stays
so that files written by the previous release still load.

No pickle anywhere: reading a container parses JSON and reinterprets bytes as
tensors (:func:`torch.frombuffer`), nothing else. Layout (all integers little-endian)::

    offset 0   prefix, 32 bytes:  magic b"\\x89SKMETA\\n" (8) | format version (uint32)
                                  | flags (uint32, 0) | header length H (uint64)
                                  | file length N (uint64)
    offset 32  header: H bytes of UTF-8 JSON
               zero padding up to a multiple of 64: the data section starts there (D)
    offset D   tensor data: one blob per tensor, each at a multiple of 64 from D,
               zero padding between them
    N - 32     trailer: SHA-256 of bytes [0, N - 32)

The header's ``"tensors"`` entry describes the blobs as named groups of named
tensors, ``{group: {name: {"dtype", "shape", "offset", "nbytes"}}}`` (``offset``
from D). The prefix and the trailer keep this layout in every later format
version, so that any reader can tell a damaged file from a newer one.

Reading checks, in this order, before anything is parsed: the magic bytes, the
file length announced by the prefix against the real one (truncation), the
SHA-256 (damage or edits), then the format version; then the header's JSON and
every tensor entry (known dtype, shape matching ``nbytes``, inside the data
section). Memory used while reading is the file's size.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
from typing import Any

import torch

MAGIC = b"\x89SKMETA\n"
_PREFIX = struct.Struct("<8sIIQQ")
PREFIX_SIZE = _PREFIX.size  # 32
TRAILER_SIZE = hashlib.sha256().digest_size  # 32
ALIGN = 64
_CHUNK = 1 << 22

#: dtypes a container may hold, by the name written in the header.
DTYPES: dict[str, torch.dtype] = {
    name: getattr(torch, name)
    for name in ("float16", "bfloat16", "float32", "float64", "complex64", "complex128",
                 "uint8", "int8", "int16", "int32", "int64", "bool")
}
_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


class NotAContainerError(ValueError):
    """The file does not start with the container's magic bytes.

    ``what`` describes what the file looks like instead (e.g. "a pickle stream");
    ``torch_zip`` is True for a ``torch.save`` zip archive (format-version-1
    skmeta files are such archives).
    """

    def __init__(self, name: str, what: str, *, torch_zip: bool = False):
        super().__init__(f"{name} is not a skmeta model file: it {what}.")
        self.what = what
        self.torch_zip = torch_zip


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _describe(start: bytes) -> tuple[str, bool]:
    """What a file starting with ``start`` looks like (for files without the magic)."""
    if start.startswith(b"PK\x03\x04") or start.startswith(b"PK\x05\x06"):
        return "is a zip archive (for example a torch.save or numpy .npz file)", True
    if start[:1] == b"\x80" and start[1:2] in {bytes([p]) for p in range(2, 6)}:
        return ("is a pickle stream (written by pickle, joblib or an old torch.save); "
                "skmeta.load never unpickles: unpickling can run code"), False
    if start.startswith(b"\x93NUMPY"):
        return "is a numpy .npy file", False
    if start.startswith(b"\x89HDF\r\n\x1a\n"):
        return "is an HDF5 file", False
    if start[8:9] == b"{":
        return ("looks like a safetensors file whose header length is damaged "
                f"({int.from_bytes(start[:8], 'little')} bytes)"), False
    if start.lstrip()[:1] in (b"{", b"["):
        return "looks like a JSON file", False
    if start and all(32 <= b < 127 or b in b"\t\r\n" for b in start):
        return f"is a text file starting with {start[:16].decode('ascii')!r}", False
    return f"starts with the bytes {start[:16]!r}, not skmeta's {MAGIC!r}", False


def read(path: str | os.PathLike, *, max_version: int
         ) -> tuple[int, dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """Read and verify a container; return ``(version, header, groups)``.

    The tensors of ``groups`` are views of one buffer holding the file; copy what
    you keep. Raises :class:`NotAContainerError` when the magic is missing and
    ``ValueError`` for every other problem; messages name the file.
    """
    name = repr(os.fspath(path))
    if sys.byteorder != "little":  # pragma: no cover - no big-endian CI
        raise ValueError(f"{name}: skmeta's model format is little-endian; loading on a "
                         "big-endian machine is not supported.")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        start = f.read(PREFIX_SIZE)
        if not start:
            raise NotAContainerError(name, "is empty (0 bytes)")
        if not start.startswith(MAGIC) and not MAGIC.startswith(start):
            what, torch_zip = _describe(start + f.read(32))
            raise NotAContainerError(name, what, torch_zip=torch_zip)
        minimum = PREFIX_SIZE + TRAILER_SIZE
        if size < minimum:
            raise ValueError(f"{name} is truncated: a skmeta model file has at least {minimum} "
                             f"bytes, this one has {size}.")
        _, version, _, head_size, total = _PREFIX.unpack(start)
        if size < total:
            raise ValueError(f"{name} is truncated: expected {total} bytes, found {size} (an "
                             "interrupted download or copy?).")
        if size > total:
            raise ValueError(f"{name} has {size} bytes but announces {total}: bytes were "
                             "appended to it or it is damaged.")
        buf = bytearray(size)
        view = memoryview(buf)
        view[:PREFIX_SIZE] = start
        pos = PREFIX_SIZE
        while pos < size:
            n = f.readinto(view[pos:min(size, pos + _CHUNK)])
            if not n:
                raise ValueError(f"{name} is truncated: expected {total} bytes, could read "
                                 f"{pos} (the file shrank while it was read).")
            pos += n
    if hashlib.sha256(view[:size - TRAILER_SIZE]).digest() != bytes(view[size - TRAILER_SIZE:]):
        raise ValueError(f"{name} fails its SHA-256 integrity check: it was damaged (disk, "
                         "transfer) or edited after skmeta wrote it. Refusing to load it; "
                         "get an intact copy.")
    head = bytes(view[PREFIX_SIZE:PREFIX_SIZE + head_size])
    if version > max_version:
        writer = ""
        try:  # the checksum passed: the header is what a newer skmeta wrote
            writer = f" (written by skmeta {json.loads(head)['skmeta_version']})"
        except (ValueError, KeyError, TypeError, RecursionError):
            pass  # a newer header layout: its writer is unknown, the advice stands
        raise ValueError(f"{name} is in skmeta file format version {version}{writer}, newer "
                         f"than this skmeta reads (up to {max_version}). Upgrade skmeta "
                         "(pip install --upgrade skmeta) to load it.")
    if version != max_version:
        raise ValueError(f"{name} announces skmeta file format version {version}, which was "
                         "never written in this layout: it is not a valid skmeta model file.")
    data_start = _align(PREFIX_SIZE + head_size)
    data_size = size - TRAILER_SIZE - data_start
    if data_size < 0:
        raise ValueError(f"{name} is malformed: its header is longer than the file.")
    try:
        header = json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{name} is malformed: its header is not valid JSON ({exc}).") from exc
    if not isinstance(header, dict) or not isinstance(header.get("tensors"), dict):
        raise ValueError(f"{name} is malformed: its header is not a JSON object with a "
                         "'tensors' table.")
    groups = {}
    for group, entries in header["tensors"].items():
        if not isinstance(entries, dict):
            raise ValueError(f"{name} is malformed: tensor group {group!r} is not a table.")
        groups[group] = {key: _tensor(buf, data_start, data_size, name, f"{group}/{key}", entry)
                         for key, entry in entries.items()}
    return version, header, groups


def _tensor(buf: bytearray, data_start: int, data_size: int, name: str, where: str,
            entry: Any) -> torch.Tensor:
    def bad(why: str) -> ValueError:
        return ValueError(f"{name} is malformed: tensor {where} {why}.")

    if not isinstance(entry, dict):
        raise bad("has no description")
    name_of_dtype = entry.get("dtype")
    dtype = DTYPES.get(name_of_dtype) if isinstance(name_of_dtype, str) else None
    if dtype is None:
        raise bad(f"has the unknown dtype {entry.get('dtype')!r}")
    shape, offset, nbytes = entry.get("shape"), entry.get("offset"), entry.get("nbytes")
    ints = [offset, nbytes] + (shape if isinstance(shape, list) else [None])
    if not all(type(v) is int and 0 <= v < 2**62 for v in ints):
        raise bad("has a shape, offset or size that is not made of non-negative integers")
    itemsize = torch.empty((), dtype=dtype).element_size()
    numel = 1
    for d in shape:
        numel *= d
    if numel * itemsize != nbytes:
        raise bad(f"has shape {shape} of {entry['dtype']} ({numel * itemsize} bytes) but "
                  f"{nbytes} bytes of data")
    if offset % ALIGN or offset + nbytes > data_size:
        raise bad(f"lies outside the data section (offset {offset}, {nbytes} bytes, "
                  f"section of {data_size} bytes)")
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    if dtype is torch.bool:
        raw = torch.frombuffer(buf, dtype=torch.uint8, count=numel, offset=data_start + offset)
        if bool((raw > 1).any()):
            raise bad("holds booleans other than 0 and 1")
    flat = torch.frombuffer(buf, dtype=dtype, count=numel, offset=data_start + offset)
    return flat.view(shape)
