"""Our ViT against the real timm `VisionTransformer`, same process, same weights (timm optional).

Both weight regimes of test_parity.py. timm fuses q, k, v into one Linear and uses
LayerNorm eps 1e-6; the mapping splits the first and keeps the second. Skipped, with the
reason, when timm is not installed.
"""

import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm", reason="timm is optional: pip install 'vit-course[timm]' to run the timm parity tests")

from vit_course import VisionTransformer, ViTConfig  # noqa: E402

from parity_helpers import ATOL, assert_close  # noqa: E402
REGIMES = ["default_init", "std_0.3"]
CONFIGS = {
    "small_p4": dict(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0, num_classes=10),
    "vit_ti16_224": dict(img_size=224, patch_size=16, embed_dim=192, depth=2, num_heads=3, num_classes=5),
    "gray_non_square_no_bias": dict(img_size=(28, 20), patch_size=4, in_chans=1, embed_dim=24, depth=2, num_heads=3,
                                    qkv_bias=False, num_classes=3),
    "backbone": dict(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=0),
}


def make_timm(kwargs, regime, seed=0):
    torch.manual_seed(seed)
    model = timm.models.vision_transformer.VisionTransformer(**kwargs)
    if regime == "std_0.3":
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.3)
    return model.eval()


def pixels(model, batch=2, seed=1):
    height, width = model.patch_embed.img_size
    channels = model.patch_embed.proj.in_channels
    return torch.randn(batch, channels, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("name", CONFIGS)
def test_from_timm_matches_timm_outputs_and_features(name, regime):
    theirs = make_timm(CONFIGS[name], regime)
    ours = VisionTransformer.from_timm(theirs)
    assert ours.config.layer_norm_eps == 1e-6, "timm's LayerNorm eps must be kept"
    x = pixels(theirs)
    with torch.no_grad():
        assert_close(ours.forward_features(x), theirs.forward_features(x), f"{name}/{regime} features")
        assert_close(ours(x), theirs(x), f"{name}/{regime} outputs")


@pytest.mark.parametrize("regime", REGIMES)
def test_to_timm_round_trip_is_exact(regime):
    theirs = make_timm(CONFIGS["small_p4"], regime)
    ours = VisionTransformer.from_timm(theirs)
    back = ours.to_timm()
    for key, value in theirs.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), f"round trip changed {key}"
    x = pixels(theirs)
    with torch.no_grad():
        assert_close(back(x), theirs(x), "to_timm outputs")


def test_an_hf_config_model_goes_to_timm_with_its_eps_and_gelu():
    config = ViTConfig(image_size=16, patch_size=4, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=24, hidden_act="gelu_new", num_labels=4)
    torch.manual_seed(0)
    ours = VisionTransformer(config).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0.0, 0.3)
    theirs = ours.to_timm()
    assert theirs.norm.eps == 1e-12 and theirs.blocks[0].mlp.act.approximate == "tanh"
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert_close(theirs(x), ours(x), "HF-style model through timm")


def test_a_wrong_qkv_split_is_caught_at_std_03_and_a_wrong_eps_at_default_init():
    """The comparison can fail; as for HF (test_parity.py), each mistake shows in one of the two regimes."""
    for regime, mistake in [("std_0.3", "q and k swapped"), ("default_init", "LayerNorm eps 1e-5")]:
        theirs = make_timm(CONFIGS["small_p4"], regime)
        ours = VisionTransformer.from_timm(theirs)
        x = pixels(theirs)
        with torch.no_grad():
            if mistake == "q and k swapped":
                for block in ours.blocks:
                    q = block.attn.q_proj.weight.clone()
                    block.attn.q_proj.weight.copy_(block.attn.k_proj.weight)
                    block.attn.k_proj.weight.copy_(q)
            else:
                for module in ours.modules():
                    if isinstance(module, nn.LayerNorm):
                        module.eps = 1e-5
            diff = (ours.forward_features(x) - theirs.forward_features(x)).abs().max().item()
        assert diff > ATOL, f"{mistake} should be caught at {regime}, got difference {diff:.3g}"


@pytest.mark.parametrize("change,message", [
    (dict(global_pool="avg"), "global_pool must be 'token'"),
    (dict(init_values=1e-5), "layer scale"),
    (dict(reg_tokens=4), "exactly one prefix token"),
    (dict(qk_norm=True), "without q/k norm"),
    (dict(no_embed_class=True), "no_embed_class"),
])
def test_timm_vits_that_are_not_the_papers_are_a_value_error(change, message):
    theirs = timm.models.vision_transformer.VisionTransformer(**{**CONFIGS["small_p4"], **change})
    with pytest.raises(ValueError, match=message):
        VisionTransformer.from_timm(theirs)


def test_a_non_vit_is_a_value_error():
    with pytest.raises(ValueError, match="expected a timm VisionTransformer, got Linear"):
        VisionTransformer.from_timm(nn.Linear(2, 2))
