"""tools/add_speed_section.py appends notebook 08's speed section and touches nothing else."""

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import add_speed_section  # noqa: E402


def test_section_is_appended_once_after_the_existing_cells(tmp_path):
    shipped = nbformat.read(add_speed_section.NOTEBOOK, as_version=4)
    ids = [cell_id for cell_id, _, _ in add_speed_section.CELLS]
    before = [c for c in shipped.cells if c.get("id") not in ids]
    assert len(before) == len(shipped.cells) - len(ids), "the shipped notebook 08 lacks the speed section"
    bare = nbformat.v4.new_notebook(cells=before, metadata=shipped.metadata)
    path = tmp_path / "08.ipynb"
    nbformat.write(bare, path)
    assert add_speed_section.add_speed_section(path) is True
    after = nbformat.read(path, as_version=4)
    assert [c.source for c in after.cells[: len(before)]] == [c.source for c in before], "an existing cell changed"
    assert [c["id"] for c in after.cells[len(before):]] == ids
    assert [c.source for c in after.cells] == [c.source for c in shipped.cells], "shipped notebook 08 differs from the tool"
    assert add_speed_section.add_speed_section(path) is False, "a second run appended the section again"
    assert len(nbformat.read(path, as_version=4).cells) == len(after.cells)
