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


def _module_level(tree: ast.Module) -> set[str]:
    """``ssd.*`` modules a module imports when it is imported (not inside its functions)."""
    return imported_modules([n for n in tree.body if not isinstance(n, ast.FunctionDef)])


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def _called(func: ast.FunctionDef, names: set[str], via: str | None = None) -> set[str]:
    """Names in ``names`` that ``func`` calls, as ``name(...)`` or ``via.name(...)``."""
    found = set()
    for node in ast.walk(func):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if via is None and isinstance(f, ast.Name) and f.id in names:
            found.add(f.id)
        elif (
            via is not None
            and isinstance(f, ast.Attribute)
            and isinstance(f.value, ast.Name)
            and f.value.id == via
            and f.attr in names
        ):
            found.add(f.attr)
    return found


def _reachable(defs: dict[str, ast.FunctionDef], start: set[str]) -> list[ast.FunctionDef]:
    """``start`` and the module's functions they call, transitively."""
    todo, seen = list(start), set()
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        todo.extend(_called(defs[name], set(defs)) - seen)
    return [defs[n] for n in sorted(seen)]


def command_code(command: str) -> set[Path]:
    """The files ``ssd <command>`` runs: cli.py and stages.py (each only with the imports of
    the functions the command runs: the command's, its stage's and their helpers'), and the
    closure of those imports and of both modules' module-level imports."""
    cli_path, stages_path = REPO / "ssd" / "cli.py", REPO / "ssd" / "stages.py"
    cli, stages = ast.parse(cli_path.read_text()), ast.parse(stages_path.read_text())
    cli_defs, stage_defs = _functions(cli), _functions(stages)
    func = None
    for node in cli_defs.values():
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
    in_cli = _reachable(cli_defs, {func.name})
    in_stages = _reachable(
        stage_defs, set().union(*(_called(f, set(stage_defs), via="stages") for f in in_cli))
    )
    modules = (_module_level(cli) | _module_level(stages)) - {"ssd.stages"}
    modules |= imported_modules([*in_cli, *in_stages])
    found = closure(modules) | {cli_path.relative_to(REPO), stages_path.relative_to(REPO)}
    return found | {Path("ssd/__init__.py")}


def dependency(path: Path) -> str:
    """The ``dvc.yaml`` dependency that covers ``path``: its top-level package under
    ``ssd/`` (``ssd/model``), or the file itself for a top-level module (``ssd/cli.py``)."""
    parts = path.parts
    return "/".join(parts[:2]) if len(parts) > 2 else str(path)


if __name__ == "__main__":
    import sys

    for cmd in sys.argv[1:]:
        code = command_code(cmd)
        print(cmd, sorted({dependency(p) for p in code}))
