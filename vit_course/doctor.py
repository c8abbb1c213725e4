"""`vit-course doctor`: is this machine ready for the course?

Prints, as plain aligned tables: the versions of the libraries the notebooks
use, torch's thread count, whether the Hugging Face hub is switched off
(`HF_HUB_OFFLINE`), and which datasets and models (`vit_course.assets`) are
present, with the command that gets each missing one. Returns a `Report` whose
`problems` lists what would stop a notebook: a missing library, a torchvision
that does not import, a missing required asset.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata

# (distribution name, required): optional ones are only reported
LIBRARIES = (
    ("torch", True),
    ("torchvision", True),
    ("transformers", True),
    ("einops", True),
    ("matplotlib", True),
    ("nbval", False),  # only for testing the notebooks
    ("ipywidgets", False),
    ("jupyterlab", False),
    ("onnx", True),
    ("onnxruntime", True),
)


@dataclass
class Report:
    """What `doctor()` found. `ok` is True when `problems` is empty."""

    versions: dict[str, str | None] = field(default_factory=dict)
    threads: int | None = None
    hf_hub_offline: str = ""
    assets: list[tuple[str, bool, bool, str]] = field(default_factory=list)  # name, present, required, detail
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def table(rows: list[tuple], header: tuple) -> str:
    """Rows as plain text columns, padded to the widest cell; the last column is not padded."""
    rows = [tuple(str(c) for c in r) for r in [header, *rows]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = []
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r, widths)] + [r[-1]]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths + [len(header[-1])]))
    return "\n".join(lines)


def library_versions() -> dict[str, str | None]:
    """{name: version or None if not installed}, read from package metadata (no import)."""
    versions = {"python": platform.python_version()}
    for name, _ in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _torch_checks(report: Report) -> None:
    """Import torch and torchvision: a broken pair fails here, not in a notebook."""
    try:
        import torch

        report.threads = torch.get_num_threads()
    except Exception as err:  # noqa: BLE001 - report, do not crash
        report.problems.append(f"import torch failed: {type(err).__name__}: {err}")
        return
    try:
        import torchvision  # noqa: F401
    except Exception as err:  # noqa: BLE001
        report.problems.append(
            f"import torchvision failed ({type(err).__name__}: {err}); "
            "install a torchvision built for this torch"
        )


def _hub_offline_state() -> str:
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is None:
        state = "unset: hub ids download when online, fail offline"
    elif value.strip().lower() in ("1", "true", "yes", "on"):
        state = f"{value}: hub switched off, only local files"
    else:
        state = f"{value}: hub on"
    if "transformers" in sys.modules:
        state += " (read when transformers was imported: set it before the kernel starts)"
    return state


def doctor(file=None) -> Report:
    """Check the environment and the assets; print a report to `file` (stdout).

    Returns a `Report`; `len(report.problems)` is the number of problems found.
    """
    from vit_course.assets import asset_status

    out = file or sys.stdout
    report = Report(versions=library_versions(), hf_hub_offline=_hub_offline_state())
    required = dict(LIBRARIES)
    for name, version in report.versions.items():
        if version is None and required.get(name):
            report.problems.append(f"library {name} is not installed: pip install {name}")
    _torch_checks(report)

    print("Libraries", file=out)
    lib_rows = [(n, v or "not installed") for n, v in report.versions.items()]
    print(table(lib_rows, ("library", "version")), file=out)
    print(file=out)
    print(f"torch threads   {report.threads}", file=out)
    print(f"HF_HUB_OFFLINE  {report.hf_hub_offline}", file=out)
    print(file=out)

    rows, missing = [], []
    for asset, present, detail in asset_status():
        report.assets.append((asset.name, present, asset.required, detail))
        status = "ok" if present else ("MISSING" if asset.required else "absent (optional)")
        rows.append((asset.name, asset.kind, status, detail))
        if not present:
            missing.append((asset.name, asset.get_command))
            if asset.required:
                report.problems.append(f"asset {asset.name} is missing: {asset.get_command}")
    print("Assets", file=out)
    print(table(rows, ("asset", "kind", "status", "detail")), file=out)
    if missing:
        print(file=out)
        print("To get what is missing", file=out)
        print(table(missing, ("asset", "command")), file=out)

    print(file=out)
    if report.problems:
        print(f"{len(report.problems)} problem(s):", file=out)
        for problem in report.problems:
            print(f"  - {problem}", file=out)
    else:
        print("No problems found.", file=out)
    return report
