"""The checks of notebooks 09 and 10 pass correct code however written, and name each known mistake.

Window partition and the shifted-window mask (09), random masking and the contrastive
loss (10): the reference passes, other correct spellings pass (einops, HF's own code, a
boolean or -inf mask, scatter instead of gather), each typical mistake fails with its
cause named, a stub is "not done yet" and an exception is reported, not raised.
"""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from einops import rearrange
from learner_copies import as_learner
from torch.nn import functional as F
from transformers.models.swin import modeling_swin as hf_swin

from vit_course.checks.clip import check_clip_loss
from vit_course.checks.mae import check_random_masking
from vit_course.checks.swin import check_shifted_window_mask, check_window_partition
from vit_course.clip import clip_loss
from vit_course.mae import random_masking
from vit_course.swin import shifted_window_mask, window_partition


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise: write this")


def broken(*args, **kwargs):
    raise RuntimeError("boom")


# window partition -----------------------------------------------------------------------


def partition_einops(x, M):
    return rearrange(x, "b (h m1) (w m2) c -> (b h w) m1 m2 c", m1=M, m2=M)


def partition_loops(x, M):
    B, H, W, C = x.shape
    return torch.stack([x[b, i:i + M, j:j + M] for b in range(B) for i in range(0, H, M) for j in range(0, W, M)])


def partition_column_order(x, M):
    return rearrange(x, "b (h m1) (w m2) c -> (b w h) m1 m2 c", m1=M, m2=M)


def partition_transposed_window(x, M):
    return rearrange(x, "b (h m1) (w m2) c -> (b h w) m2 m1 c", m1=M, m2=M)


def partition_no_permute(x, M):
    return x.reshape(-1, M, M, x.shape[-1])


def partition_batch_interleaved(x, M):
    return rearrange(x, "b (h m1) (w m2) c -> (h w b) m1 m2 c", m1=M, m2=M)


def partition_not_merged(x, M):
    return rearrange(x, "b (h m1) (w m2) c -> b (h w) m1 m2 c", m1=M, m2=M)


def partition_flat_tokens(x, M):
    return rearrange(x, "b (h m1) (w m2) c -> (b h w) (m1 m2) c", m1=M, m2=M)


# shifted-window mask -------------------------------------------------------------------


def mask_hf(H, W, M, s):
    layer = hf_swin.SwinLayer(transformers.SwinConfig(window_size=M), dim=4, input_resolution=(64, 64), num_heads=1,
                              shift_size=s)
    return layer.get_attn_mask(H, W, dtype=torch.float32, device="cpu")


def mask_bool(H, W, M, s):
    return shifted_window_mask(H, W, M, s) == 0


def mask_neg_inf(H, W, M, s):
    m = shifted_window_mask(H, W, M, s)
    return m.masked_fill(m != 0, float("-inf"))


def mask_two_bands(H, W, M, s):  # [0, H-s) and [H-s, H): the same pairs, as window edges split the rest
    labels = torch.zeros(1, H, W, 1)
    for k, rows in enumerate((slice(0, -s), slice(-s, None))):
        for j, cols in enumerate((slice(0, -s), slice(-s, None))):
            labels[:, rows, cols] = 2 * k + j
    w = window_partition(labels, M).reshape(-1, M * M)
    return (w[:, None] - w[:, :, None]).ne(0).float() * -100.0


