"""Execute notebooks in place, the way `pytest --nbval --nbval-current-env` runs them.

    python tools/execute_notebooks.py notebooks/solutions/*.ipynb notebooks/*.ipynb
    python tools/execute_notebooks.py --timeout 300 notebooks/03_attention.ipynb

Same kernel (ipykernel on this interpreter, as nbval's `--nbval-current-env`), same
working directory (the notebook's folder), same environment (`HF_HUB_OFFLINE=1` and
`TRANSFORMERS_OFFLINE=1` unless already set, as the Makefile exports them), same cell
markers: a cell marked `# NBVAL_SKIP` (or tagged `nbval-skip`) is not run and keeps its
outputs; one marked `# NBVAL_RAISES_EXCEPTION` (or tagged `raises-exception`) may raise.
tqdm is left on: cells that show progress bars should carry `# NBVAL_IGNORE_OUTPUT`.
No timings are recorded in cell metadata; widget state is stored as nbconvert does (its
model ids change from run to run, outside what nbval compares). Each notebook is written
atomically, and only when every cell ran.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat

from vit_course.paths import write_notebook

CURRENT_ENV_KERNEL = ":current-env"
NOTEBOOK_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
SKIP_MARKERS, SKIP_TAGS = ("NBVAL_SKIP",), ("nbval-skip",)
RAISES_MARKERS, RAISES_TAGS = ("NBVAL_RAISES_EXCEPTION",), ("raises-exception", "nbval-raises-exception")
# the tags nbclient itself understands
NBCLIENT_SKIP, NBCLIENT_RAISES = "skip-execution", "raises-exception"


def _marked(cell, markers: tuple[str, ...], tags: tuple[str, ...]) -> bool:
    """nbval's rule: a line that is only `# MARKER`, anywhere in the cell, or a tag."""
    comments = {line.strip().lstrip("#").strip() for line in cell.source.splitlines() if line.strip().startswith("#")}
    return bool(comments & set(markers)) or any(t in cell.get("metadata", {}).get("tags", []) for t in tags)


def kernel_manager():
    """An nbclient-ready kernel manager for ipykernel on this interpreter."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class CurrentEnvKernelSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            if kernel_name == CURRENT_ENV_KERNEL:
                return self.kernel_spec_class(
                    resource_dir=ipykernel.kernelspec.RESOURCES, **ipykernel.kernelspec.get_kernel_dict()
                )
            return super().get_kernel_spec(kernel_name)

    return AsyncKernelManager(kernel_name=CURRENT_ENV_KERNEL, kernel_spec_manager=CurrentEnvKernelSpecManager())


def execute_notebook(path: Path | str, timeout: int = 300, write: bool = True):
    """Run every code cell of `path` in a fresh kernel; returns the executed notebook."""
    from nbclient import NotebookClient

    path = Path(path)
    for key, value in NOTEBOOK_ENV.items():
        os.environ.setdefault(key, value)
    nb = nbformat.read(path, as_version=4)
    added = []  # (cell, tag, whether the cell had tags before)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for wanted, markers, marker_tags in (
            (NBCLIENT_SKIP, SKIP_MARKERS, SKIP_TAGS),
            (NBCLIENT_RAISES, RAISES_MARKERS, RAISES_TAGS),
        ):
            tags = cell.metadata.get("tags")
            if _marked(cell, markers, marker_tags) and wanted not in (tags or []):
                added.append((cell, wanted, tags is not None))
                cell.metadata["tags"] = [*(tags or []), wanted]
    client = NotebookClient(
        nb,
        km=kernel_manager(),
        timeout=timeout,
        record_timing=False,
        store_widget_state=True,  # nbclient's Output-widget hook fails without it
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    client.execute()
    for cell, tag, had_tags in reversed(added):
        cell.metadata["tags"].remove(tag)
        if not had_tags and not cell.metadata["tags"]:
            del cell.metadata["tags"]
    if write:
        write_notebook(path, nb)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="notebooks to execute in place")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell (nbval's --nbval-cell-timeout in make test)")
    args = parser.parse_args(argv)
    from nbclient.exceptions import CellExecutionError

    failed = 0
    for path in args.paths:
        start = time.perf_counter()
        try:
            execute_notebook(path, timeout=args.timeout)
        except CellExecutionError as e:
            failed += 1
            print(f"FAIL {path}: a cell raised\n{e}", file=sys.stderr)
            continue
        print(f"ran  {path} in {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
