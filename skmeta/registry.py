"""Every meta-learner skmeta knows of: its own and those of plugin packages.

A meta-learner class registers itself when it is defined (it subclasses
:class:`skmeta.estimator.BaseMetaLearner`). :func:`all_estimators` lists the public
ones: skmeta's own and those of installed packages that declare the entry-point
group ``skmeta.estimators`` (in their ``pyproject.toml``)::

    [project.entry-points."skmeta.estimators"]
    my_algorithm = "my_package.my_algorithm"

Each entry point names a module (or a class) that is imported when the registry
is first read, which defines and so registers its estimators. The tests, the
safe file format (:func:`skmeta.load`) and the public checker
(:mod:`skmeta.utils.estimator_checks`) all enumerate estimators from here.
"""

from __future__ import annotations

import sys
import warnings
from importlib import metadata

__all__ = ["all_estimators", "find", "find_adapted", "register", "register_adapted",
           "ENTRY_POINT_GROUP", "PluginWarning"]

ENTRY_POINT_GROUP = "skmeta.estimators"

_REGISTERED: dict[str, type] = {}
_ADAPTED: dict[str, type] = {}
_LOADED_ENTRY_POINTS: set[str] = set()
_PLUGIN_MODULES: set[str] = set()  # modules named by entry points that loaded


class PluginWarning(UserWarning):
    """A package declared a ``skmeta.estimators`` entry point that failed to load.

    The plugin's estimators are then missing from :func:`all_estimators`; the
    warning names the entry point and the error.

    Examples
    --------
    >>> from skmeta.registry import PluginWarning
    >>> issubclass(PluginWarning, UserWarning)
    True
    """


def register(cls: type) -> type:
    """Record a meta-learner class (done automatically for every subclass of the base).

    Parameters
    ----------
    cls : type
        The class.

    Returns
    -------
    cls : type
        Unchanged, so this can be used as a decorator.

    Examples
    --------
    >>> from skmeta import MAMLRegressor
    >>> from skmeta.registry import register
    >>> register(MAMLRegressor) is MAMLRegressor
    True
    """
    _REGISTERED[f"{cls.__module__}:{cls.__qualname__}"] = cls
    return cls


def register_adapted(cls: type) -> type:
    """Record a class of adapted models (what ``adapt`` returns), for :func:`skmeta.load`.

    Parameters
    ----------
    cls : type
        A subclass of skmeta's adapted-model base.

    Returns
    -------
    cls : type
        Unchanged, so this can be used as a decorator.

    Examples
    --------
    >>> from skmeta import AdaptedRegressor
    >>> from skmeta.registry import find_adapted
    >>> find_adapted("AdaptedRegressor") is AdaptedRegressor
    True
    """
    _ADAPTED[cls.__name__] = cls
    return cls


def find_adapted(name: str) -> type | None:
    """The adapted-model class called ``name``, or None.

    Parameters
    ----------
    name : str
        ``"AdaptedRegressor"`` or ``"AdaptedClassifier"`` (or a plugin's).

    Returns
    -------
    cls : type or None

    Examples
    --------
    >>> from skmeta.registry import find_adapted
    >>> find_adapted("AdaptedClassifier").__name__
    'AdaptedClassifier'
    """
    _load_entry_points()
    return _ADAPTED.get(name)


def _load_entry_points() -> None:
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = f"{ep.name}={ep.value}"
        if key in _LOADED_ENTRY_POINTS:
            continue
        _LOADED_ENTRY_POINTS.add(key)
        try:
            ep.load()
            _PLUGIN_MODULES.add(ep.value.partition(":")[0].strip())
        except Exception as exc:  # a broken plugin must not break skmeta
            warnings.warn(f"The skmeta plugin entry point {key!r} failed to load: "
                          f"{type(exc).__name__}: {exc}", PluginWarning, stacklevel=3)


def _is_public(cls: type) -> bool:
    if cls.__name__.startswith("_") or not getattr(cls, "_skmeta_kind", None):
        return False
    module = cls.__module__
    if module.split(".")[0] == "skmeta":
        return cls.__name__ in getattr(sys.modules.get("skmeta"), "__all__", ())
    return any(module == m or module.startswith(m + ".") for m in _PLUGIN_MODULES)


def all_estimators(type_filter: str | None = None, *, plugins: bool = True
                   ) -> list[tuple[str, type]]:
    """The public meta-learners: skmeta's own and those of plugin packages.

    Like :func:`sklearn.utils.discovery.all_estimators`. A class counts when it
    is a concrete regressor or classifier whose name does not start with ``_``:
    for skmeta, one exported from ``skmeta``; for other packages, one defined in
    a module (or package) that a ``skmeta.estimators`` entry point names.

    Parameters
    ----------
    type_filter : {"regressor", "classifier"} or None, default=None
        Keep only regressors or only classifiers.
    plugins : bool, default=True
        Load the ``skmeta.estimators`` entry points first.

    Returns
    -------
    estimators : list of (name, class)
        Sorted by name.

    Examples
    --------
    >>> from skmeta.registry import all_estimators
    >>> names = [name for name, _ in all_estimators("regressor")]
    >>> "MAMLRegressor" in names and "MAMLClassifier" not in names
    True
    """
    if type_filter not in (None, "regressor", "classifier"):
        raise ValueError(f"type_filter must be 'regressor', 'classifier' or None; got "
                         f"{type_filter!r}.")
    if plugins:
        _load_entry_points()
    found = [(cls.__name__, cls) for cls in _REGISTERED.values() if _is_public(cls)
             and (type_filter is None or cls._skmeta_kind == type_filter)]
    return sorted(found, key=lambda item: (item[0], item[1].__module__))


def find(name: str) -> type | None:
    """The meta-learner called ``name`` (or ``module:qualname``), or None.

    Public estimators (:func:`all_estimators`) are found by their class name; other
    meta-learner classes defined in this process (a subclass in a script, say) by
    ``module:qualname``, or by their name when no other class has it.

    Parameters
    ----------
    name : str
        A class name such as ``"MAMLRegressor"``, or ``"package.module:Class"``.

    Returns
    -------
    cls : type or None

    Examples
    --------
    >>> from skmeta.registry import find
    >>> find("MAMLRegressor").__name__, find("NoSuchEstimator")
    ('MAMLRegressor', None)
    """
    if name in _REGISTERED:
        return _REGISTERED[name]
    for cls_name, cls in all_estimators():
        if name == cls_name:
            return cls
    same = [cls for cls in _REGISTERED.values() if cls.__name__ == name and
            getattr(cls, "_skmeta_kind", None)]
    return same[0] if len(same) == 1 else None
