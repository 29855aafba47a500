"""The documentation covers the public API.

Every public name (the ``__all__`` of skmeta's public modules) must appear in the API
reference (``docs/api.rst``, read as plain text), and every public class and function
must have a numpydoc docstring with a doctested Examples section. Plain parsing only: no
Sphinx, no numpydoc, nothing optional is imported. Building the docs themselves is
``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (see docs/README.md).
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"

# Modules whose __all__ is public API (their names must be in the API reference).
PUBLIC_MODULES = [
    "skmeta",
    "skmeta.functional",
    "skmeta.tasks",
    "skmeta.metrics",
    "skmeta.pipeline",
    "skmeta.modules",
    "skmeta.datasets",
    "skmeta.distributed",
    "skmeta.maml",
    "skmeta.reptile",
    "skmeta.pretrained",
    "skmeta.metasgd",
    "skmeta.anil",
    "skmeta.mamlpp",
    "skmeta.r2d2",
    "skmeta.registry",
    "skmeta.utils.estimator_checks",
    "skmeta.adapted",
]
# Documented for algorithm authors and for the file format; their names must be in the
# API reference too, but need no Examples section.
REFERENCE_ONLY_MODULES = ["skmeta.base", "skmeta.persistence", "skmeta.batching",
                          "skmeta.engines", "skmeta.parameters", "skmeta.targets",
                          "skmeta.adaptation", "skmeta.inner_state"]

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
        # re-exports (skmeta.tasks.Task is skmeta.Task) are documented once
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
