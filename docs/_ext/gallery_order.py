"""The order of the example gallery: what a newcomer should read first.

sphinx-gallery sorts the examples of a gallery with a key class named in
``sphinx_gallery_conf["within_subsection_order"]`` by its import path (a string, so that
Sphinx can pickle the configuration). ``conf.py`` fills :data:`ORDER`; examples missing
from it come after the listed ones, by file name (``tests/test_docs.py`` checks that every
example is listed).
"""

from __future__ import annotations

#: Example file names, in the order of the gallery (set by conf.py).
ORDER: list[str] = []


class ExampleOrder:
    """Sort key: the position in :data:`ORDER`, then the file name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename: str):
        try:
            return (ORDER.index(filename), filename)
        except ValueError:
            return (len(ORDER), filename)

    def __repr__(self) -> str:
        return f"<ExampleOrder {ORDER}>"
