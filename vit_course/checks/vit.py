"""Check for the whole-model exercise: the learner's ViT against `vit_course.VisionTransformer`.

`check_vision_transformer(cls)` builds `cls(config)` from a small `vit_course.ViTConfig`,
compares its parameter names and shapes with the reference's (`patch_embed.proj`,
`cls_token`, `pos_embed`, `blocks.N.*`, `norm`, `head`), loads the reference's state dict
into it and compares `forward(pixel_values) -> logits`. The cases use HF's init and
weights at std 0.3 (FACTS.md: one tolerance does not catch every mistake), batches of 1
and 3, and one and three channels. A wrong output is matched against the known
mistakes, recomputed from the reference's weights by `_forward` below: no CLS token,
CLS without a position, CLS appended last, no position embedding, mean pooling, no
final LayerNorm, the classifier on token 1, a patch grid reshaped instead of
transposed, softmax on the logits.

Used by notebook 04.
"""

from __future__ import annotations

import re

import torch
from torch.nn import functional as F

from .block import make_config
from .compare import (
    CheckFailure,
    check,
    diagnose,
    fmt_shape,
    learner_backward,
    learner_call,
    randn,
    shape_of,
    tensor_distance,
    tensor_problems,
)

# config overrides, weight regime, batch size, description
CASES = [
    (dict(image_size=16, patch_size=4, hidden_size=24, num_attention_heads=3, intermediate_size=48, num_labels=5),
     "default", 3, "HF's init (std 0.02), 16x16 images, patch 4, 2 layers, 5 classes, a batch of 3"),
    (dict(image_size=16, patch_size=4, hidden_size=24, num_attention_heads=3, intermediate_size=48, num_labels=5),
     "large", 3, "weights, CLS token and position embeddings at std 0.3, a batch of 3"),
    (dict(image_size=12, patch_size=4, hidden_size=16, num_attention_heads=2, intermediate_size=32, num_labels=4),
     "large", 1, "a batch of 1, 12x12 images (a 3x3 grid), weights at std 0.3"),
    (dict(image_size=(8, 16), patch_size=4, hidden_size=16, num_attention_heads=4, intermediate_size=32, num_labels=3,
          num_channels=1, num_hidden_layers=1), "large", 2,
     "one channel, 8x16 images (a 2x4 grid), 1 layer, 4 heads, weights at std 0.3"),
]
LAYOUT = ("patch_embed.proj (Conv2d), cls_token (1, 1, D), pos_embed (1, 1+N, D), "
          "blocks.N.{norm1, attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, norm2, mlp.fc1, mlp.fc2}, "
          "norm, head")


def init_weights(model: torch.nn.Module, regime: str, seed: int) -> None:
    """The blocks as `vit_course.checks.block.init_weights`; the rest the same way, so that
    in the "large" regime the CLS token and the position embeddings are far from zero too."""
    with torch.no_grad():
        for i, (name, param) in enumerate(model.named_parameters()):
            noise = randn(*param.shape, seed=1000 * seed + i)
            is_norm = name.startswith("norm") or ".norm" in name
            is_weight = name.endswith("weight") or name in ("cls_token", "pos_embed")
            if regime == "default":
                if is_norm:
                    param.fill_(1.0 if name.endswith("weight") else 0.0)
                else:
                    param.copy_(noise * 0.02 if is_weight else torch.zeros_like(param))
            elif is_norm:
                param.copy_(1.0 + 0.2 * noise if name.endswith("weight") else 0.2 * noise)
            else:
                param.copy_(noise * (0.3 if is_weight else 0.1))


def _forward(model, x, cls: str = "first", pos: str = "all", pool: str = "cls", final_norm: bool = True,
             grid: str = "transpose", softmax: bool = False, eps: float | None = None):
    """The reference model's forward, with a switch per known mistake."""
    config = model.config
    D = config.hidden_size
    feats = model.patch_embed.proj(x)  # (B, D, rows, cols)
    B = feats.shape[0]
    if grid == "transpose":
        tokens = feats.flatten(2).transpose(1, 2)  # (B, N, D)
    else:  # a reshape that mixes the channel and token axes
        tokens = feats.reshape(B, -1, D)
    cls_tok = model.cls_token.expand(B, -1, -1)
    P = model.pos_embed
    if cls == "none":
        z = tokens + (P[:, 1:] if pos == "all" else 0)
    elif cls == "last":
        z = torch.cat([tokens, cls_tok], dim=1) + (P if pos == "all" else 0)
    elif pos == "patches_only":  # CLS gets no position
        z = torch.cat([cls_tok, tokens + P[:, 1:]], dim=1)
    else:
        z = torch.cat([cls_tok, tokens], dim=1) + (P if pos == "all" else 0)
    for block in model.blocks:
        z = block(z)
    if final_norm:
        z = F.layer_norm(z, (D,), model.norm.weight, model.norm.bias, eps or config.layer_norm_eps)
    pooled = {
        "cls": lambda: z[:, 0],
        "last": lambda: z[:, -1],
        "token1": lambda: z[:, 1],
        "mean_patches": lambda: z[:, 1:].mean(1),
        "mean_all": lambda: z.mean(1),
    }[pool]()
    logits = model.head(pooled)
    return logits.softmax(-1) if softmax else logits


