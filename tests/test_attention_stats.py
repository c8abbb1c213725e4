"""Mean attention distance, token norms, image shifts and patch shuffles: the references
(`vit_course.attention_stats`, `vit_course.robustness`) and their checks.

The check tests feed each check correct solutions written differently from the reference
(they must pass) and the known mistakes (each must fail and name its cause).
"""

import math

import pytest
from learner_copies import as_learner
import torch
import torch.nn.functional as F

from vit_course.attention_stats import (
    high_norm_outliers,
    mean_attention_distance,
    patch_coordinates,
    patch_distance_matrix,
    token_norms,
)
from vit_course.checks.attention_stats import check_mean_attention_distance
from vit_course.checks.robustness import check_shift_images, check_shuffle_patches
from vit_course.robustness import shift_images, shuffle_patches


# ---------------------------------------------------------------------------
# mean_attention_distance: the reference


def _with_cls(patch_attn: torch.Tensor, cls_share: float = 0.0) -> torch.Tensor:
    """(heads, N, N) rows summing to 1 -> (heads, 1+N, 1+N) where each patch gives CLS `cls_share`."""
    H, N, _ = patch_attn.shape
    out = torch.zeros(H, 1 + N, 1 + N)
    out[:, 0] = 1.0 / (1 + N)
    out[:, 1:, 0] = cls_share
    out[:, 1:, 1:] = (1 - cls_share) * patch_attn
    return out


def test_patch_coordinates_are_row_major():
    coords = patch_coordinates((2, 3))
    assert coords.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]], coords.tolist()


def test_patch_distance_matrix_in_pixels():
    d = patch_distance_matrix((2, 2), 16)
    assert d[0, 1] == pytest.approx(16.0), "neighbours in a row are one patch (16 px) apart"
    assert d[0, 2] == pytest.approx(16.0), "neighbours in a column are one patch (16 px) apart"
    assert d[0, 3] == pytest.approx(16.0 * math.sqrt(2)), "diagonal neighbours are 16 * sqrt(2) px apart"
    assert torch.equal(d, d.T) and bool((d.diagonal() == 0).all())


def test_self_attention_has_distance_zero():
    attn = _with_cls(torch.eye(9).expand(2, 9, 9), cls_share=0.3)
    got = mean_attention_distance(attn, (3, 3), 16)
    assert got.shape == (2,), f"expected one distance per head, got shape {tuple(got.shape)}"
    assert torch.allclose(got, torch.zeros(2)), f"a head that attends to itself has distance 0, got {got}"


def test_uniform_attention_gives_the_mean_pairwise_distance():
    attn = _with_cls(torch.full((1, 2, 2), 0.5))  # a 1x2 grid of 10-pixel patches
    got = mean_attention_distance(attn, (1, 2), 10)
    assert got.item() == pytest.approx(5.0), f"half the weight at 0 px, half at 10 px: expected 5, got {got.item()}"
    d = patch_distance_matrix((3, 4), 7)
    attn = _with_cls(torch.full((1, 12, 12), 1 / 12))
    assert mean_attention_distance(attn, (3, 4), 7).item() == pytest.approx(d.mean().item(), rel=1e-6)


def test_neighbour_head_on_a_non_square_grid():
    # a 1x3 grid: every patch attends to the patch on its right (the last one to itself)
    a = torch.zeros(1, 3, 3)
    a[0, 0, 1] = a[0, 1, 2] = a[0, 2, 2] = 1.0
    got = mean_attention_distance(_with_cls(a), (1, 3), 4)
    assert got.item() == pytest.approx((4 + 4 + 0) / 3), got.item()
    # read as 3 rows x 1 column the same weights give the same distances (a line either way)
    assert mean_attention_distance(_with_cls(a), (3, 1), 4).item() == pytest.approx(got.item())


def test_cls_share_does_not_count_as_distance_zero():
    a = torch.softmax(torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(0)), -1)
    plain = mean_attention_distance(_with_cls(a, 0.0), 4, 14)
    heavy = mean_attention_distance(_with_cls(a, 0.9), 4, 14)
    torch.testing.assert_close(heavy, plain, msg="the weight given to CLS must not change the distance")


