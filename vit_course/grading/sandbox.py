"""Where a submission's code runs: a bubblewrap sandbox, or (told so) a plain process.

`Sandbox.start()` launches `python -m vit_course.grading.worker` inside `bwrap` with no
network (every namespace unshared), a private empty /tmp (a fresh folder on disk, removed
afterwards) as its working folder and HOME, an unprivileged user without capabilities, and a view of the file system that
holds only the system's libraries, Python, the course package and its `data/`, all
read-only: no notebooks, no solutions, no held-out cases, no gradebook and no other
student's work. The worker's children set their own memory, CPU-time and file-size
limits (see `worker._limit`); the grader enforces wall time and kills the whole sandbox
(its process group, and with it the sandbox's PID namespace) when it runs over.

`bwrap_path()` says whether bubblewrap is here; `vit-course grade` refuses to run without
it unless given `--no-sandbox`.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from . import wire

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # vit_course/


class SandboxDied(Exception):
    """The worker process is gone: it ended, or was killed for running over its time."""


class Timeout(Exception):
    """No answer from the sandbox within the time left."""


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


# the few files of /etc that Python, its libraries and matplotlib read; not the rest
# (the sandbox's user is root outside it, so /etc/shadow and the like must stay out of view)
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "fonts", "mime.types", "passwd", "group",
             "nsswitch.conf", "host.conf", "hosts", "ssl")


def _system_binds() -> list[str]:
    args = []
    for path in ("/usr", "/opt"):
        if os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for name in ETC_FILES:
        path = os.path.join("/etc", name)
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    for link in ("/bin", "/lib", "/lib64", "/lib32", "/sbin"):
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    return args


def _python_binds() -> list[str]:
    """The interpreter, its standard library and the environment's site-packages."""
    paths = {sys.base_prefix, sys.prefix, sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
             os.path.dirname(os.path.realpath(sys.executable))}
    from vit_course.paths import DATA_DIR

    paths |= {str(PACKAGE_DIR), str(DATA_DIR)}
    args = []
    for path in sorted(paths):
        if os.path.isdir(path) and not path.startswith(("/usr/", "/opt/")) and path != "/usr":
            args += ["--ro-bind", path, path]
    return args


def bwrap_command(python: str, tmp: str) -> list[str]:
    return [
        bwrap_path() or "bwrap",
        "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL",
        "--die-with-parent", "--new-session",
        # /tmp first: a checkout under /tmp (CI's clone, say) is then bound on top of it
        "--bind", tmp, "/tmp", *_system_binds(), *_python_binds(),
        "--proc", "/proc", "--dev", "/dev", "--chdir", "/tmp",
        "--clearenv", "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp",
        "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HF_HUB_OFFLINE", "1", "--setenv", "TRANSFORMERS_OFFLINE", "1",
        "--setenv", "OMP_NUM_THREADS", "1", "--setenv", "MPLBACKEND", "Agg", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
        "--setenv", "PYTHONHASHSEED", "0", "--setenv", "VIT_COURSE_SANDBOX", "1",
        python, "-I", "-c", f"import sys; sys.path.insert(0, {str(PACKAGE_DIR.parent)!r}); "
                            "import vit_course.grading.worker as w; sys.exit(w.main())",
    ]


def selftest(timeout: float = 60.0) -> str | None:
    """None when a sandbox can be made here, else what went wrong (bwrap's own words)."""
    if not bwrap_path():
        return "bubblewrap (bwrap) is not installed"
    with tempfile.TemporaryDirectory(prefix="vit-course-sandbox-") as tmp:
        command = bwrap_command(sys.executable, tmp)
        command[-1] = "import vit_course, torch; print('sandbox ok')"
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"bubblewrap did not start: {e}"
    if done.returncode != 0 or "sandbox ok" not in done.stdout:
        return f"bubblewrap cannot make a sandbox here (exit {done.returncode}): {done.stderr.strip()[-500:]}"
    return None


class Sandbox:
    """One worker process and the line protocol to it."""

    def __init__(self, sandboxed: bool = True) -> None:
        self.sandboxed = sandboxed
        self.proc: subprocess.Popen | None = None
        self._buffer = b""
        self._tmp: tempfile.TemporaryDirectory | None = None

    def start(self, setup: dict, timeout: float) -> dict:
        python = sys.executable
        # on disk, not in RAM: what the answer writes is bounded by its --memory-mb (worker._audit)
        self._tmp = tempfile.TemporaryDirectory(prefix="vit-course-sandbox-")
        if self.sandboxed:
            command, cwd, env = bwrap_command(python, self._tmp.name), None, None
        else:
            command = [python, "-c", "import vit_course.grading.worker as w, sys; sys.exit(w.main())"]
            cwd = self._tmp.name
            env = {k: v for k, v in os.environ.items() if not k.startswith("VIT_COURSE_INSTRUCTOR")}
            env |= {"HOME": cwd, "TMPDIR": cwd, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1",
                    "PYTHONPATH": str(PACKAGE_DIR.parent)}
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, cwd=cwd, env=env, start_new_session=True)
        self.send(setup)
        return self.receive(timeout)

    def send(self, message: dict) -> None:
        if self.proc is None:
            raise SandboxDied("the sandbox is not running")
        try:
            self.proc.stdin.write(wire.dumps(message))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as e:
            raise SandboxDied(str(e)) from None

    def receive(self, timeout: float) -> Any:
        if self.proc is None:
            raise SandboxDied("the sandbox is not running")
        deadline = time.monotonic() + max(0.0, timeout)
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise Timeout
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise SandboxDied("the sandbox closed its output")
            self._buffer += chunk
            if len(self._buffer) > wire.MAX_MESSAGE_BYTES:
                raise SandboxDied("the sandbox sent a message over the size limit")
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return wire.loads(line)
        except wire.WireError as e:
            raise SandboxDied(f"the sandbox sent data that is not a message: {e}") from None

    def kill(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.proc = None
        self._buffer = b""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
