"""Our Swin against the real `transformers.SwinModel`, same process, same weights.

Every stage's hidden states are compared, in HF's default init and with every weight
redrawn at std 0.3 (test_parity.py's two regimes). The configs make both stages use
shifted windows, pad a grid that the window does not divide, merge an odd grid, and
clamp the window when a stage's grid is no larger than it.
"""

import pytest
import torch
import transformers
from transformers.models.swin import modeling_swin as hf_swin

from vit_course.config import to_2tuple
from vit_course.swin import (PatchMerging, SwinConfig, SwinTransformer, relative_position_index,
                             shifted_window_mask, window_partition, window_reverse)

from parity_helpers import ATOL, assert_close  # noqa: E402
REGIMES = ["default_init", "std_0.3"]
CONFIGS = {
    # 16x16 then 8x8 tokens, window 4: both stages shift
    "two_stages_shifted": dict(image_size=32, patch_size=2, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=4),
    # 14x14 then 7x7: padded to 16 and 8 for the windows; the odd 7x7 padded for merging
    "padded_odd_grid": dict(image_size=28, patch_size=2, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=4),
    # non-square, one channel, window 2
    "non_square_gray": dict(image_size=(32, 24), patch_size=4, num_channels=1, embed_dim=8, depths=[2, 2],
                            num_heads=[2, 2], window_size=2),
    # 16x16, 8x8, then 4x4 = one window: stage 3 does not shift; no qkv bias
    "clamped_three_stages": dict(image_size=32, patch_size=2, embed_dim=8, depths=[2, 2, 2], num_heads=[1, 2, 4],
                                 window_size=4, qkv_bias=False),
}


def redraw(model, regime):
    if regime == "std_0.3":
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.3)
    model.set_attn_implementation("eager")
    return model.eval()


def make_hf(kwargs, regime, num_labels=0, seed=0):
    torch.manual_seed(seed)
    if num_labels:
        model = transformers.SwinForImageClassification(transformers.SwinConfig(**kwargs, num_labels=num_labels))
    else:
        model = transformers.SwinModel(transformers.SwinConfig(**kwargs))
    return redraw(model, regime)


