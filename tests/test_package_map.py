"""The package's shape, read from its source: no import cycles, typed public functions, and
a map from each module to the notebooks that use it.

Everything here parses files with `ast`; nothing is imported, so a cycle is found even
where Python would tolerate it (an import inside a function).
"""

import ast
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "vit_course"
NOTEBOOKS = REPO / "notebooks" / "solutions"


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package's __init__)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at the top or inside a function."""
    modules = _modules()
    graph = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # from . import x, from ..paths import y
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                submodules = {f"{module}.{alias.name}" for alias in node.names} & modules.keys()
                targets.update(submodules)
                if len(submodules) < len(node.names):  # a name from the module itself
                    targets.add(module)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search)."""
    state = {}  # name -> "open" while on the path, "done" after

    def visit(name, path):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target, path + [target])
                if cycle:
                    return cycle
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name, [name])
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "vit_course.hf" in graph["vit_course.vit"], "VisionTransformer.from_hf imports vit_course.hf lazily"
    assert "vit_course.state_dict" in graph["vit_course.hf"]


def test_no_two_modules_of_the_package_import_each_other():
    cycle = find_cycle(import_graph())
    assert cycle is None, f"import cycle in the package: {' -> '.join(cycle)}"


def untyped_functions(path: Path) -> list[str]:
    """Public functions and methods of a file with an argument or the return left unannotated."""
    found = []

    def visit(body, prefix=""):
        for node in body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                visit(node.body, f"{node.name}.")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                if args and args[0].arg in ("self", "cls") and prefix:
                    args = args[1:]
                args += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
                bare = [a.arg for a in args if a.annotation is None]
                if node.returns is None and node.name != "__init__":
                    bare.append("return")
                if bare:
                    found.append(f"{prefix}{node.name} ({', '.join(bare)})")

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def test_untyped_functions_sees_a_missing_hint(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f(x: int, y) -> int: ...\ndef g(x: int): ...\ndef _private(x): ...\n"
                      "class A:\n    def m(self, x: int) -> None: ...\n")
    assert untyped_functions(source) == ["f (y)", "g (return)"]


def test_public_functions_of_every_module_have_type_hints():
    missing = {name: untyped_functions(path) for name, (path, _) in _modules().items()}
    missing = {name: found for name, found in missing.items() if found}
    assert not missing, "public functions without type hints: " + "; ".join(
        f"{name}: {', '.join(found)}" for name, found in sorted(missing.items()))


def _reexports(package: str) -> dict[str, str]:
    """Name -> module for what a package's __init__ imports from its modules (`from .vit import X`)."""
    path, _ = _modules()[package]
    names = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{package}.{node.module}"
    return names


def _code(notebook: Path) -> ast.Module:
    cells = [c for c in json.loads(notebook.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    lines = [line for c in cells for line in "".join(c["source"]).splitlines()
             if not line.lstrip().startswith(("%", "!"))]  # IPython magics
    return ast.parse("\n".join(lines))


def notebook_modules() -> dict[str, set[str]]:
    """Module -> the numbers ("01", ...) of the solution notebooks that import it or a name from it."""
    modules = _modules()
    used = {}

    def use(module, name, number):
        if f"{module}.{name}" in modules:
            module = f"{module}.{name}"
        elif modules.get(module, (None, False))[1]:  # a name a package re-exports
            module = _reexports(module).get(name, module)
        used.setdefault(module, set()).add(number)

    for notebook in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        number = notebook.name[:2]
        for node in ast.walk(_code(notebook)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "vit_course":
                for alias in node.names:
                    use(node.module, alias.name, number)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "vit_course":
                        used.setdefault(alias.name, set()).add(number)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "vit_course":
                use("vit_course", node.attr, number)  # vit_course.data.load_photo(...)
    return used


def named_notebooks(docstring: str) -> set[str]:
    """The notebook numbers a docstring names: "notebook 07", "notebooks 01, 04 and 08", "03-10"."""
    named = set()
    for match in re.finditer(r"notebooks? ((?:\d\d)(?:(?:, | and |, and |-|–| to )\d\d)*)", docstring):
        text = match.group(1)
        for start, end in re.findall(r"(\d\d)(?:-|–| to )(\d\d)", text):
            named.update(f"{n:02d}" for n in range(int(start), int(end) + 1))
        named.update(re.findall(r"\d\d", text))
    return named


def test_named_notebooks_reads_lists_and_ranges():
    assert named_notebooks("Used by notebooks 01, 04 and 08.") == {"01", "04", "08"}
    assert named_notebooks("Used by every notebook (notebooks 01-03).") == {"01", "02", "03"}
    assert named_notebooks("Used by notebook 09; see notebook 10") == {"09", "10"}


def test_each_module_docstring_names_the_notebooks_that_use_it():
    modules = _modules()
    wrong = []
    for module, numbers in sorted(notebook_modules().items()):
        docstring = ast.get_docstring(ast.parse(modules[module][0].read_text(encoding="utf-8"))) or ""
        unnamed = numbers - named_notebooks(docstring)
        if unnamed:
            wrong.append(f"{module} (used by notebooks {', '.join(sorted(numbers))}; "
                         f"its docstring does not name {', '.join(sorted(unnamed))})")
    assert not wrong, "module docstrings that do not name their notebooks: " + "; ".join(wrong)


README_COMMON = {"data", "paths", "plots"}  # most notebooks use them; the README says so instead


def test_readme_notebook_table_names_the_modules_each_notebook_imports():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\d\d) \| `\d\d_[^`]+\.ipynb` \| .* \| ((?:`\w+`(?:, )?)*) \|$", readme, re.M))
    imported = {}
    for module, numbers in notebook_modules().items():
        short = module.removeprefix("vit_course.")
        if not short.startswith("checks.") and short not in README_COMMON:
            for number in numbers:
                imported.setdefault(number, set()).add(short)
    notebooks = sorted(p.name[:2] for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert sorted(rows) == notebooks, f"README's notebook table has rows {sorted(rows)}, the notebooks are {notebooks}"
    for number in notebooks:
        listed = set(re.findall(r"`(\w+)`", rows[number]))
        assert listed == imported.get(number, set()), (
            f"README row {number} lists modules {sorted(listed)}, the notebook imports {sorted(imported.get(number, set()))}")
