"""Fast tests of `vit_course.train`: the loop learns, `evaluate` counts right, every model kind works."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from vit_course import ViTConfig, VisionTransformer
from vit_course.train import History, LiveLossPlot, evaluate, fit, logits_of, predict, train_epoch, unpack


def blobs(n=64, seed=0):
    """Two well-separated classes of 1x8x8 'images': class 1 is bright, class 0 dark."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.3 + (y.float() * 2 - 1).view(n, 1, 1, 1)
    return x, y


class DictDataset(Dataset):
    """The Trainer's format: each item a dict of pixel_values and labels."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "labels": self.y[i]}


class Fixed(nn.Module):
    """Predicts class 1 when the mean pixel is positive: a model with a known accuracy."""

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([-m, m], dim=-1)


def tiny_vit(channels=1):
    config = ViTConfig(image_size=8, patch_size=4, num_channels=channels, hidden_size=16,
                       num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=2)
    return VisionTransformer(config)


def tiny_hf_vit():
    from transformers import ViTConfig as HFConfig, ViTForImageClassification

    config = HFConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=1,
                      num_attention_heads=2, intermediate_size=32, num_labels=2)
    return ViTForImageClassification(config)


def cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


MODELS = {"plain nn.Module": cnn, "vit_course.VisionTransformer": tiny_vit, "HF ViTForImageClassification": tiny_hf_vit}


def test_unpack_accepts_tuples_and_trainer_dicts():
    x, y = torch.zeros(2, 1, 8, 8), torch.tensor([0, 1])
    assert unpack((x, y))[0] is x
    got_x, got_y = unpack({"pixel_values": x, "labels": y})
    assert got_x is x and got_y is y


@pytest.mark.parametrize("kind", MODELS)
def test_logits_of_gives_batch_by_classes_for_every_model_kind(kind):
    torch.manual_seed(0)
    logits = logits_of(MODELS[kind](), torch.randn(3, 1, 8, 8))
    assert isinstance(logits, torch.Tensor) and logits.shape == (3, 2), f"{kind}: got {getattr(logits, 'shape', logits)}"


def test_evaluate_on_a_known_model_counts_correct_predictions():
    x, y = blobs(40)
    y_half_wrong = y.clone()
    y_half_wrong[:10] = 1 - y_half_wrong[:10]  # 10 of 40 labels flipped: accuracy 0.75
    loader = DataLoader(TensorDataset(x, y_half_wrong), batch_size=16)
    assert evaluate(Fixed(), loader) == pytest.approx(0.75)
    preds, labels = predict(Fixed(), loader)
    assert preds.tolist() == y.tolist() and labels.tolist() == y_half_wrong.tolist()


def test_evaluate_restores_training_mode_and_keeps_no_gradients():
    model = cnn().train()
    x, y = blobs(8)
    evaluate(model, DataLoader(TensorDataset(x, y), batch_size=4))
    assert model.training, "evaluate should put the model back in training mode"
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("kind", MODELS)
def test_a_few_steps_reduce_the_loss_for_every_model_kind(kind):
    torch.manual_seed(0)
    model = MODELS[kind]()
    x, y = blobs(64)
    loader = DataLoader(TensorDataset(x, y), batch_size=64)
    with torch.no_grad():
        before = float(nn.functional.cross_entropy(logits_of(model, x), y))
    history = fit(model, loader, lr=1e-2, epochs=15)
    with torch.no_grad():
        after = float(nn.functional.cross_entropy(logits_of(model.eval(), x), y))
    assert history.steps == 15
    assert after < 0.5 * before, f"{kind}: loss {before:.4f} -> {after:.4f}, expected it at least halved"


def test_fit_with_trainer_style_dict_batches_learns():
    torch.manual_seed(0)
    x, y = blobs(64)
    loader = DataLoader(DictDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    model = tiny_hf_vit()
    history = fit(model, loader, lr=1e-2, epochs=4, val_loader=DataLoader(DictDataset(*blobs(32, seed=1)), batch_size=32))
    assert len(history.val_accuracy) == 4
    assert history.val_accuracy[-1] >= 0.9, f"accuracy after 4 epochs: {history.val_accuracy}"


def test_max_steps_stops_across_epochs_and_callback_sees_every_step():
    x, y = blobs(64)
    loader = DataLoader(TensorDataset(x, y), batch_size=16)  # 4 steps per epoch
    seen = []
    history = fit(cnn(), loader, epochs=5, max_steps=6, callback=lambda step, loss: seen.append((step, loss)))
    assert history.steps == 6
    assert [s for s, _ in seen] == [1, 2, 3, 4, 5, 6]
    assert [loss for _, loss in seen] == history.losses


def test_fit_is_reproducible_with_the_same_seed():
    def run():
        torch.manual_seed(0)
        x, y = blobs(64)
        loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
        return fit(tiny_vit(), loader, epochs=2).losses

    assert run() == run()


def test_default_optimizer_skips_frozen_parameters():
    torch.manual_seed(0)
    model = tiny_vit()
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("head.")
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    x, y = blobs(32)
    fit(model, DataLoader(TensorDataset(x, y), batch_size=16), lr=1e-2, epochs=2)
    for name, before in frozen.items():
        assert torch.equal(dict(model.named_parameters())[name], before), f"{name} changed although frozen"
    assert not torch.equal(model.head.weight, torch.zeros_like(model.head.weight))


def test_scheduler_steps_once_per_optimizer_step():
    model = cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    x, y = blobs(48)
    train_epoch(model, DataLoader(TensorDataset(x, y), batch_size=16), optimizer, scheduler=scheduler)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.0 / 4)


def test_progress_bar_option_runs():
    x, y = blobs(32)
    model = cnn()
    losses = train_epoch(model, DataLoader(TensorDataset(x, y), batch_size=16),
                         torch.optim.SGD(model.parameters(), lr=0.1), progress=True)
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)


def test_a_progress_bar_changes_neither_the_batches_nor_the_weights():
    """tqdm.auto's bar calls iter() on the loader when made and again when iterated; each
    iter() of a shuffled DataLoader draws a new order, so a bar used to change the run."""
    def run(progress):
        torch.manual_seed(0)
        x, y = blobs(64)
        loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
        model = tiny_vit()
        return model, fit(model, loader, epochs=2, progress=progress)

    plain_model, plain = run(False)
    bar_model, bar = run(True)
    assert bar.losses == plain.losses, "the progress bar changed the batch order"
    for (name, a), b in zip(bar_model.state_dict().items(), plain_model.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs between progress=True and progress=False"


def test_train_epoch_sees_the_same_batches_with_and_without_a_bar():
    def first_labels(progress):
        x, _ = blobs(32)
        loader = DataLoader(TensorDataset(x, torch.arange(32)), batch_size=8, shuffle=True,
                            generator=torch.Generator().manual_seed(0))
        seen = []
        model = Fixed()
        model.dummy = nn.Parameter(torch.zeros(1))
        def loss_fn(logits, labels):
            seen.append(labels.tolist())
            return logits.sum() * 0 + model.dummy.sum()
        train_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=0.1), loss_fn=loss_fn, progress=progress)
        return seen

    assert first_labels(True) == first_labels(False)


def test_compute_loss_gets_each_batch_as_the_loader_yields_it():
    """A distillation-style batch (x, y, teacher logits) that `unpack` does not know."""
    torch.manual_seed(0)
    x, y = blobs(32)
    teacher = torch.randn(32, 2)
    loader = DataLoader(TensorDataset(x, y, teacher), batch_size=8)
    seen = []

    def compute_loss(model, batch):
        xb, yb, tb = batch
        seen.append(tb)
        logits = logits_of(model, xb)
        return nn.functional.cross_entropy(logits, yb) + nn.functional.mse_loss(logits, tb)

    history = fit(cnn(), loader, epochs=1, compute_loss=compute_loss)
    assert history.steps == 4 and torch.equal(torch.cat(seen), teacher)


def test_loss_fn_and_compute_loss_together_are_refused():
    x, y = blobs(16)
    with pytest.raises(ValueError, match="not both"):
        fit(cnn(), DataLoader(TensorDataset(x, y), batch_size=8), loss_fn=nn.functional.cross_entropy,
            compute_loss=lambda model, batch: 0)


def test_epoch_callback_sees_each_epoch_after_its_evaluation():
    x, y = blobs(32)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    seen = []
    fit(cnn(), loader, epochs=3, val_loader=loader,
        epoch_callback=lambda epoch, history: seen.append((epoch, history.steps, len(history.val_accuracy))))
    assert seen == [(1, 4, 1), (2, 8, 2), (3, 12, 3)]


def test_live_loss_plot_records_curves_without_a_notebook():
    plot = LiveLossPlot(every=2, live=False)
    plot.start("a")
    for step in range(1, 5):
        plot(step, 1.0 / step)
    plot.start("b")
    plot(1, 0.5)
    plot.add("c", [0.3, 0.2])
    plot.draw()
    assert plot.curves["c"] == ([1, 2], [0.3, 0.2])
    assert plot.curves["a"] == ([1, 2, 3, 4], [1.0, 0.5, 1 / 3, 0.25])
    assert len(plot.ax.get_lines()) == 3
    assert isinstance(History().losses, list)
