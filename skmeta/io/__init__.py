"""The safe file format: :func:`save` and :func:`load` (see :mod:`skmeta.io.format`)."""

from .format import FORMAT_VERSION, SafeFileMixin, load, save

__all__ = ["save", "load", "FORMAT_VERSION", "SafeFileMixin"]
