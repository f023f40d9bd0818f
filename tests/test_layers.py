"""Imports only go down (DESIGN.md, Layers): no import cycle among the project's modules, and utils/ imports
nothing from the layers above it. Read from the source with ast, so a function-local import counts too."""
import ast
import warnings

import pytest

from tests.helpers.paths import REPO

# what utils/ (the bottom layer) may not import: logger/ is its peer, runs/ (the run engine) and the rest sit above it
ABOVE_UTILS = ("logger", "runs", "search", "base", "trainer", "model", "data_loader")
SKIPPED = ("tests", "saved", "data", ".git", ".venv", "venv")


def project_modules(root=REPO):
    """{dotted module name: path} of every .py file of the project outside tests/ (packages by __init__)."""
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[0] in SKIPPED or any(part.startswith(".") for part in parts):
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def imports_of(name, path, modules):
    """The project modules that `name` imports, at module level or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod where there is one, else names of pkg
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                         for alias in node.names)
    return {module for module in found if module in modules and module != name}


def import_graph(root=REPO):
    modules = project_modules(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or None."""
    state = {}  # module -> "open" while on the current path, "done" once all below it is known acyclic

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target, path + [target])
                if cycle:
                    return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [module])
            if cycle:
                return cycle
    return None


def test_no_import_cycle_among_project_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_utils_imports_nothing_from_the_layers_above():
    wrong = sorted(f"{module} imports {target}" for module, targets in import_graph().items()
                   if module.split(".")[0] == "utils"
                   for target in targets if target.split(".")[0] in ABOVE_UTILS)
    assert wrong == []


# each package and what it may not import (DESIGN.md, Layers: utils/ and logger/, then runs/ and search/, then
# base/, then the concrete data_loader/, model/, trainer/, then the entry scripts)
NOT_BELOW = {
    "logger": ("runs", "search", "base", "trainer", "model", "data_loader"),
    "runs": ("search", "base", "trainer", "model", "data_loader"),
    "search": ("base", "trainer", "model", "data_loader"),
    "base": ("trainer", "model", "data_loader"),
}


@pytest.mark.parametrize("package", sorted(NOT_BELOW))
def test_each_layer_imports_only_the_layers_below(package):
    wrong = sorted(f"{module} imports {target}" for module, targets in import_graph().items()
                   if module.split(".")[0] == package
                   for target in targets if target.split(".")[0] in NOT_BELOW[package])
    assert wrong == []


@pytest.mark.parametrize("files, cycle", [
    ({"a.py": "import b\n", "b.py": "def f():\n    from a import x\n"}, ["a", "b", "a"]),
    ({"p/__init__.py": "", "p/x.py": "from p import y\n", "p/y.py": "from . import x\n"}, ["p.x", "p.y", "p.x"]),
    ({"a.py": "import b\n", "b.py": "import os\n"}, None),
])
def test_the_checker_finds_a_cycle_made_on_purpose(tmp_path, files, cycle):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert find_cycle(import_graph(tmp_path)) == cycle


def test_no_module_installs_a_warning_filter_when_imported():
    """A filter belongs where the warning comes from (search/storage.py's quiet_experimental), not in an
    import that changes the warnings of every later caller."""
    found = []
    for name, path in project_modules().items():
        for statement in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            found += [f"{name}:{node.lineno}" for node in ast.walk(statement) if isinstance(node, ast.Call)
                      and getattr(node.func, "attr", None) in ("filterwarnings", "simplefilter")]
    assert found == []


def test_optunas_experimental_warnings_stay_quiet_where_tune_py_uses_the_heartbeat(tmp_path):
    import optuna

    from search.recovery import retry_after_kill
    from search.storage import open_storage

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        open_storage(f"sqlite:///{tmp_path / 's.db'}", 30, 120, retry_after_kill())
    assert not [w for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]
