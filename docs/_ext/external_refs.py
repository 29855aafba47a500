"""Links to the documentation of Python, NumPy, scikit-learn, PyTorch, skorch, joblib and pandas.

The docs build has no network, so it cannot download these projects' intersphinx
inventories (and their inventories are their data, not ours to commit). Instead this
extension resolves Sphinx's ``missing-reference`` events for Python-domain references
(``:class:`sklearn.model_selection.GridSearchCV```, ``:func:`torch.func.vmap```,
```numpy.rot90``` with the default role, ...) to URLs on each project's official
documentation, built from the URL pattern that project's documentation uses.

Every name is checked by importing it: a reference to a name that does not exist (a typo,
something removed in a newer release) is not linked but reported as a warning, so the
build with ``-W`` fails. References to other packages, and to a package of the list that
is not installed (pandas is optional), are left to Sphinx.

The resolver itself (:func:`resolve`) needs neither Sphinx nor a build; the test suite
calls it directly (``tests/test_docs.py``).
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import sys
import types
from dataclasses import dataclass

PYTHON = "https://docs.python.org/3/"
NUMPY = "https://numpy.org/doc/stable/reference/"
SKLEARN = "https://scikit-learn.org/stable/"
TORCH = "https://docs.pytorch.org/docs/stable/"
SKORCH = "https://skorch.readthedocs.io/en/stable/"
JOBLIB = "https://joblib.readthedocs.io/en/stable/"
PANDAS = "https://pandas.pydata.org/docs/"

#: Top-level packages this extension links to (besides the standard library).
PACKAGES = ("numpy", "sklearn", "torch", "skorch", "joblib", "pandas")


@dataclass(frozen=True)
class Resolved:
    """A reference resolved to an external page."""

    name: str  #: the documented (public) name, e.g. ``"torch.nn.Module"``
    url: str
    project: str  #: e.g. ``"PyTorch"``, for the link's title


class UnresolvedReference(LookupError):
    """A name of a linked package that does not exist or has no known page."""


# -- finding the object ------------------------------------------------------------------


def _import(name: str):
    """The object called ``name`` (``"pkg.mod.Class.attr"``), or ``None``.

    The longest importable module prefix is imported, the rest is looked up as
    attributes.
    """
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        modname = ".".join(parts[:i])
        try:
            obj = importlib.import_module(modname)
        except Exception:  # noqa: BLE001 - not a module (ImportError, or its side effects)
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    if len(parts) == 1 and hasattr(builtins, name):
        return getattr(builtins, name)
    return None


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def _installed(top: str) -> bool:
    try:
        importlib.import_module(top)
    except ImportError:
        return False
    return True


def _is_covered(name: str) -> bool:
    top = _top(name)
    return (top in PACKAGES and _installed(top)) or top in sys.stdlib_module_names


def _public(name: str) -> bool:
    return not any(part.startswith("_") and not part.startswith("__") for part in
                   name.split("."))


def _canonical_name(obj) -> str | None:
    """A public dotted name under which ``obj`` is importable, or ``None``.

    For objects found through a class hierarchy (a docstring inherited from a parent
    class), whose ``__module__`` is often private (``torch.nn.modules.module``): the
    shortest public module prefix of ``__module__`` that exports the object.
    """
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        return None
    head = qualname.split(".")[0]
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        if not _public(prefix):
            break
        mod = sys.modules.get(prefix)
        if mod is not None and getattr(mod, head, None) is _import(f"{module}.{head}"):
            return f"{prefix}.{qualname}"
    return f"{module}.{qualname}" if _public(module) else None


def _context_candidates(target: str, module: str | None, cls: str | None,
                        refspecific: bool):
    """Full names an unqualified ``target`` may mean where it is written.

    A docstring inherited from a parent class (skorch's ``load_params`` in
    ``MAMLRegressor``'s page, torch's ``Module.forward`` in ``MLP``'s) names objects the
    way its own package does: ``:class:`Module``` or ``:class:`.Checkpoint```. They are
    looked up in the modules of the documented class's bases, and for a leading dot (Sphinx's
    "search by suffix") in every loaded module of those bases' packages.
    """
    owner = _import(f"{module}.{cls}") if module and cls else None
    if owner is None and module and cls:
        owner = _import(f"{module}.{cls.split('.')[0]}")
    if not inspect.isclass(owner):
        return
    head = target.split(".")[0]
    packages = []
    for base in owner.__mro__:
        modname = getattr(base, "__module__", "")
        mod = sys.modules.get(modname)
        if mod is not None and head in vars(mod):
            yield vars(mod)[head], target
        top = _top(modname)
        if top in PACKAGES and top not in packages:
            packages.append(top)
    if refspecific:
        found = {}
        for top in packages:
            for modname, mod in list(sys.modules.items()):
                if (modname == top or modname.startswith(top + ".")) and _public(modname) \
                        and isinstance(mod, types.ModuleType) and head in vars(mod):
                    found[id(vars(mod)[head])] = vars(mod)[head]
        if len(found) == 1:
            yield next(iter(found.values())), target


# -- URLs per project --------------------------------------------------------------------

_PY_BUILTIN_PAGES = {
    **dict.fromkeys(["dict", "list", "tuple", "str", "set", "frozenset", "bytes", "bytearray",
                     "range", "memoryview"], "library/stdtypes.html"),
    **dict.fromkeys(["None", "True", "False", "NotImplemented", "Ellipsis"],
                    "library/constants.html"),
}


def _python_url(name: str, obj) -> str:
    if "." not in name and hasattr(builtins, name):  # builtins
        if name in _PY_BUILTIN_PAGES:
            return f"{PYTHON}{_PY_BUILTIN_PAGES[name]}#{name}"
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            return f"{PYTHON}library/exceptions.html#{name}"
        return f"{PYTHON}library/functions.html#{name}"
    if isinstance(obj, types.ModuleType):
        return f"{PYTHON}library/{name}.html#module-{name}"
    # the page of the longest module prefix (collections.abc, os.path, ...)
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        if isinstance(sys.modules.get(".".join(parts[:i])), types.ModuleType):
            return f"{PYTHON}library/{'.'.join(parts[:i])}.html#{name}"
    raise UnresolvedReference(name)


# numpy.random documents its classes on hand-written pages
_NUMPY_PAGES = {
    "numpy": "index.html",
    "numpy.random": "random/index.html",
    "numpy.random.Generator": "random/generator.html#numpy.random.Generator",
    "numpy.random.default_rng": "random/generator.html#numpy.random.default_rng",
    "numpy.random.RandomState": "random/legacy.html#numpy.random.RandomState",
    "numpy.random.SeedSequence": "random/bit_generators/generated/"
                                 "numpy.random.SeedSequence.html",
}


def _numpy_url(name: str, obj) -> str:
    if name in _NUMPY_PAGES:
        return NUMPY + _NUMPY_PAGES[name]
    if name.startswith("numpy.random.Generator."):
        return f"{NUMPY}random/generated/{name}.html"
    if isinstance(obj, types.ModuleType) or name.startswith("numpy.random."):
        raise UnresolvedReference(name)  # no predictable page: add it to _NUMPY_PAGES
    return f"{NUMPY}generated/{name}.html"  # functions, classes and their methods


def _owner_and_kind(name: str, obj):
    """``(class name, True)`` for a member of a class, else ``(name, False)``."""
    parent = name.rsplit(".", 1)[0]
    if "." in name and inspect.isclass(_import(parent)):
        return parent, True
    return name, False


def _sklearn_url(name: str, obj) -> str:
    if isinstance(obj, types.ModuleType):
        return f"{SKLEARN}api/{'index' if name == 'sklearn' else name}.html"
    owner, member = _owner_and_kind(name, obj)
    page = f"{SKLEARN}modules/generated/{owner}.html"
    return f"{page}#{name}" if member else page


# pages of PyTorch's documentation that are not generated/<name>.html
_TORCH_PAGES = {
    "torch": "torch.html",
    "torch.Tensor": "tensors.html#torch.Tensor",
    "torch.device": "tensor_attributes.html#torch.device",
    "torch.dtype": "tensor_attributes.html#torch.dtype",
}
_TORCH_MODULE_PAGES = {  # documented module -> page; objects get #<name> on it
    "torch.distributed": "distributed.html",
    "torch.utils.data": "data.html",
}


def _torch_url(name: str, obj) -> str:
    if name in _TORCH_PAGES:
        return TORCH + _TORCH_PAGES[name]
    for module, page in _TORCH_MODULE_PAGES.items():
        if name == module:
            return f"{TORCH}{page}#module-{module}"
        if name.startswith(module + "."):
            return f"{TORCH}{page}#{name}"
    if isinstance(obj, types.ModuleType):  # torch.func -> func.html, torch.nn -> nn.html
        return f"{TORCH}{name.removeprefix('torch.')}.html"
    owner, member = _owner_and_kind(name, obj)
    if member and owner == "torch.Tensor":  # every Tensor method has its own page
        return f"{TORCH}generated/{name}.html"
    page = f"{TORCH}generated/{owner}.html"
    return f"{page}#{name}" if member else page


def _skorch_url(name: str, obj) -> str:
    # one page per sub-package (net.html, callbacks.html, ...), anchors by public path
    parts = name.split(".")
    if name == "skorch":
        return f"{SKORCH}skorch.html"
    if isinstance(obj, types.ModuleType):
        return f"{SKORCH}{parts[1]}.html#module-{name}"
    return f"{SKORCH}{parts[1]}.html#{name}"


def _skorch_name(name: str, obj) -> str:
    """skorch's documented path: ``skorch.<page>.<qualname>`` (``skorch.NeuralNet`` ->
    ``skorch.net.NeuralNet``, ``skorch.callbacks.training.Checkpoint`` ->
    ``skorch.callbacks.Checkpoint``)."""
    if isinstance(obj, types.ModuleType):
        return ".".join(name.split(".")[:2])
    target = obj.fget if isinstance(obj, property) else obj
    if isinstance(target, (staticmethod, classmethod)):
        target = target.__func__
    module = getattr(target, "__module__", "") or ""
    qualname = getattr(target, "__qualname__", None)
    if module.startswith("skorch.") and qualname and "<" not in qualname:
        # a member's qualname names the class that defines it; keep the path's class
        parent, member = _owner_and_kind(name, obj)
        if member:
            parent_obj = _import(parent)
            return f"{_skorch_name(parent, parent_obj)}.{name.rsplit('.', 1)[1]}"
        page = module.split(".")[1]
        if getattr(_import(f"skorch.{page}"), qualname.split(".")[0], None) is not None:
            return f"skorch.{page}.{qualname}"
    return name


def _joblib_url(name: str, obj) -> str:
    if isinstance(obj, types.ModuleType):
        return f"{JOBLIB}index.html" if name == "joblib" else _raise(name)
    owner, member = _owner_and_kind(name, obj)
    page = f"{JOBLIB}generated/{owner}.html"
    return f"{page}#{name}" if member else page


def _raise(name):
    raise UnresolvedReference(name)


def _pandas_url(name: str, obj) -> str:
    if isinstance(obj, types.ModuleType):
        return f"{PANDAS}reference/index.html" if name == "pandas" else _raise(name)
    return f"{PANDAS}reference/api/{name}.html"  # classes, functions and their methods


_PROJECTS = {
    "numpy": ("NumPy", _numpy_url),
    "sklearn": ("scikit-learn", _sklearn_url),
    "torch": ("PyTorch", _torch_url),
    "skorch": ("skorch", _skorch_url),
    "joblib": ("joblib", _joblib_url),
    "pandas": ("pandas", _pandas_url),
}


def _url(name: str, obj) -> Resolved:
    top = _top(name)
    if top == "skorch":
        name = _skorch_name(name, obj)
    if top in _PROJECTS:
        project, make = _PROJECTS[top]
        return Resolved(name, make(name, obj), project)
    return Resolved(name, _python_url(name, obj), "Python")


_MISSING = object()


def resolve(target: str, module: str | None = None, cls: str | None = None,
            refspecific: bool = False) -> Resolved | None:
    """Resolve a Python-domain reference to a page of an external project's docs.

    Parameters
    ----------
    target : str
        The reference's target, e.g. ``"sklearn.model_selection.GridSearchCV"``,
        ``"pickle"``, ``"dict"``, or an unqualified name such as ``"Module"``.
    module, cls : str, optional
        Where the reference is written (Sphinx's ``py:module`` and ``py:class``):
        unqualified names are looked up in the modules of that class's bases.
    refspecific : bool, default=False
        The target was written with a leading dot (``:class:`.Checkpoint```).

    Returns
    -------
    Resolved or None
        ``None`` when the name does not belong to a linked project (Python's standard
        library and builtins, NumPy, scikit-learn, PyTorch, skorch, joblib).

    Raises
    ------
    UnresolvedReference
        The name belongs to a linked project but does not exist there, or has no page
        this extension knows how to build.
    """
    target = target.lstrip(".~")
    if not target:
        return None
    qualified = "." in target or target in PACKAGES or target in sys.stdlib_module_names
    if qualified and _is_covered(target) and not refspecific:
        obj = _import(target)
        if obj is None:
            raise UnresolvedReference(target)
        # authors write the public path; keep it (torch.func.vmap, not torch.vmap)
        return _url(target, obj)
    if "." not in target and hasattr(builtins, target) and not (module and cls):
        return _url(target, getattr(builtins, target))
    for obj, written in _context_candidates(target, module, cls, refspecific):
        canonical = _canonical_name(obj)
        if canonical is None:
            continue
        rest = written.split(".")[1:]
        name = ".".join([canonical, *rest])
        if _is_covered(name) and _import(name) is not None:
            return _url(name, _import(name))
    if "." not in target and hasattr(builtins, target):
        return _url(target, getattr(builtins, target))
    if qualified and _is_covered(target):  # refspecific, but fully qualified all the same
        obj = _import(target)
        if obj is None:
            raise UnresolvedReference(target)
        return _url(target, obj)
    return None


# -- Sphinx ------------------------------------------------------------------------------


def _missing_reference(app, env, node, contnode):
    from docutils import nodes
    from sphinx.util import logging

    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    try:
        found = resolve(target, node.get("py:module"), node.get("py:class"),
                        bool(node.get("refspecific")))
    except UnresolvedReference:
        logging.getLogger(__name__).warning(
            "external_refs: %r is not an object of %s that this extension can link to "
            "(misspelt, removed, or its page is unknown: see docs/_ext/external_refs.py)",
            target, _top(target), location=node, type="ref", subtype="external")
        return None
    if found is None:
        return _first_party(app, env, node, contnode)
    _resolved[found.name] = _resolved.get(found.name, 0) + 1
    reference = nodes.reference("", "", internal=False, refuri=found.url,
                                reftitle=f"{found.name} ({found.project} documentation)")
    reference += contnode
    return reference


def _first_party(app, env, node, contnode):
    """A reference to a documented object of this project, written relative to another
    module: ``:meth:`BaseMetaLearner.adapt``` in the docstring of ``skmeta.AdaptedRegressor``
    means ``skmeta.estimator.BaseMetaLearner.adapt``. Linked when exactly one documented object
    of the project has that dotted suffix (Sphinx's own search only does this for targets
    written with a leading dot)."""
    from sphinx.util.nodes import make_refnode

    target = node.get("reftarget", "").lstrip(".~")
    if "." not in target:
        return None  # a bare name is too ambiguous to guess
    domain = env.get_domain("py")
    matches = [(name, obj) for name, obj in domain.objects.items()
               if name.startswith(app.config.project + ".") and name.endswith("." + target)
               and not obj.aliased]
    if len(matches) != 1:
        return None
    name, obj = matches[0]
    return make_refnode(app.builder, node["refdoc"], obj.docname, obj.node_id, contnode, name)


_resolved: dict[str, int] = {}  # name -> references linked in this build (for the log)


def _reset(app):
    _resolved.clear()


def _report(app, exception):
    if exception is None:
        from sphinx.util import logging

        logging.getLogger(__name__).info(
            "external_refs: %d references to %d names linked to external documentation "
            "(pages written in this build)", sum(_resolved.values()), len(_resolved))


def setup(app):
    # before Sphinx's own fallback for builtins (priority 900), which leaves them unlinked
    app.connect("missing-reference", _missing_reference, priority=400)
    app.connect("builder-inited", _reset)
    app.connect("build-finished", _report)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
