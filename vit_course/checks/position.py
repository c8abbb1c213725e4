"""Checks for the position-embedding exercises.

`check_sincos_2d(fn)` compares `fn(rows, cols, dim, temperature) -> (rows*cols, dim)` with
`vit_course.position.sincos_2d`: the first half of the dims is a 1D sin-cos table of the
patch's row, the second half one of its column; each 1D table is sin on its first half,
cos on its second, with frequencies 1 / 10000^(2i / d). Square and non-square grids,
a single position, small and large dims, and temperature=100 (the argument a hard-coded
10000 ignores).

`check_interpolate_positions(fn)` compares `fn(pos_embed (1, 1+N, D), new_rows,
new_cols) -> (1, 1+new_rows*new_cols, D)` with `vit_course.position.interpolate_pos_encoding`
(HF's: CLS row kept as it is, the square grid resized bicubically, align_corners=False),
through the reference `interpolate_positions` that takes grid sizes instead of pixels:
up, down, non-square, and to the same size. Known mistakes are recomputed on the
failing case by the small functions below.

Used by notebook 02.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from .compare import CheckFailure, check, diagnose, fmt_shape, learner_call, randn, tensor_distance, tensor_problems

# ---------------------------------------------------------------------------
# 2D sin-cos

# rows, cols, dim, description
SINCOS_CASES = [
    (4, 4, 32, "a 4x4 grid, dim=32"),
    (3, 5, 8, "a non-square grid: rows=3, cols=5, dim=8"),
    (5, 3, 12, "a non-square grid: rows=5, cols=3, dim=12"),
    (1, 1, 4, "a single position: rows=cols=1, dim=4"),
    (7, 7, 64, "the tiny ViT's 7x7 grid, dim=64"),
    (2, 6, 128, "rows=2, cols=6, dim=128 (low frequencies)"),
]
# rows, cols, dim, temperature, description: the argument the learner's signature keeps
TEMPERATURE_CASES = [(3, 4, 16, 100.0, "temperature=100 (not the default 10000): rows=3, cols=4, dim=16")]


def _sincos_1d(positions: torch.Tensor, d: int, exponent: str = "ok", order: str = "sin_cos", temperature: float = 10000.0) -> torch.Tensor:
    """(n,) positions -> (n, d) with a switch per known mistake."""
    half = d // 2
    i = torch.arange(half, dtype=torch.float64)
    powers = {
        "ok": i / half,  # 2i/d
        "no_two": i / d,  # i/d: frequencies fall off half as fast
        "full_dim": i / (2 * d),  # 2i/D with D = 2d, the whole embedding's dim
        "linspace": i / max(half - 1, 1),  # linspace(0, 1, d/2)
        "no_inverse": -i / half,  # 10000^(2i/d): growing frequencies
    }[exponent]
    omega = 1.0 / temperature ** powers  # (d/2,)
    angles = positions.double()[:, None] * omega[None, :]  # (n, d/2)
    if order == "sin_cos":
        return torch.cat([angles.sin(), angles.cos()], dim=1)
    if order == "cos_sin":
        return torch.cat([angles.cos(), angles.sin()], dim=1)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(len(positions), d)  # interleaved


def _sincos_2d(rows: int, cols: int, dim: int, first: str = "row", grid: str = "ij", start: int = 0,
               **kw) -> torch.Tensor:
    r, c = torch.meshgrid(torch.arange(start, start + rows), torch.arange(start, start + cols), indexing="ij")
    r, c = r.reshape(-1), c.reshape(-1)
    if grid == "col_major":  # positions enumerated column by column
        r, c = r.reshape(rows, cols).T.reshape(-1), c.reshape(rows, cols).T.reshape(-1)
    row_part, col_part = _sincos_1d(r, dim // 2, **kw), _sincos_1d(c, dim // 2, **kw)
    parts = [row_part, col_part] if first == "row" else [col_part, row_part]
    return torch.cat(parts, dim=1).float()  # (rows*cols, dim)


SINCOS_MISTAKES = [
    (
        "the sin and cos halves are swapped: each 1D table is [sin(angles), cos(angles)], sin first",
        dict(order="cos_sin"),
    ),
    (
        "the row and column halves are swapped: the first dim/2 dims encode the row (height index), "
        "the last dim/2 the column (on a square grid, listing the positions column by column gives the same numbers)",
        dict(first="col"),
    ),
    (
        "sin and cos are interleaved (sin, cos, sin, cos, ...), as in the original Transformer; "
        "here they are concatenated: torch.cat([sin, cos], dim=-1)",
        dict(order="interleaved"),
    ),
    (
        "wrong frequency exponent: each 1D table has d = dim/2 dims, and omega_i = 1 / 10000^(2i / d) "
        "for i = 0 .. d/2 - 1; you used 2i / dim (the whole embedding's dim instead of d), "
        "which is the same as i / d (the factor 2 missing)",
        dict(exponent="no_two"),
    ),
    (
        "wrong frequency exponent: omega_i = 1 / 10000^(2i / d) with d = dim/2, the width of one 1D table; "
        "you used i / dim: the factor 2 is missing and the whole embedding's dim is used",
        dict(exponent="full_dim"),
    ),
    (
        "wrong frequency exponent: 2i / d for i = 0 .. d/2 - 1 never reaches 1: use torch.arange, "
        "not torch.linspace(0, 1, d // 2)",
        dict(exponent="linspace"),
    ),
    (
        "the frequencies are 10000^(2i / d) instead of 1 / 10000^(2i / d): they must fall from 1, not grow",
        dict(exponent="no_inverse"),
    ),
    (
        "the positions are listed column by column: list them row by row (position index = row * cols + col), "
        "e.g. torch.meshgrid(..., indexing='ij')",
        dict(grid="col_major"),
    ),
    (
        "the positions start at 1: the first row and column are position 0, torch.arange(rows), "
        "so the top-left patch gets sin(0) = 0 and cos(0) = 1",
        dict(start=1),
    ),
    (
        "the positions are listed column by column and the halves swapped",
        dict(grid="col_major", first="col"),
    ),
]


def _sincos_shape_cause(shape: tuple[int, ...], rows: int, cols: int, dim: int) -> str | None:
    if shape == (rows, cols, dim):
        return "the grid is not flattened: reshape (rows, cols, dim) to (rows*cols, dim)"
    if shape == (dim, rows * cols) and dim != rows * cols:
        return "the output is transposed: return (rows*cols, dim), one row per position"
    if shape == (1, rows * cols, dim):
        return "an extra batch dimension: return (rows*cols, dim); the model adds the batch of 1 itself"
    if len(shape) == 2 and shape[0] == rows * cols:
        return f"wrong width: each position gets dim = {dim} numbers, half for the row and half for the column"
    if len(shape) == 2 and shape[1] == dim:
        return f"wrong number of positions: expected rows * cols = {rows * cols}"
    return None


@check("sincos_2d", reference="vit_course.position:sincos_2d")
def check_sincos_2d(fn: Callable[..., Any]) -> str:
    """`fn(rows, cols, dim, temperature=10000.0) -> (rows*cols, dim)`: compare with `vit_course.position.sincos_2d`."""
    from vit_course.position import sincos_2d

    for rows, cols, dim, temperature, case in [(*c[:3], None, c[3]) for c in SINCOS_CASES] + TEMPERATURE_CASES:
        given = {} if temperature is None else {"temperature": temperature}
        expected = sincos_2d(rows, cols, dim, **given)
        got = learner_call(fn, rows, cols, dim, case=case, **given)
        problems = tensor_problems("embedding", got, expected, atol=1e-5, rtol=1e-4)
        if not problems:
            continue
        cause = None
        if isinstance(got, torch.Tensor) and tuple(got.shape) != tuple(expected.shape):
            cause = _sincos_shape_cause(tuple(got.shape), rows, cols, dim)
        if cause is None:
            variants = [(text, lambda kw=kw: _sincos_2d(rows, cols, dim, **{**given, **kw})) for text, kw in SINCOS_MISTAKES]
            if temperature is not None:
                variants.insert(0, (
                    "the temperature argument is ignored (10000 is hard-coded): omega_i = 1 / temperature ** (2i / d)",
                    lambda: _sincos_2d(rows, cols, dim),
                ))
            cause = diagnose(got, variants, tensor_distance(atol=1e-5, rtol=1e-4))
        raise CheckFailure(
            f"wrong embedding for rows={rows}, cols={cols}, dim={dim}",
            details=(f"on {case}", *problems),
            cause=cause,
        )
    return (f"{len(SINCOS_CASES) + len(TEMPERATURE_CASES)} cases match vit_course.position.sincos_2d "
            "(square and non-square grids, 1 position, dim 4 to 128, temperature 100)")


# ---------------------------------------------------------------------------
# Resizing a learned grid

# side (stored grid), D, new_rows, new_cols, description
INTERP_CASES = [
    (4, 6, 8, 8, "a 4x4 grid up to 8x8, D=6"),
    (4, 5, 3, 6, "a 4x4 grid to a non-square 3x6 grid, D=5"),
    (6, 4, 4, 4, "a 6x6 grid down to 4x4, D=4"),
    (3, 4, 3, 3, "the same size: a 3x3 grid to 3x3 (nothing to do), D=4"),
    (7, 8, 14, 14, "the tiny ViT's 7x7 grid to 14x14, D=8"),
    (2, 3, 1, 1, "a 2x2 grid down to a single position, D=3"),
]


def interpolate_positions(pos_embed: torch.Tensor, new_rows: int, new_cols: int) -> torch.Tensor:
    """The reference, in grid sizes: `interpolate_pos_encoding` with a patch size of 1."""
    from vit_course.position import interpolate_pos_encoding

    return interpolate_pos_encoding(pos_embed, new_rows, new_cols, patch_size=1)


def make_pos_embed(side: int, D: int, seed: int) -> torch.Tensor:
    """(1, 1+side*side, D): a smooth ramp plus noise, so every interpolation mode differs."""
    ramp = torch.linspace(-1, 1, side)
    smooth = (ramp[:, None, None] * randn(1, 1, D, seed=seed + 1) + ramp[None, :, None] * randn(1, 1, D, seed=seed + 2))
    grid = smooth.reshape(side * side, D) + randn(side * side, D, seed=seed + 3)
    cls_row = 3.0 + randn(1, D, seed=seed + 4)  # far from the grid, so mixing it in shows
    return torch.cat([cls_row, grid], dim=0)[None]  # (1, 1+N, D)


def _interpolate(pos, new_rows, new_cols, mode="bicubic", align_corners=False, layout="ok", cls="keep", antialias=False,
                 size="ok"):
    D = pos.shape[-1]
    side = math.isqrt(pos.shape[1] - 1)
    cls_row, grid = pos[:, :1], pos[:, 1:]
    if cls == "sequence":  # the whole sequence, CLS included, stretched as one 1D signal
        seq = F.interpolate(pos.transpose(1, 2), size=1 + new_rows * new_cols, mode="linear", align_corners=False)
        return seq.transpose(1, 2)
    if layout == "no_permute":  # (1, N, D) reshaped straight to (1, D, side, side)
        image = grid.reshape(1, D, side, side)
    elif layout == "transposed":  # rows and columns swapped on the way in
        image = grid.reshape(1, side, side, D).permute(0, 3, 2, 1)
    else:
        image = grid.reshape(1, side, side, D).permute(0, 3, 1, 2)  # (1, D, side, side)
    kwargs = {} if mode == "nearest" else dict(align_corners=align_corners)
    if size == "dino":  # DINO's scale_factor = (new + 0.1) / old, against rounding down
        factor = ((new_rows + 0.1) / side, (new_cols + 0.1) / side)
        image = F.interpolate(image, scale_factor=factor, mode=mode, antialias=antialias, **kwargs)
    elif size == "swapped":  # size=(cols, rows): a cols x rows grid read back as rows x cols
        image = F.interpolate(image, size=(new_cols, new_rows), mode=mode, antialias=antialias, **kwargs)
        image = image.reshape(1, D, new_rows, new_cols)
    else:
        image = F.interpolate(image, size=(new_rows, new_cols), mode=mode, antialias=antialias, **kwargs)
    if layout == "no_permute":
        new_grid = image.reshape(1, new_rows * new_cols, D)
    elif layout == "transposed":
        new_grid = image.permute(0, 3, 2, 1).reshape(1, new_rows * new_cols, D)
    else:
        new_grid = image.permute(0, 2, 3, 1).reshape(1, new_rows * new_cols, D)  # (1, N', D)
    if cls == "last":
        return torch.cat([new_grid, cls_row], dim=1)
    return torch.cat([cls_row, new_grid], dim=1)


INTERP_MISTAKES = [
    ("align_corners=True: HF and timm resize with align_corners=False", dict(align_corners=True)),
    (
        "the grid is resized with DINO's scale_factor=(new + 0.1) / old: the 0.1 shifts every sample a little; "
        "HF and timm pass the target size itself, F.interpolate(..., size=(new_rows, new_cols))",
        dict(size="dino"),
    ),
    (
        "size=(new_cols, new_rows): F.interpolate takes size=(height, width) = (new_rows, new_cols); "
        "the permutes are fine",
        dict(size="swapped"),
    ),
    ("bilinear instead of bicubic: F.interpolate(..., mode='bicubic')", dict(mode="bilinear")),
    ("bilinear with align_corners=True: use mode='bicubic', align_corners=False", dict(mode="bilinear", align_corners=True)),
    ("nearest-neighbour resizing: F.interpolate(..., mode='bicubic', align_corners=False)", dict(mode="nearest")),
    ("antialias=True: HF resizes without antialiasing", dict(antialias=True)),
    (
        "the CLS row is interpolated too (the whole sequence stretched as one signal): split off "
        "pos_embed[:, :1], resize only the grid pos_embed[:, 1:], then put the CLS row back in front",
        dict(cls="sequence"),
    ),
    ("the CLS row is put back last: torch.cat([cls_row, grid], dim=1), CLS first", dict(cls="last")),
    (
        "the grid is reshaped to (1, D, side, side) without a permute, which mixes positions and channels: "
        "reshape to (1, side, side, D), then permute(0, 3, 1, 2)",
        dict(layout="no_permute"),
    ),
    (
        "rows and columns are swapped: reshape to (1, side, side, D), permute(0, 3, 1, 2) (not (0, 3, 2, 1)), "
        "and back with permute(0, 2, 3, 1)",
        dict(layout="transposed"),
    ),
]


def _interp_shape_cause(shape: tuple[int, ...], new_rows: int, new_cols: int, D: int) -> str | None:
    n = new_rows * new_cols
    if shape == (1, n, D):
        return "the CLS row is missing: resize only the grid, then put pos_embed[:, :1] back in front"
    if shape == (n + 1, D):
        return "the batch dimension of 1 is missing: return (1, 1+new_rows*new_cols, D)"
    if shape == (1, D, new_rows, new_cols):
        return "the grid is not turned back into a sequence: permute(0, 2, 3, 1), then reshape to (1, N', D)"
    if len(shape) == 3 and shape[1] != n + 1:
        return f"wrong number of positions: expected 1 + new_rows * new_cols = {n + 1}"
    return None


@check("interpolate_positions", reference=(
    "vit_course.checks.position:interpolate_positions", "vit_course.position:interpolate_pos_encoding"))
def check_interpolate_positions(fn: Callable[..., Any]) -> str:
    """`fn(pos_embed, new_rows, new_cols)`: compare with `vit_course.position.interpolate_pos_encoding`."""
    for seed, (side, D, new_rows, new_cols, case) in enumerate(INTERP_CASES):
        pos = make_pos_embed(side, D, seed=100 * seed)
        expected = interpolate_positions(pos, new_rows, new_cols)
        got = learner_call(fn, pos.clone(), new_rows, new_cols, case=case, names=("pos_embed",))
        problems = tensor_problems("position embedding", got, expected, atol=1e-5, rtol=1e-4)
        if not problems:
            continue
        cause = None
        if isinstance(got, torch.Tensor) and tuple(got.shape) != tuple(expected.shape):
            cause = _interp_shape_cause(tuple(got.shape), new_rows, new_cols, D)
        if cause is None:
            variants = [(text, lambda kw=kw: _interpolate(pos, new_rows, new_cols, **kw)) for text, kw in INTERP_MISTAKES]
            cause = diagnose(got, variants, tensor_distance(atol=1e-5, rtol=1e-4))
        if cause is None and isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(expected.shape):
            if not torch.allclose(got[:, :1].float(), pos[:, :1], atol=1e-5):
                cause = "the CLS row changed: keep pos_embed[:, :1] exactly as it is"
        raise CheckFailure(
            f"wrong output for a {side}x{side} grid resized to {new_rows}x{new_cols} (D={D})",
            details=(f"on {case}", f"pos_embed of shape {fmt_shape(pos.shape)}", *problems),
            cause=cause,
        )
    return (
        f"{len(INTERP_CASES)} cases match vit_course.position.interpolate_pos_encoding "
        "(up, down, non-square, same size, CLS row kept)"
    )
