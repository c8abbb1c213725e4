"""Check for the "a strided conv is a linear layer" exercise.

`check_conv_to_linear_weight(fn)` gives `fn` a patch-embedding `nn.Conv2d` (kernel and
stride P, weight (D, C, P, P)) and expects `(weight (D, C*P*P), bias (D,) or None)`:
the Linear layer that maps `vit_course.patches.patchify`'s (C, P, P)-flattened patches
to the same tokens as the conv. The reference `conv_to_linear_weight` reshapes the
kernel, as `vit_course.patches.LinearPatchEmbedding.from_conv` does; each case also checks that the
returned pair really reproduces the conv's output on random images.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vit_course.patches import conv_to_linear_weight

from .compare import CheckFailure, check, diagnose, fmt_shape, learner_call, randn, shape_of, tensor_distance, tensor_problems

# C, D, P, bias, description
CASES = [
    (3, 8, 4, True, "a conv with C=3 channels, D=8, P=4"),
    (2, 5, 3, True, "C=2, D=5, P=3 (odd patch size)"),
    (1, 4, 2, True, "a grayscale conv: C=1, D=4, P=2"),
    (3, 6, 1, True, "P=1: a 1x1 conv"),
    (3, 4, 2, False, "a conv without bias (bias=False): C=3, D=4, P=2"),
]


def make_conv(C: int, D: int, P: int, bias: bool, seed: int) -> nn.Conv2d:
    """A patch-embedding conv with seeded weights."""
    conv = nn.Conv2d(C, D, kernel_size=P, stride=P, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(randn(D, C, P, P, seed=seed))
        if bias:
            conv.bias.copy_(randn(D, seed=seed + 1000))
    return conv


def _weight_mistakes(w: torch.Tensor):
    D = w.shape[0]
    return [
        (
            "the kernel is flattened in (P, P, C) order (permute(0, 2, 3, 1) first, as for a (P, P, C) einops "
            "pattern); patchify flattens each patch as (C, P, P), the kernel's own order: conv.weight.reshape(D, -1)",
            lambda: w.permute(0, 2, 3, 1).reshape(D, -1),
        ),
        (
            "the kernel's height and width are swapped (transpose(2, 3)): patch pixels are flattened row by row, "
            "as conv.weight.reshape(D, -1) does",
            lambda: w.transpose(2, 3).reshape(D, -1),
        ),
        (
            "reshape(-1, D).T mixes the output channels: keep D first, conv.weight.reshape(D, -1)",
            lambda: w.reshape(-1, D).T,
        ),
        (
            "the weights are flattened in (C, P, P) order but the channel order is reversed",
            lambda: w.flip(1).reshape(D, -1),
        ),
    ]


def _as_pair(got):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise CheckFailure(
            f"your function should return a tuple (weight, bias), got {shape_of(got)}",
            cause="return weight, bias (bias is conv.bias, or None when the conv has none)",
        )
    return got


def _check_bias(got_bias, conv: nn.Conv2d, case: str) -> None:
    if conv.bias is None:
        if got_bias is not None and not (isinstance(got_bias, torch.Tensor) and not bool(got_bias.abs().any())):
            raise CheckFailure(
                "the conv has no bias, but your bias is not None (nor zeros)",
                details=(f"on {case}",),
                cause="return conv.bias as it is: None when the conv was made with bias=False",
            )
        return
    if got_bias is None:
        raise CheckFailure(
            "your bias is None, but the conv has one",
            details=(f"on {case}",),
            cause="the bias is forgotten: a Linear layer adds conv.bias (D,) to every token too",
        )
    problems = tensor_problems("bias", got_bias, conv.bias.detach())
    if problems:
        cause = None
        if isinstance(got_bias, torch.Tensor) and got_bias.numel() and not bool(got_bias.abs().any()):
            cause = "the bias is zeros: copy conv.bias, it is the same in both layers"
        raise CheckFailure("wrong bias", details=(f"on {case}", *problems), cause=cause)


@check("conv_to_linear_weight", reference="vit_course.patches:conv_to_linear_weight")
def check_conv_to_linear_weight(fn) -> str:
    """`fn(conv) -> (weight (D, C*P*P), bias (D,) or None)`: the Linear layer equal to a patch-embedding conv."""
    from vit_course.patches import patchify

    for seed, (C, D, P, bias, case) in enumerate(CASES):
        conv = make_conv(C, D, P, bias, seed=10 * seed)
        expected = conv_to_linear_weight(conv)[0].clone()  # (D, C*P*P), not a view of conv.weight
        got_weight, got_bias = _as_pair(learner_call(fn, conv, case=case, names=("conv",)))
        problems = tensor_problems("weight", got_weight, expected)
        if problems:
            cause = None
            if isinstance(got_weight, torch.Tensor) and tuple(got_weight.shape) == (C * P * P, D) and D != C * P * P:
                cause = "the weight is transposed: nn.Linear stores (out_features, in_features) = (D, C*P*P)"
            elif isinstance(got_weight, torch.Tensor) and tuple(got_weight.shape) == (D, C, P, P):
                cause = "the kernel is not flattened: reshape (D, C, P, P) to (D, C*P*P)"
            if cause is None:
                cause = diagnose(got_weight, _weight_mistakes(conv.weight.detach()), tensor_distance())
            raise CheckFailure(
                f"wrong weight for a Conv2d({C}, {D}, kernel_size={P}, stride={P})",
                details=(f"on {case}", *problems),
                cause=cause,
            )
        _check_bias(got_bias, conv, case)
        images = randn(2, C, 3 * P, 2 * P, seed=10 * seed + 5)
        with torch.no_grad():
            tokens = conv(images).flatten(2).transpose(1, 2)  # (B, N, D)
            as_linear = F.linear(patchify(images, P), torch.as_tensor(got_weight).float(),
                                 None if got_bias is None else torch.as_tensor(got_bias).float())
        problems = tensor_problems("tokens", as_linear, tokens, atol=1e-4, rtol=1e-4)
        if problems:  # pragma: no cover - weight and bias matched, so this is a bug in the check
            raise CheckFailure("the Linear layer does not reproduce the conv", details=(f"on {case}", *problems))
    return (
        f"{len(CASES)} convs turned into Linear layers that give the same tokens "
        "(1 to 3 channels, P=1 to 4, with and without bias)"
    )
