"""Our MAE against the real `transformers.ViTMAEForPreTraining`, same process, same weights, same noise.

Both weight regimes of test_parity.py (default init, std 0.3), with and without
`norm_pix_loss`: the loss, the logits, the mask and `ids_restore` within 1e-5.
"""

import pytest
import torch
import transformers

from vit_course.mae import (MAEConfig, MaskedAutoencoder, mae_loss, mae_patchify, mae_position_embedding,
                            mae_unpatchify, random_masking)

ATOL = 1e-5
REGIMES = ["default_init", "std_0.3"]
CONFIGS = {
    "hf_tester": dict(image_size=30, patch_size=2, num_channels=3, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=37, decoder_hidden_size=16, decoder_num_hidden_layers=2,
                      decoder_num_attention_heads=2, decoder_intermediate_size=20, mask_ratio=0.6),
    "fashion_like": dict(image_size=28, patch_size=4, num_channels=1, hidden_size=24, num_hidden_layers=2,
                         num_attention_heads=3, intermediate_size=48, decoder_hidden_size=16,
                         decoder_num_hidden_layers=1, decoder_num_attention_heads=4, decoder_intermediate_size=32),
}


def make_hf(kwargs, regime, norm_pix_loss, seed=0):
    torch.manual_seed(seed)
    model = transformers.ViTMAEForPreTraining(transformers.ViTMAEConfig(**kwargs, norm_pix_loss=norm_pix_loss))
    if regime == "std_0.3":
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.3)
    model.set_attn_implementation("eager")
    return model.eval()


def inputs(config, batch=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    num_patches = (config.image_size // config.patch_size) ** 2
    x = torch.randn(batch, config.num_channels, config.image_size, config.image_size, generator=g)
    return x, torch.rand(batch, num_patches, generator=g)


def assert_close(got, expected, what):
    assert got.shape == expected.shape, f"{what}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    diff = (got.double() - expected.double()).abs().max().item()
    assert diff <= ATOL, f"{what}: largest difference {diff:.3g} exceeds {ATOL}"


@pytest.mark.parametrize("norm_pix_loss", [False, True])
@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("name", CONFIGS)
def test_loss_logits_mask_and_ids_restore_match_hf_given_the_same_noise(name, regime, norm_pix_loss):
    hf_model = make_hf(CONFIGS[name], regime, norm_pix_loss)
    ours = MaskedAutoencoder.from_hf(hf_model)
    x, noise = inputs(hf_model.config)
    with torch.no_grad():
        expected = hf_model(x, noise=noise)
        got = ours(x, noise=noise)
        latent, _, _ = ours.forward_encoder(x, noise)
        assert_close(latent, hf_model.vit(x, noise=noise).last_hidden_state, f"{name}/{regime} encoder output")
    what = f"{name}/{regime}/norm_pix_loss={norm_pix_loss}"
    assert_close(got.loss, expected.loss, f"{what} loss")
    assert_close(got.logits, expected.logits, f"{what} logits")
    assert_close(got.mask, expected.mask, f"{what} mask")
    assert torch.equal(got.ids_restore, expected.ids_restore), f"{what} ids_restore differ"


def test_norm_pix_loss_changes_the_loss():
    hf_model = make_hf(CONFIGS["hf_tester"], "std_0.3", norm_pix_loss=False)
    ours = MaskedAutoencoder.from_hf(hf_model)
    x, noise = inputs(hf_model.config)
    with torch.no_grad():
        plain = ours(x, noise=noise).loss
        ours.config.norm_pix_loss = True
        normed = ours(x, noise=noise).loss
    assert abs(plain - normed) > 1e-3


def test_the_fixed_position_tables_equal_hf_initialisation():
    """HF's own table builders (ViTMAEEmbeddings / ViTMAEDecoder.initialize_weights), run on fresh modules."""
    from transformers.models.vit_mae import modeling_vit_mae as hf_mae

    config = transformers.ViTMAEConfig(**CONFIGS["fashion_like"])
    embeddings = hf_mae.ViTMAEEmbeddings(config)
    embeddings.initialize_weights()
    decoder = hf_mae.ViTMAEDecoder(config, num_patches=49)
    assert_close(mae_position_embedding(7, 24), embeddings.position_embeddings, "encoder sin-cos table")
    assert_close(mae_position_embedding(7, 16), decoder.decoder_pos_embed, "decoder sin-cos table")
    ours = MaskedAutoencoder(MAEConfig(**CONFIGS["fashion_like"]))
    assert not ours.pos_embed.requires_grad and not ours.decoder_pos_embed.requires_grad


def test_random_masking_keeps_the_lowest_noise_and_restores_order():
    x = torch.arange(2 * 8 * 1, dtype=torch.float32).reshape(2, 8, 1)
    noise = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.8, 0.2, 0.7, 0.4], [0.0, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]])
    visible, mask, ids_restore = random_masking(x, 0.75, noise)
    assert visible[..., 0].tolist() == [[1.0, 5.0], [8.0, 15.0]], "keep the two lowest-noise patches, lowest first"
    assert mask.tolist() == [[1, 0, 1, 1, 1, 0, 1, 1], [0, 1, 1, 1, 1, 1, 1, 0]]
    shuffled = x.gather(1, noise.argsort(1)[..., None])
    assert torch.equal(shuffled.gather(1, ids_restore[..., None]), x), "ids_restore must undo the shuffle"


