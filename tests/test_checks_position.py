"""Hidden-mistake tests for the checks of notebooks 01 (conv -> linear) and 02 (positions).

Each correct variant, written the way a learner might, must pass; each wrong variant
must fail and name its cause. The wrong variants are written here from scratch, not
taken from the check modules, so a check cannot agree with itself by construction.
"""

import math

import numpy as np
import pytest
from learner_copies import as_learner
import torch
from torch.nn import functional as F

from vit_course.checks.patches import check_conv_to_linear_weight
from vit_course.checks.position import check_interpolate_positions, check_sincos_2d
from vit_course.position import interpolate_pos_encoding, sincos_2d


def assert_fails_with(result, *words):
    assert not result.passed, f"expected the check to fail, it passed: {result}"
    text = str(result).lower()
    for word in words:
        assert word.lower() in text, f"expected {word!r} in the failure message, got:\n{result}"


def todo(*args, **kwargs):
    raise NotImplementedError


# ---------------------------------------------------------------------------
# conv_to_linear_weight


def conv_reshape(conv):
    return conv.weight.reshape(conv.out_channels, -1), conv.bias


def conv_flatten_detached(conv):
    bias = None if conv.bias is None else conv.bias.detach().clone()
    return conv.weight.detach().flatten(1).clone(), bias


def conv_einops(conv):
    einops = pytest.importorskip("einops")
    return einops.rearrange(conv.weight, "d c p1 p2 -> d (c p1 p2)"), conv.bias


@pytest.mark.parametrize("fn", [conv_reshape, conv_flatten_detached, conv_einops])
def test_conv_to_linear_correct_variants_pass(fn):
    result = check_conv_to_linear_weight(fn)
    assert result.passed, str(result)


CONV_MISTAKES = {
    "pp_c_order": (lambda conv: (conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, -1), conv.bias),
                   ["(P, P, C)"]),
    "transposed_weight": (lambda conv: (conv.weight.reshape(conv.out_channels, -1).T, conv.bias), ["transposed"]),
    "not_flattened": (lambda conv: (conv.weight, conv.bias), ["not flattened"]),
    "spatial_transpose": (lambda conv: (conv.weight.transpose(2, 3).reshape(conv.out_channels, -1), conv.bias),
                          ["height and width are swapped"]),
    "reshape_minus_one_first": (lambda conv: (conv.weight.reshape(-1, conv.out_channels).T, conv.bias),
                                ["mixes the output channels"]),
    "bias_forgotten": (lambda conv: (conv.weight.reshape(conv.out_channels, -1), None), ["bias is forgotten"]),
    "bias_zeros": (lambda conv: (conv.weight.reshape(conv.out_channels, -1), torch.zeros(conv.out_channels)),
                   ["bias is zeros"]),
    "bias_when_conv_has_none": (
        lambda conv: (conv.weight.reshape(conv.out_channels, -1),
                      torch.ones(conv.out_channels) if conv.bias is None else conv.bias),
        ["has no bias", "bias=False"]),
    "not_a_pair": (lambda conv: conv.weight.reshape(conv.out_channels, -1), ["tuple (weight, bias)"]),
}


@pytest.mark.parametrize("name", sorted(CONV_MISTAKES))
def test_conv_to_linear_mistakes_fail_naming_their_cause(name):
    fn, words = CONV_MISTAKES[name]
    assert_fails_with(check_conv_to_linear_weight(fn), *words)


def test_conv_to_linear_stub_is_not_done_yet():
    result = check_conv_to_linear_weight(todo)
    assert not result.passed and result.not_done


# ---------------------------------------------------------------------------
# sincos_2d


