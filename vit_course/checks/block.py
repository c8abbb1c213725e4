"""Check for the transformer block exercise.

`check_transformer_block(cls)` builds `cls(config)` from a `vit_course.ViTConfig`,
copies the reference block's weights into it by name (`norm1`, `attn.q_proj` ...
`attn.o_proj`, `norm2`, `mlp.fc1`, `mlp.fc2`) and compares `forward(x)`. One tolerance
does not catch every mistake (FACTS.md): with HF's init (std 0.02) a tanh GELU is off
by less than 1e-6, and on inputs of unit variance a LayerNorm eps of 1e-5 hardly shows.
So the cases use both weight regimes, and inputs of small variance that make eps visible.

Used by notebook 04.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional as F

from .attention import _mhsa
from .compare import (
    CheckFailure,
    check,
    copy_weights,
    diagnose,
    fmt_shape,
    learner_backward,
    learner_call,
    randn,
    shape_of,
    tensor_distance,
    tensor_problems,
)

if TYPE_CHECKING:
    from vit_course.config import ViTConfig

# config overrides, weight regime, (B, N), input std, description
CASES = [
    (dict(hidden_size=24, num_attention_heads=3, intermediate_size=48), "default", (2, 5), 1.0,
     "HF's init (weights at std 0.02), hidden_size=24, 3 heads, x of shape (2, 5, 24)"),
    (dict(hidden_size=24, num_attention_heads=3, intermediate_size=48), "large", (2, 5), 1.0,
     "weights at std 0.3 with random LayerNorm scales and biases, x of shape (2, 5, 24)"),
    (dict(hidden_size=16, num_attention_heads=2, intermediate_size=64), "large", (1, 6), 1e-3,
     "inputs of small variance (std 1e-3), where LayerNorm's eps shows, x of shape (1, 6, 16)"),
    (dict(hidden_size=16, num_attention_heads=2, intermediate_size=64, layer_norm_eps=1e-6), "large", (2, 3), 1e-3,
     "layer_norm_eps=1e-6 and inputs of small variance (std 1e-3), x of shape (2, 3, 16)"),
    (dict(hidden_size=24, num_attention_heads=3, intermediate_size=48, qkv_bias=False), "large", (2, 4), 1.0,
     "qkv_bias=False, weights at std 0.3, x of shape (2, 4, 24)"),
    (dict(hidden_size=24, num_attention_heads=3, intermediate_size=48), "large", (2, 1), 1.0,
     "a single token, weights at std 0.3, x of shape (2, 1, 24)"),
]
LAYOUT = "norm1, attn.{q,k,v,o}_proj, norm2, mlp.fc1, mlp.fc2 (each with weight and bias)"


def make_config(**overrides: Any) -> ViTConfig:
    """A small `vit_course.ViTConfig` without dropout; unknown overrides are an error."""
    from vit_course.config import ViTConfig

    base = dict(num_hidden_layers=2, image_size=16, patch_size=8, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    names = {f.name for f in fields(ViTConfig)}
    return ViTConfig(**{k: v for k, v in {**base, **overrides}.items() if k in names})


def init_weights(module: torch.nn.Module, regime: str, seed: int) -> None:
    """"default": HF's init (std 0.02, zero biases, unit LayerNorm); "large": std 0.3 everywhere."""
    with torch.no_grad():
        for i, (name, param) in enumerate(module.named_parameters()):
            noise = randn(*param.shape, seed=1000 * seed + i)
            is_norm = name.startswith("norm")
            if regime == "default":
                if is_norm:
                    param.fill_(1.0 if name.endswith("weight") else 0.0)
                else:
                    param.copy_(noise * 0.02 if name.endswith("weight") else torch.zeros_like(param))
            elif is_norm:
                param.copy_(1.0 + 0.2 * noise if name.endswith("weight") else 0.2 * noise)
            else:
                param.copy_(noise * (0.3 if name.endswith("weight") else 0.1))


