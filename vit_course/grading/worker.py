"""The student's side of grading: runs inside the sandbox, never in the grader's process.

    python -m vit_course.grading.worker      # started by vit_course.grading.sandbox

One worker serves one submitted notebook. It reads JSON lines on stdin and answers on
stdout (see `vit_course.grading.wire`). First it runs the notebook's import cell as
released (trusted code, so the course's modules are loaded once), then, for each
exercise, it forks a child that

1. makes the reference of that exercise unusable: calling it, subclassing it, or
   reading its source file raises `ReferenceCalled` and is reported to the grader;
2. limits its own memory, CPU time and output, and sends the student's prints to a file;
3. runs the student's solution cells (and the cells they added), one by one, saying
   which cell runs, so that a cell that kills the process can be skipped on a retry;
4. calls the student's function or class when the grader asks, with the grader's inputs,
   and sends back what came out.

The child exits when the grader says "done"; the worker then reports how it ended.
A child that calls os._exit, crashes or runs out of time ends only its own exercise.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import inspect
import io
import os
import resource
import sys
import traceback
from typing import Any

from . import wire

OUTPUT_FILE = "student-output.txt"
_state = {"reference_called": False, "blocked": {}, "files": set(), "tmp": "", "tmp_limit": 0}


class ReferenceCalled(Exception):
    """The student's answer used the course's reference for the exercise being graded."""


def _reference_called(name: str) -> None:
    if not name.startswith("vit_course.checks"):  # the checks' helpers fail the answer, they do not flag it
        _state["reference_called"] = True
    raise ReferenceCalled(f"your answer uses vit_course's reference {name}, which is not available while this "
                          "exercise is graded: write your own")


def _stub(*args, **kwargs):
    import sys

    sys.modules["vit_course.grading.worker"]._reference_called("__NAME__")


def _poisoned_code(func, name: str):
    consts = tuple(name if c == "__NAME__" else c for c in _stub.__code__.co_consts)
    return _stub.__code__.replace(co_consts=consts, co_name=func.__code__.co_name)


def block_reference(obj: Any, name: str) -> None:
    """Make `obj` raise ReferenceCalled wherever the student's code reaches it."""
    module = inspect.getmodule(obj)
    if inspect.isclass(obj):
        def blocked_init(self, *args, **kwargs):
            _reference_called(name)

        obj.__init__ = blocked_init
    elif inspect.isfunction(obj) and not obj.__code__.co_freevars:
        obj.__code__ = _poisoned_code(obj, name)
    else:
        raise TypeError(f"cannot block {name}: not a class or a plain function")
    source = inspect.getsourcefile(module) if module else None
    if source:
        _state["files"].add(os.path.realpath(source))
        _state["files"].add(os.path.realpath(importlib.util.cache_from_source(source)))
    _state["blocked"][name] = True


# no new programs from the student's code: a `cat` would read what the audit hook hides
_BLOCKED_EVENTS = {"os.exec", "os.posix_spawn", "os.spawn", "os.system", "subprocess.Popen", "ctypes.dlopen",
                   "os.startfile", "pty.spawn"}


def _audit(event: str, args: tuple) -> None:
    if event in _BLOCKED_EVENTS:
        raise PermissionError(f"{event} is not allowed while grading")
    if event == "open" and _state["tmp_limit"] and len(args) >= 3 and _writes(args[1], args[2]):
        if _folder_size(_state["tmp"]) >= _state["tmp_limit"]:
            raise OSError(28, f"the sandbox's temporary folder is full ({_state['tmp_limit'] >> 20} MB, "
                              "the --memory-mb limit)")
    if event == "open" and _state["files"] and args and isinstance(args[0], (str, bytes, os.PathLike)):
        try:
            path = os.path.realpath(os.fsdecode(args[0]))
        except (TypeError, ValueError):
            return
        if path in _state["files"]:
            raise PermissionError(f"{path}: the source of the reference is not available while this exercise is graded")


def _writes(mode, flags) -> bool:
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return isinstance(flags, int) and bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))


