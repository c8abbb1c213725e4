"""Checks for the robustness exercises (notebook 08, ViT vs CNN).

`check_shift_images(fn)` compares `fn(images, dx, dy)` with
`vit_course.robustness.shift_images` for shifts in every direction, zero shifts, shifts
past the border, uint8 and float, with and without a channel dimension.
`check_shuffle_patches(fn)` compares `fn(images, patch_size, generator)` with
`vit_course.robustness.shuffle_patches` given generators seeded alike; when the output
differs it tells a wrong-but-valid shuffle (another order) from a broken one (pixels moved
that do not form whole patches). The mistakes they recognise are written out below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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

# ---------------------------------------------------------------------------
# shift_images

# shape, dx, dy, uint8?, description
SHIFT_CASES = [
    ((2, 6, 7), 2, 1, True, "uint8 images (2, 6, 7), dx=2 (right), dy=1 (down)"),  # both axes first: tells the mistakes apart
    ((2, 6, 7), 2, 0, True, "uint8 images (2, 6, 7), dx=2 (right), dy=0"),
    ((2, 6, 7), 0, 3, True, "uint8 images (2, 6, 7), dx=0, dy=3 (down)"),
    ((2, 6, 7), -1, -2, False, "float images (2, 6, 7), dx=-1 (left), dy=-2 (up)"),
    ((2, 6, 7), 3, -1, False, "float images (2, 6, 7), dx=3 (right), dy=-1 (up)"),
    ((1, 2, 5, 5), 1, 1, False, "images with a channel dimension (1, 2, 5, 5), dx=1, dy=1"),
    ((2, 4, 4), 0, 0, True, "no shift at all (dx=0, dy=0): the images come back unchanged"),
    ((2, 4, 5), 5, 0, False, "a shift by the whole width (dx=5 on 5 columns): nothing is left"),
]


def _make_images(shape, uint8: bool, seed: int) -> torch.Tensor:
    x = randn(*shape, seed=seed)
    if uint8:
        return (x.abs() * 80 + 10).clamp(1, 255).to(torch.uint8)  # no zero pixels: the fill shows
    return x + 3.0  # no zeros either


def _shift_roll(x, dx, dy):
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


SHIFT_MISTAKES = [
    ("torch.roll wraps the pixels that leave one side around to the other: fill the uncovered border "
     "with 0 instead", lambda x, dx, dy, ref: _shift_roll(x, dx, dy)),
    ("dx and dy are swapped: dx moves along the width (columns, the last dimension), dy along the height",
     lambda x, dx, dy, ref: ref(x, dy, dx)),
    ("the direction is reversed: a positive dx moves the content right, out[..., x] = images[..., x - dx]",
     lambda x, dx, dy, ref: ref(x, -dx, -dy)),
    ("only dx is reversed: a positive dx moves the content right", lambda x, dx, dy, ref: ref(x, -dx, dy)),
    ("only dy is reversed: a positive dy moves the content down", lambda x, dx, dy, ref: ref(x, dx, -dy)),
    ("the shift is off by one pixel", lambda x, dx, dy, ref: ref(x, dx + (dx > 0) - (dx < 0), dy + (dy > 0) - (dy < 0))),
    ("torch.roll wraps around and dx, dy are swapped", lambda x, dx, dy, ref: _shift_roll(x, dy, dx)),
]


def _shift_hints(error: BaseException) -> str | None:
    text = str(error)
    if "must match the existing size (0)" in text or "existing size (0)" in text:
        return ("an empty slice: when a shift is 0, images[..., :-0] selects nothing (-0 is 0); "
                "slice with images[..., :H - dy] or [: -dy or None]")
    return None


@check("shift_images", hints=_shift_hints, reference="vit_course.robustness:shift_images")
def check_shift_images(fn: Callable[..., Any]) -> str:
    """`fn(images (..., H, W), dx, dy) -> (..., H, W)`: compare with `vit_course.robustness.shift_images`."""
    from vit_course.robustness import shift_images

    for seed, (shape, dx, dy, uint8, case) in enumerate(SHIFT_CASES):
        images = _make_images(shape, uint8, seed)
        expected = shift_images(images, dx, dy)
        got = learner_call(fn, images.clone(), dx, dy, case=case, names=("images",))
        problems = tensor_problems("shifted images", got, expected)
        if isinstance(got, torch.Tensor) and not problems and got.dtype != images.dtype:
            problems = [f"the output's dtype is {got.dtype}, expected {images.dtype} (the input's)"]
        if not problems:
            continue
        variants = [(text, lambda m=m: m(images, dx, dy, shift_images)) for text, m in SHIFT_MISTAKES]
        cause = diagnose(got, variants, tensor_distance())
        if cause is None and isinstance(got, torch.Tensor) and got.shape == images.shape:
            if bool((got == images).all()) and (dx or dy):
                cause = "the images come back unchanged: the shift is not applied (or applied to a copy that is not returned)"
        raise CheckFailure(
            f"wrong output for images of shape {fmt_shape(shape)} shifted by dx={dx}, dy={dy}",
            details=(f"on {case}", *problems),
            cause=cause,
        )
    return f"{len(SHIFT_CASES)} cases match vit_course.robustness.shift_images (all directions, no shift, past the border)"


# ---------------------------------------------------------------------------
# shuffle_patches

# shape, patch_size, generator seed, description
SHUFFLE_CASES = [
    ((2, 8, 8), 4, 0, "2 images of 8x8 in 4x4 patches (a 2x2 grid)"),
    ((3, 12, 12), 4, 1, "3 images of 12x12 in 4x4 patches (a 3x3 grid)"),
    ((2, 8, 12), 4, 2, "non-square images (2, 8, 12): a 2x3 grid of 4x4 patches"),
    ((2, 12, 8), 4, 3, "non-square images (2, 12, 8): a 3x2 grid of 4x4 patches"),
    ((2, 3, 6, 6), 2, 4, "images with 3 channels (2, 3, 6, 6), 2x2 patches: every channel moves together"),
    ((2, 4, 4), 4, 5, "one patch per image (4x4 in 4x4 patches): nothing can move"),
]


def _grid(x, P):
    """(..., H, W) -> (..., N, P, P), patches row-major."""
    H, W = x.shape[-2:]
    rows, cols = H // P, W // P
    lead = x.shape[:-2]
    return x.reshape(*lead, rows, P, cols, P).transpose(-3, -2).reshape(*lead, rows * cols, P, P)


def _ungrid(x, H, W, P):
    rows, cols = H // P, W // P
    lead = x.shape[:-3]
    return x.reshape(*lead, rows, cols, P, P).transpose(-3, -2).reshape(*lead, H, W)


def _with_perm(x, P, perm):
    H, W = x.shape[-2:]
    return _ungrid(_grid(x, P)[..., perm, :, :], H, W, P)


def _inverse(x, P, seed):
    H, W = x.shape[-2:]
    N = (H // P) * (W // P)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(seed))
    return _with_perm(x, P, torch.argsort(perm))


def _column_major(x, P, seed):
    # patches numbered column by column, then the same randperm applied
    H, W = x.shape[-2:]
    rows, cols = H // P, W // P
    lead = x.shape[:-2]
    g = x.reshape(*lead, rows, P, cols, P).permute(*range(len(lead)), -2, -4, -3, -1)  # (..., cols, rows, P, P)
    g = g.reshape(*lead, rows * cols, P, P)
    perm = torch.randperm(rows * cols, generator=torch.Generator().manual_seed(seed))
    g = g[..., perm, :, :].reshape(*lead, cols, rows, P, P).permute(*range(len(lead)), -3, -1, -4, -2)
    return g.reshape(*lead, H, W)


def _pixels(x, P, seed):
    # every pixel shuffled, not whole patches
    H, W = x.shape[-2:]
    perm = torch.randperm(H * W, generator=torch.Generator().manual_seed(seed))
    return x.reshape(*x.shape[:-2], H * W)[..., perm].reshape(x.shape)


SHUFFLE_MISTAKES = [
    ("the inverse permutation: output patch k should be input patch perm[k] (x[..., perm, :, :]), "
     "not the other way round", _inverse),
    ("patches are numbered column by column: number them row by row (row-major), as patchify does", _column_major),
    ("single pixels are shuffled, not whole P x P patches", _pixels),
]


def _is_patch_permutation(got: torch.Tensor, images: torch.Tensor, P: int) -> tuple[bool, bool]:
    """(each image's patches are a permutation of its own, one order shared by all images)."""
    N = _grid(images, P).shape[-3]
    B = images.shape[0]
    g = _grid(got, P).movedim(-3, 1).reshape(B, N, -1)  # (B, N, everything in a patch)
    x = _grid(images, P).movedim(-3, 1).reshape(B, N, -1)
    orders = []
    for gi, xi in zip(g, x):
        match = (gi[:, None, :] == xi[None, :, :]).all(-1)  # (N out, N in)
        if not bool((match.sum(-1) >= 1).all()):
            return False, False
        orders.append(match.float().argmax(-1))
    same = all(bool((o == orders[0]).all()) for o in orders)
    return True, same


@check("shuffle_patches", reference="vit_course.robustness:shuffle_patches")
def check_shuffle_patches(fn: Callable[..., Any]) -> str:
    """`fn(images (..., H, W), patch_size, generator) -> (..., H, W)`: compare with
    `vit_course.robustness.shuffle_patches`, both given a generator seeded the same way."""
    from vit_course.robustness import shuffle_patches

    for index, (shape, P, seed, case) in enumerate(SHUFFLE_CASES):
        images = randn(*shape, seed=100 + index)
        expected = shuffle_patches(images, P, torch.Generator().manual_seed(seed))
        got = learner_call(fn, images.clone(), P, torch.Generator().manual_seed(seed), case=case, names=("images",))
        problems = tensor_problems("shuffled images", got, expected)
        if not problems:
            continue
        variants = [(text, lambda m=m: m(images, P, seed)) for text, m in SHUFFLE_MISTAKES]
        cause = diagnose(got, variants, tensor_distance())
        if cause is None and isinstance(got, torch.Tensor) and got.shape == images.shape:
            valid, shared = _is_patch_permutation(got.to(images.dtype), images, P)
            if valid and not shared:
                cause = ("each image got its own order: draw one perm = torch.randperm(N, generator=generator) "
                         "and apply it to every image")
            elif valid:
                cause = ("whole patches moved, but not in the order expected: draw exactly one "
                         "perm = torch.randperm(N, generator=generator) (nothing else from the generator) "
                         "and make output patch k = input patch perm[k]")
            else:
                cause = ("the output is not the input's patches in another order: cut (..., H, W) into "
                         "(..., H/P, P, W/P, P), move the two P axes last, shuffle, and undo the same steps")
        raise CheckFailure(
            f"wrong output for images of shape {fmt_shape(shape)} and patch_size={P}",
            details=(f"on {case}", *problems),
            cause=cause,
        )
    return (f"{len(SHUFFLE_CASES)} cases match vit_course.robustness.shuffle_patches "
            "(square and non-square grids, channels, a single patch)")