def test_mae_patchify_is_ppc_order_and_unpatchify_inverts_it():
    images = torch.randn(2, 3, 8, 12, generator=torch.Generator().manual_seed(0))
    hf_model = transformers.ViTMAEForPreTraining(transformers.ViTMAEConfig(image_size=8, patch_size=4, hidden_size=8,
                                                                            num_hidden_layers=1, num_attention_heads=2,
                                                                            decoder_hidden_size=8,
                                                                            decoder_num_attention_heads=2))
    square = images[..., :8]
    assert torch.equal(mae_patchify(square, 4), hf_model.patchify(square))
    assert torch.equal(mae_unpatchify(mae_patchify(images, 4), 4, (8, 12), 3), images)
    from vit_course.patches import patchify
    assert not torch.equal(mae_patchify(square, 4), patchify(square, 4)), "MAE's (P, P, C) order is not ViT's (C, P, P)"


def test_loss_over_all_patches_differs_from_the_masked_loss():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 6, 4, generator=g), torch.randn(2, 6, 4, generator=g)
    mask = torch.tensor([[1.0, 0, 1, 0, 1, 1], [0, 1, 1, 1, 0, 1]])
    per_patch = ((pred - target) ** 2).mean(-1)
    assert torch.allclose(mae_loss(pred, target, mask), per_patch[mask.bool()].mean())
    assert not torch.allclose(mae_loss(pred, target, mask), per_patch.mean())


def test_linear_probe_features_see_every_patch():
    ours = MaskedAutoencoder(MAEConfig(**CONFIGS["fashion_like"])).eval()
    x, _ = inputs(ours.config)
    with torch.no_grad():
        assert ours.forward_features(x).shape == (3, 1 + 49, 24)


@pytest.mark.parametrize("regime", REGIMES)
def test_to_hf_round_trip_and_save_pretrained_directory(regime, tmp_path):
    hf_model = make_hf(CONFIGS["fashion_like"], regime, norm_pix_loss=True)
    ours = MaskedAutoencoder.from_hf(hf_model)
    x, noise = inputs(hf_model.config)
    back = ours.to_hf()
    back.save_pretrained(tmp_path)
    with torch.no_grad():
        assert_close(back(x, noise=noise).logits, hf_model(x, noise=noise).logits, "to_hf logits")
        assert_close(MaskedAutoencoder.from_hf(tmp_path)(x, noise=noise).loss, hf_model(x, noise=noise).loss,
                     "loss from a save_pretrained directory")


def test_bad_input_is_a_value_error_naming_expected_and_given():
    with pytest.raises(ValueError, match=r"expected noise of shape \(2, 8\), one number per patch, got \(2, 7\)"):
        random_masking(torch.zeros(2, 8, 4), 0.75, torch.zeros(2, 7))
    with pytest.raises(ValueError, match="0 <= mask_ratio < 1, got 1.0"):
        random_masking(torch.zeros(2, 8, 4), 1.0)
    with pytest.raises(ValueError, match=r"rank 3 \(B, N, D\)"):
        random_masking(torch.zeros(8, 4), 0.5)
    with pytest.raises(ValueError, match="square patch grid"):
        MAEConfig(**{**CONFIGS["fashion_like"], "image_size": (28, 32)})
    with pytest.raises(ValueError, match=r"mask \(B, N\)"):
        mae_loss(torch.zeros(2, 6, 4), torch.zeros(2, 6, 4), torch.zeros(2, 5))
    ours = MaskedAutoencoder(MAEConfig(**CONFIGS["fashion_like"]))
    with pytest.raises(ValueError, match="expected images of size 28x28, got 32x32"):
        ours(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="ViTMAEForPreTraining or its directory, got DeiTModel"):
        MaskedAutoencoder.from_hf(transformers.DeiTModel(transformers.DeiTConfig(hidden_size=8, num_hidden_layers=1,
                                                                                  num_attention_heads=2)))