def _folder_size(root: str) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


class _Protocol:
    def __init__(self, fd_in: int, fd_out: int) -> None:
        self.inp = os.fdopen(fd_in, "rb", buffering=0)
        self.out = os.fdopen(fd_out, "wb", buffering=0)
        self._buffer = b""

    def read(self) -> Any:
        while b"\n" not in self._buffer:
            chunk = self.inp.read(1 << 20)
            if not chunk:
                raise EOFError
            self._buffer += chunk
            if len(self._buffer) > wire.MAX_MESSAGE_BYTES:
                raise wire.WireError("message too large")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return wire.loads(line)

    def send(self, message: dict) -> None:
        if _state["reference_called"]:
            message["reference_called"] = True
        self.out.write(wire.dumps(message))


def _python_source(source: str) -> str:
    """IPython syntax (%magics, !shell) turned into plain Python calls."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:
        return source


class _Quiet:
    """`get_ipython()` for cells run outside IPython: every magic is a no-op."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def run_statements(source: str, namespace: dict, label: str) -> list[str]:
    """Run `source` statement by statement, so one failing import does not hide the rest."""
    errors = []
    try:
        tree = ast.parse(_python_source(source))
    except SyntaxError as e:
        return [f"{label}: SyntaxError: {e.msg} (line {e.lineno})"]
    for node in tree.body:
        try:
            exec(compile(ast.Module([node], []), label, "exec"), namespace)
        except BaseException as e:  # noqa: BLE001 - whatever the cell raises
            errors.append(f"{label}, line {node.lineno}: {describe(e)}")
    return errors


def describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300]}" if text else type(error).__name__


def _error(error: BaseException, at_call: bool) -> dict:
    cls = type(error)
    return {"error": {"type": cls.__name__, "module": cls.__module__,
                      "builtin": cls.__module__ == "builtins", "message": str(error)[:4000], "at_call": at_call}}


