"""The code a pipeline stage runs, derived from the source: the static import closure inside
``ssd/`` of the stage's ``ssd`` subcommand (its own imports and cli.py's), package
``__init__`` files included (importing ``ssd.a.b`` runs ``ssd/__init__.py`` and
``ssd/a/__init__.py``). Imports under ``if TYPE_CHECKING:`` are not run and not counted."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _module_file(name: str) -> Path | None:
    base = REPO / Path(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _with_packages(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(nodes: list[ast.stmt]) -> set[str]:
    """``ssd.*`` modules imported anywhere in ``nodes`` (functions included)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "ssd")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module.split(".")[0] == "ssd"
        ):
            found.add(node.module)
            for alias in node.names:  # `from ssd.data import report` imports a module
                if _module_file(f"{node.module}.{alias.name}") is not None:
                    found.add(f"{node.module}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    for n in nodes:
        visit(n)
    return found


def closure(modules: set[str]) -> set[Path]:
    """Files of ``modules`` and of everything they import, transitively, inside ``ssd/``."""
    todo = [m for name in modules for m in _with_packages(name)]
    seen: set[str] = set()
    files: set[Path] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            continue
        files.add(path.relative_to(REPO))
        tree = ast.parse(path.read_text())
        for dep in imported_modules(tree.body):
            todo.extend(_with_packages(dep))
    return files


def command_code(command: str) -> set[Path]:
    """The files ``ssd <command>`` runs: cli.py, and the closure of the command's imports and
    of cli.py's module-level imports."""
    cli = REPO / "ssd" / "cli.py"
    tree = ast.parse(cli.read_text())
    module_level = imported_modules([n for n in tree.body if not isinstance(n, ast.FunctionDef)])
    func = None
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for dec in node.decorator_list:
            call = dec if isinstance(dec, ast.Call) else None
            target = call.func if call else dec
            if isinstance(target, ast.Attribute) and target.attr == "command":
                name = node.name
                if call and call.args and isinstance(call.args[0], ast.Constant):
                    name = str(call.args[0].value)
                if name == command:
                    func = node
    if func is None:
        raise KeyError(f"no `ssd {command}` in ssd/cli.py")
    helpers = _called_helpers(tree, func)
    own = imported_modules([func, *helpers])
    # cli.py itself runs, but only this command's imports in it (not every command's)
    return closure(module_level | own) | {cli.relative_to(REPO)}


def _called_helpers(tree: ast.Module, func: ast.FunctionDef) -> list[ast.FunctionDef]:
    """Module-level functions of cli.py that ``func`` calls (one level is enough there)."""
    defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    called = {
        n.func.id
        for n in ast.walk(func)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in defs
    }
    return [defs[c] for c in sorted(called) if c != func.name]


if __name__ == "__main__":
    import sys

    for cmd in sys.argv[1:]:
        print(cmd, sorted(str(p) for p in command_code(cmd)))