def mask_zeros(H, W, M, s):
    return torch.zeros(H * W // M // M, M * M, M * M)


def _mask_from_slices(H, W, M, row_slices, col_slices):
    labels = torch.zeros(1, H, W, 1)
    for k, rows in enumerate(row_slices):
        for j, cols in enumerate(col_slices):
            labels[:, rows, cols] = 3 * k + j
    w = window_partition(labels, M).reshape(-1, M * M)
    return (w[:, None] != w[:, :, None]).float() * -100.0


def mask_wrong_direction(H, W, M, s):
    cuts = (slice(0, s), slice(s, M), slice(M, None))
    return _mask_from_slices(H, W, M, cuts, cuts)


def mask_rows_only(H, W, M, s):
    return _mask_from_slices(H, W, M, (slice(0, -M), slice(-M, -s), slice(-s, None)), (slice(None),))


def mask_inverted(H, W, M, s):
    return -100.0 - shifted_window_mask(H, W, M, s)


def mask_small_value(H, W, M, s):
    return shifted_window_mask(H, W, M, s) / 100.0  # -1: too weak to block attention


def mask_region_map(H, W, M, s):
    return torch.zeros(1, H, W, 1)


# random masking -------------------------------------------------------------------------


def masking_scatter(x, ratio, noise):
    B, N, D = x.shape
    keep = int(N * (1 - ratio))
    order = torch.sort(noise, dim=1).indices
    restore = torch.empty_like(order).scatter_(1, order, torch.arange(N).expand(B, N))
    visible = torch.stack([x[b, order[b, :keep]] for b in range(B)])
    mask = torch.ones(B, N, dtype=torch.bool)
    mask.scatter_(1, order[:, :keep], False)
    return visible, mask, restore


def masking_largest(x, ratio, noise):
    return random_masking(x, ratio, -noise)[0], random_masking(x, ratio, -noise)[1], random_masking(x, ratio, -noise)[2]


def masking_restore_is_shuffle(x, ratio, noise):
    visible, mask, _ = random_masking(x, ratio, noise)
    return visible, mask, noise.argsort(1)


def masking_mask_inverted(x, ratio, noise):
    visible, mask, restore = random_masking(x, ratio, noise)
    return visible, 1 - mask, restore


def masking_mask_shuffled(x, ratio, noise):
    visible, mask, restore = random_masking(x, ratio, noise)
    return visible, mask.gather(1, noise.argsort(1)), restore


def masking_keeps_ratio(x, ratio, noise):
    return random_masking(x, 1 - ratio if ratio else 0.0, noise)


def masking_rounds_up(x, ratio, noise):
    B, N, D = x.shape
    keep = math.ceil(N * (1 - ratio))
    ids = noise.argsort(1)
    mask = torch.ones(B, N)
    mask[:, :keep] = 0
    return x.gather(1, ids[:, :keep, None].expand(B, keep, D)), mask.gather(1, ids.argsort(1)), ids.argsort(1)


def masking_patch_order(x, ratio, noise):
    B, N, D = x.shape
    keep = int(N * (1 - ratio))
    _, mask, restore = random_masking(x, ratio, noise)
    ids = noise.argsort(1)[:, :keep].sort(1).values
    return x.gather(1, ids[..., None].expand(B, keep, D)), mask, restore


def masking_one_noise(x, ratio, noise):
    return random_masking(x, ratio, noise[:1].expand_as(noise))


def masking_float_restore(x, ratio, noise):
    visible, mask, restore = random_masking(x, ratio, noise)
    return visible, mask, restore.float()


# contrastive loss ------------------------------------------------------------------------


def loss_normalize(image, text, t):
    logits = t.exp() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    labels = torch.arange(len(image))
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def loss_hf(image, text, t):
    from transformers.models.clip.modeling_clip import image_text_contrastive_loss

    image, text = image / image.norm(dim=-1, keepdim=True), text / text.norm(dim=-1, keepdim=True)
    return image_text_contrastive_loss(t.exp() * text @ image.T)


def loss_one_way(image, text, t):
    logits = t.exp() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    return F.cross_entropy(logits, torch.arange(len(image)))


def loss_not_exp(image, text, t):
    logits = t * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    labels = torch.arange(len(image))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def loss_not_normalised(image, text, t):
    logits = t.exp() * image @ text.T
    labels = torch.arange(len(image))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def loss_summed(image, text, t):
    logits = t.exp() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    labels = torch.arange(len(image))
    return F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)


def loss_batch_norm(image, text, t):
    return loss_not_normalised(F.normalize(image, dim=0), F.normalize(text, dim=0), t)


def loss_divided(image, text, t):
    return loss_normalize(image, text, -t)


