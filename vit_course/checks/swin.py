"""Checks for notebook 09's Swin exercises: window partition and the shifted-window mask.

`check_window_partition(fn)` compares `fn(x (B, H, W, C), window_size)` with
`vit_course.swin.window_partition` (windows row-major, image by image, each (M, M, C)).
`check_shifted_window_mask(fn)` compares `fn(height, width, window_size, shift_size)` with
`vit_course.swin.shifted_window_mask`; any mask that allows and forbids the same pairs
passes: 0 where attention is allowed and -100 or less (-inf included) where not, or a
boolean mask, True where allowed. The known mistakes sit below, each beside its sentence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from vit_course.swin import MASK_VALUE, shifted_window_mask, window_partition

from .compare import CheckFailure, check, diagnose, fmt_shape, learner_call, randn, shape_of, tensor_distance, tensor_problems

# (B, H, W, C), M, description
PARTITION_CASES = [
    ((2, 8, 8, 3), 4, "a batch of 2 maps of 8x8 tokens, 3 channels, window_size=4"),
    ((1, 8, 12, 2), 4, "a non-square 8x12 map (2 rows, 3 columns of windows), window_size=4"),
    ((2, 12, 8, 2), 4, "a non-square 12x8 map (3 rows, 2 columns of windows), window_size=4"),
    ((2, 6, 9, 1), 3, "one channel, a 6x9 map, window_size=3"),
    ((3, 4, 4, 2), 4, "one window per map: (3, 4, 4, 2), window_size=4"),
]


def _column_order(x: torch.Tensor, M: int) -> torch.Tensor:
    B, H, W, C = x.shape
    return x.reshape(B, H // M, M, W // M, M, C).permute(0, 3, 1, 2, 4, 5).reshape(-1, M, M, C)


def _window_transposed(x: torch.Tensor, M: int) -> torch.Tensor:
    return window_partition(x, M).transpose(1, 2)


def _no_permute(x: torch.Tensor, M: int) -> torch.Tensor:
    return x.reshape(-1, M, M, x.shape[-1])


def _window_major(x: torch.Tensor, M: int) -> torch.Tensor:
    B, H, W, C = x.shape
    return x.reshape(B, H // M, M, W // M, M, C).permute(1, 3, 0, 2, 4, 5).reshape(-1, M, M, C)


def _grid_swapped(x: torch.Tensor, M: int) -> torch.Tensor:
    B, H, W, C = x.shape
    return x.reshape(B, W // M, M, H // M, M, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, M, M, C)


PARTITION_MISTAKES = [
    ("windows are taken column by column; take them row by row: permute to (B, H/M, W/M, M, M, C), rows first",
     _column_order),
    ("the two axes inside each window are swapped: a window is (M rows, M columns, C), as the map is (H, W, C)",
     _window_transposed),
    ("a reshape without a permute cuts strips, not squares: reshape to (B, H/M, M, W/M, M, C), "
     "permute(0, 1, 3, 2, 4, 5), then reshape to (-1, M, M, C)", _no_permute),
    ("the windows of different images are interleaved: keep the batch first, (B, H/M, W/M, M, M, C), so image 0's "
     "windows come first", _window_major),
    ("the window rows and columns are computed from W and H the wrong way round: rows = H // M, cols = W // M",
     _grid_swapped),
]


def _partition_shape_cause(got_shape, B, H, W, C, M) -> str | None:
    nW = (H // M) * (W // M)
    if got_shape == (B, nW, M, M, C):
        return "the batch and window dimensions are not merged: return (B * num_windows, M, M, C)"
    if got_shape == (B * nW, M * M, C):
        return "the window's tokens are flattened: return (B * num_windows, M, M, C), M rows and M columns"
    if got_shape == (B * nW, C, M, M):
        return "channels should come last, as in the input (B, H, W, C): windows are (M, M, C)"
    return None


@check("window_partition", reference="vit_course.swin:window_partition")
def check_window_partition(fn: Callable[..., Any]) -> str:
    """`fn(x (B, H, W, C), window_size) -> (B * H/M * W/M, M, M, C)`: compare with `vit_course.swin.window_partition`."""
    for seed, (shape, M, case) in enumerate(PARTITION_CASES):
        x = randn(*shape, seed=100 + seed)
        expected = window_partition(x, M)
        got = learner_call(fn, x.clone(), M, case=case)
        problems = tensor_problems("windows", got, expected)
        if not problems:
            continue
        cause = None
        if isinstance(got, torch.Tensor) and tuple(got.shape) != tuple(expected.shape):
            cause = _partition_shape_cause(tuple(got.shape), *shape, M)
        if cause is None:
            cause = diagnose(got, [(t, lambda m=m: m(x, M)) for t, m in PARTITION_MISTAKES], tensor_distance())
        raise CheckFailure(f"wrong windows for a map of shape {fmt_shape(shape)} and window_size={M}",
                           details=(f"on {case}", *problems), cause=cause)
    return (f"{len(PARTITION_CASES)} cases match vit_course.swin.window_partition "
            "(square and non-square maps, 1-3 channels, one window per map)")


# height, width, M, shift, description
MASK_CASES = [
    (8, 8, 4, 2, "an 8x8 grid, window_size=4, shift_size=2 (4 windows)"),
    (8, 12, 4, 2, "a non-square 8x12 grid, window_size=4, shift_size=2"),
    (12, 12, 6, 3, "a 12x12 grid, window_size=6, shift_size=3"),
    (6, 9, 3, 1, "a 6x9 grid, window_size=3, shift_size=1 (a shift that is not M/2)"),
    (4, 4, 4, 2, "a single 4x4 window, shift_size=2"),
]


def _mask_from_labels(labels: torch.Tensor, M: int) -> torch.Tensor:
    """(H, W) region labels -> (nW, M*M, M*M) mask, the reference's last two lines."""
    windows = window_partition(labels[None, :, :, None].float(), M).reshape(-1, M * M)
    same = windows[:, None, :] == windows[:, :, None]
    return torch.zeros(same.shape).masked_fill(~same, MASK_VALUE)