def sincos_numpy(rows, cols, dim):
    """MAE-style numpy code with the row first."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid_r, grid_c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    emb = np.concatenate([one_d(dim // 2, grid_r), one_d(dim // 2, grid_c)], axis=1)
    return torch.from_numpy(emb)  # float64


def sincos_loops(rows, cols, dim, temperature=10000.0):
    out = torch.zeros(rows * cols, dim)
    d = dim // 2
    for r in range(rows):
        for c in range(cols):
            for i in range(d // 2):
                w = temperature ** (-2 * i / d)
                out[r * cols + c, i] = math.sin(r * w)
                out[r * cols + c, d // 2 + i] = math.cos(r * w)
                out[r * cols + c, d + i] = math.sin(c * w)
                out[r * cols + c, d + d // 2 + i] = math.cos(c * w)
    return out


@pytest.mark.parametrize("fn", [as_learner(sincos_2d), sincos_loops])
def test_sincos_correct_variants_pass(fn):
    result = check_sincos_2d(fn)
    assert result.passed, str(result)


def _one_d(pos, d, power=lambda i, d: i / (d / 2), order="sincos"):
    i = torch.arange(d // 2, dtype=torch.float64)
    omega = 1.0 / 10000 ** power(i, d)
    a = pos.double()[:, None] * omega[None]
    if order == "cossin":
        return torch.cat([a.cos(), a.sin()], 1)
    if order == "interleaved":
        return torch.stack([a.sin(), a.cos()], -1).flatten(1)
    return torch.cat([a.sin(), a.cos()], 1)


def _two_d(rows, cols, dim, col_first=False, xy=False, **kw):
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    if xy:  # meshgrid with 'xy' indexing, then flattened: positions column by column
        r, c = r.T, c.T
    a, b = _one_d(r.reshape(-1), dim // 2, **kw), _one_d(c.reshape(-1), dim // 2, **kw)
    return torch.cat([b, a] if col_first else [a, b], 1).float()


SINCOS_MISTAKES = {
    "sin_cos_swapped": (lambda r, c, d: _two_d(r, c, d, order="cossin"), ["sin and cos halves are swapped"]),
    "row_col_swapped": (lambda r, c, d: _two_d(r, c, d, col_first=True), ["row and column halves are swapped"]),
    "interleaved": (lambda r, c, d: _two_d(r, c, d, order="interleaved"), ["interleaved"]),
    "exponent_without_two": (lambda r, c, d: _two_d(r, c, d, power=lambda i, dd: i / dd), ["factor 2"]),
    "exponent_over_full_dim": (lambda r, c, d: _two_d(r, c, d, power=lambda i, dd: 2 * i / (2 * dd)),
                               ["whole embedding's dim"]),
    "exponent_i_over_full_dim": (lambda r, c, d: _two_d(r, c, d, power=lambda i, dd: i / (2 * dd)),
                                 ["factor 2 is missing and the whole embedding's dim"]),
    "exponent_linspace": (lambda r, c, d: _two_d(r, c, d, power=lambda i, dd: torch.linspace(0, 1, dd // 2).double()),
                          ["linspace"]),
    "exponent_not_inverted": (lambda r, c, d: _two_d(r, c, d, power=lambda i, dd: -i / (dd / 2)), ["grow"]),
    # on the square first case this equals swapped halves; the message says so
    "column_major_positions": (lambda r, c, d: _two_d(r, c, d, xy=True), ["column by column"]),
    "column_major_positions_non_square": (
        lambda r, c, d: _two_d(r, c, d, xy=True) if r != c else sincos_2d(r, c, d),
        ["rows=3, cols=5", "listed column by column: list them row by row"]),
    "temperature_100": (lambda r, c, d: sincos_2d(r, c, d, temperature=100.0), ["rows=4, cols=4, dim=32"]),
    "not_flattened": (lambda r, c, d: sincos_2d(r, c, d).reshape(r, c, d), ["not flattened"]),
    "transposed": (lambda r, c, d: sincos_2d(r, c, d).T, ["transposed"]),
    "batch_dim": (lambda r, c, d: sincos_2d(r, c, d)[None], ["extra batch dimension"]),
}


@pytest.mark.parametrize("name", sorted(SINCOS_MISTAKES))
def test_sincos_mistakes_fail_naming_their_cause(name):
    fn, words = SINCOS_MISTAKES[name]
    assert_fails_with(check_sincos_2d(fn), *words)


def test_sincos_stub_is_not_done_yet():
    result = check_sincos_2d(todo)
    assert not result.passed and result.not_done


# ---------------------------------------------------------------------------
# interpolate_positions


def interp_reference(pos, rows, cols):
    return interpolate_pos_encoding(pos, rows, cols, patch_size=1)


def interp_by_hand(pos, rows, cols):
    cls_row, grid = pos[:, :1], pos[:, 1:]
    side = int(grid.shape[1] ** 0.5)
    D = grid.shape[-1]
    grid = grid.reshape(1, side, side, D).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", align_corners=False)
    return torch.cat([cls_row, grid.flatten(2).transpose(1, 2)], dim=1)


def interp_einops(pos, rows, cols):
    einops = pytest.importorskip("einops")
    side = math.isqrt(pos.shape[1] - 1)
    grid = einops.rearrange(pos[:, 1:], "b (h w) d -> b d h w", h=side)
    grid = F.interpolate(grid, size=(rows, cols), mode="bicubic")
    return torch.cat([pos[:, :1], einops.rearrange(grid, "b d h w -> b (h w) d")], dim=1)


@pytest.mark.parametrize("fn", [interp_reference, interp_by_hand, interp_einops])
def test_interpolate_correct_variants_pass(fn):
    result = check_interpolate_positions(fn)
    assert result.passed, str(result)


def _resize(pos, rows, cols, mode="bicubic", align_corners=False, antialias=False, permute_in=(0, 3, 1, 2)):
    cls_row, grid = pos[:, :1], pos[:, 1:]
    side = math.isqrt(grid.shape[1])
    grid = grid.reshape(1, side, side, -1).permute(*permute_in)
    kwargs = {} if mode == "nearest" else dict(align_corners=align_corners)
    grid = F.interpolate(grid, size=(rows, cols), mode=mode, antialias=antialias, **kwargs)
    back = (0, 2, 3, 1) if permute_in == (0, 3, 1, 2) else (0, 3, 2, 1)
    return torch.cat([cls_row, grid.permute(*back).reshape(1, rows * cols, -1)], dim=1)


def _cls_interpolated_too(pos, rows, cols):
    seq = F.interpolate(pos.transpose(1, 2), size=1 + rows * cols, mode="linear")
    return seq.transpose(1, 2)


def _no_permute(pos, rows, cols):
    side, D = math.isqrt(pos.shape[1] - 1), pos.shape[-1]
    grid = F.interpolate(pos[:, 1:].reshape(1, D, side, side), size=(rows, cols), mode="bicubic")
    return torch.cat([pos[:, :1], grid.reshape(1, rows * cols, D)], dim=1)


INTERP_MISTAKES = {
    "align_corners_true": (lambda p, r, c: _resize(p, r, c, align_corners=True), ["align_corners=True"]),
    "bilinear": (lambda p, r, c: _resize(p, r, c, mode="bilinear"), ["bilinear instead of bicubic"]),
    "nearest": (lambda p, r, c: _resize(p, r, c, mode="nearest"), ["nearest"]),
    "antialias": (lambda p, r, c: _resize(p, r, c, antialias=True), ["antialias"]),
    "cls_row_interpolated_too": (_cls_interpolated_too, ["CLS row is interpolated too"]),
    "cls_row_dropped": (lambda p, r, c: _resize(p, r, c)[:, 1:], ["CLS row is missing"]),
    "cls_row_last": (lambda p, r, c: torch.roll(_resize(p, r, c), -1, dims=1), ["put back last"]),
    "reshape_without_permute": (_no_permute, ["without a permute"]),
    "rows_cols_swapped": (lambda p, r, c: _resize(p, r, c, permute_in=(0, 3, 2, 1)), ["rows and columns are swapped"]),
    "batch_dim_dropped": (lambda p, r, c: _resize(p, r, c)[0], ["batch dimension"]),
    "cls_row_scaled": (lambda p, r, c: torch.cat([2 * p[:, :1], _resize(p, r, c)[:, 1:]], 1), ["CLS row changed"]),
}


@pytest.mark.parametrize("name", sorted(INTERP_MISTAKES))
def test_interpolate_mistakes_fail_naming_their_cause(name):
    fn, words = INTERP_MISTAKES[name]
    assert_fails_with(check_interpolate_positions(fn), *words)


def test_interpolate_stub_is_not_done_yet():
    result = check_interpolate_positions(todo)
    assert not result.passed and result.not_done


def test_checks_never_raise_on_garbage():
    for check in (check_conv_to_linear_weight, check_sincos_2d, check_interpolate_positions):
        for fn in (lambda *a: None, lambda *a: "nope", lambda *a: 1 / 0, None):
            result = check(fn)
            assert not result.passed