def _block(x, p, h: int, eps: float, act: str = "gelu", post_norm: bool = False, attn_residual: bool = True,
           mlp_residual: bool = True, first: str = "norm1", second: str = "norm2", unbiased: bool = False,
           parallel: bool = False):
    """A block from the weights `p`, with a switch per known mistake."""
    D = x.shape[-1]
    attn_p = {k[len("attn."):]: v for k, v in p.items() if k.startswith("attn.")}
    activation = {
        "gelu": F.gelu,
        "tanh": lambda t: F.gelu(t, approximate="tanh"),
        "relu": F.relu,
        "quick": lambda t: t * torch.sigmoid(1.702 * t),  # CLIP's quick GELU
    }[act]

    def norm(t, name):
        if unbiased:  # a hand-written LayerNorm with torch.var's default, the unbiased variance
            t = (t - t.mean(-1, keepdim=True)) / torch.sqrt(t.var(-1, keepdim=True) + eps)
            return t * p[f"{name}.weight"] + p[f"{name}.bias"]
        return F.layer_norm(t, (D,), p[f"{name}.weight"], p[f"{name}.bias"], eps)

    def attn(t):
        return _mhsa(t, attn_p, h)[0]

    def mlp(t):
        return F.linear(activation(F.linear(t, p["mlp.fc1.weight"], p["mlp.fc1.bias"])), p["mlp.fc2.weight"], p["mlp.fc2.bias"])

    if post_norm:  # the original Transformer: normalise after each residual sum
        x = norm(x + attn(x), first)
        return norm(x + mlp(x), second)
    if parallel:  # GPT-J / ViT-22B: both branches read the same x
        return x + attn(norm(x, first)) + mlp(norm(x, second))
    a = attn(norm(x, first))
    x = x + a if attn_residual else a
    m = mlp(norm(x, second))
    return x + m if mlp_residual else m


def _mistakes(x, p, h, eps):
    return [
        (
            "post-norm instead of pre-norm: ViT normalises before each sub-layer, "
            "x = x + attn(norm1(x)); x = x + mlp(norm2(x))",
            lambda: _block(x, p, h, eps, post_norm=True),
        ),
        ("the residual around attention is missing: x = x + attn(norm1(x))", lambda: _block(x, p, h, eps, attn_residual=False)),
        ("the residual around the MLP is missing: x = x + mlp(norm2(x))", lambda: _block(x, p, h, eps, mlp_residual=False)),
        (
            "both residuals are missing: x = x + attn(norm1(x)); x = x + mlp(norm2(x))",
            lambda: _block(x, p, h, eps, attn_residual=False, mlp_residual=False),
        ),
        (
            "LayerNorm eps is nn.LayerNorm's default 1e-5: pass eps=config.layer_norm_eps (1e-12 in HF's ViT)",
            lambda: _block(x, p, h, 1e-5),
        ),
        (
            "LayerNorm eps is timm's 1e-6: pass eps=config.layer_norm_eps (1e-12 in HF's ViT)",
            lambda: _block(x, p, h, 1e-6),
        ),
        (
            "LayerNorm eps is 1e-12 whatever the config says: pass eps=config.layer_norm_eps",
            lambda: _block(x, p, h, 1e-12),
        ),
        (
            "tanh-approximated GELU (approximate='tanh', HF's 'gelu_new'): ViT uses the exact erf GELU, nn.GELU()",
            lambda: _block(x, p, h, eps, act="tanh"),
        ),
        ("ReLU instead of GELU: the MLP uses nn.GELU()", lambda: _block(x, p, h, eps, act="relu")),
        (
            "quick GELU (x * sigmoid(1.702 x), CLIP's activation): ViT uses the exact erf GELU, nn.GELU()",
            lambda: _block(x, p, h, eps, act="quick"),
        ),
        (
            "attention and MLP run in parallel on the same x (x + attn(norm1(x)) + mlp(norm2(x))): in ViT they "
            "run one after the other, the MLP reads x after the attention residual",
            lambda: _block(x, p, h, eps, parallel=True),
        ),
        (
            "LayerNorm with the unbiased variance (torch.var's default): use x.var(-1, unbiased=False, keepdim=True) "
            "or nn.LayerNorm",
            lambda: _block(x, p, h, eps, unbiased=True),
        ),
        (
            "norm2 is used before attention too: attention gets norm1(x), the MLP norm2(x)",
            lambda: _block(x, p, h, eps, first="norm2"),
        ),
        (
            "norm1 is used before the MLP too: attention gets norm1(x), the MLP norm2(x)",
            lambda: _block(x, p, h, eps, second="norm1"),
        ),
        (
            "norm1 and norm2 are swapped: attention gets norm1(x), the MLP norm2(x)",
            lambda: _block(x, p, h, eps, first="norm2", second="norm1"),
        ),
    ]


