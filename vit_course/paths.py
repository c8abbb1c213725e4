"""Where the course keeps its files, how it writes them without losing any, and how it
reads them without trusting them.

`DATA_DIR` is the repository's `data/` folder (datasets, photos, checkpoints that ship
with the course). `cache_dir()` is outside the repository, for things the course makes
on first use (the converted DINOv2 weights). Every file the course writes goes through
`atomic_write`, every folder through `atomic_folder`, so an interrupted run never leaves
half a file behind. Every weight or JSON file the course reads goes through
`read_safetensors` / `read_json`, which name the file and the command that fixes it when
the file is empty, truncated or holds non-finite weights; `check_model_folder` does both for
a `save_pretrained` folder before transformers reads it (transformers' own messages name
no file, or no fix).

Every file shipped in `data/` has its size and SHA-256 recorded in `data/MANIFEST.json`;
`verify_shipped` checks a file (or a folder's files) against that record when the course
reads it (hashed once per process, again only when the file's size or mtime change), so a
damaged or replaced shipped file is a ValueError that names it and the command that
restores it. `vit-course manifest --update` records the files anew after a deliberate
change (a model retrained and shipped). Used by every notebook through `DATA_DIR`.

Used by notebooks 02, 03, 04, 05, 06, 07, 08, 09 and 10.
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


def notebook_text(nb: Any) -> str:
    """The file contents `nbformat.write` would produce for the notebook `nb`."""
    import nbformat

    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def write_notebook(path: str | os.PathLike, nb: Any) -> None:
    """Write the notebook `nb` to `path` as `nbformat.write` would, through `atomic_write`."""
    atomic_write_text(path, notebook_text(nb))


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


MANIFEST_NAME = "MANIFEST.json"
UPDATE_MANIFEST = "vit-course manifest --update"
_NOT_SHIPPED = (MANIFEST_NAME, "README.md")  # what the manifest does not list
_hashes: dict[str, tuple[int, int, str]] = {}  # path -> (size, mtime_ns, sha256): one hash per change


def _sha256_cached(path: Path) -> str:
    stat = path.stat()
    key = str(path.resolve())
    size, mtime, digest = _hashes.get(key, (None, None, ""))
    if (size, mtime) != (stat.st_size, stat.st_mtime_ns):
        digest = sha256(path)
        _hashes[key] = (stat.st_size, stat.st_mtime_ns, digest)
    return digest


def shipped_files(root: str | os.PathLike | None = None) -> list[Path]:
    """The files under `root` (default `DATA_DIR`) that the manifest lists: all but dotfiles,
    the manifest and README.md."""
    root = Path(root or DATA_DIR)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name not in _NOT_SHIPPED
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def write_manifest(root: str | os.PathLike | None = None) -> Path:
    """Record the size and SHA-256 of every shipped file under `root` in `root/MANIFEST.json`."""
    root = Path(root or DATA_DIR)
    records = {p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": _sha256_cached(p)}
               for p in shipped_files(root)}
    atomic_write_text(root / MANIFEST_NAME, json.dumps(records, indent=1, sort_keys=True) + "\n")
    _manifests.clear()
    return root / MANIFEST_NAME


_manifests: dict[str, tuple[int, dict]] = {}  # manifest path -> (mtime_ns, records)


def manifest(root: str | os.PathLike | None = None) -> dict[str, dict]:
    """`root/MANIFEST.json` (default `DATA_DIR`): relative path -> {"size", "sha256"}; {} if absent."""
    path = Path(root or DATA_DIR) / MANIFEST_NAME
    if not path.is_file():
        return {}
    mtime = path.stat().st_mtime_ns
    if _manifests.get(str(path), (None,))[0] != mtime:
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not valid JSON ({err}). Fix: git checkout -- {path}") from err
        _manifests[str(path)] = (mtime, records)
    return _manifests[str(path)][1]


def shipped_problem(path: str | os.PathLike) -> str | None:
    """None unless `path` is a shipped file whose size or SHA-256 differs from the manifest's."""
    path = Path(path)
    try:
        relative = path.resolve().relative_to(DATA_DIR.resolve()).as_posix()
    except ValueError:
        return None  # not under data/: nothing recorded
    record = manifest().get(relative)
    if record is None:
        return None
    if not path.is_file():
        return f"{path} is missing"
    if path.stat().st_size != record["size"]:
        return f"{path} has {path.stat().st_size} bytes, data/{MANIFEST_NAME} records {record['size']}"
    if _sha256_cached(path) != record["sha256"]:
        return f"{path} differs from the file shipped with the course (SHA-256 mismatch with data/{MANIFEST_NAME})"
    return None


