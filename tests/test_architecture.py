"""The package's architecture, checked on its source: floors, the algorithm contract, no cycles.

* A folder imports only what stands below it (``FLOORS``).
* An algorithm file touches no private name of the shell and names no engine: it uses
  only the documented hooks and the public functional core.
* The shell names no algorithm: it calls the hooks and never asks which algorithm it runs.
* No import cycles between modules.
* Every old module path (``skmeta.maml``, ``skmeta.base``, ...) still imports, as the new module.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import skmeta
from skmeta._paths import OLD_PATHS

PACKAGE = Path(skmeta.__file__).resolve().parent

#: unit (a folder or a top-level module) -> floor; a unit imports only lower floors and itself
FLOORS = {
    "skmeta.functional": 0, "skmeta.parallel": 0, "skmeta.registry": 0, "skmeta._version": 0,
    "skmeta.datasets": 0,
    "skmeta.modules": 1, "skmeta.metrics": 1,
    "skmeta.data": 2, "skmeta.io": 2,
    "skmeta.estimator": 3,
    "skmeta.algorithms": 4,
    "skmeta._paths": 5, "skmeta.pipeline": 5, "skmeta.intervals": 5, "skmeta": 6, "skmeta.utils": 7,
}
ENGINES = {"loop", "vmap", "batched"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _all_modules() -> set[str]:
    return {_module_name(p) for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """skmeta modules that ``path`` imports, at module level or inside functions."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = [f"{target}.{a.name}" for a in node.names]
            # "from .. import functional" imports the submodule, not the package's __init__
            candidates = submodules if node.module is None else [target] + submodules
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found |= {c for c in candidates if c.split(".")[0] == "skmeta"}
    return found & _all_modules()


def _unit(module: str) -> str:
    parts = module.split(".")
    return module if len(parts) == 1 else ".".join(parts[:2])


def _code_strings_and_names(path: Path) -> tuple[set[str], set[str], set[str]]:
    """String constants (docstrings left out), identifiers, and ``x._private`` attributes."""
    tree = ast.parse(path.read_text("utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__doc__"
                                                for t in node.targets):
            docstrings |= {id(c) for c in ast.walk(node.value) if isinstance(c, ast.Constant)}
    strings, names, private = set(), set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings:
            strings.add(node.value)
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
            if node.attr.startswith("_") and not node.attr.startswith("__"):
                private.add(node.attr)
    return strings, names, private


def _shell_private_names() -> set[str]:
    """Private names the shell's classes define (methods and attributes)."""
    out = set()
    for path in (PACKAGE / "estimator").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.add(node.name)
            elif isinstance(node, ast.Attribute):
                out.add(node.attr)
            elif isinstance(node, ast.Name):
                out.add(node.id)
    return {n for n in out if n.startswith("_") and not n.startswith("__")}


#: what an algorithm may declare or read: the documented declarative tables
CONTRACT_PRIVATE = {"_params", "_param_defaults", "_param_docs", "_attributes"}


def test_every_module_is_on_a_floor():
    assert {_unit(m) for m in _all_modules()} <= set(FLOORS), \
        sorted({_unit(m) for m in _all_modules()} - set(FLOORS))


def test_a_folder_imports_only_what_stands_below_it():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _unit(_module_name(path))
        for target in _imports(path):
            there = _unit(target)
            if there != here and FLOORS[there] >= FLOORS[here]:
                upward.append(f"{_module_name(path)} -> {target}")
    assert not upward, f"imports that do not go down a floor: {upward}"


ALGORITHM_FILES = sorted(p for p in (PACKAGE / "algorithms").glob("*.py")
                         if p.name != "__init__.py")


@pytest.mark.parametrize("path", ALGORITHM_FILES, ids=lambda p: p.name)
def test_an_algorithm_uses_only_the_contract(path):
    allowed = {"skmeta.estimator", "skmeta.functional", "skmeta.modules"}
    assert {_unit(t) if _unit(t) != "skmeta.estimator" else t for t in _imports(path)} \
        <= allowed, f"{path.name} imports {sorted(_imports(path))}"
    strings, _, private = _code_strings_and_names(path)
    touched = (private & _shell_private_names()) - CONTRACT_PRIVATE
    assert not touched, f"{path.name} touches private names of the shell: {sorted(touched)}"
    assert not strings & ENGINES, f"{path.name} names an engine: {sorted(strings & ENGINES)}"


def test_the_shell_names_no_algorithm():
    algorithms = {cls.__name__ for _, cls in skmeta.registry.all_estimators(plugins=False)}
    algorithms |= {p.stem for p in ALGORITHM_FILES}
    stems = {"MAML", "MetaSGD", "ANIL", "R2D2", "Reptile", "Pretrained", "mamlpp"}
    for path in sorted((PACKAGE / "estimator").glob("*.py")):
        strings, names, _ = _code_strings_and_names(path)
        named = {n for n in names if n in algorithms or any(s in n for s in stems)}
        said = {s for s in strings if any(a in s for a in algorithms | stems)}
        assert not named and not said, f"{path.name} names algorithms: {named | said}"


def test_no_import_cycles_between_modules():
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p): p for p in paths}
    graph = {m: {t for t in _imports(p) if t in modules and t != m} for m, p in modules.items()}
    # a package imports its own submodules; only cycles among modules count
    for m in graph:
        graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    cycles = []

    def visit(node, stack):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        for nxt in sorted(graph[node]):
            if nxt not in ("skmeta", "skmeta._paths"):
                visit(nxt, stack + [node])

    for m in sorted(graph):
        if m not in ("skmeta", "skmeta._paths"):
            visit(m, [])
    assert not cycles, f"import cycles: {sorted({' -> '.join(c) for c in cycles})}"


@pytest.mark.parametrize("old", sorted(OLD_PATHS))
def test_old_module_paths_still_import(old):
    module = importlib.import_module(f"skmeta.{old}")
    assert module is importlib.import_module(f"skmeta.{OLD_PATHS[old]}")


def test_the_public_names_of_the_previous_release_are_where_they_were():
    from skmeta.base import BaseMetaLearner, InnerState, MetaClassifierMixin  # noqa: F401
    from skmeta.distributed import AccelerateMixin, shard_bounds  # noqa: F401
    from skmeta.mamlpp import msl_weights  # noqa: F401
    from skmeta.persistence import load, save  # noqa: F401
    from skmeta.pretrained import joint_task_loss  # noqa: F401
    from skmeta.reptile import reptile_pseudo_gradient  # noqa: F401
    from skmeta.tasks import EpisodeSampler, Task, TaskTransformer, tasks_from_groups  # noqa
    assert skmeta.Task is Task and skmeta.TaskSplit is skmeta.batching.TaskSplit