def _check_eps(learner, config) -> None:
    for name in ("norm1", "norm2"):
        eps = getattr(getattr(learner, name, None), "eps", None)
        if isinstance(eps, float) and abs(eps - config.layer_norm_eps) > 1e-3 * config.layer_norm_eps:
            raise CheckFailure(
                f"{name}.eps is {eps:g}, but config.layer_norm_eps is {config.layer_norm_eps:g}",
                cause="LayerNorm eps does not come from the config: nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)",
            )


def _check_qkv_bias(learner, config) -> None:
    if config.qkv_bias:
        return
    names = [n for n, _ in learner.named_parameters() if n in ("attn.q_proj.bias", "attn.k_proj.bias", "attn.v_proj.bias")]
    if names:
        raise CheckFailure(
            f"your block has {', '.join(names)}, but config.qkv_bias is False",
            cause="config.qkv_bias is not passed on: MultiHeadSelfAttention(..., qkv_bias=config.qkv_bias)",
        )


@check("TransformerBlock", reference="vit_course.block:TransformerBlock")
def check_transformer_block(cls: type) -> str:
    """`cls(config)`, `forward(x) -> x`: compare with `vit_course.block.TransformerBlock`."""
    from vit_course.block import TransformerBlock

    backward = []
    for seed, (overrides, regime, (B, N), std, case) in enumerate(CASES):
        config = make_config(**overrides)
        reference = TransformerBlock(config).eval()
        init_weights(reference, regime, seed)
        learner = learner_call(cls, config, case=case)
        if not isinstance(learner, torch.nn.Module):
            raise CheckFailure(f"your block should be a torch.nn.Module, got a {type(learner).__name__}")
        _check_eps(learner, config)
        _check_qkv_bias(learner, config)
        copy_weights(learner, reference, "block", LAYOUT)
        learner.eval()
        x = randn(B, N, config.hidden_size, seed=700 + seed, std=std)
        with torch.no_grad():
            expected = reference(x)
        got = learner_call(learner, x.clone(), case=case, names=("x",))
        if isinstance(got, (tuple, list)) and got and isinstance(got[0], torch.Tensor):
            raise CheckFailure(
                f"forward returned a {type(got).__name__} of {len(got)} items, expected one tensor of shape "
                f"{fmt_shape(expected.shape)}",
                cause="forward should return only x; the attention weights stay inside the block",
            )
        # large activations add float32 rounding: scale atol with the output's size
        atol = 1e-5 * max(1.0, float(expected.abs().max()))
        problems = tensor_problems("output", got, expected, atol=atol)
        if not problems:
            backward.append((learner, x, case, list(reference.state_dict())))
            continue
        p = {k: v.detach() for k, v in reference.state_dict().items()}
        h, eps = config.num_attention_heads, config.layer_norm_eps
        cause = diagnose(got, _mistakes(x, p, h, eps), tensor_distance(atol=atol))
        if cause is None and not isinstance(got, torch.Tensor):
            cause = f"forward should return a tensor of shape {fmt_shape(expected.shape)}, got {shape_of(got)}"
        raise CheckFailure(
            f"wrong output with hidden_size={config.hidden_size}, num_attention_heads={h}",
            details=(f"on {case}", *problems),
            cause=cause,
        )
    # once every forward matches: a backward pass, so a mistake in forward is named first
    for learner, x, case, names in backward:
        learner_backward(learner, x.clone(), case=case, expected=names)
    return (
        f"{len(CASES)} cases match vit_course.block.TransformerBlock "
        "(HF init and std 0.3 weights, small-variance inputs, qkv_bias=False, N=1)"
    )