class Child:
    """One exercise's process: the student's cells, then calls from the grader."""

    def __init__(self, proto: _Protocol, namespace: dict) -> None:
        self.proto = proto
        self.ns = namespace
        self.handles: dict[int, Any] = {}

    def describe_module(self, module: Any) -> dict:
        import torch

        handle = len(self.handles) + 1
        self.handles[handle] = module
        tree = {}
        for path, sub in module.named_modules():
            attrs = {}
            for key, value in vars(sub).items():
                if key.startswith("_") or key == "training":
                    continue
                if isinstance(value, (bool, int, float, str)) or value is None:
                    attrs[key] = value
                elif isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value):
                    attrs[key] = list(value)
            tree[path] = {"type": type(sub).__name__, "attrs": attrs, "training": sub.training}
        methods = sorted(name for name in dir(type(module)) if not name.startswith("_")
                         and not hasattr(torch.nn.Module, name) and callable(getattr(type(module), name, None)))
        return {"$t": "remote_module", "handle": handle, "type": type(module).__name__, "tree": tree,
                "params": wire.encode(dict(module.named_parameters())),
                "buffers": wire.encode(dict(module.named_buffers())), "methods": methods}

    def call(self, msg: dict) -> dict:
        import torch

        args = wire.decode(msg.get("args", []), modules=True)
        kwargs = wire.decode(msg.get("kwargs", {"$t": "dict", "v": []}), modules=True)
        if "handle" in msg:
            module = self.handles.get(msg["handle"])
            if module is None:
                return {"error": {"type": "LookupError", "builtin": True, "message": "unknown handle", "at_call": False}}
            state = wire.decode(msg.get("state", {"$t": "dict", "v": []}))
            own = dict(module.named_parameters()) | dict(module.named_buffers())
            with torch.no_grad():
                for name, value in state.items():
                    if name in own and own[name].shape == value.shape:
                        own[name].copy_(value)
            module.train(bool(msg.get("training", False)))
            method = msg.get("method", "__call__")
            target = module if method == "__call__" else getattr(module, method)
        else:
            target = self.ns.get(msg.get("target"))
        grad = bool(msg.get("grad", False))
        tensor_args = {i: a.detach().clone() for i, a in enumerate(args) if isinstance(a, torch.Tensor)}
        try:
            with torch.set_grad_enabled(grad):
                result = self._invoke(target, args, kwargs)
        except BaseException as error:  # noqa: BLE001 - the student's exception, reported as data
            tb = error.__traceback__
            at_call = tb is not None and tb.tb_next is not None and tb.tb_next.tb_next is None
            return _error(error, at_call)
        refs = {id(a): {"$t": "argref", "i": i} for i, a in enumerate(args)}
        for i, a in enumerate(args):
            if isinstance(a, torch.nn.Module):
                for name, p in a.named_parameters():
                    refs[id(p)] = {"$t": "paramref", "i": i, "name": name}
        writeback = []
        for i, a in enumerate(args):
            if isinstance(a, torch.nn.Module):
                writeback.append({"i": i, "kind": "module", "training": a.training,
                                  "requires_grad": {n: p.requires_grad for n, p in a.named_parameters()},
                                  "state": wire.encode(dict(a.state_dict()))})
            elif isinstance(a, torch.Generator):
                writeback.append({"i": i, "kind": "generator", "v": wire.encode(a)})
            elif i in tensor_args and (a.shape != tensor_args[i].shape or not torch.equal(a.detach(), tensor_args[i])):
                writeback.append({"i": i, "kind": "tensor", "v": wire.encode(a)})
        if grad and "handle" in msg:
            self.graph = (module, result)  # kept for a "backward" request
        if isinstance(result, torch.nn.Module) and id(result) not in refs:
            encoded = self.describe_module(result)
        else:
            encoded = wire.encode(result, refs)
        return {"ok": encoded, "writeback": writeback}

    def backward(self, msg: dict) -> dict:
        import torch

        module, result = getattr(self, "graph", (None, None))
        if module is None:
            return {"error": {"type": "RuntimeError", "builtin": True, "message": "no forward to go back through",
                              "at_call": False}}
        outs = list(result) if isinstance(result, (tuple, list)) else [result]
        grads = wire.decode(msg.get("grads", []))
        pairs = [(o, g) for o, g in zip(outs, grads) if isinstance(o, torch.Tensor) and o.requires_grad
                 and isinstance(g, torch.Tensor) and g.shape == o.shape]
        for p in module.parameters():
            p.grad = None
        try:
            if pairs:
                torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        except BaseException as error:  # noqa: BLE001 - e.g. an in-place change autograd cannot undo
            return _error(error, False)
        finally:
            self.graph = (None, None)
        return {"ok": wire.encode({n: p.grad for n, p in module.named_parameters()})}

    @staticmethod
    def _invoke(target, args, kwargs):
        return target(*args, **kwargs)

    def serve(self, msg: dict) -> None:
        for cell in msg.get("cells", []):
            self.proto.send({"event": "cell", "index": cell["index"]})
            errors = run_statements(cell["source"], self.ns, f"cell {cell['index']}")
            if errors:
                self.proto.send({"event": "cell_error", "index": cell["index"], "errors": errors[:5]})
        kinds = {}
        for name in msg.get("names", []):
            obj = self.ns.get(name)
            kinds[name] = "missing" if obj is None else ("class" if inspect.isclass(obj) else
                                                         "function" if callable(obj) else "value")
        self.proto.send({"event": "loaded", "objects": kinds})
        while True:
            request = self.proto.read()
            if request.get("op") == "done":
                self.proto.send({"event": "done", "output": _output_tail()})
                return
            try:
                reply = self.backward(request) if request.get("op") == "backward" else self.call(request)
            except wire.WireError as e:
                reply = {"error": {"type": "WireError", "builtin": False, "message": str(e), "at_call": False}}
            try:
                self.proto.send(reply)
            except (ValueError, TypeError, wire.WireError) as e:
                self.proto.send({"error": {"type": "WireError", "builtin": False, "at_call": False,
                                           "message": f"what your code returned cannot be sent to the grader: {e}"}})