def _labels(H: int, W: int, row_cuts, col_cuts) -> torch.Tensor:
    """Region labels from the start of each band along rows and columns."""
    rows = sum((torch.arange(H) >= c).long() for c in row_cuts) if row_cuts else torch.zeros(H, dtype=torch.long)
    cols = sum((torch.arange(W) >= c).long() for c in col_cuts) if col_cuts else torch.zeros(W, dtype=torch.long)
    return rows[:, None] * 3 + cols[None, :]


def _mask_mistakes(H: int, W: int, M: int, s: int):
    right = ([H - M, H - s], [W - M, W - s])
    return [
        ("the mask is missing (all zeros): after the roll, a window at the bottom or right edge holds tokens from "
         "opposite sides of the image, which must not attend to each other",
         lambda: torch.zeros(H * W // (M * M), M * M, M * M)),
        ("the regions are cut for a shift in the wrong direction (the first s rows and columns): torch.roll(x, -s) "
         "moves the top-left strip to the bottom-right, so the regions are [0, H-M), [H-M, H-s), [H-s, H)",
         lambda: _mask_from_labels(_labels(H, W, [s, M], [s, M]), M)),
        ("only the rows are split into regions: split the columns the same way (3 x 3 regions in all)",
         lambda: _mask_from_labels(_labels(H, W, right[0], []), M)),
        ("only the columns are split into regions: split the rows the same way (3 x 3 regions in all)",
         lambda: _mask_from_labels(_labels(H, W, [], right[1]), M)),
        ("the mask is inverted: 0 (attend) where two tokens come from the same region, -100 where they do not",
         lambda: MASK_VALUE - shifted_window_mask(H, W, M, s)),
        ("the windows of the region map are taken column by column: partition it as the features, row by row",
         lambda: _column_order_mask(H, W, M, s)),
    ]


def _column_order_mask(H: int, W: int, M: int, s: int) -> torch.Tensor:
    labels = _labels(H, W, [H - M, H - s], [W - M, W - s])[None, :, :, None].float()
    windows = _column_order(labels, M).reshape(-1, M * M)
    same = windows[:, None, :] == windows[:, :, None]
    return torch.zeros(same.shape).masked_fill(~same, MASK_VALUE)


def _as_additive(got) -> torch.Tensor | None:
    """A learner's mask as 0 / -100 floats: bool True means allowed; floats <= -100 (or -inf) mean forbidden."""
    if not isinstance(got, torch.Tensor):
        return None
    if got.dtype == torch.bool:
        return torch.zeros(got.shape).masked_fill(~got, MASK_VALUE)
    got = got.detach().float()
    allowed = got == 0
    forbidden = got <= MASK_VALUE
    if not bool((allowed | forbidden).all()):
        bad = got[~(allowed | forbidden)]
        raise CheckFailure(
            f"the mask should hold only 0 (may attend) and -100 or less (may not), got the value {float(bad[0]):.4g}",
            cause="build it with masked_fill: 0 where the two tokens share a region, -100.0 where they do not",
        )
    return torch.zeros(got.shape).masked_fill(forbidden, MASK_VALUE)


@check("shifted_window_mask", reference="vit_course.swin:shifted_window_mask")
def check_shifted_window_mask(fn: Callable[..., Any]) -> str:
    """`fn(height, width, window_size, shift_size) -> (num_windows, M*M, M*M)`: compare with
    `vit_course.swin.shifted_window_mask`."""
    for H, W, M, s, case in MASK_CASES:
        expected = shifted_window_mask(H, W, M, s)
        got = learner_call(fn, H, W, M, s, case=case)
        if not isinstance(got, torch.Tensor):
            raise CheckFailure(f"your function should return a torch.Tensor of shape {fmt_shape(expected.shape)}, "
                               f"got {shape_of(got)}", details=(f"on {case}",))
        if tuple(got.shape) != tuple(expected.shape):
            cause = None
            nW = expected.shape[0]
            if tuple(got.shape) == (1, H, W, 1) or tuple(got.shape) == (H, W):
                cause = "this is the region map; partition it into windows and compare the labels of every pair"
            elif tuple(got.shape) == (nW, M * M):
                cause = "these are the labels per window; the mask compares every pair: labels[:, None, :] vs labels[:, :, None]"
            raise CheckFailure(f"the mask has shape {fmt_shape(got.shape)}, expected {fmt_shape(expected.shape)}",
                               details=(f"on {case}",), cause=cause)
        additive = _as_additive(got)
        problems = tensor_problems("mask", additive, expected)
        if not problems:
            continue
        cause = diagnose(additive, _mask_mistakes(H, W, M, s), tensor_distance())
        allowed_got, allowed_expected = int((additive == 0).sum()), int((expected == 0).sum())
        raise CheckFailure(
            f"wrong mask for a grid of {H}x{W} tokens, window_size={M}, shift_size={s}",
            details=(f"on {case}", *problems, f"pairs allowed to attend: expected {allowed_expected}, got {allowed_got}"),
            cause=cause,
        )
    return (f"{len(MASK_CASES)} grids give the same mask as vit_course.swin.shifted_window_mask "
            "(square and non-square, shifts M/2 and not, a single window)")


__all__ = ["check_window_partition", "check_shifted_window_mask"]