def _under_data(path: str | os.PathLike) -> bool:
    try:
        Path(path).resolve().relative_to(DATA_DIR.resolve())
    except ValueError:
        return False
    return True


def restore_command(path: str | os.PathLike) -> str:
    """The command that puts a shipped file back (or records a deliberate change)."""
    try:
        relative = Path(path).resolve().relative_to(REPO_DIR.resolve())
    except ValueError:
        relative = Path(path)
    return f"`git checkout -- {relative}` (or, after changing it on purpose, `{UPDATE_MANIFEST}`)"


def verify_shipped(path: str | os.PathLike) -> None:
    """Raise a ValueError naming the file and the fix if `path` (a file, or every file in a
    folder) is shipped in data/ and differs from its record in data/MANIFEST.json."""
    path = Path(path)
    for file in sorted(path.iterdir()) if path.is_dir() else [path]:
        problem = shipped_problem(file)
        if problem:
            raise ValueError(f"{problem}. Fix: {restore_command(file)}")


def manifest_problems(root: str | os.PathLike | None = None) -> list[str]:
    """What differs between the shipped files and data/MANIFEST.json, each with its fix."""
    root = Path(root or DATA_DIR)
    if not (root / MANIFEST_NAME).is_file():
        return [f"{root / MANIFEST_NAME} is missing. Fix: git checkout -- {root / MANIFEST_NAME}"]
    problems = []
    for relative, record in sorted(manifest(root).items()):
        path = root / relative
        if not path.is_file():
            problems.append(f"{path} is missing. Fix: {restore_command(path)}")
        elif path.stat().st_size != record["size"] or _sha256_cached(path) != record["sha256"]:
            what = "size" if path.stat().st_size != record["size"] else "SHA-256"
            problems.append(f"{path} differs from the file shipped with the course ({what} mismatch with "
                            f"{MANIFEST_NAME}). Fix: {restore_command(path)}")
    return problems


def _require_file(path: Path, fix: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found. Fix: {fix}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes). Fix: {fix}")
    verify_shipped(path)


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
    return _finite(tensors, path, fix)


def read_torch_weights(path: str | os.PathLike, fix: str) -> dict:
    """The tensors in a `torch.save`d state dict (`pytorch_model.bin`), loaded without running
    pickled code (`weights_only=True`) and checked as `read_safetensors` checks its file."""
    import pickle

    import torch

    path = Path(path)
    _require_file(path, fix)
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, OSError, RuntimeError, ValueError) as err:
        raise ValueError(f"{path} is not a readable PyTorch weights file ({err}). Fix: {fix}") from err
    if not isinstance(tensors, dict):
        raise ValueError(f"{path} holds a {type(tensors).__name__}, not a state dict of tensors. Fix: {fix}")
    return _finite(tensors, path, fix)


def _finite(tensors: dict, path: Path, fix: str) -> dict:
    """`tensors`, or a ValueError naming `path`, `fix` and the first weights that are NaN or inf."""
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not bool(t.isfinite().all())]
    if bad:
        raise ValueError(f"{path} holds non-finite (NaN or inf) weights in {bad[:5]}. Fix: {fix}")
    return tensors


def check_model_folder(folder: str | os.PathLike, fix: str | None = None, weights: bool = True) -> None:
    """Check a `save_pretrained` folder before transformers reads it (a hub id: nothing to check).

    Its shipped files as recorded in data/MANIFEST.json, `config.json` parsed and, with
    `weights`, every weights file readable and finite: `model.safetensors`, the shards of a
    sharded save, a legacy `pytorch_model.bin`. Anything else is a ValueError
    (FileNotFoundError for a missing config) naming the file and `fix` (default: write the
    folder again, or restore a shipped one), instead of the library's message without a path.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    verify_shipped(folder)
    if fix is None:
        fix = f"write {folder} again with save_pretrained"
        if _under_data(folder):
            fix = f"restore the shipped model: {restore_command(folder)}"
    read_json(folder / "config.json", fix)
    if weights:
        for path in sorted(folder.glob("*.safetensors")):
            read_safetensors(path, fix)
        for path in sorted(folder.glob("pytorch_model*.bin")):
            read_torch_weights(path, fix)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