def _output_tail(limit: int = 2000) -> str:
    try:
        with open(OUTPUT_FILE, "rb") as f:
            f.seek(0, io.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            tail = f.read().decode("utf-8", "replace")
        return ("... " if size > limit else "") + tail
    except OSError:
        return ""


def _limit(memory_mb: int, cpu_seconds: int, processes: int) -> None:
    status = open("/proc/self/status").read() if os.path.exists("/proc/self/status") else ""
    vm = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmSize:")), 0)
    if memory_mb > 0:
        limit = vm + (memory_mb << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if cpu_seconds > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    size = min(64 << 20, (memory_mb << 20) or (64 << 20))
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    _state["tmp"], _state["tmp_limit"] = os.getcwd(), memory_mb << 20
    if processes > 0 and os.getuid() != 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))


def _child(proto: _Protocol, namespace: dict, msg: dict) -> None:
    os.setpgid(0, 0)
    out = os.open(OUTPUT_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True)
    sys.stderr = sys.stdout
    sys.stdin = io.StringIO("")
    if msg.get("block_expr"):
        block_reference(eval(msg["block_expr"], namespace), msg["block_expr"])  # the released notebook's name
    for spec in msg.get("also_block", []):  # other code that does the exercise's job
        module_name, _, attr = spec.partition(":")
        try:
            obj = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            continue
        block_reference(obj, f"{module_name}.{attr}")
    for name, module in list(sys.modules.items()):  # the checks' own helpers hold right and wrong answers
        if name.startswith("vit_course.checks") and module is not None:
            for attr, obj in list(vars(module).items()):
                if inspect.isfunction(obj) and obj.__module__ == name and not obj.__code__.co_freevars:
                    block_reference(obj, f"{name}.{attr}")
    sys.addaudithook(_audit)
    _limit(int(msg.get("memory_mb", 0)), int(msg.get("cpu_seconds", 0)), int(msg.get("processes", 0)))
    Child(proto, namespace).serve(msg)


def _end_leftovers(pid: int) -> None:
    """Kill what the exercise left running: its process group, and in the sandbox every other process."""
    try:
        os.killpg(pid, 9)
    except OSError:
        pass
    if os.environ.get("VIT_COURSE_SANDBOX") != "1":
        return  # outside a PID namespace of our own, /proc holds other people's processes
    keep = {1, os.getpid(), os.getppid()}
    for _ in range(3):  # a process may fork while we sweep
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in keep:
                try:
                    os.kill(int(entry), 9)
                except OSError:
                    pass
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in keep:
                try:
                    os.waitpid(int(entry), os.WNOHANG)
                except ChildProcessError:
                    pass


def main() -> int:
    import torch

    torch.set_num_threads(1)  # parallelism comes from grading several submissions at once
    proto = _Protocol(os.dup(0), os.dup(1))
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    setup = proto.read()
    namespace: dict = {"__name__": "__main__", "__builtins__": builtins, "display": lambda *a, **k: None,
                       "get_ipython": _Quiet}
    errors = run_statements(setup.get("imports", ""), namespace, "import cell")
    for line in setup.get("bindings", []):
        errors += run_statements(line, namespace, "binding")
    torch.set_num_threads(1)
    proto.send({"event": "ready", "errors": errors[:10]})
    while True:
        try:
            msg = proto.read()
        except EOFError:
            return 0
        if msg.get("op") != "exercise":
            return 0
        sys.stdout.flush() if sys.stdout else None
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _child(proto, namespace, msg)
            except BaseException:  # noqa: BLE001
                code = 3
                try:
                    traceback.print_exc()
                except BaseException:  # noqa: BLE001
                    pass
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        _end_leftovers(pid)
        event = {"event": "exited"}
        if os.WIFSIGNALED(status):
            event["signal"] = os.WTERMSIG(status)
        else:
            event["code"] = os.WEXITSTATUS(status)
        proto.send(event)


if __name__ == "__main__":
    sys.exit(main())
