"""Check for notebook 10's MAE exercise: random masking.

`check_random_masking(fn)` compares `fn(x (B, N, D), mask_ratio, noise (B, N))` with
`vit_course.mae.random_masking`: `(visible (B, K, D), mask (B, N), ids_restore (B, N))`
with K = int(N * (1 - mask_ratio)), the visible tokens in increasing-noise order. The
mask may be float or bool (1/True = hidden), `ids_restore` any integer dtype. The known
mistakes sit below, each beside its sentence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from vit_course.mae import random_masking

from .compare import CheckFailure, check, diagnose, learner_call, randn, shape_of, tensor_problems

# B, N, D, mask_ratio, description
CASES = [
    (2, 16, 4, 0.75, "a batch of 2, N=16 patches of D=4, mask_ratio=0.75 (keep 4)"),
    (1, 10, 3, 0.75, "N=10, mask_ratio=0.75: keep int(10 * 0.25) = 2, not 3"),
    (3, 9, 2, 0.5, "a batch of 3, N=9, mask_ratio=0.5 (keep 4)"),
    (2, 49, 3, 0.75, "N=49 (a 7x7 grid), mask_ratio=0.75 (keep 12)"),
    (2, 8, 5, 0.0, "mask_ratio=0: every patch is kept, none masked"),
]


def _reference_parts(x, noise, keep, descending=False, same_noise=False):
    """The reference's steps with switches for the common mistakes."""
    B, N, D = x.shape
    if same_noise:
        noise = noise[:1].expand(B, N)
    ids_shuffle = noise.argsort(dim=1, descending=descending)
    ids_restore = ids_shuffle.argsort(dim=1)
    ids_keep = ids_shuffle[:, :keep]
    visible = x.gather(1, ids_keep[:, :, None].expand(B, keep, D))
    mask = torch.ones(B, N)
    mask[:, :keep] = 0
    return visible, mask, ids_shuffle, ids_restore, ids_keep


def _mistakes(x, noise, ratio):
    B, N, D = x.shape
    keep = int(N * (1 - ratio))

    def largest_noise():
        v, m, _, r, _ = _reference_parts(x, noise, keep, descending=True)
        return v, m.gather(1, r), r

    def restore_is_shuffle():
        v, m, s, r, _ = _reference_parts(x, noise, keep)
        return v, m.gather(1, r), s

    def mask_not_unshuffled():
        v, m, _, r, _ = _reference_parts(x, noise, keep)
        return v, m, r

    def mask_inverted():
        v, m, _, r, _ = _reference_parts(x, noise, keep)
        return v, 1 - m.gather(1, r), r

    def keep_count(k):
        def run():
            v, m, _, r, _ = _reference_parts(x, noise, k)
            return v, m.gather(1, r), r
        return run

    def visible_in_patch_order():
        _, m, _, r, ids_keep = _reference_parts(x, noise, keep)
        ids = ids_keep.sort(dim=1).values
        return x.gather(1, ids[:, :, None].expand(B, keep, D)), m.gather(1, r), r

    def one_noise_for_the_batch():
        v, m, _, r, _ = _reference_parts(x, noise, keep, same_noise=True)
        return v, m.gather(1, r), r

    mistakes = [
        ("the patches with the largest noise are kept: argsort sorts ascending, keep the first K (lowest noise)",
         largest_noise),
        ("ids_restore is the shuffle itself; it must be its inverse permutation: ids_restore = ids_shuffle.argsort(dim=1)",
         restore_is_shuffle),
        ("the mask is in shuffled order: build it as [0]*K + [1]*(N-K), then gather it with ids_restore to put it "
         "back in patch order", mask_not_unshuffled),
        ("the mask is inverted: 1 marks a hidden (masked) patch, 0 a kept one", mask_inverted),
        ("the visible tokens are sorted back into patch order; keep them in the noise order of ids_shuffle[:, :K], "
         "the order ids_restore undoes", visible_in_patch_order),
        ("every image uses the first image's noise: each sample has its own row of noise (per-sample masking)",
         one_noise_for_the_batch),
    ]
    if int(N * ratio) != keep:
        mistakes.append(("the number kept is N * mask_ratio (the number hidden): keep K = int(N * (1 - mask_ratio))",
                         keep_count(int(N * ratio))))
    if math.ceil(N * (1 - ratio)) != keep:
        mistakes.append(("K is rounded up; HF and the paper's code truncate: K = int(N * (1 - mask_ratio))",
                         keep_count(math.ceil(N * (1 - ratio)))))
    return mistakes


def _normalise(got):
    """A learner's (visible, mask, ids_restore) as float, float, long tensors, or a CheckFailure."""
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise CheckFailure(f"your function should return a tuple (visible, mask, ids_restore), got {shape_of(got)}",
                           cause="return all three: the kept tokens, the 0/1 mask and ids_restore")
    visible, mask, ids_restore = got
    for name, value in (("visible", visible), ("mask", mask), ("ids_restore", ids_restore)):
        if not isinstance(value, torch.Tensor):
            raise CheckFailure(f"{name} should be a torch.Tensor, got {shape_of(value)}")
    if ids_restore.is_floating_point():
        raise CheckFailure("ids_restore should hold integer indices, got a floating-point tensor",
                           cause="argsort returns integer indices: ids_restore = ids_shuffle.argsort(dim=1)")
    return visible.detach().float(), mask.detach().float(), ids_restore.detach().long()


def _distance(got, output) -> float:
    if any(g.shape != o.shape for g, o in zip(got, output)):
        return math.inf
    if not torch.equal(got[2], output[2].long()) or not torch.equal(got[1], output[1].float()):
        return math.inf
    diff = float((got[0] - output[0]).abs().max()) if got[0].numel() else 0.0
    return diff if diff <= 1e-5 else math.inf


@check("random_masking", reference="vit_course.mae:random_masking")
def check_random_masking(fn: Callable[..., Any]) -> str:
    """`fn(x (B, N, D), mask_ratio, noise (B, N)) -> (visible, mask, ids_restore)`: compare with
    `vit_course.mae.random_masking`."""
    for seed, (B, N, D, ratio, case) in enumerate(CASES):
        x = randn(B, N, D, seed=200 + seed)
        noise = torch.rand(B, N, generator=torch.Generator().manual_seed(300 + seed))
        expected = random_masking(x, ratio, noise)
        got = _normalise(learner_call(fn, x.clone(), ratio, noise.clone(), case=case))
        problems = []
        for name, g, e in zip(("visible", "mask", "ids_restore"), got, expected):
            problems += tensor_problems(name, g, e)
        if not problems:
            continue
        cause = diagnose(got, _mistakes(x, noise, ratio), _distance)
        if cause is None and got[0].shape != expected[0].shape and got[0].ndim == 3:
            cause = f"keep K = int(N * (1 - mask_ratio)) = {expected[0].shape[1]} tokens per image"
        raise CheckFailure(f"wrong masking for x of shape ({B}, {N}, {D}) and mask_ratio={ratio}",
                           details=(f"on {case}", *problems[:4]), cause=cause)
    return (f"{len(CASES)} cases match vit_course.mae.random_masking "
            "(batches of 1-3, mask ratios 0 to 0.75, an N that 1 - mask_ratio does not divide)")


__all__ = ["check_random_masking"]
