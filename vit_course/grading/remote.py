"""The grader's side of a student's answer: stand-ins that call into the sandbox.

A check written for the notebook (`vit_course.checks.check_patchify(fn)`) is run by the
grader, in its own process, with its own pristine references, on one of these instead of
the student's object:

- `RemoteFunction(session, "patchify")`: calling it sends the arguments to the sandbox,
  calls the student's function there, and returns what came back. Arguments the student's
  code changed in place (a tensor, a model's `requires_grad`, a generator's state) are
  changed here too, so a check sees what it would see in the notebook.
- `RemoteClass(session, "TransformerBlock")`: calling it builds the student's module in
  the sandbox and returns a `ShellModule`, an `nn.Module` here with the same submodules,
  plain attributes (eps, ...), parameters and buffers. The check copies weights into it,
  reads its state dict, switches train/eval; its `forward` sends the current weights and
  the input to the sandbox and returns the student's output.

An exception raised by the student's code is raised here again as the same built-in
exception type (or a stand-in class of the same name), with `_vit_course_at_call` set
when the call itself failed (a wrong signature).
"""

from __future__ import annotations

import builtins
from typing import Any

import torch

from . import wire


class RemoteException(Exception):
    """Base of the stand-ins for the student's own exception classes."""


def remote_error(info: dict) -> BaseException:
    name = str(info.get("type", "Exception"))
    message = str(info.get("message", ""))
    cls = getattr(builtins, name, None) if info.get("builtin") else None
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = type(name if name.isidentifier() else "RemoteException", (RemoteException,), {})
    try:
        error = cls(message)
    except Exception:  # an exception type that wants other arguments
        error = RemoteException(f"{name}: {message}")
    error._vit_course_at_call = bool(info.get("at_call"))
    return error


class _Invoker:
    """What every stand-in shares: encode, send, decode, write back, raise."""

    def __init__(self, session) -> None:
        self._session = session

    def _request(self, message: dict, args: tuple, kwargs: dict, grad: bool | None = None) -> Any:
        grad = torch.is_grad_enabled() if grad is None else grad
        message = dict(message, args=wire.encode(list(args)), kwargs=wire.encode(dict(kwargs)), grad=grad)
        reply = self._session.request(message)
        if "error" in reply:
            raise remote_error(reply["error"])
        params = {}
        for i, a in enumerate(args):
            if isinstance(a, torch.nn.Module):
                params[i] = dict(a.named_parameters())

        def resolve(tag: dict):
            if tag["$t"] == "argref":
                return args[int(tag["i"])]
            if tag["$t"] == "paramref":
                return params[int(tag["i"])][tag["name"]]
            raise wire.WireError(f"unexpected reference {tag}")

        for item in reply.get("writeback", []):
            _write_back(args[int(item["i"])], item)
        out = reply.get("ok")
        if isinstance(out, dict) and out.get("$t") == "remote_module":
            return ShellModule.build(self._session, out)
        return wire.decode(out, resolve)


def _write_back(arg: Any, item: dict) -> None:
    kind = item.get("kind")
    if kind == "tensor" and isinstance(arg, torch.Tensor):
        value = wire.decode(item["v"])
        with torch.no_grad():
            if value.shape == arg.shape:
                arg.copy_(value.to(arg.dtype))
            else:
                arg.data = value
    elif kind == "generator" and isinstance(arg, torch.Generator):
        arg.set_state(wire.decode(item["v"]).get_state())
    elif kind == "module" and isinstance(arg, torch.nn.Module):
        state = wire.decode(item["state"])
        own = arg.state_dict()
        with torch.no_grad():
            for name, value in state.items():
                if name in own and own[name].shape == value.shape:
                    own[name].copy_(value)
        for name, p in arg.named_parameters():
            p.requires_grad_(bool(item["requires_grad"].get(name, p.requires_grad)))
        arg.train(bool(item.get("training")))


class RemoteFunction(_Invoker):
    def __init__(self, session, name: str) -> None:
        super().__init__(session)
        self.__name__ = self.__qualname__ = name

    def __call__(self, *args, **kwargs):
        return self._request({"op": "call", "target": self.__name__}, args, kwargs)

    def __repr__(self) -> str:
        return f"<student's {self.__name__}>"