def _mistakes(model, x):
    return [
        ("the CLS token is missing: prepend cls_token.expand(B, -1, -1) to the patch tokens with torch.cat, "
         "then pool token 0", lambda: _forward(model, x, cls="none")),
        ("the CLS token is missing and the patch tokens are averaged: prepend the CLS token and classify it",
         lambda: _forward(model, x, cls="none", pool="mean_patches")),
        ("the CLS token is appended at the end: it goes first, torch.cat([cls, x], dim=1), "
         "and the classifier reads token 0", lambda: _forward(model, x, cls="last", pool="last")),
        ("the CLS token is appended at the end and token 0 (a patch) is classified: torch.cat([cls, x], dim=1)",
         lambda: _forward(model, x, cls="last", pool="cls")),
        ("the CLS token gets no position embedding: add pos_embed (1, 1+N, D) after concatenating CLS",
         lambda: _forward(model, x, pos="patches_only")),
        ("the position embeddings are not added: x = torch.cat([cls, x], dim=1) + pos_embed",
         lambda: _forward(model, x, pos="none")),
        ("the patch tokens are averaged (mean pooling) instead of taking the CLS token: pool x[:, 0]",
         lambda: _forward(model, x, pool="mean_patches")),
        ("all tokens are averaged (mean pooling, CLS included) instead of taking the CLS token: pool x[:, 0]",
         lambda: _forward(model, x, pool="mean_all")),
        ("the final LayerNorm is missing: x = self.norm(x) after the last block, before pooling",
         lambda: _forward(model, x, final_norm=False)),
        ("the final LayerNorm is missing and the patch tokens are averaged: norm, then take x[:, 0]",
         lambda: _forward(model, x, final_norm=False, pool="mean_patches")),
        ("the classifier reads token 1 (the first patch) instead of token 0 (the CLS token): x[:, 0]",
         lambda: _forward(model, x, pool="token1")),
        ("the patch grid is reshaped to (B, N, D) instead of transposed: proj(x).flatten(2).transpose(1, 2)",
         lambda: _forward(model, x, grid="reshape")),
        ("forward returns probabilities: return the logits, without softmax",
         lambda: _forward(model, x, softmax=True)),
        ("the final LayerNorm uses nn.LayerNorm's default eps 1e-5: eps=config.layer_norm_eps",
         lambda: _forward(model, x, eps=1e-5)),
    ]


_SIZE_MISMATCH = re.compile(r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\)")


def _hints(error: BaseException) -> str | None:
    text = str(error)
    match = _SIZE_MISMATCH.search(text)
    if match:
        a, b = int(match.group(1)), int(match.group(2))
        if abs(a - b) == 1:
            return ("N patch tokens meet 1+N position embeddings: concatenate the CLS token first, "
                    "then add pos_embed of shape (1, 1+N, D)")
    if "Expected all tensors to be on the same device" in text:
        return None
    if "not subscriptable" in text or "has no attribute 'logits'" in text:
        return "forward should return the logits tensor itself"
    return None


def _key_problems(learner_sd: dict, reference_sd: dict, config) -> tuple[list[str], str | None]:
    """Lines naming missing, unexpected and misshaped keys, and the likely cause."""
    missing = [k for k in reference_sd if k not in learner_sd]
    unexpected = [k for k in learner_sd if k not in reference_sd]
    misshaped = [k for k in reference_sd if k in learner_sd and tuple(learner_sd[k].shape) != tuple(reference_sd[k].shape)]
    lines = []

    def show(keys):
        return ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")

    if missing:
        lines.append(f"missing keys: {show(missing)}")
    if unexpected:
        lines.append(f"unexpected keys: {show(unexpected)}")
    for k in misshaped:
        lines.append(f"{k} has shape {fmt_shape(learner_sd[k].shape)}, expected {fmt_shape(reference_sd[k].shape)}")
    N, D = config.num_patches, config.hidden_size
    cause = None
    if "pos_embed" in misshaped and tuple(learner_sd["pos_embed"].shape[-2:]) == (N, D):
        cause = ("pos_embed has N rows, one per patch: the CLS token gets a position too, "
                 "so make it (1, 1+N, D) and add it after concatenating CLS")
    elif "cls_token" in missing:
        cause = "there is no CLS token: self.cls_token = nn.Parameter(torch.zeros(1, 1, D))"
    elif "head.weight" in missing:
        cause = "there is no classifier named head: self.head = nn.Linear(D, config.num_labels)"
    elif "norm.weight" in missing:
        cause = "there is no final LayerNorm named norm: self.norm = nn.LayerNorm(D, eps=config.layer_norm_eps)"
    elif any(k.startswith("blocks.") for k in missing) and not any(k.startswith("blocks.") for k in learner_sd):
        cause = "the blocks are not in an nn.ModuleList named blocks (a Python list hides them from the state dict)"
    elif any(k.startswith("blocks.") for k in missing):
        count = len({k.split(".")[1] for k in learner_sd if k.startswith("blocks.")})
        if count != config.num_hidden_layers:
            cause = f"{count} blocks instead of config.num_hidden_layers = {config.num_hidden_layers}"
        else:
            cause = "the names inside a block differ from TransformerBlock's: norm1, attn.{q,k,v,o}_proj, norm2, mlp.fc1, mlp.fc2"
    elif "head.weight" in misshaped:
        cause = "the classifier's size: nn.Linear(config.hidden_size, config.num_labels)"
    if cause is None and (missing or unexpected or misshaped):
        cause = f"name the parts as vit_course.VisionTransformer does: {LAYOUT}"
    return lines, cause


