"""One home per helper, read from the source: each guard names the file and the fix.

- scripts/ and tools/ import the installed package (and each other's helpers through it):
  no `sys.path.insert`;
- one atomic write (`vit_course.paths.atomic_write`), one parameter count
  (`vit_course.cost.count_parameters`), one Fashion-MNIST search path
  (`vit_course.data.fashion_mnist_dirs`), one state-dict check
  (`vit_course.state_dict.check_state_dict`);
- no module of the package calls another's private name (`other._helper`);
- nothing refers to a file outside the repository (the course's FACTS.md notes).

Each guard is shown failing on a planted case first.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "vit_course"


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py"))


def sys_path_hacks(path: Path) -> list[str]:
    return [f"{path.relative_to(path.parents[1])}:{n}" for n, line in
            enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "sys.path.insert" in line]


# helper -> (a pattern that writes it out again, the one file allowed to, what to call instead)
ONE_HOME = {
    "atomic write": (r"os\.replace\(|tempfile\.mkstemp\(|NamedTemporaryFile\(", "vit_course/paths.py",
                     "vit_course.paths.atomic_write / atomic_write_text / write_notebook"),
    "parameter count": (r"\.numel\(\) for \w+ in \w+\.parameters\(\)", "vit_course/cost.py",
                        "vit_course.cost.count_parameters"),
    "Fashion-MNIST search path": (r"/usr/share/datasets/fashion-mnist", "vit_course/data.py",
                                  "vit_course.data.fashion_mnist_dirs"),
    "state-dict check": (r"def check_state_dict\b", "vit_course/state_dict.py",
                         "vit_course.state_dict.check_state_dict"),
}


def second_homes(files: list[Path], root: Path = REPO) -> list[str]:
    """`file:line: <helper> written again; use <the one home>` for each copy outside its home."""
    found = []
    for path in files:
        name = path.relative_to(root).as_posix()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0] if "/usr/share" not in line else line
            for helper, (pattern, home, use) in ONE_HOME.items():
                if name != home and re.search(pattern, code):
                    found.append(f"{name}:{n}: a {helper} written again; use {use}")
    return found


def private_calls(path: Path) -> list[str]:
    """`module._name` uses and `from module import _name` of another package module's private names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = set()  # names bound to a package module here
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("vit_course")):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno}: imports {node.module}.{alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update(a.asname or a.name for a in node.names if a.name.startswith("vit_course"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{path.name}:{node.lineno}: uses {node.value.id}.{node.attr}")
    return found


def test_the_guards_catch_planted_copies(tmp_path):
    (tmp_path / "vit_course").mkdir()
    bad = tmp_path / "vit_course" / "bad.py"
    bad.write_text("import sys\nsys.path.insert(0, '..')\n"
                   "from . import dinov2\nfrom .paths import _umask\n"
                   "n = sum(p.numel() for p in model.parameters())\nos.replace(tmp, path)\n"
                   "dinov2._cache_complete(path)\nROOT = '/usr/share/datasets/fashion-mnist'\n")
    assert sys_path_hacks(bad) == ["vit_course/bad.py:2"]
    assert second_homes([bad], tmp_path) == [
        "vit_course/bad.py:5: a parameter count written again; use vit_course.cost.count_parameters",
        "vit_course/bad.py:6: a atomic write written again; use "
        "vit_course.paths.atomic_write / atomic_write_text / write_notebook",
        "vit_course/bad.py:8: a Fashion-MNIST search path written again; use vit_course.data.fashion_mnist_dirs",
    ]
    assert private_calls(bad) == ["bad.py:4: imports paths._umask", "bad.py:7: uses dinov2._cache_complete"]


@pytest.mark.parametrize("folder", ["scripts", "tools"])
def test_scripts_and_tools_import_the_installed_package_without_sys_path_hacks(folder):
    hacks = [hack for path in python_files(folder) for hack in sys_path_hacks(path)]
    assert not hacks, (f"sys.path.insert in {hacks}: the package is installed (pip install -e .); import "
                       "vit_course, and move a helper two tools share into the package")


def test_each_helper_has_one_home():
    copies = second_homes(python_files("vit_course", "scripts", "tools"))
    assert not copies, "\n".join(copies)


def test_no_module_of_the_package_uses_another_modules_private_names():
    found = [use for path in python_files("vit_course") for use in private_calls(path)]
    assert not found, f"{found}: make the name public (no leading underscore) in the module that owns it"


def test_nothing_refers_to_notes_outside_the_repository():
    found = [f"{path.relative_to(REPO)}" for path in python_files("vit_course", "scripts", "tools")
             if "FACTS.md" in path.read_text(encoding="utf-8")]
    assert not found, f"{found} refer to FACTS.md, which is not in the repository: say what was measured instead"
