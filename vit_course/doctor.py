"""`vit-course doctor`: is this machine ready for the course?

Prints, as plain aligned tables: the versions of the libraries the notebooks
use, torch's thread count, whether the Hugging Face hub is switched off
(`HF_HUB_OFFLINE`), whether every file shipped in data/ still has the size and
SHA-256 recorded in data/MANIFEST.json, which datasets and models
(`vit_course.assets`) are present and readable (each file opened the way the
course opens it: weights finite, arrays paired, JSON parsed), whether the cache
folder is writable, and whether bubblewrap (the sandbox of `vit-course grade`) is
installed. Returns a `Report` whose `problems` lists what would stop a notebook: a
missing library, a torchvision that does not import, a shipped file that differs
from its record, a missing or broken required asset, a cache that cannot be
written when something must be written there. `warnings` lists what does not stop
a notebook (no bubblewrap on Linux); `vit-course doctor --strict` fails on either.
Run by hand before notebook 01 (the README's set-up).
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import TextIO

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
    warnings: list[str] = field(default_factory=list)
    bwrap: str | None = None  # path of bubblewrap, None when missing
    cache: str = ""

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


BWRAP_MISSING = "missing: apt-get install bubblewrap (needed by `vit-course grade`)"


def _bwrap_check(report: Report) -> str:
    """The bubblewrap line; on Linux a missing `bwrap` is a warning (grading needs it)."""
    report.bwrap = shutil.which("bwrap")
    if report.bwrap:
        return report.bwrap
    if sys.platform.startswith("linux"):
        report.warnings.append(f"bubblewrap {BWRAP_MISSING}")
    return BWRAP_MISSING


def _cache_check(report: Report) -> None:
    """Can the course write its cache? A problem when DINOv2 still has to be converted."""
    from vit_course import dinov2
    from vit_course.paths import cache_dir, writable_problem

    root = cache_dir()
    problem = writable_problem(root)
    if problem is None:
        report.cache = f"{root} (writable)"
        return
    report.cache = f"{root}: NOT WRITABLE"
    message = (f"cache folder {problem}: set VIT_COURSE_CACHE to a writable folder "
               "(e.g. `export VIT_COURSE_CACHE=/tmp/vit-course`)")
    if dinov2.cache_problem(dinov2.dinov2_cache_path()) is None:
        report.warnings.append(message)  # the DINOv2 cache is complete: nothing must be written
    else:
        report.problems.append(message + "; load_dinov2() must write the converted DINOv2 there")


def _shipped_check(report: Report, out: TextIO) -> None:
    """Every file shipped in data/ as recorded (size, SHA-256) in data/MANIFEST.json."""
    from vit_course.paths import DATA_DIR, MANIFEST_NAME, manifest, manifest_problems

    try:
        problems = manifest_problems()
    except ValueError as err:  # the manifest itself is broken
        problems = [str(err)]
    report.problems += problems
    state = f"{len(problems)} differ from" if problems else f"all {len(manifest())} as recorded in"
    print(f"shipped files   {state} {DATA_DIR / MANIFEST_NAME}", file=out)
    print(file=out)


def doctor(file: TextIO | None = None) -> Report:
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
    _cache_check(report)
    bwrap = _bwrap_check(report)
    print(f"torch threads   {report.threads}", file=out)
    print(f"HF_HUB_OFFLINE  {report.hf_hub_offline}", file=out)
    print(f"cache folder    {report.cache}", file=out)
    print(f"bubblewrap (grading sandbox): {bwrap}", file=out)
    print(file=out)

    _shipped_check(report, out)
    rows, missing = [], []
    for asset, present, detail in asset_status():
        report.assets.append((asset.name, present, asset.required, detail))
        broken = detail.startswith("broken:")
        if present:
            status = "BLOCKED" if detail.startswith("blocked:") else "ok"  # blocked: its cache problem is listed
        elif broken:
            status = "BROKEN" if asset.required else "broken (optional)"
        else:
            status = "MISSING" if asset.required else "absent (optional)"
        rows.append((asset.name, asset.kind, status, detail))
        if not present:
            missing.append((asset.name, asset.get_command))
            if asset.required:
                what = detail if broken else "is missing"
                report.problems.append(f"asset {asset.name} {what}: {asset.get_command}")
        elif "cache broken" in detail:
            report.warnings.append(f"asset {asset.name}: {detail}")
    print("Assets", file=out)
    print(table(rows, ("asset", "kind", "status", "detail")), file=out)
    if missing:
        print(file=out)
        print("To get what is missing or broken", file=out)
        print(table(missing, ("asset", "command")), file=out)

    print(file=out)
    if report.problems:
        print(f"{len(report.problems)} problem(s):", file=out)
        for problem in report.problems:
            print(f"  - {problem}", file=out)
    else:
        print("No problems found.", file=out)
    if report.warnings:
        print(f"{len(report.warnings)} warning(s):", file=out)
        for warning in report.warnings:
            print(f"  - {warning}", file=out)
    return report
