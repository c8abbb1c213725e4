"""What may cross the sandbox's boundary: tensors and plain data, as JSON, never pickles.

The grader sends a student's answer its inputs and reads back what the answer returned.
Both directions use `encode` / `decode`: JSON whose special values are objects with a
`"$t"` tag (a tensor as dtype, shape and base64 bytes; tuples, dicts with any keys, numpy
arrays and scalars, PIL images, generators, configs and image processors by their
fields). `decode` builds only the types named here, from a fixed list of classes, and
checks every size, so a hostile answer can send bad data but never code. Whatever else
an answer returns arrives as an `Opaque` stand-in carrying its type's name.

Used by `vit_course.grading.worker` (inside the sandbox) and `vit_course.grading.remote`.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

MAX_MESSAGE_BYTES = 256 << 20  # one reply; a larger one is refused, not parsed
MAX_DEPTH = 32

_DTYPES = {
    "float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8,
    "bool": torch.bool,
}
_NP_DTYPES = {"float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"}
# classes `decode` may build from their fields, by qualified name
_CONFIG_CLASSES = {"vit_course.config.ViTConfig"}
_HF_CLASSES = {
    "transformers.ViTConfig", "transformers.ViTImageProcessor", "transformers.ViTForImageClassification",
    "transformers.ViTModel",
}
_TORCH_MODULES = {"torch.nn.Conv2d": ("in_channels", "out_channels", "kernel_size", "stride", "padding")}


class WireError(ValueError):
    """Data that is not in the wire format: too large, too deep, or of an unknown kind."""


class Opaque:
    """Stands for a value that cannot cross the boundary; its class is named after the original type."""

    type_name = "object"

    def __repr__(self) -> str:
        return f"<{self.type_name} from the student's process>"


def opaque(type_name: str) -> Opaque:
    short = type_name.rsplit(".", 1)[-1] or "object"
    cls = type(short if short.isidentifier() else "object", (Opaque,), {"type_name": type_name})
    return cls()


def _qualname(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    module = cls.__module__
    if module.startswith("transformers."):
        module = "transformers"
    elif module.startswith("torch.nn.modules."):
        module = "torch.nn"
    return f"{module}.{cls.__qualname__}"


def _tensor(t: torch.Tensor) -> dict:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        data = t.view(torch.int16).numpy().tobytes()
    else:
        data = t.numpy().tobytes()
    return {"$t": "tensor", "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
            "data": base64.b64encode(data).decode("ascii")}


def encode(obj: Any, refs: dict[int, dict] | None = None, _depth: int = 0) -> Any:
    """`obj` as JSON-ready data. `refs` maps id(object) to a reference sent instead of it."""
    if _depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if refs and id(obj) in refs:
        return refs[id(obj)]
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int) and not isinstance(obj, bool):
        return obj if abs(obj) < 2**63 else {"$t": "bigint", "v": str(obj)}
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"$t": "float", "v": repr(obj)}
    sub = lambda x: encode(x, refs, _depth + 1)  # noqa: E731
    if isinstance(obj, torch.Tensor):
        out = _tensor(obj)
        if isinstance(obj, torch.nn.Parameter):
            out["param"] = True
        if obj.requires_grad:
            out["requires_grad"] = True
        return out
    if isinstance(obj, np.ndarray) and obj.dtype.name in _NP_DTYPES:
        return {"$t": "ndarray", "v": _tensor(torch.from_numpy(np.ascontiguousarray(obj)))}
    if isinstance(obj, np.generic) and obj.dtype.name in _NP_DTYPES:
        return {"$t": "npscalar", "dtype": obj.dtype.name, "v": obj.item() if math.isfinite(float(obj)) else repr(float(obj))}
    if isinstance(obj, tuple):
        return {"$t": "tuple", "v": [sub(x) for x in obj]}
    if isinstance(obj, list):
        return [sub(x) for x in obj]
    if isinstance(obj, dict):
        return {"$t": "dict", "v": [[sub(k), sub(v)] for k, v in obj.items()]}
    if isinstance(obj, torch.Generator):
        return {"$t": "generator", "state": _tensor(obj.get_state())}
    if isinstance(obj, torch.dtype):
        return {"$t": "dtype", "v": str(obj).removeprefix("torch.")}
    if dataclasses.is_dataclass(obj) and _qualname(obj) in _CONFIG_CLASSES:
        return {"$t": "config", "cls": _qualname(obj), "v": sub({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})}
    name = _qualname(obj)
    if name in _HF_CLASSES and hasattr(obj, "to_dict") and not isinstance(obj, torch.nn.Module):
        return {"$t": "hf", "cls": name, "v": json.loads(json.dumps(obj.to_dict(), default=str))}
    if isinstance(obj, torch.nn.Module) and (name in _HF_CLASSES or name in _TORCH_MODULES):
        out = {"$t": "module", "cls": name, "training": obj.training,
               "state": sub(dict(obj.state_dict())),
               "requires_grad": {n: p.requires_grad for n, p in obj.named_parameters()}}
        if name in _HF_CLASSES:
            out["config"] = json.loads(json.dumps(obj.config.to_dict(), default=str))
        else:
            out["init"] = sub({k: getattr(obj, k) for k in _TORCH_MODULES[name]} | {"bias": obj.bias is not None})
        return out
    try:
        from PIL import Image

        if isinstance(obj, Image.Image):
            return {"$t": "pil", "mode": obj.mode, "size": list(obj.size),
                    "data": base64.b64encode(obj.tobytes()).decode("ascii")}
    except ImportError:  # pragma: no cover
        pass
    return {"$t": "opaque", "type": name[:200]}


def _decode_tensor(d: dict) -> torch.Tensor:
    dtype = _DTYPES.get(d.get("dtype"))
    shape = d.get("shape")
    if dtype is None or not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise WireError(f"bad tensor header: dtype {d.get('dtype')!r}, shape {shape!r}")
    raw = base64.b64decode(d.get("data", ""), validate=True)
    count = math.prod(shape)
    element = torch.empty((), dtype=dtype).element_size()
    if len(raw) != count * element:
        raise WireError(f"tensor of shape {shape} and dtype {d['dtype']} needs {count * element} bytes, got {len(raw)}")
    if dtype == torch.bfloat16:
        return torch.frombuffer(bytearray(raw), dtype=torch.int16).view(torch.bfloat16).reshape(shape).clone() if count else torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape).clone() if count else torch.empty(shape, dtype=dtype)


def _load_class(name: str, allowed: set[str] | dict):
    if name not in allowed:
        raise WireError(f"{name!r} is not a class the grader builds")
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def decode(data: Any, resolve: Callable[[Any], Any] | None = None, _depth: int = 0,
           modules: bool = False) -> Any:
    """The value `encode` made. `resolve(tagged)` answers the tags "argref" and "paramref".

    Modules are built only with `modules=True`: the worker rebuilds the grader's arguments;
    the grader never builds one from what the student's process sent.
    """
    if _depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    sub = lambda x: decode(x, resolve, _depth + 1, modules)  # noqa: E731
    if isinstance(data, list):
        return [sub(x) for x in data]
    if not isinstance(data, dict) or "$t" not in data:
        raise WireError(f"not a wire value: {type(data).__name__}")
    tag = data["$t"]
    if tag == "tensor":
        t = _decode_tensor(data)
        if data.get("param"):
            t = torch.nn.Parameter(t, requires_grad=bool(data.get("requires_grad")))
        elif data.get("requires_grad") and t.is_floating_point():
            t.requires_grad_(True)
        return t
    if tag == "ndarray":
        return _decode_tensor(data["v"]).numpy()
    if tag == "npscalar":
        if data.get("dtype") not in _NP_DTYPES:
            raise WireError(f"bad numpy dtype {data.get('dtype')!r}")
        value = data["v"]
        return np.dtype(data["dtype"]).type(float(value) if isinstance(value, str) else value)
    if tag == "bigint":
        return int(data["v"])
    if tag == "float":
        return float(data["v"])
    if tag == "tuple":
        return tuple(sub(x) for x in data["v"])
    if tag == "dict":
        return {_hashable(sub(k)): sub(v) for k, v in data["v"]}
    if tag == "generator":
        g = torch.Generator()
        g.set_state(_decode_tensor(data["state"]))
        return g
    if tag == "dtype":
        if data.get("v") not in _DTYPES:
            raise WireError(f"bad dtype {data.get('v')!r}")
        return _DTYPES[data["v"]]
    if tag == "config":
        cls = _load_class(data["cls"], _CONFIG_CLASSES)
        return cls(**sub(data["v"]))
    if tag == "hf":
        cls = _load_class(data["cls"], _HF_CLASSES)
        v = dict(data["v"])
        if hasattr(cls, "from_dict"):
            return cls.from_dict(v)
        return cls(**v)
    if tag == "module":
        if not modules:
            return opaque(str(data.get("cls", "module")))
        return _decode_module(data, sub)
    if tag == "pil":
        from PIL import Image

        return Image.frombytes(data["mode"], tuple(data["size"]), base64.b64decode(data["data"], validate=True))
    if tag == "opaque":
        return opaque(str(data.get("type", "object")))
    if tag in ("argref", "paramref", "module_ref") and resolve is not None:
        return resolve(data)
    raise WireError(f"unknown wire tag {tag!r}")


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        return tuple(_hashable(k) for k in key)
    if isinstance(key, torch.Tensor):
        raise WireError("a tensor cannot be a dict key")
    return key


def _decode_module(data: dict, sub) -> torch.nn.Module:
    name = data.get("cls")
    if name in _HF_CLASSES:
        import transformers

        cls = _load_class(name, _HF_CLASSES)
        config = transformers.ViTConfig.from_dict(dict(data["config"]))
        module = cls(config)
    elif name in _TORCH_MODULES:
        init = sub(data["init"])
        module = _load_class(name, _TORCH_MODULES)(**init)
    else:
        raise WireError(f"{name!r} is not a module the grader builds")
    state = sub(data["state"])
    module.load_state_dict(state, strict=True)
    for param_name, param in module.named_parameters():
        param.requires_grad_(bool(data["requires_grad"].get(param_name, True)))
    module.train(bool(data.get("training")))
    return module


def dumps(obj: Any) -> bytes:
    """One message: JSON on one line, ending in a newline."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"


def loads(line: bytes) -> Any:
    if len(line) > MAX_MESSAGE_BYTES:
        raise WireError(f"a message of {len(line)} bytes is over the limit of {MAX_MESSAGE_BYTES}")
    try:
        return json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
        raise WireError(f"not a JSON message: {e}") from None