def loss_unreduced(image, text, t):
    logits = t.exp() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    return F.cross_entropy(logits, torch.arange(len(image)), reduction="none")


CHECKS = {
    "window_partition": (check_window_partition, window_partition, [partition_einops, partition_loops]),
    "shifted_window_mask": (check_shifted_window_mask, shifted_window_mask,
                            [mask_hf, mask_bool, mask_neg_inf, mask_two_bands]),
    "random_masking": (check_random_masking, random_masking, [masking_scatter]),
    "clip_loss": (check_clip_loss, clip_loss, [loss_normalize, loss_hf]),
}

MISTAKES = [
    ("window_partition", partition_column_order, "column by column"),
    ("window_partition", partition_transposed_window, "axes inside each window are swapped"),
    ("window_partition", partition_no_permute, "without a permute"),
    ("window_partition", partition_batch_interleaved, "different images are interleaved"),
    ("window_partition", partition_not_merged, "batch and window dimensions are not merged"),
    ("window_partition", partition_flat_tokens, "tokens are flattened"),
    ("shifted_window_mask", mask_zeros, "mask is missing"),
    ("shifted_window_mask", mask_wrong_direction, "wrong direction"),
    ("shifted_window_mask", mask_rows_only, "only the rows"),
    ("shifted_window_mask", mask_inverted, "inverted"),
    ("shifted_window_mask", mask_small_value, "-100.0 where they do not"),
    ("shifted_window_mask", mask_region_map, "region map"),
    ("random_masking", masking_largest, "largest noise are kept"),
    ("random_masking", masking_restore_is_shuffle, "inverse permutation"),
    ("random_masking", masking_mask_inverted, "mask is inverted"),
    ("random_masking", masking_mask_shuffled, "shuffled order"),
    ("random_masking", masking_keeps_ratio, "number hidden"),
    ("random_masking", masking_rounds_up, "rounded up"),
    ("random_masking", masking_patch_order, "sorted back into patch order"),
    ("random_masking", masking_one_noise, "first image's noise"),
    ("random_masking", masking_float_restore, "integer indices"),
    ("clip_loss", loss_one_way, "only the image-to-text direction"),
    ("clip_loss", loss_not_exp, "not exponentiated"),
    ("clip_loss", loss_not_normalised, "embeddings are not normalised"),
    ("clip_loss", loss_summed, "summed, not averaged"),
    ("clip_loss", loss_batch_norm, "over the batch (dim=0)"),
    ("clip_loss", loss_divided, "divided by exp(logit_scale)"),
    ("clip_loss", loss_unreduced, "not reduced to one number"),
]


@pytest.mark.parametrize("name", CHECKS)
def test_reference_and_other_correct_spellings_pass(name):
    check_fn, reference, alternatives = CHECKS[name]
    for fn in [as_learner(reference), *alternatives]:  # the reference itself is refused
        result = check_fn(fn)
        assert result.passed, f"{fn.__name__} should pass {name}:\n{result}"


@pytest.mark.parametrize("name,fn,cause", MISTAKES, ids=[m[1].__name__ for m in MISTAKES])
def test_each_typical_mistake_fails_with_its_cause_named(name, fn, cause):
    result = CHECKS[name][0](fn)
    assert not result.passed, f"{fn.__name__} should fail {name}"
    text = str(result)
    assert cause in text, f"{fn.__name__}: expected the cause to mention {cause!r}, got:\n{text}"


@pytest.mark.parametrize("name", CHECKS)
def test_stub_is_not_done_and_an_exception_is_reported(name):
    check_fn = CHECKS[name][0]
    todo = check_fn(stub)
    assert todo.not_done and not todo.passed
    failed = check_fn(broken)
    assert not failed.passed and "RuntimeError: boom" in str(failed)
    assert not check_fn(None).passed


def test_results_are_the_same_on_every_run():
    first = [str(check_shifted_window_mask(mask_wrong_direction)), str(check_random_masking(masking_largest))]
    second = [str(check_shifted_window_mask(mask_wrong_direction)), str(check_random_masking(masking_largest))]
    assert first == second