class RemoteClass(RemoteFunction):
    """Calling it builds the student's module in the sandbox; see `ShellModule`."""


class ShellModule(torch.nn.Module):
    """A local mirror of the student's module: same tree, attributes and weights; forward runs remotely."""

    @classmethod
    def build(cls, session: Any, description: dict) -> "ShellModule":
        tree = description["tree"]
        shells: dict[str, torch.nn.Module] = {}
        for path in sorted(tree, key=lambda p: (p.count("."), p) if p else (-1, "")):
            info = tree[path]
            kind = type(str(info["type"]) if str(info["type"]).isidentifier() else "Module", (cls,), {})
            shell = kind.__new__(kind)
            torch.nn.Module.__init__(shell)
            for key, value in info.get("attrs", {}).items():
                if not hasattr(torch.nn.Module, key):
                    object.__setattr__(shell, key, tuple(value) if isinstance(value, list) else value)
            shell.training = bool(info.get("training"))
            shells[path] = shell
            if path:
                parent, _, name = path.rpartition(".")
                if parent in shells:
                    shells[parent].add_module(name, shell)
        root = shells[""]
        for name, value in wire.decode(description["params"]).items():
            owner, _, leaf = name.rpartition(".")
            shells[owner].register_parameter(leaf, torch.nn.Parameter(value.detach().clone(), requires_grad=value.requires_grad))
        for name, value in wire.decode(description["buffers"]).items():
            owner, _, leaf = name.rpartition(".")
            shells[owner].register_buffer(leaf, value.detach().clone())
        object.__setattr__(root, "_remote", (_Invoker(session), int(description["handle"])))
        for method in description.get("methods", []):
            if isinstance(method, str) and method.isidentifier() and method not in vars(root):
                object.__setattr__(root, method, _RemoteMethod(root, method))
        return root

    def _call_remote(self, method: str, args: tuple, kwargs: dict, grad: bool | None = None):
        invoker, handle = self.__dict__["_remote"]
        state = dict(self.named_parameters()) | dict(self.named_buffers())
        message = {"op": "call", "handle": handle, "method": method, "training": self.training,
                   "state": wire.encode({k: v.detach() for k, v in state.items()})}
        if grad is None and torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            names, params = zip(*self.named_parameters())
            return _RemoteCall.apply(self, method, args, kwargs, names, *params)
        return invoker._request(message, args, kwargs, grad)

    def _backward(self, grads: tuple) -> dict:
        invoker, handle = self.__dict__["_remote"]
        reply = invoker._session.request({"op": "backward", "handle": handle, "grads": wire.encode(list(grads))})
        if "error" in reply:
            raise remote_error(reply["error"])
        return wire.decode(reply["ok"])

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if "_remote" not in self.__dict__:
            raise RuntimeError("a submodule of the student's model is run only through the whole model")
        return self._call_remote("__call__", args, kwargs)


class _RemoteCall(torch.autograd.Function):
    """A remote forward that autograd can go back through: backward runs in the sandbox too."""

    @staticmethod
    def forward(ctx, shell, method, args, kwargs, names, *params):
        out = shell._call_remote(method, args, kwargs, grad=True)
        ctx.shell, ctx.names = shell, names
        ctx.tuple = isinstance(out, (tuple, list))
        outs = tuple(out) if ctx.tuple else (out,)
        if not outs or not all(isinstance(o, torch.Tensor) for o in outs):
            raise TypeError(f"forward returned {type(out).__name__}, which gradients cannot flow through")
        return outs if ctx.tuple else outs[0]

    @staticmethod
    def backward(ctx, *grads):
        got = ctx.shell._backward(tuple(torch.zeros(()) if g is None else g for g in grads))
        return (None, None, None, None, None, *[got.get(name) for name in ctx.names])


class _RemoteMethod:
    def __init__(self, shell: ShellModule, name: str) -> None:
        self._shell, self.__name__ = shell, name

    def __call__(self, *args, **kwargs):
        return self._shell._call_remote(self.__name__, args, kwargs)
