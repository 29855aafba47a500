"""The module paths of earlier releases, kept importable.

skmeta 0.1 kept every module at the top of the package (``skmeta.maml``,
``skmeta.base``, ``skmeta.tasks``, ...). The modules now live in folders that show
the architecture (:mod:`skmeta.algorithms`, :mod:`skmeta.estimator`,
:mod:`skmeta.data`, :mod:`skmeta.io`, :mod:`skmeta.parallel`); the old names stay
importable, as aliases of the new modules, so that code and pickles written for
earlier releases keep working.

Examples
--------
>>> import skmeta.maml, skmeta.algorithms.maml
>>> skmeta.maml is skmeta.algorithms.maml
True
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["OLD_PATHS", "install"]

#: old module name (under ``skmeta.``) -> the module it now is
OLD_PATHS = {
    "maml": "algorithms.maml",
    "metasgd": "algorithms.metasgd",
    "anil": "algorithms.anil",
    "mamlpp": "algorithms.mamlpp",
    "r2d2": "algorithms.r2d2",
    "reptile": "algorithms.reptile",
    "pretrained": "algorithms.pretrained",
    "base": "estimator.base",
    "adaptation": "estimator.adaptation",
    "adapted": "estimator.adapted",
    "engines": "estimator.engines",
    "inner_state": "estimator.inner_state",
    "parameters": "estimator.parameters",
    "targets": "estimator.targets",
    "tasks": "data",
    "batching": "data.metabatch",
    "persistence": "io.format",
    "_container": "io.container",
    "distributed": "parallel",
}


def install(package: str = "skmeta") -> None:
    """Register every old path as an alias of its module (in ``sys.modules``)."""
    root = sys.modules[package]
    for old, new in OLD_PATHS.items():
        module = importlib.import_module(f"{package}.{new}")
        sys.modules[f"{package}.{old}"] = module
        setattr(root, old, module)
