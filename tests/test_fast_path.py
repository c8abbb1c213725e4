"""The fast path (`attn_implementation="fast"`: one qkv Linear + fused attention) against
the teaching path and the real transformers ViT, in the same process, on the same weights."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from test_parity import CONFIGS, REGIMES, hf_outputs, make_hf, pixels
from vit_course import VisionTransformer
from vit_course.attention import FusedQKVSelfAttention, MultiHeadSelfAttention, fuse_qkv_state_dict, split_qkv_state_dict
from vit_course.bench import quantize_int8

ATOL = 1e-5  # the issue asks for 1e-4 in fp32; the paths agree far closer
FAST_CONFIGS = ["hf_tester", "no_qkv_bias", "non_square_48x32", "backbone"]


def max_diff(a, b):
    assert a.shape == b.shape, f"expected shape {tuple(b.shape)}, got {tuple(a.shape)}"
    return (a - b).abs().max().item()


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("name", FAST_CONFIGS)
def test_fast_path_equals_teaching_path_and_hf(name, regime):
    hf_model = make_hf(CONFIGS[name], regime)
    teaching = VisionTransformer.from_hf(hf_model)
    fast = VisionTransformer.from_hf(hf_model, attn_implementation="fast")
    assert all(isinstance(b.attn, FusedQKVSelfAttention) for b in fast.blocks), "from_hf(..., 'fast') built no fast blocks"
    assert all(type(b.attn) is MultiHeadSelfAttention and hasattr(b.attn, "q_proj") for b in teaching.blocks)
    x = pixels(hf_model)
    features, attentions, logits = hf_outputs(hf_model, x)
    with torch.no_grad():
        out_fast, out_teaching = fast(x), teaching(x)
        expected = logits if logits is not None else features[:, 0]
        assert max_diff(out_fast, out_teaching) <= ATOL, f"fast vs teaching: {max_diff(out_fast, out_teaching):.3g}"
        assert max_diff(out_fast, expected) <= ATOL, f"fast vs HF: {max_diff(out_fast, expected):.3g}"
        assert max_diff(fast.forward_features(x), features) <= ATOL, "fast features vs HF last_hidden_state"
        for layer, (ours, theirs) in enumerate(zip(fast.attention_maps(x), attentions)):
            assert max_diff(ours, theirs) <= ATOL, f"fast path attention weights of layer {layer} differ from HF's"


def test_fast_path_gradients_are_the_teaching_paths_stacked():
    hf_model = make_hf(CONFIGS["hf_tester"], "std_0.3")
    teaching = VisionTransformer.from_hf(hf_model).train()
    fast = VisionTransformer.from_hf(hf_model, attn_implementation="fast").train()
    x = pixels(hf_model)
    teaching(x).square().sum().backward()
    fast(x).square().sum().backward()
    grads = {k: p.grad for k, p in teaching.named_parameters()}
    fused = fuse_qkv_state_dict(grads)
    for key, p in fast.named_parameters():
        scale = fused[key].abs().max().item() + 1e-12
        assert max_diff(p.grad, fused[key]) <= 1e-4 * scale, f"gradient of {key} differs from the teaching path's"


def test_weights_move_between_layouts_and_back_to_hf():
    hf_model = make_hf(CONFIGS["hf_tester"], "std_0.3")
    fast = VisionTransformer.from_hf(hf_model, attn_implementation="fast")
    assert "blocks.0.attn.qkv.weight" in fast.state_dict() and "blocks.0.attn.q_proj.weight" not in fast.state_dict()
    teaching = VisionTransformer(replace(fast.config, attn_implementation="eager")).eval()
    teaching.load_state_dict(fast.state_dict())  # fast layout into the teaching path
    x = pixels(hf_model)
    with torch.no_grad():
        expected = hf_model(x).logits
        assert max_diff(teaching(x), expected) <= ATOL
        assert max_diff(fast.to_hf()(x).logits, expected) <= ATOL, "fast.to_hf() lost the weights"


def test_qkv_fusion_is_q_then_k_then_v_and_inverts():
    sd = {"a.q_proj.weight": torch.full((2, 3), 1.0), "a.k_proj.weight": torch.full((2, 3), 2.0),
          "a.v_proj.weight": torch.full((2, 3), 3.0), "a.o_proj.weight": torch.zeros(3, 2)}
    fused = fuse_qkv_state_dict(sd)
    assert sorted(fused) == ["a.o_proj.weight", "a.qkv.weight"]
    assert fused["a.qkv.weight"][:, 0].tolist() == [1, 1, 2, 2, 3, 3]
    back = split_qkv_state_dict(fused)
    assert sorted(back) == sorted(sd) and all(torch.equal(back[k], sd[k]) for k in sd)


def test_qkv_fusion_names_a_missing_projection():
    sd = {"blocks.1.attn.q_proj.weight": torch.zeros(2, 2), "blocks.1.attn.v_proj.weight": torch.zeros(2, 2)}
    with pytest.raises(ValueError, match=r"blocks\.1\.attn.*k_proj\.weight"):
        fuse_qkv_state_dict(sd)


def test_fused_attention_module_equals_separate_projections():
    torch.manual_seed(0)
    teaching = MultiHeadSelfAttention(24, 3).eval()
    fast = FusedQKVSelfAttention(24, 3).eval()
    fast.load_state_dict(fuse_qkv_state_dict(teaching.state_dict()))
    x = torch.randn(2, 5, 24)
    out, weights = teaching(x)
    fast_out, none = fast(x, need_weights=False)
    assert none is None
    torch.testing.assert_close(fast_out, out, atol=1e-6, rtol=0)
    torch.testing.assert_close(fast(x)[1], weights, atol=1e-6, rtol=0)


def test_int8_copy_quantizes_every_linear_and_stays_close():
    hf_model = make_hf(CONFIGS["hf_tester"], "default_init")
    fast = VisionTransformer.from_hf(hf_model, attn_implementation="fast")
    q = quantize_int8(fast)
    assert not any(type(m) is nn.Linear for m in q.modules()), "a Linear layer stayed fp32"
    assert any(type(m) is nn.Linear for m in fast.modules()), "quantize_int8 changed the model it was given"
    x = pixels(hf_model)
    with torch.no_grad():
        ref, got = fast(x), q(x)
    # int8 weights: close, not equal; a wrong layer or scale would be off by the logits' size
    assert 0 < max_diff(got, ref) <= 0.05 * ref.abs().max().item(), f"int8 vs fp32: {max_diff(got, ref):.3g}"
