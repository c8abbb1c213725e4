"""Held-out cases: inputs the student never saw, with expected outputs stored apart.

`vit-course release` draws, from a fresh secret seed, new inputs for every graded
exercise (other shapes, sizes, temperatures, weights than the notebook's checks use),
computes what the course's reference gives on them, and writes both into the
instructor's folder (`heldout.json`), which neither the release nor the student's
install contains. `vit-course grade` runs the student's answer on the same inputs,
inside the sandbox, and compares with the stored outputs: a student who learned the
visible checks by heart still has to compute the right answer.

One entry of `PROBES` per check: `cases(rng)` draws the inputs (plain data and tensors,
see `vit_course.grading.wire`), `run(impl, case)` calls an implementation on them in the
grader's process (the student's arrives as a `vit_course.grading.remote` stand-in) and
returns what is compared. `compare` says how an output differs from the stored one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vit_course.checks.compare import fmt_num, tensor_problems


@dataclass(frozen=True)
class Probe:
    cases: Callable[[random.Random], list[dict]]
    run: Callable[[Any, dict], Any]
    atol: float = 1e-4


def _randn(rng: random.Random, *shape: int, std: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    return torch.randn(*shape, generator=g) * std


def _weights(module: torch.nn.Module, rng: random.Random, std: float) -> dict[str, torch.Tensor]:
    state = {}
    for name, value in module.state_dict().items():
        if name.endswith("weight") and ("norm" in name or value.ndim == 1):
            state[name] = 1.0 + 0.2 * _randn(rng, *value.shape)
        else:
            state[name] = _randn(rng, *value.shape, std=std if name.endswith("weight") else 0.1)
    return state


def _load_named(module, state: dict[str, torch.Tensor]) -> None:
    own = dict(module.named_parameters()) | dict(module.named_buffers())
    with torch.no_grad():
        for name, value in state.items():
            if name not in own:
                raise ValueError(f"the model has no parameter {name!r} (the notebook's check names the layout)")
            own[name].copy_(value)


# 01
def _patchify_cases(rng):
    out = []
    for _ in range(3):
        P, B, C = rng.randint(2, 5), rng.randint(1, 3), rng.choice([1, 2, 3])
        out.append({"x": _randn(rng, B, C, P * rng.randint(1, 4), P * rng.randint(1, 4)), "P": P})
    return out


def _conv_cases(rng):
    out = []
    for bias in (True, False):
        C, D, P = rng.randint(1, 3), rng.randint(2, 6), rng.randint(2, 4)
        conv = torch.nn.Conv2d(C, D, P, stride=P, bias=bias)
        out.append({"C": C, "D": D, "P": P, "state": _weights(conv, rng, 0.5)})
    return out


def _conv_run(impl, case):
    conv = torch.nn.Conv2d(case["C"], case["D"], case["P"], stride=case["P"], bias="bias" in case["state"])
    conv.load_state_dict(case["state"])
    return impl(conv)


# 02
def _sincos_cases(rng):
    return [{"rows": rng.randint(1, 5), "cols": rng.randint(1, 5), "dim": 4 * rng.randint(1, 6),
             "temperature": rng.choice([10000.0, 100.0, 2500.0])} for _ in range(3)]


def _interp_cases(rng):
    out = []
    for _ in range(3):
        side, D = rng.randint(2, 5), rng.randint(2, 6)
        out.append({"pos": _randn(rng, 1, 1 + side * side, D), "rows": rng.randint(1, 7), "cols": rng.randint(1, 7)})
    return out


# 03
def _sdpa_cases(rng):
    return [{"q": _randn(rng, *s), "k": _randn(rng, *s), "v": _randn(rng, *s)}
            for s in [(rng.randint(1, 2), rng.randint(1, 3), rng.randint(1, 6), rng.randint(2, 8)) for _ in range(3)]]


def _mhsa_cases(rng):
    from vit_course.attention import MultiHeadSelfAttention

    out = []
    for qkv_bias in (True, False):
        h = rng.randint(1, 4)
        D = h * rng.randint(2, 5)
        state = _weights(MultiHeadSelfAttention(D, h, qkv_bias=qkv_bias), rng, 0.3)
        out.append({"D": D, "h": h, "qkv_bias": qkv_bias, "state": state, "x": _randn(rng, 2, rng.randint(1, 6), D)})
    return out


def _mhsa_run(impl, case):
    module = impl(case["D"], case["h"], qkv_bias=case["qkv_bias"])
    _load_named(module, case["state"])
    module.eval()
    with torch.no_grad():
        return module(case["x"].clone())


# 04
def _block_cases(rng):
    from vit_course.block import TransformerBlock
    from vit_course.checks.block import make_config

    out = []
    for eps in (1e-12, 1e-6):
        h = rng.randint(1, 3)
        overrides = dict(hidden_size=8 * h, num_attention_heads=h, intermediate_size=16 * h, layer_norm_eps=eps,
                         qkv_bias=rng.random() < 0.7)
        state = _weights(TransformerBlock(make_config(**overrides)), rng, 0.3)
        out.append({"config": overrides, "state": state, "x": _randn(rng, 2, rng.randint(1, 5), 8 * h, std=0.01)})
    return out


def _module_run(impl, case):
    from vit_course.checks.block import make_config

    module = impl(make_config(**case["config"]))
    _load_named(module, case["state"])
    module.eval()
    with torch.no_grad():
        return module(case["x"].clone())


def _vit_cases(rng):
    from vit_course.checks.block import make_config
    from vit_course.vit import VisionTransformer

    out = []
    for channels in (3, 1):
        P = rng.choice([2, 4])
        overrides = dict(image_size=(P * rng.randint(1, 3), P * rng.randint(2, 3)), patch_size=P, hidden_size=16,
                         num_attention_heads=rng.choice([2, 4]), intermediate_size=32, num_labels=rng.randint(2, 6),
                         num_channels=channels, num_hidden_layers=rng.randint(1, 2))
        state = _weights(VisionTransformer(make_config(**overrides)), rng, 0.3)
        H, W = overrides["image_size"]
        out.append({"config": overrides, "state": state, "x": _randn(rng, 2, channels, H, W)})
    return out


def _vit_run(impl, case):
    from vit_course.checks.block import make_config

    module = impl(make_config(**case["config"]))
    module.load_state_dict(case["state"])
    module.eval()
    with torch.no_grad():
        return module(case["x"].clone())


# 05
def _preprocess_cases(rng):
    out = []
    for _ in range(2):
        h, w = rng.randint(8, 40), rng.randint(8, 40)
        pixels = torch.randint(0, 256, (h, w, 3), generator=torch.Generator().manual_seed(rng.randrange(2**31)))
        out.append({"pixels": pixels.to(torch.uint8), "size": [rng.randint(8, 32), rng.randint(8, 32)],
                    "mean": [round(rng.uniform(0.3, 0.6), 3) for _ in range(3)],
                    "std": [round(rng.uniform(0.2, 0.5), 3) for _ in range(3)]})
    return out


def _preprocess_run(impl, case):
    from PIL import Image
    from transformers import ViTImageProcessor

    image = Image.fromarray(case["pixels"].numpy())
    processor = ViTImageProcessor(size={"height": case["size"][0], "width": case["size"][1]},
                                  image_mean=case["mean"], image_std=case["std"])
    return impl(image, processor)


def _topk_cases(rng):
    out = []
    for _ in range(2):
        C = rng.randint(3, 12)
        out.append({"logits": _randn(rng, rng.randint(1, 3), C, std=2.0), "k": rng.randint(1, C),
                    "id2label": {i: f"class-{rng.randrange(10**6)}" for i in range(C)}})
    return out


# 06
def _finetune_cases(rng):
    return [{"layers": rng.randint(1, 4), "labels": rng.randint(2, 7), "seed": rng.randrange(1000),
             "base_lr": rng.choice([1e-3, 3e-4, 5e-5]), "decay": rng.choice([0.5, 0.65, 0.8])} for _ in range(2)]


def _tiny(case):
    from vit_course.checks.finetune import tiny_vit_classifier

    return tiny_vit_classifier(num_hidden_layers=case["layers"], num_labels=case["labels"], seed=case["seed"])


def _freeze_run(impl, case):
    model = _tiny(case)
    impl(model)
    return {name: p.requires_grad for name, p in model.named_parameters()}


def _llrd_run(impl, case):
    model = _tiny(case)
    groups = impl(model, case["base_lr"], case["decay"])
    names = {id(p): name for name, p in model.named_parameters()}
    lrs = {}
    for group in groups if isinstance(groups, (list, tuple)) else []:
        if isinstance(group, dict):
            for p in group.get("params", []):
                lrs[names.get(id(p), "<not a parameter of the model>")] = float(group.get("lr", case["base_lr"]))
    return lrs


# 07
def _rollout_cases(rng):
    out = []
    for _ in range(2):
        B, H, T = rng.randint(1, 2), rng.randint(1, 3), rng.randint(2, 6)
        out.append({"attentions": [_randn(rng, B, H, T, T, std=1.5).softmax(-1) for _ in range(rng.randint(1, 4))]})
    return out


def _distance_cases(rng):
    out = []
    for _ in range(2):
        heads, rows, cols = rng.randint(1, 3), rng.randint(1, 4), rng.randint(2, 4)
        T = 1 + rows * cols
        out.append({"attn": _randn(rng, heads, T, T, std=2.0).softmax(-1), "grid": (rows, cols), "P": rng.randint(1, 16)})
    return out


# 08
def _flops_cases(rng):
    from vit_course.checks.block import make_config

    out = []
    for _ in range(3):
        h = rng.randint(1, 6)
        P = rng.choice([2, 4, 8, 16])
        out.append({"config": make_config(image_size=P * rng.randint(1, 14), patch_size=P, hidden_size=16 * h,
                                          num_attention_heads=h, intermediate_size=64 * h,
                                          num_hidden_layers=rng.randint(1, 12), num_labels=rng.randint(2, 1000))})
    return out


def _shift_cases(rng):
    return [{"x": _randn(rng, rng.randint(1, 2), rng.randint(1, 3), rng.randint(3, 8), rng.randint(3, 8)),
             "dx": rng.randint(-3, 3), "dy": rng.randint(-3, 3)} for _ in range(3)]


def _shuffle_cases(rng):
    out = []
    for _ in range(2):
        P = rng.randint(1, 4)
        out.append({"x": _randn(rng, rng.randint(1, 2), rng.randint(1, 3), P * rng.randint(1, 4), P * rng.randint(1, 4)),
                    "P": P, "seed": rng.randrange(2**31)})
    return out


# 09
def _window_cases(rng):
    out = []
    for _ in range(3):
        M = rng.randint(1, 4)
        out.append({"x": _randn(rng, rng.randint(1, 2), M * rng.randint(1, 3), M * rng.randint(1, 3), rng.randint(1, 4)),
                    "M": M})
    return out


def _mask_cases(rng):
    out = []
    for _ in range(3):
        M = rng.randint(2, 5)
        out.append({"H": M * rng.randint(1, 3), "W": M * rng.randint(1, 3), "M": M, "s": rng.randint(1, M - 1)})
    return out


# 10
def _masking_cases(rng):
    out = []
    for _ in range(3):
        B, N, D = rng.randint(1, 3), rng.randint(2, 20), rng.randint(1, 6)
        g = torch.Generator().manual_seed(rng.randrange(2**31))
        out.append({"x": _randn(rng, B, N, D), "ratio": rng.choice([0.25, 0.5, 0.75, 0.9]), "noise": torch.rand(B, N, generator=g)})
    return out


def _clip_cases(rng):
    out = []
    for _ in range(3):
        B, D = rng.randint(2, 6), rng.randint(2, 8)
        out.append({"images": _randn(rng, B, D), "texts": _randn(rng, B, D),
                    "scale": torch.tensor(round(rng.uniform(0.0, 4.6), 4))})
    return out


PROBES: dict[str, Probe] = {
    "check_patchify": Probe(_patchify_cases, lambda f, c: f(c["x"].clone(), c["P"])),
    "check_conv_to_linear_weight": Probe(_conv_cases, _conv_run),
    "check_sincos_2d": Probe(_sincos_cases, lambda f, c: f(c["rows"], c["cols"], c["dim"], c["temperature"])),
    "check_interpolate_positions": Probe(_interp_cases, lambda f, c: f(c["pos"].clone(), c["rows"], c["cols"])),
    "check_scaled_dot_product_attention": Probe(_sdpa_cases, lambda f, c: f(c["q"].clone(), c["k"].clone(), c["v"].clone())),
    "check_multi_head_self_attention": Probe(_mhsa_cases, _mhsa_run),
    "check_transformer_block": Probe(_block_cases, _module_run),
    "check_vision_transformer": Probe(_vit_cases, _vit_run),
    "check_preprocess": Probe(_preprocess_cases, _preprocess_run, atol=1.05 / (255 * 0.2)),
    "check_top_k": Probe(_topk_cases, lambda f, c: f(c["logits"].clone(), c["k"], dict(c["id2label"]))),
    "check_freeze_backbone": Probe(_finetune_cases, _freeze_run),
    "check_layerwise_lr_groups": Probe(_finetune_cases, _llrd_run),
    "check_attention_rollout": Probe(_rollout_cases, lambda f, c: f([a.clone() for a in c["attentions"]])),
    "check_mean_attention_distance": Probe(_distance_cases, lambda f, c: f(c["attn"].clone(), tuple(c["grid"]), c["P"])),
    "check_vit_flops": Probe(_flops_cases, lambda f, c: f(c["config"])),
    "check_shift_images": Probe(_shift_cases, lambda f, c: f(c["x"].clone(), c["dx"], c["dy"])),
    "check_shuffle_patches": Probe(_shuffle_cases,
                                   lambda f, c: f(c["x"].clone(), c["P"], torch.Generator().manual_seed(c["seed"]))),
    "check_window_partition": Probe(_window_cases, lambda f, c: f(c["x"].clone(), c["M"])),
    "check_shifted_window_mask": Probe(_mask_cases, lambda f, c: f(c["H"], c["W"], c["M"], c["s"])),
    "check_random_masking": Probe(_masking_cases, lambda f, c: f(c["x"].clone(), c["ratio"], c["noise"].clone())),
    "check_clip_loss": Probe(_clip_cases, lambda f, c: f(c["images"].clone(), c["texts"].clone(), c["scale"].clone())),
}


def compare(got: Any, expected: Any, atol: float, where: str = "output") -> list[str]:
    """How `got` differs from `expected` (plain data and tensors), empty when they agree."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return [f"{where} should be a torch.Tensor, got a {type(got).__name__}"]
        scale = max(1.0, float(expected.abs().max())) if expected.numel() and expected.is_floating_point() else 1.0
        return tensor_problems(where, got, expected.float() if expected.is_floating_point() else expected,
                               atol=atol * scale, rtol=1e-4)
    if isinstance(expected, bool) or isinstance(expected, str) or expected is None:
        return [] if got == expected and type(got) is type(expected) else [f"{where}: expected {expected!r}, got {got!r}"[:300]]
    if isinstance(expected, int):
        ok = isinstance(got, (int, np.integer)) and not isinstance(got, bool) and int(got) == expected
        return [] if ok else [f"{where}: expected {expected}, got {got!r}"[:300]]
    if isinstance(expected, float):
        ok = isinstance(got, (int, float, np.floating, np.integer)) and math.isclose(float(got), expected, rel_tol=1e-4, abs_tol=1e-6)
        return [] if ok else [f"{where}: expected {fmt_num(expected)}, got {got!r}"[:300]]
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            return [f"{where}: expected a sequence of {len(expected)} items, got {type(got).__name__}"
                    + (f" of {len(got)}" if isinstance(got, (list, tuple)) else "")]
        for i, (g, e) in enumerate(zip(got, expected)):
            problems = compare(g, e, atol, f"{where}[{i}]")
            if problems:
                return problems
        return []
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            missing = sorted(map(str, set(expected) - set(got or {}))) if isinstance(got, dict) else []
            return [f"{where}: expected keys {sorted(map(str, expected))[:6]}, got "
                    + (f"missing {missing[:6]}" if missing else type(got).__name__)]
        for key in expected:
            problems = compare(got[key], expected[key], atol, f"{where}[{key!r}]")
            if problems:
                return problems
        return []
    return [f"{where}: cannot compare a {type(expected).__name__}"]


def make_cases(check_name: str, reference: Any, seed: int) -> list[dict]:
    """The held-out cases of one check, each with the reference's output under "expected"."""
    probe = PROBES[check_name]
    rng = random.Random(f"{seed}:{check_name}")
    cases = []
    with torch.random.fork_rng(devices=[]):
        for case in probe.cases(rng):
            with torch.no_grad():
                expected = probe.run(reference, case)
            cases.append({"inputs": case, "expected": expected})
    return cases
