"""Checks for the exercises on `vit_course.patches` (notebook 01).

`check_patchify(fn)` compares `fn(images, patch_size)` with
`vit_course.patches.patchify` on square and non-square images, one and several
channels, a batch of one and a single patch per image. The mistakes it recognises are
written out below, each next to the sentence it prints.

`check_conv_to_linear_weight(fn)` gives `fn` a patch-embedding `nn.Conv2d` (kernel and
stride P, weight (D, C, P, P)) and expects `(weight (D, C*P*P), bias (D,) or None)`:
the Linear layer that maps `vit_course.patches.patchify`'s (C, P, P)-flattened patches
to the same tokens as the conv. The reference `conv_to_linear_weight` reshapes the
kernel, as `vit_course.patches.LinearPatchEmbedding.from_conv` does; each case also checks that the
returned pair really reproduces the conv's output on random images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vit_course.patches import conv_to_linear_weight

from .compare import (
    CheckFailure,
    check,
    diagnose,
    fmt_shape,
    learner_call,
    randn,
    shape_of,
    tensor_distance,
    tensor_problems,
)


# (B, C, H, W), P, description; the order matters only for which case a mistake fails first
PATCHIFY_CASES = [
    ((2, 3, 8, 8), 4, "a batch of 2 RGB 8x8 images, patch_size=4"),
    ((1, 3, 8, 8), 4, "a batch of 1 RGB 8x8 image, patch_size=4"),
    ((2, 3, 8, 12), 4, "non-square images: (2, 3, 8, 12), H=8, W=12, patch_size=4"),
    ((2, 3, 12, 8), 4, "non-square images: (2, 3, 12, 8), H=12, W=8, patch_size=4"),
    ((2, 1, 6, 9), 3, "one-channel 6x9 images, patch_size=3"),
    ((3, 3, 4, 4), 4, "one patch per image (N=1): (3, 3, 4, 4), patch_size=4"),
    ((2, 2, 12, 8), 2, "2-channel 12x8 images, patch_size=2"),
]


def _pp_c(x: torch.Tensor, P: int) -> torch.Tensor:
    # einops 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)', lucidrains' vit-pytorch order
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 3, 5, 1)  # (B, rows, cols, P, P, C)
    return x.reshape(B, -1, P * P * C)


def _column_major(x: torch.Tensor, P: int) -> torch.Tensor:
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // P, P, W // P, P).permute(0, 4, 2, 1, 3, 5)  # (B, cols, rows, C, P, P)
    return x.reshape(B, -1, C * P * P)


def _swapped_grid(x: torch.Tensor, P: int) -> torch.Tensor:
    # rows and cols computed from W and H the wrong way round
    B, C, H, W = x.shape
    x = x.reshape(B, C, W // P, P, H // P, P).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, -1, C * P * P)


def _transposed_image(x: torch.Tensor, P: int) -> torch.Tensor:
    from vit_course.patches import patchify

    return patchify(x.transpose(-2, -1), P)


def _no_permute(x: torch.Tensor, P: int) -> torch.Tensor:
    B, C, H, W = x.shape
    return x.reshape(B, (H // P) * (W // P), C * P * P)


def _reshape_without_full_permute(x: torch.Tensor, P: int) -> torch.Tensor:
    # (B, C, rows, P, cols, P) -> (B, rows, cols, C, P, P) skipped the move of P next to P
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 3, 4, 5, 1)  # (B, rows, P, cols, P, C)
    return x.reshape(B, -1, C * P * P)


def _pixels_transposed(x: torch.Tensor, P: int) -> torch.Tensor:
    # (B, C, rows, P, cols, P) -> (B, rows, cols, C, P, P) with the two pixel axes swapped
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 1, 5, 3)  # (B, rows, cols, C, P_w, P_h)
    return x.reshape(B, -1, C * P * P)


def _unfold(x: torch.Tensor, P: int) -> torch.Tensor:
    # F.unfold gives (B, C*P*P, N): right order, but not transposed back
    from vit_course.patches import patchify

    return patchify(x, P).transpose(1, 2)


MISTAKES = [
    (
        "each patch is flattened in (P, P, C) order, e.g. einops 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)'; "
        "the course flattens in (C, P, P) order, the order of the Conv2d kernel: 'b c (h p1) (w p2) -> b (h w) (c p1 p2)'",
        _pp_c,
    ),
    (
        "patches are taken column by column ('(w h)'); take them row by row, as you read: 'b (h w) ...'",
        _column_major,
    ),
    (
        "the number of patch rows and columns are swapped: rows = H // P (H = images.shape[2]), "
        "cols = W // P (W = images.shape[3]); square images hide this",
        _swapped_grid,
    ),
    (
        "the image was read as (B, C, W, H): H and W are swapped; images are (B, C, H, W)",
        _transposed_image,
    ),
    (
        "a reshape without a permute mixes pixels from different patches: reshape to "
        "(B, C, H/P, P, W/P, P), then permute to (B, H/P, W/P, C, P, P), then reshape",
        _no_permute,
    ),
    (
        "the permute leaves the patch dims interleaved with the grid dims: after reshaping to "
        "(B, C, H/P, P, W/P, P), permute(0, 2, 4, 1, 3, 5) gives (B, H/P, W/P, C, P, P)",
        _reshape_without_full_permute,
    ),
    (
        "the output is transposed: (B, C*P*P, N) instead of (B, N, C*P*P) (F.unfold returns the former): "
        "add .transpose(1, 2)",
        _unfold,
    ),
    (
        "the pixels inside each patch are transposed: permute(0, 2, 4, 1, 5, 3) puts the pixel column before "
        "the pixel row; use permute(0, 2, 4, 1, 3, 5), so each patch reads row by row like the conv kernel",
        _pixels_transposed,
    ),
]


def _shape_cause(got_shape: tuple[int, ...], B: int, C: int, H: int, W: int, P: int) -> str | None:
    """A likely cause read from the shape alone."""
    N, F = (H // P) * (W // P), C * P * P
    if got_shape == (N, F):
        return "the batch dimension is missing: return (B, N, C*P*P), one row of patches per image"
    if got_shape == (B * N, F) and B > 1:
        return "the batch and patch dimensions are merged: reshape to (B, N, C*P*P), not (-1, C*P*P)"
    if got_shape == (1, N, F) and B > 1:
        return "only the first image is patchified: handle the whole batch (images.shape[0] = B)"
    if got_shape == (B, F, N):
        return "the output is transposed: (B, C*P*P, N) instead of (B, N, C*P*P): add .transpose(1, 2)"
    if len(got_shape) == 3 and got_shape[0] == B and got_shape[1] != N:
        if got_shape[1] in ((H // P) ** 2, (W // P) ** 2) and H != W:
            return "the number of patches N was computed from one side only: N = (H // P) * (W // P)"
        return f"wrong number of patches N: expected (H // P) * (W // P) = {N}"
    if len(got_shape) == 3 and got_shape[0] == B and got_shape[1] == N:
        return f"wrong patch length: each patch has C * P * P = {F} numbers"
    return None


def _hints(error: BaseException) -> str | None:
    text = str(error)
    if "invalid for input of size" in text:
        return (
            "a reshape whose sizes do not multiply to the number of elements: keep the batch dimension B "
            "and use rows = H // P, cols = W // P, read from images.shape"
        )
    if "number of dims don't match in permute" in text or "permute" in text:
        return "permute needs one index per dimension of the reshaped (B, C, H/P, P, W/P, P) tensor"
    return None


@check("patchify", hints=_hints, reference="vit_course.patches:patchify")
def check_patchify(fn: Callable[..., Any]) -> str:
    """`fn(images (B, C, H, W), patch_size) -> (B, N, C*P*P)`: compare with `vit_course.patches.patchify`."""
    from vit_course.patches import patchify

    for seed, (shape, P, case) in enumerate(PATCHIFY_CASES):
        images = randn(*shape, seed=seed)
        expected = patchify(images, P)
        got = learner_call(fn, images.clone(), P, case=case, names=("images",))
        problems = tensor_problems("output", got, expected)
        if not problems:
            continue
        B, C, H, W = shape
        cause = None
        if isinstance(got, torch.Tensor) and tuple(got.shape) != tuple(expected.shape):
            cause = _shape_cause(tuple(got.shape), B, C, H, W, P)
        if cause is None:
            cause = diagnose(got, [(text, lambda m=m: m(images, P)) for text, m in MISTAKES], tensor_distance())
        raise CheckFailure(
            f"wrong output for images of shape {fmt_shape(shape)} and patch_size={P}",
            details=(f"on {case}", *problems),
            cause=cause,
        )
    return f"{len(PATCHIFY_CASES)} cases match vit_course.patches.patchify (square and non-square, 1-3 channels, N=1)"


# The conv-to-linear exercise
# C, D, P, bias, description
CONV_CASES = [
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
def check_conv_to_linear_weight(fn: Callable[..., Any]) -> str:
    """`fn(conv) -> (weight (D, C*P*P), bias (D,) or None)`: the Linear layer equal to a patch-embedding conv."""
    from vit_course.patches import patchify

    for seed, (C, D, P, bias, case) in enumerate(CONV_CASES):
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
        f"{len(CONV_CASES)} convs turned into Linear layers that give the same tokens "
        "(1 to 3 channels, P=1 to 4, with and without bias)"
    )
