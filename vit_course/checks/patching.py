"""Check for the patchify exercise (notebook on patch embeddings).

`check_patchify(fn)` compares `fn(images, patch_size)` with
`vit_course.patches.patchify` on square and non-square images, one and several
channels, a batch of one and a single patch per image. The mistakes it recognises are
written out below, each next to the sentence it prints.
"""

from __future__ import annotations

import torch

from .compare import (
    CheckFailure,
    check,
    diagnose,
    fmt_shape,
    learner_call,
    randn,
    tensor_distance,
    tensor_problems,
)

# (B, C, H, W), P, description; the order matters only for which case a mistake fails first
CASES = [
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
def check_patchify(fn) -> str:
    """`fn(images (B, C, H, W), patch_size) -> (B, N, C*P*P)`: compare with `vit_course.patches.patchify`."""
    from vit_course.patches import patchify

    for seed, (shape, P, case) in enumerate(CASES):
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
    return f"{len(CASES)} cases match vit_course.patches.patchify (square and non-square, 1-3 channels, N=1)"
