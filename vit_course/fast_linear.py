"""The fast path's Linear layer: the same y = x W^T + b, computed by oneDNN on the CPU.

PyTorch's `nn.Linear` on the CPU calls MKL's sgemm. On the ViT's shapes (1576 tokens x 384
-> 1152, 1536, 384 for ViT-S/16 at batch 8) oneDNN's fp32 GEMM, which PyTorch ships too
(`torch.ops.mkldnn._linear_pointwise`, the kernel torch.compile uses for bf16), ran 1.2 to
1.4x faster on this course's 2-core AMD CPU, and it can apply the MLP's GELU to each
output tile while it is still in cache ("post-op") instead of in a second pass over a
(B, N, 4D) tensor. `scripts/bench.py` measures what that gives a whole model.

`FastLinear` is an `nn.Linear` (same parameters, same state dict, same init) whose forward
runs that kernel when it can: a float32 CPU tensor, oneDNN present, no autocast. Anywhere
else (a GPU, bf16, autocast) it is `F.linear`. `forward(x, activation)` fuses an
`nn.GELU` (erf or tanh) or `nn.ReLU` when no gradient is needed; while training, or for
another activation, it runs the Linear and the activation one after the other.

The kernel is wrapped as a custom operator (`vit_course::linear`) with a shape function and
a backward (gradients by matrix products, as for `nn.Linear`), so autograd and
torch.compile treat it as one opaque call. Outputs agree with `F.linear` within float32
rounding (`tests/test_fast_linear.py`).

Used by notebook 08, through the fast path (`attn_implementation="fast"`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# activation names -> oneDNN post-op and its algorithm
_POST_OPS = {"none": ("none", ""), "gelu": ("gelu", "none"), "gelu_tanh": ("gelu", "tanh"), "relu": ("relu", "")}

@torch.library.custom_op("vit_course::linear", mutates_args=())
def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str) -> torch.Tensor:
    """x (..., K), weight (N, K), bias (N,) or None -> activation(x W^T + b) (..., N), by oneDNN."""
    post_op, algorithm = _POST_OPS[activation]
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, post_op, [], algorithm)


@onednn_linear.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def _setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: torch.Tensor) -> None:
    x, weight, bias, activation = inputs
    if activation != "none":
        raise RuntimeError(f"vit_course::linear: expected no fused activation while training, got {activation!r}")
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None


def _backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple:
    x, weight = ctx.saved_tensors
    grad_2d, x_2d = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1])  # (M, N), (M, K)
    grad_x = (grad_2d @ weight).reshape(x.shape)  # (..., K)
    grad_weight = grad_2d.t() @ x_2d  # (N, K)
    grad_bias = grad_2d.sum(0) if ctx.has_bias else None  # (N,)
    return grad_x, grad_weight, grad_bias, None


onednn_linear.register_autograd(_backward, setup_context=_setup_context)


def onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `FastLinear` runs oneDNN on this input: float32 CPU tensors, no autocast."""
    return (x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and not torch.is_autocast_enabled("cpu"))


def activation_name(module: nn.Module | None) -> str | None:
    """oneDNN's post-op name for an activation module ("none" for no module), or None for
    one it cannot fuse."""
    if module is None:
        return "none"
    if type(module) is nn.GELU:
        return "gelu" if module.approximate == "none" else "gelu_tanh"
    if type(module) is nn.ReLU:
        return "relu"
    return None


class FastLinear(nn.Linear):
    """`nn.Linear` by oneDNN on a float32 CPU tensor, by `F.linear` elsewhere; the same
    parameters and state dict. `activation` (a module, or None) is applied to the output,
    fused into the kernel where it can be: a GELU or ReLU, no gradient needed."""

    def forward(self, x: torch.Tensor, activation: nn.Module | None = None) -> torch.Tensor:
        """x (..., in_features) -> activation(x W^T + b) (..., out_features)."""
        if not onednn_applies(x, self.weight):
            y = F.linear(x, self.weight, self.bias)
        else:
            name = activation_name(activation)
            needs_grad = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
            if name is not None and not needs_grad:
                return onednn_linear(x, self.weight, self.bias, name)
            y = onednn_linear(x, self.weight, self.bias, "none")
        return y if activation is None else activation(y)


def plain_linears(model: nn.Module) -> nn.Module:
    """`model`, changed in place: every `FastLinear` turned back into an `nn.Linear` (the same parameters),
    for tools that look for `nn.Linear` by type, such as dynamic int8 quantization."""
    for module in model.modules():
        if type(module) is FastLinear:
            module.__class__ = nn.Linear
    return model