def test_batch_is_averaged():
    g = torch.Generator().manual_seed(1)
    attn = torch.softmax(torch.randn(4, 2, 10, 10, generator=g), -1)  # B=4, heads=2, 3x3 grid
    per_image = torch.stack([mean_attention_distance(a, 3, 16) for a in attn])
    torch.testing.assert_close(mean_attention_distance(attn, 3, 16), per_image.mean(0))


def test_wrong_token_count_is_a_clear_error():
    with pytest.raises(ValueError, match="expected 1 \\+ 3x3 = 10 tokens, got T=17"):
        mean_attention_distance(torch.rand(2, 17, 17), (3, 3), 16)


def test_token_norms_and_outliers():
    h = torch.ones(1, 1 + 6, 4)
    h[0, 3] *= 10  # patch 2 (token 3) is an outlier
    norms = token_norms(h)
    assert norms.shape == (1, 6)
    assert high_norm_outliers(norms).nonzero().tolist() == [[0, 2]]


# ---------------------------------------------------------------------------
# check_mean_attention_distance: correct variants pass, mistakes are named


def _loop_solution(attn, grid_size, patch_size):
    # a slow, explicit version: a different way to get the same numbers
    rows, cols = grid_size
    heads, T, _ = attn.shape
    out = torch.zeros(heads)
    for h in range(heads):
        total = 0.0
        for i in range(rows * cols):
            w = attn[h, 1 + i, 1:]
            ri, ci = divmod(i, cols)
            s = 0.0
            for j in range(rows * cols):
                rj, cj = divmod(j, cols)
                s += float(w[j]) * patch_size * math.hypot(ri - rj, ci - cj)
            total += s / float(w.sum())
        out[h] = total / (rows * cols)
    return out


def _meshgrid_solution(attn, grid_size, patch_size):
    rows, cols = grid_size
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    pos = torch.stack([r.flatten(), c.flatten()], -1).float() * patch_size  # (N, 2)
    dist = (pos[:, None] - pos[None]).norm(dim=-1)
    a = attn[:, 1:, 1:]
    a = a / a.sum(-1, keepdim=True)
    return torch.einsum("hij,ij->hi", a, dist).mean(-1)


@pytest.mark.parametrize("solution", [as_learner(mean_attention_distance), _loop_solution, _meshgrid_solution])
def test_check_mean_attention_distance_accepts_correct_solutions(solution):
    result = check_mean_attention_distance(solution)
    assert result.passed, str(result)


