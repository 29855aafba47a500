"""Data sets: generated tasks (``make_*``) and downloadable data (``fetch_*``)."""

from ._base import get_data_home
from ._omniglot import fetch_omniglot, rotate_classes
from ._sinusoid import make_sinusoid_tasks

__all__ = ["get_data_home", "fetch_omniglot", "rotate_classes", "make_sinusoid_tasks"]
