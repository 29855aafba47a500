"""Reading files of format version 1 (a ``torch.save`` zip without an integrity check),
with ``torch.load(weights_only=True)`` after checking the archive; kept for reading only."""

from __future__ import annotations

import io
import json
import pickle
import re
import warnings
import zipfile
from typing import Any, BinaryIO

import torch

#: the magic string of format-1 headers
_V1_MAGIC = "skmeta-model"


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


def _read_v1(file: str, current_version: int
             ) -> tuple[dict, dict[str, dict[str, torch.Tensor]], Any]:
    """Read a format-version-1 file (a torch zip); return (header, groups, optimizer state).

    ``current_version`` is the format :func:`skmeta.save` writes now (named in the warning).
    """
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
                  f"skmeta.save to convert it to format version {current_version} "
                  "(tamper-evident); a future skmeta will stop reading version 1.",
                  FutureWarning, stacklevel=3)
    return header, {"module": module_state}, optimizer_state
