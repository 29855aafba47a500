"""The documentation covers the public API.

Every public name (the ``__all__`` of skmeta's public modules) must appear in the API
reference (``docs/api.rst``, read as plain text), and every public class and function
must have a numpydoc docstring with a doctested Examples section. Plain parsing only: no
Sphinx, no numpydoc, nothing optional is imported. Building the docs themselves is
``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (see docs/README.md).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"

# Modules whose __all__ is public API (their names must be in the API reference).
PUBLIC_MODULES = [
    "skmeta",
    "skmeta.algorithms",
    "skmeta.functional",
    "skmeta.data",
    "skmeta.metrics",
    "skmeta.pipeline",
    "skmeta.modules",
    "skmeta.datasets",
    "skmeta.parallel",
    "skmeta.intervals",
    "skmeta.registry",
    "skmeta.utils.estimator_checks",
    "skmeta.estimator.adapted",
    # every algorithm's module: adding an algorithm needs no change here
    *sorted(f"skmeta.algorithms.{p.stem}" for p in (ROOT / "skmeta" / "algorithms").glob("*.py")
            if p.stem != "__init__"),
]
# Documented for algorithm authors and for the file format; their names must be in the
# API reference too, but need no Examples section.
REFERENCE_ONLY_MODULES = ["skmeta.estimator", "skmeta.io", "skmeta.data.metabatch",
                          "skmeta.estimator.engines", "skmeta.estimator.parameters",
                          "skmeta.estimator.targets", "skmeta.estimator.adaptation",
                          "skmeta.estimator.inner_state", "skmeta.estimator.training",
                          "skmeta.estimator.network"]

# Public classes/functions that still lack an Examples section with a doctest. Remove a
# name once its docstring has one (test_known_missing_examples_is_current says when).
KNOWN_MISSING_EXAMPLES: set[str] = set()

NUMPYDOC_SECTIONS = {
    "Parameters", "Returns", "Yields", "Receives", "Other Parameters", "Raises", "Warns",
    "Warnings", "See Also", "Notes", "References", "Examples", "Attributes", "Methods",
}


def _modules(names):
    out = []
    for name in names:
        try:
            out.append(importlib.import_module(name))
        except ImportError:  # a module not written yet
            continue
    return out


def _public(modules):
    """``{qualified name: object}`` for every name in the modules' ``__all__``."""
    return {f"{m.__name__}.{n}": getattr(m, n) for m in modules for n in m.__all__}


def _api_sources():
    skip = {"_build", "gen_modules", "auto_examples", "_templates"}
    return [p for p in DOCS.rglob("*.rst") if not skip & set(p.relative_to(DOCS).parts)]


_DIRECTIVE = re.compile(r"^\s*\.\.\s+([\w:-]+)::\s*(\S*)")


def _documented_names():
    """Qualified names listed in autosummary tables or auto* directives of the docs."""
    names = set()
    for path in _api_sources():
        module, in_autosummary = None, False
        for line in path.read_text(encoding="utf-8").splitlines():
            match = _DIRECTIVE.match(line)
            if match:
                directive, arg = match.groups()
                in_autosummary = directive == "autosummary"
                if directive in ("currentmodule", "py:currentmodule", "module", "automodule"):
                    module = arg
                elif directive in ("autoclass", "autofunction", "autodata", "automethod"):
                    names.add(arg if "." in arg or module is None else f"{module}.{arg}")
                continue
            if not in_autosummary:
                continue
            stripped = line.strip()
            if not stripped or stripped.startswith(":"):
                continue  # blank lines and the directive's options
            if not line.startswith((" ", "\t")):
                in_autosummary = False  # the block ended
                continue
            name = stripped.lstrip("~")
            names.add(name if module is None or name.startswith("skmeta.")
                      else f"{module}.{name}")
    return names


def _resolve(qualname):
    parts = qualname.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(qualname)


def test_every_public_name_is_in_the_api_reference():
    documented = _documented_names()
    documented_objects = [_resolve(n) for n in documented]
    missing = []
    for qualname, obj in _public(_modules(PUBLIC_MODULES + REFERENCE_ONLY_MODULES)).items():
        if qualname in documented:
            continue
        # re-exports (skmeta.data.Task is skmeta.Task) are documented once
        if not isinstance(obj, (int, float, str)) and any(obj is d for d in documented_objects):
            continue
        missing.append(qualname)
    assert not missing, (f"Public names missing from the API reference (add them to an "
                         f"autosummary table in docs/api.rst): {sorted(missing)}")


def test_api_reference_names_exist():
    stale = []
    for name in sorted(_documented_names()):
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            stale.append(name)
    assert not stale, f"docs/api.rst lists names that do not exist: {stale}"


def _sections(doc):
    """Numpydoc section titles of a docstring, in order (a title underlined with -)."""
    lines = inspect.cleandoc(doc).splitlines()
    return [(lines[i].strip(), i) for i in range(len(lines) - 1)
            if lines[i].strip() and set(lines[i + 1].strip()) == {"-"}
            and len(lines[i + 1].strip()) >= len(lines[i].strip())]


