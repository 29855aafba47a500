"""The shape of the package: rooms named for what they hold, and no import cycles."""

import ast
from pathlib import Path

import skmeta

PACKAGE = Path(skmeta.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


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
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found |= {c for c in candidates if c.split(".")[0] == "skmeta"}
    return found & _all_modules()


def _all_modules() -> set[str]:
    return {_module_name(p) for p in PACKAGE.rglob("*.py")}


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
            if nxt != "skmeta":
                visit(nxt, stack + [node])

    for m in sorted(graph):
        if m != "skmeta":
            visit(m, [])
    assert not cycles, f"import cycles: {sorted({' -> '.join(c) for c in cycles})}"


def test_the_shell_stays_small():
    assert len((PACKAGE / "base.py").read_text("utf-8").splitlines()) <= 600


def test_every_algorithm_module_reads_alone_in_200_lines():
    from skmeta.registry import all_estimators

    modules = {cls.__module__ for _, cls in all_estimators(plugins=False)}
    for name in sorted(modules):
        path = PACKAGE / (name.split(".", 1)[1].replace(".", "/") + ".py")
        assert len(path.read_text("utf-8").splitlines()) <= 200, name
        allowed = {"skmeta.base", "skmeta.functional", "skmeta.parameters", "skmeta.modules"}
        assert _imports(path) <= allowed, (name, _imports(path))
