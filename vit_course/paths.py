"""Where the course keeps its files, how it writes them without losing any, and how it
reads them without trusting them.

`DATA_DIR` is the repository's `data/` folder (datasets, photos, checkpoints that ship
with the course). `cache_dir()` is outside the repository, for things the course makes
on first use (the converted DINOv2 weights). Every file the course writes goes through
`atomic_write`, every folder through `atomic_folder`, so an interrupted run never leaves
half a file behind. Every weight or JSON file the course reads goes through
`read_safetensors` / `read_json`, which name the file and the command that fixes it when
the file is empty, truncated or holds non-finite weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
DATA_DIR = Path(os.environ.get("VIT_COURSE_DATA", REPO_DIR / "data"))


def cache_dir() -> Path:
    """The course's cache folder: `$VIT_COURSE_CACHE`, else `~/.cache/vit-course`."""
    root = os.environ.get("VIT_COURSE_CACHE") or Path.home() / ".cache" / "vit-course"
    return Path(root)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to `path`; it replaces `path` only if the block succeeds.

    Text modes write UTF-8, whatever the platform's default.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file a normal file's mode
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` as UTF-8 through `atomic_write`: never half a file."""
    with atomic_write(path, "w") as f:
        f.write(text)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; it replaces `path` only if the block succeeds.

    The temporary folder is named `.<name>.<random>.tmp`: `remove_stale_temporaries`
    finds the ones a killed process left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private
        for f in tmp.rglob("*"):
            if f.is_file():
                f.chmod(0o666 & ~_umask())
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete what interrupted `atomic_write`/`atomic_folder` calls left next to `path`.

    Only call this while holding `file_lock` for `path` (nobody else is writing it).
    Returns the paths removed.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for leftover in path.parent.glob(f".{path.name}.*"):
        if leftover.name.endswith((".tmp", ".old")):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
            removed.append(leftover)
    return removed


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on `<path>.lock` (POSIX `flock`): one writer at a time.

    The lock goes with the process: a killed holder never leaves it locked.
    """
    lock = Path(path).with_name(f"{Path(path).name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        try:
            import fcntl
        except ImportError:  # Windows: no lock; atomic_folder still never shows half a folder
            yield
            return
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def writable_problem(folder: str | os.PathLike) -> str | None:
    """None if files can be created in `folder` (made if missing), else why not."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        return f"{folder} is a file, not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return f"{folder} is not writable ({type(err).__name__}: {err.strerror or err})"
    return None


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _require_file(path: Path, fix: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found. Fix: {fix}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes). Fix: {fix}")


def read_json(path: str | os.PathLike, fix: str) -> Any:
    """The parsed JSON in `path`; a missing, empty or broken file names itself and `fix`."""
    path = Path(path)
    _require_file(path, fix)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}). Fix: {fix}") from err


def read_safetensors(path: str | os.PathLike, fix: str) -> dict:
    """The tensors in a `.safetensors` file, checked: readable and every float finite.

    A missing, empty, truncated or corrupted file, or one with NaN/inf weights, raises
    FileNotFoundError/ValueError naming the file and `fix`.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    _require_file(path, fix)
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err}). Fix: {fix}") from err
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not bool(t.isfinite().all())]
    if bad:
        raise ValueError(f"{path} holds non-finite (NaN or inf) weights in {bad[:5]}. Fix: {fix}")
    return tensors


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