def _check_final_norm(learner, config) -> None:
    eps = getattr(getattr(learner, "norm", None), "eps", None)
    if isinstance(eps, float) and abs(eps - config.layer_norm_eps) > 1e-3 * config.layer_norm_eps:
        raise CheckFailure(
            f"norm.eps is {eps:g}, but config.layer_norm_eps is {config.layer_norm_eps:g}",
            cause="the final LayerNorm's eps does not come from the config: "
                  "nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)",
        )


@check("ViT", hints=_hints, reference="vit_course.vit:VisionTransformer")
def check_vision_transformer(cls: type) -> str:
    """`cls(config)`, `forward(pixel_values) -> logits`: load the reference's weights, compare logits."""
    from vit_course.vit import VisionTransformer

    backward = []
    for seed, (overrides, regime, B, case) in enumerate(CASES):
        config = make_config(**overrides)
        with torch.random.fork_rng(devices=[]):  # leave the notebook's RNG as it was
            reference = VisionTransformer(config).eval()
        init_weights(reference, regime, seed)
        learner = learner_call(cls, config, case=case)
        if not isinstance(learner, torch.nn.Module):
            raise CheckFailure(f"your model should be a torch.nn.Module, got a {type(learner).__name__}")
        reference_sd = reference.state_dict()
        learner_sd = learner.state_dict()
        lines, cause = _key_problems(learner_sd, reference_sd, config)
        if lines:
            raise CheckFailure("your model's parameters do not match vit_course.VisionTransformer's state dict",
                               details=(f"on {case}", *lines, f"expected names: {LAYOUT}"), cause=cause)
        _check_final_norm(learner, config)
        learner_call(learner.load_state_dict, reference_sd, case=case)
        learner.eval()
        H, W = config.grid_size[0] * config.patch_size, config.grid_size[1] * config.patch_size
        x = randn(B, config.num_channels, H, W, seed=900 + seed)
        with torch.no_grad():
            expected = reference(x)
        got = learner_call(learner, x.clone(), case=case, names=("pixel_values",))
        if hasattr(got, "logits") and isinstance(getattr(got, "logits"), torch.Tensor):
            raise CheckFailure(f"forward returned a {type(got).__name__}, expected the logits tensor of shape "
                               f"{fmt_shape(expected.shape)}", cause="return the logits tensor itself")
        if isinstance(got, (tuple, list)):
            raise CheckFailure(f"forward returned a {type(got).__name__} of {len(got)} items, expected one tensor of "
                               f"shape {fmt_shape(expected.shape)}", cause="forward(pixel_values) should return only the logits")
        atol = 1e-5 * max(1.0, float(expected.abs().max()))
        problems = tensor_problems("logits", got, expected, atol=atol)
        if not problems:
            backward.append((learner, x, case, list(reference_sd)))
            continue
        cause = None
        if isinstance(got, torch.Tensor):
            shape = tuple(got.shape)
            if shape == (B, config.hidden_size) or shape == (config.hidden_size,):
                cause = "forward returns the pooled features: apply self.head to them"
            elif shape == (B, 1 + config.num_patches, config.num_labels):
                cause = "the classifier is applied to every token: pool the CLS token x[:, 0] first"
            elif shape == (config.num_labels,) and B == 1:
                cause = "the batch dimension is squeezed away: keep logits of shape (B, num_labels)"
            elif shape == tuple(expected.shape):
                with torch.no_grad():
                    cause = diagnose(got, _mistakes(reference, x), tensor_distance(atol=atol))
        raise CheckFailure(
            f"wrong logits with hidden_size={config.hidden_size}, {config.num_hidden_layers} layers, "
            f"{config.num_patches} patches",
            details=(f"on {case}", *problems),
            cause=cause,
        )
    # once every forward matches: a backward pass, so a mistake in forward is named first
    for learner, x, case, names in backward:
        learner_backward(learner, x.clone(), case=case, expected=names)
    return (f"{len(CASES)} cases match vit_course.VisionTransformer (HF init and std 0.3 weights, batch 1 and 3, "
            "1 and 3 channels, non-square images)")