def _examples_section(doc):
    lines = inspect.cleandoc(doc).splitlines()
    sections = _sections(doc)
    for k, (title, i) in enumerate(sections):
        if title == "Examples":
            end = sections[k + 1][1] if k + 1 < len(sections) else len(lines)
            return "\n".join(lines[i + 2:end])
    return None


def _documented_callables():
    out = {}
    for qualname, obj in _public(_modules(PUBLIC_MODULES)).items():
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # type aliases and constants are described in the reference
        if not getattr(obj, "__module__", "").startswith("skmeta"):
            continue  # names re-exported from skorch or scikit-learn
        canonical = next((q for q, o in out.items() if o is obj), None)
        if canonical is None:
            out[qualname] = obj
    return out


@pytest.mark.parametrize("qualname", sorted(_documented_callables()))
def test_docstring_is_numpydoc(qualname):
    obj = _documented_callables()[qualname]
    doc = obj.__doc__
    assert doc and doc.strip(), f"{qualname} has no docstring"
    summary = inspect.cleandoc(doc).splitlines()[0].strip()
    assert summary and not set(summary) <= {"-", "="}, f"{qualname}: no one-line summary"
    titles = [t for t, _ in _sections(doc)]
    repeated = sorted({t for t in titles if titles.count(t) > 1})
    assert not repeated, (f"{qualname}: section(s) {repeated} appear twice; numpydoc (and so "
                          "the docs build) rejects the docstring")
    unknown = [t for t in titles if t not in NUMPYDOC_SECTIONS]
    assert not unknown, f"{qualname}: unknown numpydoc section(s) {unknown}"
    if qualname in KNOWN_MISSING_EXAMPLES:
        pytest.xfail("listed in KNOWN_MISSING_EXAMPLES")
    examples = _examples_section(doc)
    assert examples is not None, f"{qualname} has no Examples section"
    assert ">>>" in examples, f"{qualname}: the Examples section has no doctest (>>>)"


def test_known_missing_examples_is_current():
    callables = _documented_callables()
    gone = sorted(KNOWN_MISSING_EXAMPLES - set(callables))
    done = sorted(q for q in KNOWN_MISSING_EXAMPLES & set(callables)
                  if ">>>" in (_examples_section(callables[q].__doc__ or "") or ""))
    assert not gone, f"KNOWN_MISSING_EXAMPLES names that are not public: {gone}"
    assert not done, f"These now have Examples; remove them from KNOWN_MISSING_EXAMPLES: {done}"


def test_gallery_pages_referenced_by_the_docs_exist():
    referenced = set()
    for path in _api_sources():
        referenced |= set(re.findall(r"auto_examples/(plot_\w+)", path.read_text("utf-8")))
    missing = sorted(name for name in referenced if not (EXAMPLES / f"{name}.py").exists())
    assert not missing, f"The docs link to examples that do not exist: {missing}"


def test_examples_have_a_title_and_cells():
    for path in sorted(EXAMPLES.glob("plot_*.py")):
        text = path.read_text("utf-8")
        assert text.startswith('"""'), f"{path.name}: must start with a docstring (the title)"
        title, underline = text[3:].lstrip("\n").splitlines()[:2]
        assert title.strip() and set(underline.strip()) == {"="}, \
            f"{path.name}: the docstring must start with a title underlined with ="
        assert "# %%" in text, f"{path.name}: no '# %%' cells (sphinx-gallery format)"


# -- links to other projects' documentation (docs/_ext) -----------------------------------


def _docs_extension(name):
    """Import a module of docs/_ext (they import without Sphinx)."""
    qualname = f"_skmeta_docs_ext_{name}"
    if qualname not in sys.modules:
        spec = importlib.util.spec_from_file_location(qualname, DOCS / "_ext" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualname] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[qualname]


@pytest.mark.parametrize("target, url", [
    ("sklearn.model_selection.GridSearchCV",
     "https://scikit-learn.org/stable/modules/generated/sklearn.model_selection.GridSearchCV.html"),
    ("sklearn.base.BaseEstimator.get_params",
     "https://scikit-learn.org/stable/modules/generated/sklearn.base.BaseEstimator.html"
     "#sklearn.base.BaseEstimator.get_params"),
    ("torch.func.vmap", "https://docs.pytorch.org/docs/stable/generated/torch.func.vmap.html"),
    ("torch.Tensor", "https://docs.pytorch.org/docs/stable/tensors.html#torch.Tensor"),
    ("torch.func", "https://docs.pytorch.org/docs/stable/func.html"),
    ("skorch.callbacks.EarlyStopping",
     "https://skorch.readthedocs.io/en/stable/callbacks.html#skorch.callbacks.EarlyStopping"),
    ("skorch.NeuralNet",  # documented under skorch.net
     "https://skorch.readthedocs.io/en/stable/net.html#skorch.net.NeuralNet"),
    ("numpy.rot90", "https://numpy.org/doc/stable/reference/generated/numpy.rot90.html"),
    ("joblib.dump", "https://joblib.readthedocs.io/en/stable/generated/joblib.dump.html"),
    ("pickle", "https://docs.python.org/3/library/pickle.html#module-pickle"),
    ("collections.abc.Callable",
     "https://docs.python.org/3/library/collections.abc.html#collections.abc.Callable"),
    ("dict", "https://docs.python.org/3/library/stdtypes.html#dict"),
    ("FileNotFoundError", "https://docs.python.org/3/library/exceptions.html#FileNotFoundError"),
    ("pandas.DataFrame", "https://pandas.pydata.org/docs/reference/api/pandas.DataFrame.html"),
])
def test_external_refs_resolve(target, url):
    if target.startswith("pandas"):
        pytest.importorskip("pandas")  # optional: without it, pandas names are not linked
    assert _docs_extension("external_refs").resolve(target).url == url


