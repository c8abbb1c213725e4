"""Execute notebooks in place, the way `pytest --nbval --nbval-current-env` runs them.

    python tools/execute_notebooks.py notebooks/solutions/*.ipynb notebooks/*.ipynb
    python tools/execute_notebooks.py --timeout 300 notebooks/03_attention.ipynb

Same kernel (ipykernel on this interpreter, as nbval's `--nbval-current-env`), same
working directory (the notebook's folder), same environment (`HF_HUB_OFFLINE=1` and
`TRANSFORMERS_OFFLINE=1` unless already set, as the Makefile exports them), same cell
markers: a cell marked `# NBVAL_SKIP` (or tagged `nbval-skip`) is not run and keeps its
outputs; one marked `# NBVAL_RAISES_EXCEPTION` (or tagged `raises-exception`) may raise.
tqdm is left on: cells that show progress bars should carry `# NBVAL_IGNORE_OUTPUT`.
A cell that ran longer than `--slow` seconds (5) without showing a progress bar is named
at the end and the exit status is 1 with `--strict-progress`: a learner should never watch
a silent cell. No timings are recorded in cell metadata; widget state is stored as nbconvert does (its
model ids change from run to run, outside what nbval compares). Each notebook is written
atomically, and only when every cell ran.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import nbformat

from vit_course.paths import write_notebook

CURRENT_ENV_KERNEL = ":current-env"
NOTEBOOK_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
SKIP_MARKERS, SKIP_TAGS = ("NBVAL_SKIP",), ("nbval-skip",)
RAISES_MARKERS, RAISES_TAGS = ("NBVAL_RAISES_EXCEPTION",), ("raises-exception", "nbval-raises-exception")
# the tags nbclient itself understands
NBCLIENT_SKIP, NBCLIENT_RAISES = "skip-execution", "raises-exception"
SLOW_CELL_S = 5.0
PROGRESS_MODELS = {"FloatProgressModel", "IntProgressModel"}


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


def execute_notebook(path: Path | str, timeout: int = 300, write: bool = True, slow_s: float = SLOW_CELL_S):
    """Run every code cell of `path` in a fresh kernel; returns the executed notebook and
    its cells that ran over slow_s seconds without a progress bar, as (index, seconds)."""
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
        record_timing=True,  # read by silent_slow_cells, removed before writing
        store_widget_state=True,  # nbclient's Output-widget hook fails without it
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    client.execute()
    slow = silent_slow_cells(nb, slow_s)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    for cell, tag, had_tags in reversed(added):
        cell.metadata["tags"].remove(tag)
        if not had_tags and not cell.metadata["tags"]:
            del cell.metadata["tags"]
    if write:
        write_notebook(path, nb)
    return nb, slow


def _seconds(cell) -> float:
    """How long a cell ran, from the timings nbclient records (0 when it has none)."""
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def shows_progress(cell, widget_state: dict) -> bool:
    """A progress bar in the cell's outputs: tqdm's widget box or text, or an HTML <progress>
    (transformers' Trainer shows its bar that way in a notebook)."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and any(rate in output.get("text", "") for rate in ("it/s]", "s/it]")):
            return True
        if "<progress" in "".join(output.get("data", {}).get("text/html", "")):
            return True
        view = output.get("data", {}).get("application/vnd.jupyter.widget-view+json")
        if not view:
            continue
        model = widget_state.get(view.get("model_id"), {})
        children = [c.removeprefix("IPY_MODEL_") for c in model.get("state", {}).get("children", [])]
        if any(widget_state.get(c, {}).get("model_name") in PROGRESS_MODELS for c in children):
            return True
    return False


def silent_slow_cells(nb, slow_s: float = SLOW_CELL_S) -> list[tuple[int, float]]:
    """(cell index, seconds) of code cells that ran longer than slow_s without a progress bar."""
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    return [(i, round(_seconds(c), 1)) for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and _seconds(c) > slow_s and not shows_progress(c, state)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="notebooks to execute in place")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell (nbval's --nbval-cell-timeout in make test)")
    parser.add_argument("--strict-progress", action="store_true",
                        help=f"exit 1 when a cell ran over {SLOW_CELL_S:.0f} s without a progress bar")
    args = parser.parse_args(argv)
    from nbclient.exceptions import CellExecutionError

    failed = silent = 0
    for path in args.paths:
        start = time.perf_counter()
        try:
            _, slow = execute_notebook(path, timeout=args.timeout)
        except CellExecutionError as e:
            failed += 1
            print(f"FAIL {path}: a cell raised\n{e}", file=sys.stderr)
            continue
        print(f"ran  {path} in {time.perf_counter() - start:.0f} s")
        for index, seconds in slow:
            silent += 1
            print(f"slow {path}: cell {index} ran {seconds} s without a progress bar "
                  "(pass progress=True, or wrap its loop in tqdm.auto.tqdm)", file=sys.stderr)
    return 1 if failed or (silent and args.strict_progress) else 0


if __name__ == "__main__":
    sys.exit(main())
