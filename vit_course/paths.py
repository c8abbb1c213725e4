"""Where the course keeps its files, and how it writes them without losing any.

`DATA_DIR` is the repository's `data/` folder (datasets, photos, checkpoints that ship
with the course). `cache_dir()` is outside the repository, for things the course makes
on first use (the converted DINOv2 weights). Every file the course writes goes through
`atomic_write`, so an interrupted run never leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
DATA_DIR = Path(os.environ.get("VIT_COURSE_DATA", REPO_DIR / "data"))


def cache_dir() -> Path:
    """The course's cache folder: `$VIT_COURSE_CACHE`, else `~/.cache/vit-course`."""
    root = os.environ.get("VIT_COURSE_CACHE") or Path.home() / ".cache" / "vit-course"
    return Path(root)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
    """Open a temporary file next to `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file a normal file's mode
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
