"""Data sets: generated tasks (``make_*``), downloadable data (``fetch_*``) and tables
bundled by optional packages (``load_*``)."""

from ._base import get_data_home
from ._omniglot import fetch_omniglot, rotate_classes
from ._sinusoid import make_sinusoid_tasks
from ._tables import load_grouped_table

__all__ = ["get_data_home", "fetch_omniglot", "rotate_classes", "make_sinusoid_tasks",
           "load_grouped_table"]