def test_external_refs_inherited_docstrings():
    # names written the way the parent class's package writes them, resolved from the
    # documented class's bases: torch's Module.forward in MLP, skorch's load_params
    ext = _docs_extension("external_refs")
    assert ext.resolve("Module", "skmeta.modules", "MLP").name == "torch.nn.Module"
    found = ext.resolve("Checkpoint", "skmeta", "MAMLRegressor", refspecific=True)
    assert found.name == "skorch.callbacks.Checkpoint"


def test_external_refs_unknown_names():
    ext = _docs_extension("external_refs")
    with pytest.raises(ext.UnresolvedReference):  # a typo in a linked package: a warning
        ext.resolve("sklearn.model_selection.GridSearchCVV")
    assert ext.resolve("skmeta.MAMLRegressor") is None  # not another project's: Sphinx's
    assert ext.resolve("no_such_package.thing") is None


def test_repo_links_point_at_the_including_page():
    ext = _docs_extension("repo_links")
    pages = {"benchmarks/README.md": "docs/running_benchmarks.md"}
    text = ("see [the README](../benchmarks/README.md) and [its section](../benchmarks/README.md#x)"
            ", [other](../benchmarks/other.md), [web](https://example.org/benchmarks/README.md)")
    assert ext.rewrite_links(text, "docs/benchmarks.md", pages) == (
        "see [the README](running_benchmarks.md) and [its section](running_benchmarks.md#x)"
        ", [other](../benchmarks/other.md), [web](https://example.org/benchmarks/README.md)")
    for doc in pages.values():
        assert (ROOT / doc).exists()
    conf = (DOCS / "conf.py").read_text("utf-8")
    assert '"benchmarks/README.md": "running_benchmarks"' in conf


def test_external_refs_in_a_sphinx_build(tmp_path):
    """A tiny build: a known name becomes a link, an unknown one a warning."""
    pytest.importorskip("sphinx")
    import io

    from sphinx.application import Sphinx

    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(DOCS / '_ext')!r})\n"
        "extensions = ['external_refs']\n")
    (src / "index.rst").write_text(
        "Test\n====\n\n:class:`sklearn.pipeline.Pipeline` and :func:`torch.func.nosuch`\n")
    warnings = io.StringIO()
    app = Sphinx(str(src), str(src), str(tmp_path / "out"), str(tmp_path / "doctrees"),
                 "html", status=None, warning=warnings, freshenv=True)
    app.build()
    html = (tmp_path / "out" / "index.html").read_text("utf-8")
    assert ('href="https://scikit-learn.org/stable/modules/generated/'
            'sklearn.pipeline.Pipeline.html"') in html
    assert "torch.func.nosuch" in warnings.getvalue()


def test_gallery_order_lists_every_example():
    conf = (DOCS / "conf.py").read_text("utf-8")
    listed = re.findall(r'^\s+"(\w+\.py)",$', conf.split("EXAMPLE_ORDER = [", 1)[1].split("]")[0],
                        re.M)
    present = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert sorted(listed) == present, "docs/conf.py's EXAMPLE_ORDER must list every example"
    assert listed[0] == "plot_sinusoid.py", "the gallery starts with the main example"


def test_committed_benchmark_tables_and_charts_are_current(tmp_path):
    """docs/_static/benchmarks is committed (it renders on GitHub): it must be what
    benchmarks/charts.py draws from benchmarks/results today."""
    pytest.importorskip("matplotlib")
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("_charts", root / "benchmarks" / "charts.py")
    charts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(charts)
    charts.main(tmp_path)
    committed = root / "docs" / "_static" / "benchmarks"
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted(p.name for p in committed.iterdir() if p.suffix in {".png", ".md",
                                                                            ".txt"})
    for name in made:
        if not name.endswith(".png"):  # PNG bytes vary with the matplotlib version
            assert (committed / name).read_text() == (tmp_path / name).read_text(), (
                f"docs/_static/benchmarks/{name} is out of date: run python benchmarks/charts.py")
    for name in ("speed", "profile", "sinusoid", "omniglot", "tables"):
        assert f"(_static/benchmarks/{name}_summary.md)" in (root / "docs" / "benchmarks.md"
                                                             ).read_text()