def _wrong(attn, grid_size, patch_size, *, first=False, renorm=True, patches=False, swap=False,
           uniform=False, mean_keys=False, squared=False, manhattan=False):
    rows, cols = grid_size
    N = rows * cols
    k = torch.arange(N)
    r, c = (k % rows, k // rows) if swap else (k // cols, k % cols)
    dr, dc = (r[:, None] - r[None]).float(), (c[:, None] - c[None]).float()
    if squared:
        d = dr**2 + dc**2
    elif manhattan:
        d = dr.abs() + dc.abs()
    else:
        d = (dr**2 + dc**2).sqrt()
    d = d if patches else d * (patch_size**2 if squared else patch_size)
    a = attn[:, :N, :N] if first else attn[:, 1:, 1:]
    if renorm:
        a = a / a.sum(-1, keepdim=True)
    if uniform:
        return d.mean(-1).mean().expand(attn.shape[0]).clone()
    per_query = (a * d).mean(-1) if mean_keys else (a * d).sum(-1)
    return per_query.mean(-1)


MISTAKE_CASES = [
    (dict(first=True), "CLS is not excluded"),
    (dict(renorm=False), "not renormalised after dropping CLS"),
    (dict(patches=True), "in patches, not pixels"),
    (dict(swap=True), "rows and columns are swapped"),
    (dict(uniform=True), "not weighted by the attention"),
    (dict(mean_keys=True), "averaged over the keys"),
    (dict(squared=True), "squared distances"),
    (dict(manhattan=True), "Manhattan"),
]


@pytest.mark.parametrize("kwargs, cause", MISTAKE_CASES, ids=[c for _, c in MISTAKE_CASES])
def test_check_mean_attention_distance_names_the_mistake(kwargs, cause):
    result = check_mean_attention_distance(lambda a, g, p: _wrong(a, g, p, **kwargs))
    assert not result.passed, f"the mistake '{cause}' passed the check"
    assert result.cause and cause in result.cause, f"expected a cause mentioning '{cause}', got:\n{result}"


def test_check_mean_attention_distance_shapes_and_errors():
    per_query = check_mean_attention_distance(lambda a, g, p: _wrong(a, g, p)[:, None].expand(-1, g[0] * g[1]))
    assert not per_query.passed
    no_cls_drop = check_mean_attention_distance(lambda a, g, p: (a * patch_distance_matrix(g, p)).sum(-1).mean(-1))
    assert not no_cls_drop.passed and "drop CLS" in (no_cls_drop.cause or ""), str(no_cls_drop)

    def todo(attn, grid_size, patch_size):
        raise NotImplementedError

    assert check_mean_attention_distance(todo).not_done
    assert not check_mean_attention_distance(None).passed


# ---------------------------------------------------------------------------
# shift_images and shuffle_patches: the references


def test_shift_images_moves_content_and_fills_with_zero():
    x = torch.arange(1, 13).reshape(1, 3, 4)
    right = shift_images(x, 1, 0)
    assert right.tolist() == [[[0, 1, 2, 3], [0, 5, 6, 7], [0, 9, 10, 11]]], right.tolist()
    up = shift_images(x, 0, -1)
    assert up.tolist() == [[[5, 6, 7, 8], [9, 10, 11, 12], [0, 0, 0, 0]]], up.tolist()
    assert torch.equal(shift_images(x, 0, 0), x)
    assert not shift_images(x, 4, 0).any() and not shift_images(x, 0, -3).any()


def test_shift_images_equals_pad_and_crop():
    x = torch.rand(2, 3, 10, 9, generator=torch.Generator().manual_seed(0))
    for dx, dy in [(2, 1), (-3, 2), (1, -4), (0, 0)]:
        p = 5
        padded = F.pad(x, (p, p, p, p))
        ref = padded[..., p - dy:p - dy + 10, p - dx:p - dx + 9]
        assert torch.equal(shift_images(x, dx, dy), ref), (dx, dy)


def test_shuffle_patches_is_a_patch_permutation_shared_by_all_images():
    from vit_course.patches import patchify

    x = torch.rand(3, 2, 8, 12, generator=torch.Generator().manual_seed(0))
    y = shuffle_patches(x, 4, torch.Generator().manual_seed(7))
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(patchify(y, 4), patchify(x, 4)[:, perm])
    assert torch.equal(shuffle_patches(x, 4, torch.Generator().manual_seed(7)), y), "same seed, same shuffle"
    assert torch.equal(shuffle_patches(x[..., :8, :8], 8, torch.Generator()), x[..., :8, :8]), "one patch cannot move"
    with pytest.raises(ValueError, match="not divisible"):
        shuffle_patches(x, 5)


# ---------------------------------------------------------------------------
# check_shift_images and check_shuffle_patches


def _shift_pad_crop(images, dx, dy):
    H, W = images.shape[-2:]
    p = max(H, W)
    padded = F.pad(images.float(), (p, p, p, p)).to(images.dtype)
    return padded[..., p - dy:p - dy + H, p - dx:p - dx + W]


def _shift_loop(images, dx, dy):
    out = torch.zeros_like(images)
    H, W = images.shape[-2:]
    for y in range(H):
        for x in range(W):
            if 0 <= y - dy < H and 0 <= x - dx < W:
                out[..., y, x] = images[..., y - dy, x - dx]
    return out


@pytest.mark.parametrize("solution", [as_learner(shift_images), _shift_pad_crop, _shift_loop])
def test_check_shift_images_accepts_correct_solutions(solution):
    result = check_shift_images(solution)
    assert result.passed, str(result)


SHIFT_MISTAKES = [
    (lambda x, dx, dy: torch.roll(x, (dy, dx), (-2, -1)), "torch.roll wraps"),
    (lambda x, dx, dy: shift_images(x, dy, dx), "dx and dy are swapped"),
    (lambda x, dx, dy: shift_images(x, -dx, -dy), "the direction is reversed"),
    (lambda x, dx, dy: shift_images(x, -dx, dy), "only dx is reversed"),
    (lambda x, dx, dy: shift_images(x, dx, -dy), "only dy is reversed"),
    (lambda x, dx, dy: x.clone(), "unchanged"),
]


@pytest.mark.parametrize("fn, cause", SHIFT_MISTAKES, ids=[c for _, c in SHIFT_MISTAKES])
def test_check_shift_images_names_the_mistake(fn, cause):
    result = check_shift_images(fn)
    assert not result.passed, f"the mistake '{cause}' passed the check"
    assert result.cause and cause in result.cause, f"expected a cause mentioning '{cause}', got:\n{result}"


def test_check_shift_images_wrong_dtype_fails():
    result = check_shift_images(lambda x, dx, dy: shift_images(x, dx, dy).float())
    assert not result.passed and "dtype" in str(result), str(result)


def _shuffle_unfold(images, patch_size, generator):
    # F.unfold / F.fold: the same numbers by another route
    H, W = images.shape[-2:]
    lead = images.shape[:-2]
    x = images.reshape(-1, 1, H, W).float()
    cols = F.unfold(x, patch_size, stride=patch_size)  # (M, P*P, N)
    perm = torch.randperm(cols.shape[-1], generator=generator)
    y = F.fold(cols[..., perm], (H, W), patch_size, stride=patch_size)
    return y.reshape(*lead, H, W).to(images.dtype)


def _shuffle_einops(images, patch_size, generator):
    from einops import rearrange

    H, W = images.shape[-2:]
    P = patch_size
    x = rearrange(images, "... (h p1) (w p2) -> ... (h w) p1 p2", p1=P, p2=P)
    x = x[..., torch.randperm(x.shape[-3], generator=generator), :, :]
    return rearrange(x, "... (h w) p1 p2 -> ... (h p1) (w p2)", h=H // P)


@pytest.mark.parametrize("solution", [as_learner(shuffle_patches), _shuffle_unfold, _shuffle_einops])
def test_check_shuffle_patches_accepts_correct_solutions(solution):
    result = check_shuffle_patches(solution)
    assert result.passed, str(result)


def _shuffle_inverse(images, P, generator):
    H, W = images.shape[-2:]
    perm = torch.randperm((H // P) * (W // P), generator=generator)
    x = images.reshape(*images.shape[:-2], H // P, P, W // P, P).transpose(-3, -2)  # (..., rows, cols, P, P)
    x = x.reshape(*images.shape[:-2], -1, P, P)[..., torch.argsort(perm), :, :]
    x = x.reshape(*images.shape[:-2], H // P, W // P, P, P).transpose(-3, -2)
    return x.reshape(images.shape)


def _shuffle_per_image(images, P, generator):
    return torch.stack([shuffle_patches(x, P, generator) for x in images])


def _shuffle_pixels(images, P, generator):
    H, W = images.shape[-2:]
    perm = torch.randperm(H * W, generator=generator)
    return images.reshape(*images.shape[:-2], H * W)[..., perm].reshape(images.shape)


def _shuffle_other_draw(images, P, generator):
    torch.rand(1, generator=generator)  # one extra draw changes the order
    return shuffle_patches(images, P, generator)


def _shuffle_mixed_channels(images, P, generator):
    # a reshape that mixes channels into the patch grid
    y = shuffle_patches(images, P, generator)
    return y.flip(-1) if images.dim() == 4 else y


SHUFFLE_MISTAKES = [
    (_shuffle_inverse, "inverse permutation"),
    (_shuffle_per_image, "each image got its own order"),
    (_shuffle_pixels, "single pixels are shuffled"),
    (_shuffle_other_draw, "not in the order expected"),
    (_shuffle_mixed_channels, "not the input's patches"),
    (lambda x, P, g: x.clone(), "not in the order expected"),
]


@pytest.mark.parametrize("fn, cause", SHUFFLE_MISTAKES, ids=[c for _, c in SHUFFLE_MISTAKES])
def test_check_shuffle_patches_names_the_mistake(fn, cause):
    result = check_shuffle_patches(fn)
    assert not result.passed, f"the mistake '{cause}' passed the check"
    assert result.cause and cause in result.cause, f"expected a cause mentioning '{cause}', got:\n{result}"


def test_checks_never_raise():
    for check_fn, n_args in [(check_mean_attention_distance, 3), (check_shift_images, 3), (check_shuffle_patches, 3)]:
        assert not check_fn(lambda *a: "nonsense").passed
        assert not check_fn(lambda *a: 1 / 0).passed
        assert check_fn(lambda *a: (_ for _ in ()).throw(NotImplementedError())).not_done