def pixels(config, batch=2, seed=1):
    height, width = to_2tuple(config.image_size)
    return torch.randn(batch, config.num_channels, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("name", CONFIGS)
def test_every_stage_matches_hf_swin_model(name, regime):
    hf_model = make_hf(CONFIGS[name], regime)
    ours = SwinTransformer.from_hf(hf_model)
    x = pixels(hf_model.config)
    with torch.no_grad():
        out = hf_model(x, output_hidden_states=True)
        states = ours.hidden_states(x)
        assert len(states) == len(out.hidden_states) == 1 + len(CONFIGS[name]["depths"])
        for stage, (a, b) in enumerate(zip(states, out.hidden_states)):
            assert_close(a, b, f"{name}/{regime} hidden state {stage}")
        assert_close(ours.forward_features(x), out.last_hidden_state, f"{name}/{regime} last_hidden_state")
        assert_close(ours(x), out.pooler_output, f"{name}/{regime} pooled output")


def test_the_configs_exercise_shifted_windows_and_clamping():
    shifts = {name: [[b.shift_size for b in s.blocks] for s in SwinTransformer(SwinConfig(**kw)).stages]
              for name, kw in CONFIGS.items()}
    assert shifts["two_stages_shifted"] == [[0, 2], [0, 2]], shifts
    assert shifts["clamped_three_stages"] == [[0, 2], [0, 2], [0, 0]], shifts


@pytest.mark.parametrize("regime", REGIMES)
def test_classifier_matches_swin_for_image_classification_and_round_trips(regime, tmp_path):
    hf_model = make_hf(CONFIGS["padded_odd_grid"], regime, num_labels=7)
    ours = SwinTransformer.from_hf(hf_model)
    x = pixels(hf_model.config)
    with torch.no_grad():
        assert_close(ours(x), hf_model(x).logits, f"{regime} logits")
        back = ours.to_hf()
        assert_close(back(x).logits, hf_model(x).logits, f"{regime} to_hf logits")
    back.save_pretrained(tmp_path)
    with torch.no_grad():
        assert_close(SwinTransformer.from_hf(tmp_path)(x), hf_model(x).logits, "logits from a save_pretrained directory")


def test_window_partition_and_reverse_match_hf_and_invert_each_other():
    x = torch.randn(2, 8, 12, 3, generator=torch.Generator().manual_seed(0))
    windows = window_partition(x, 4)
    assert windows.shape == (2 * 2 * 3, 4, 4, 3)
    assert torch.equal(windows, hf_swin.window_partition(x, 4))
    assert torch.equal(window_reverse(windows, 4, 8, 12), x)
    # the second window of the first image is rows 0..3, columns 4..7: row-major order
    assert torch.equal(windows[1], x[0, 0:4, 4:8])


@pytest.mark.parametrize("size,window,shift", [((8, 8), 4, 2), ((16, 12), 4, 2), ((14, 14), 7, 3), ((6, 9), 3, 1)])
def test_shifted_window_mask_matches_hf(size, window, shift):
    height, width = size
    layer = hf_swin.SwinLayer(transformers.SwinConfig(window_size=window), dim=4, input_resolution=(32, 32),
                              num_heads=1, shift_size=shift)
    expected = layer.get_attn_mask(height, width, dtype=torch.float32, device="cpu")
    got = shifted_window_mask(height, width, window, shift)
    assert torch.equal(got, expected), f"mask differs from HF's for {size}, window {window}, shift {shift}"
    assert bool((got[0] == 0).all()), "the top-left window holds one region: nothing masked"
    assert bool((got[-1] == -100).any()), "the bottom-right window mixes regions: some pairs masked"


@pytest.mark.parametrize("window", [2, 4, 7])
def test_relative_position_index_matches_hf(window):
    expected = hf_swin.SwinRelativePositionBias(1, (window, window))._create_relative_position_index()
    got = relative_position_index(window)
    assert torch.equal(got, expected)
    assert int(got.max()) == (2 * window - 1) ** 2 - 1 and bool((got.diagonal() == got[0, 0]).all())


@pytest.mark.parametrize("mistake", ["no_mask", "shift_wrong_way", "no_relative_bias"])
def test_a_near_miss_swin_is_caught_by_the_parity_comparison(mistake, monkeypatch):
    """The comparison can fail: each of these mistakes moves the output by more than ATOL."""
    import vit_course.swin as swin

    hf_model = make_hf(CONFIGS["two_stages_shifted"], "std_0.3")
    ours = SwinTransformer.from_hf(hf_model)
    if mistake == "no_mask":
        monkeypatch.setattr(swin, "shifted_window_mask", lambda H, W, M, s: torch.zeros(H * W // M // M, M * M, M * M))
    elif mistake == "shift_wrong_way":
        class RollsBackwards:  # torch, with every roll in vit_course.swin reversed (HF's untouched)
            def __getattr__(self, name):
                return getattr(torch, name)

            def roll(self, x, shifts, dims):
                return torch.roll(x, tuple(-s for s in shifts), dims)

        monkeypatch.setattr(swin, "torch", RollsBackwards())
    else:
        for stage in ours.stages:
            for block in stage.blocks:
                monkeypatch.setattr(block.attn, "relative_position_bias", lambda: torch.zeros(()))
    x = pixels(hf_model.config)
    with torch.no_grad():
        diff = (ours.forward_features(x) - hf_model(x).last_hidden_state).abs().max().item()
    assert diff > ATOL, f"{mistake} should be caught, got difference {diff:.3g}"


def test_patch_merging_concatenates_the_2x2_group_in_hf_order():
    torch.manual_seed(0)
    ours, theirs = PatchMerging(3), hf_swin.SwinPatchMerging(3)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 5 * 6, 3)
    with torch.no_grad():
        assert_close(ours(x, (5, 6)), theirs(x, (5, 6)), "patch merging on an odd 5x6 grid")


def test_bad_input_is_a_value_error_naming_expected_and_given():
    with pytest.raises(ValueError, match="divisible by the window size 4, got 6x8"):
        window_partition(torch.zeros(1, 6, 8, 2), 4)
    with pytest.raises(ValueError, match=r"rank 4 \(B, H, W, C\)"):
        window_partition(torch.zeros(6, 8, 2), 2)
    with pytest.raises(ValueError, match=r"expected windows of shape \(B \* 4, 2, 2, C\)"):
        window_reverse(torch.zeros(3, 2, 2, 1), 2, 4, 4)
    with pytest.raises(ValueError, match="0 < shift_size < window_size=4, got shift_size=4"):
        shifted_window_mask(8, 8, 4, 4)
    with pytest.raises(ValueError, match="one head count per stage"):
        SwinConfig(depths=[2, 2], num_heads=[2])
    with pytest.raises(ValueError, match="width 16 must be divisible by num_heads, got 3"):
        SwinConfig(embed_dim=16, depths=[1], num_heads=[3])
    with pytest.raises(ValueError, match="expected 3 channels, got 1"):
        SwinTransformer(SwinConfig(**CONFIGS["two_stages_shifted"]))(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="grid of 2x2 tokens is smaller than the window 4"):
        SwinTransformer(SwinConfig(**{**CONFIGS["two_stages_shifted"], "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}))
    with pytest.raises(ValueError, match="SwinModel or SwinForImageClassification, got ViTModel"):
        SwinTransformer.from_hf(transformers.ViTModel(transformers.ViTConfig(hidden_size=8, num_hidden_layers=1,
                                                                              num_attention_heads=2, intermediate_size=8)))
