# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Fine-tuning: adapting a pretrained ViT to a new task
#
# A pretrained model is a starting point. *Fine-tuning* continues its training on a new,
# usually much smaller dataset, so that what it learned transfers. Here the course's ViT,
# trained on Fashion-MNIST clothes, learns to read handwritten digits (MNIST) from only
# 1000 examples and a few dozen optimisation steps.
#
# **What you will learn**
#
# - fine-tuning with Hugging Face's `Trainer`, and the same loop written out in PyTorch
#   (`vit_course.train`), with a progress bar and a live loss plot;
# - linear probing versus full fine-tuning versus training from scratch, on the same budget;
# - freezing a backbone, layer-wise learning-rate decay, warmup, and data augmentation.
#
# **Time:** about 30 minutes to read and do the two exercises; every training run is tiny
# so that the notebook runs in about a minute on a laptop CPU. The accuracies are those of
# a few dozen steps, not of a finished model.

# %%
import io
import shutil
import tempfile

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import transformers
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.transforms import v2 as T
from transformers import (AutoImageProcessor, Trainer, TrainingArguments, ViTForImageClassification,
                          get_cosine_schedule_with_warmup)

from vit_course import finetune, plots
from vit_course.checks import check_freeze_backbone, check_layerwise_lr_groups, use_or_reference
from vit_course.data import MNIST_LABELS, load_mnist, to_model_input
from vit_course.paths import DATA_DIR
from vit_course.train import LiveLossPlot, evaluate, fit

transformers.logging.set_verbosity_error()  # keep stderr quiet: no warnings
transformers.logging.disable_progress_bar()  # no "Loading weights" bars
torch.manual_seed(0)

MODEL_DIR = DATA_DIR / "models" / "vit-tiny-fashion"  # the course's ViT, trained on Fashion-MNIST

# %% [markdown]
# ## 1. The new task: digits
#
# The course ships a balanced subset of MNIST: 1000 training and 500 test digits.

# %%
train_images, train_labels = load_mnist("train")  # uint8 (N, 28, 28), int64 (N,)
test_images, test_labels = load_mnist("test")
print("train:", tuple(train_images.shape), "per class:", train_labels.bincount().tolist())
print("test: ", tuple(test_images.shape), "per class:", test_labels.bincount().tolist())

# %%
first_of_each = [int((train_labels == d).nonzero()[0]) for d in range(10)]
fig = plots.image_grid(train_images[first_of_each], [MNIST_LABELS[d] for d in range(10)], size=1.2)
plt.show()

# %% [markdown]
# The pretrained model expects what its image processor makes: 3 channels, pixels
# rescaled to $[0, 1]$ and normalised with the mean and std of *its* training data
# (Fashion-MNIST), not MNIST's. The first layer was trained on inputs of that scale, so
# we keep it. `to_model_input` does exactly the processor's steps for 28 x 28 gray images.

# %%
processor = AutoImageProcessor.from_pretrained(MODEL_DIR)
mean, std = processor.image_mean[0], processor.image_std[0]
X_train = to_model_input(train_images, mean, std, channels=3)  # (N, 3, 28, 28)
X_test = to_model_input(test_images, mean, std, channels=3)
print(f"normalised with mean {mean}, std {std}:", tuple(X_train.shape), tuple(X_test.shape))


# %% [markdown]
# ## 2. Fine-tuning with the `Trainer`
#
# Hugging Face's `Trainer` runs the whole loop for us. It wants a model whose forward takes
# `pixel_values` and `labels` and returns a loss, and a dataset whose items are dicts with
# those keys: a five-line PyTorch `Dataset`.

# %%
class DigitDataset(Dataset):
    """Item i -> {"pixel_values": (3, 28, 28), "labels": int}: the format the Trainer feeds the model."""

    def __init__(self, pixel_values, labels):
        self.pixel_values, self.labels = pixel_values, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"pixel_values": self.pixel_values[i], "labels": self.labels[i]}


train_set, test_set = DigitDataset(X_train, train_labels), DigitDataset(X_test, test_labels)
item = train_set[0]
print(len(train_set), "items like", {k: tuple(v.shape) for k, v in item.items()})

# %% [markdown]
# The model: `from_pretrained` with the new task's labels. `ignore_mismatched_sizes=True`
# lets it load a checkpoint whose classifier has another number of classes: that layer is
# then left out and initialised afresh, with a warning. MNIST happens to have 10 classes
# like Fashion-MNIST, so the shapes match and the old classifier is *kept*: its rows still
# score T-shirts and sneakers, now under digit names. The ViT paper (section 3.2) removes
# the pretrained head and attaches a **zero-initialised** $D \times K$ layer; we do the same,
# so every run below starts from the same pretrained backbone and an empty head.

# %%
id2label = dict(enumerate(MNIST_LABELS))  # {0: "0", ..., 9: "9"}
label2id = {label: i for i, label in id2label.items()}


def digit_model():
    """The pretrained ViT with a zero-initialised 10-way head for digits (section 3.2 of the paper)."""
    model = ViTForImageClassification.from_pretrained(
        MODEL_DIR, num_labels=10, id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True
    )
    nn.init.zeros_(model.classifier.weight)
    nn.init.zeros_(model.classifier.bias)
    return model


pretrained = ViTForImageClassification.from_pretrained(MODEL_DIR, num_labels=10, id2label=id2label,
                                                       label2id=label2id, ignore_mismatched_sizes=True)
fashion = ViTForImageClassification.from_pretrained(MODEL_DIR)
print("classifier:", tuple(pretrained.classifier.weight.shape),
      "| kept from Fashion-MNIST:", torch.equal(pretrained.classifier.weight, fashion.classifier.weight))
model = digit_model()
print("after digit_model(): head is zero:", bool((model.classifier.weight == 0).all()),
      "| backbone unchanged:", torch.equal(model.vit.embeddings.cls_token, fashion.vit.embeddings.cls_token))

# %% [markdown]
# `TrainingArguments` holds every setting. The ones that matter here: one pass over the
# 1000 images in batches of 64 (16 steps), AdamW with learning rate `LR` and the Trainer's
# default linear decay to 0, on the CPU, seeded; no checkpoints saved, no logging service.
# `output_dir` is required even when nothing is saved, so it gets a temporary folder.

# %%
LR, BATCH, EPOCHS = 1e-3, 64, 2  # shared by the runs below (the Trainer runs 1 epoch)
print(f"learning rate {LR:g}, batch {BATCH}, {len(train_set) // BATCH + (len(train_set) % BATCH > 0)} steps per epoch")

# %%
# NBVAL_IGNORE_OUTPUT
args = TrainingArguments(
    output_dir=tempfile.mkdtemp(),  # required; nothing is written there with save_strategy="no"
    report_to="none",  # no wandb / tensorboard
    use_cpu=True,
    seed=0,
    num_train_epochs=1,
    per_device_train_batch_size=BATCH,
    per_device_eval_batch_size=250,
    learning_rate=LR,
    save_strategy="no",
    logging_steps=4,
    disable_tqdm=False,  # the progress bar and the loss table; this cell's output is not compared
)


def compute_metrics(prediction):
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=test_set,
                  compute_metrics=compute_metrics)
trainer.train()
trainer_metrics = trainer.evaluate()
shutil.rmtree(args.output_dir, ignore_errors=True)  # tidy up the empty output folder

# %%
print(f"Trainer: {trainer.state.global_step} steps, test accuracy {100 * trainer_metrics['eval_accuracy']:.1f}%")
print("logged losses:", [round(entry["loss"], 2) for entry in trainer.state.log_history if "loss" in entry])


# %% [markdown]
# ## 3. The same loop by hand
#
# The update `trainer.train()` makes, for each batch $(X, y)$ of the training set (the Trainer also
# decays the learning rate linearly and ran one epoch above; `fit` below keeps the rate constant
# unless given a scheduler, and runs `EPOCHS` epochs):
#
# $$\mathcal{L} = -\frac{1}{B}\sum_{b=1}^{B} \log \operatorname{softmax}(f_\theta(X_b))_{y_b},
# \qquad \theta \leftarrow \theta - \eta_t \cdot \operatorname{AdamW}(\nabla_\theta \mathcal{L}),$$
#
# which in PyTorch is five lines:
#
# ```python
# loss = nn.functional.cross_entropy(model(pixel_values=x).logits, y)
# optimizer.zero_grad()
# loss.backward()
# optimizer.step()
# scheduler.step()
# ```
#
# `vit_course.train` wraps them: `train_epoch` (one pass, with an optional tqdm bar and a
# `callback(step, loss)` after every step), `evaluate(model, loader)` (accuracy) and `fit`
# (epochs of `train_epoch`). They work for HF models, `vit_course.VisionTransformer` and
# plain `nn.Module`s alike; notebook 08 uses them too. The loaders:

# %%
def train_loader():
    # A fresh loader with the same seeded shuffling, so every run sees the same batches
    return DataLoader(TensorDataset(X_train, train_labels), batch_size=BATCH, shuffle=True,
                      generator=torch.Generator().manual_seed(0))


test_loader = DataLoader(TensorDataset(X_test, test_labels), batch_size=250)
STEPS = EPOCHS * len(train_loader())
x, y = next(iter(train_loader()))
print(f"batches: x {tuple(x.shape)}, y {tuple(y.shape)}; {len(train_loader())} per epoch, {STEPS} steps in {EPOCHS} epochs")

# %% [markdown]
# Full fine-tuning: every parameter trains. A progress bar and a loss curve that redraws
# every 4 steps show the run as it goes (the cell's output is not compared by the tests;
# the figure stays in the notebook).

# %%
# NBVAL_IGNORE_OUTPUT
torch.manual_seed(0)
full_model = digit_model()
live = LiveLossPlot(every=4, title="full fine-tuning on 1000 digits")
live.start("full fine-tuning")
history_full = fit(full_model, train_loader(), lr=LR, epochs=EPOCHS, progress=True, callback=live)

# %%
accuracy_full = evaluate(full_model, test_loader)
print(f"full fine-tuning: {history_full.steps} steps, loss {history_full.losses[0]:.2f} -> "
      f"{history_full.losses[-1]:.2f}, test accuracy {100 * accuracy_full:.1f}%")


# %% [markdown]
# ## 4. Linear probe, full fine-tuning, or from scratch?
#
# A **linear probe** freezes the pretrained backbone and trains only the head: a linear
# classifier on the CLS features. It is cheap (no gradients through the backbone) and tests
# how good the features are as they are. **Full fine-tuning** adapts everything.
# **From scratch** starts from random weights: the baseline that tells us what pretraining
# is worth.
#
# ### Exercise 1 (2 points): `freeze_backbone`
#
# Write `freeze_backbone(model)`: set `requires_grad = False` on every parameter of a
# `ViTForImageClassification` except those of its head, `model.classifier`, and return the
# model. `model.named_parameters()` gives `(name, parameter)` pairs; the head's names start
# with `classifier.`.

# %% nbgrader={"grade": false, "grade_id": "freeze_backbone", "locked": false, "schema_version": 3, "solution": true}
def freeze_backbone(model):
    """Linear probing: freeze every parameter except the classifier's; return the model."""
    ### BEGIN SOLUTION
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith("classifier.")
    return model
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_freeze_backbone", "locked": true, "points": 2, "schema_version": 3, "solution": false}
result = check_freeze_backbone(freeze_backbone)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %%
freeze_for_probe = use_or_reference(result, freeze_backbone, finetune.freeze_backbone)


def count(model, trainable_only=False):
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


probe_model = freeze_for_probe(digit_model())
print(f"linear probe: {count(probe_model, True):,} of {count(probe_model):,} parameters train")

# %% [markdown]
# Same data, same batches, same number of steps for all three. The head alone learns
# faster with a larger learning rate, so the probe gets `10 * LR` (a usual choice for
# linear probes); the other two use `LR`.

# %%
# NBVAL_IGNORE_OUTPUT
compare = LiveLossPlot(every=4, title=f"{STEPS} steps on 1000 digits")
compare.add("full fine-tuning", history_full.losses)

torch.manual_seed(0)
compare.start("linear probe")
history_probe = fit(probe_model, train_loader(), lr=10 * LR, epochs=EPOCHS, progress=True, callback=compare)

torch.manual_seed(0)
scratch_model = ViTForImageClassification(full_model.config)  # same architecture, random weights
compare.start("from scratch")
history_scratch = fit(scratch_model, train_loader(), lr=LR, epochs=EPOCHS, progress=True, callback=compare)
compare.draw()

# %%
runs = {
    "linear probe": (probe_model, 10 * LR),
    "full fine-tuning": (full_model, LR),
    "from scratch": (scratch_model, LR),
}
accuracies = {name: evaluate(model, test_loader) for name, (model, _) in runs.items()}
print(f"{'':<18}{'trainable':>11}{'lr':>8}{'steps':>7}{'test accuracy':>15}")
for name, (model, lr) in runs.items():
    print(f"{name:<18}{count(model, True):>11,}{lr:>8.0e}{STEPS:>7}{100 * accuracies[name]:>14.1f}%")

# %%
fig, ax = plt.subplots(figsize=(6, 3))
bars = ax.bar(list(accuracies), [100 * a for a in accuracies.values()], color=["tab:blue", "tab:orange", "tab:gray"])
ax.bar_label(bars, fmt="%.1f%%")
ax.axhline(10, color="black", linestyle=":", linewidth=1, label="chance (10%)")
ax.set(ylabel="test accuracy (%)", ylim=(0, 105), title=f"MNIST, 1000 images, {STEPS} steps")
ax.legend(loc="upper right")
plt.show()
best = max(accuracies, key=accuracies.get)
print(f"Best on this budget: {best}. Pretraining is worth "
      f"{100 * (accuracies['full fine-tuning'] - accuracies['from scratch']):.1f} points over training from scratch here.")

# %% [markdown]
# With more data and more steps all three improve, and the gaps change: a ViT trained from
# scratch needs far more data than a CNN to catch up (the paper's section 4.3), and full
# fine-tuning usually beats a probe once the new task differs from the old one.
#
# ## 5. Layer-wise learning-rate decay
#
# Early layers hold general features (edges, strokes) that transfer well; later layers are
# more specific to the pretraining task. *Layer-wise learning-rate decay* (LLRD; used for
# BEiT and for fine-tuning ViTs in timm) lets the top of the network move more than the
# bottom. Number the layers: the embeddings are layer $0$, encoder layer $i$ is layer
# $i + 1$, and what follows the encoder (final LayerNorm and head) is layer $L + 1$. Layer
# $j$ trains with
#
# $$\eta_j = \eta \cdot \gamma^{\,L + 1 - j}, \qquad 0 < \gamma \le 1,$$
#
# so the head gets the base rate $\eta$ and the patch embedding $\eta\gamma^{L+1}$. PyTorch
# optimisers take *parameter groups*: a list of dicts `{"params": [...], "lr": ...}`, one
# learning rate per group. The parameter names tell the layer:

# %%
names = [name for name, _ in full_model.named_parameters()]
print(len(names), "parameter tensors, e.g.")
for name in names[:4] + names[4:20:8] + names[-4:]:
    print("  ", name)


# %% [markdown]
# ### Exercise 2 (2 points): `layerwise_lr_groups`
#
# Write `layerwise_lr_groups(model, base_lr, decay)`: one parameter group per layer id
# (only parameters with `requires_grad`), each with `lr = base_lr * decay ** (L + 1 - layer_id)`,
# where `L = model.config.num_hidden_layers`. A name containing `embeddings` is layer 0; a
# name with `layers.<i>.` (or `layer.<i>.` in older transformers) is layer `i + 1`; anything
# else is layer `L + 1`. Hint: `name.split(".")`.

# %% nbgrader={"grade": false, "grade_id": "layerwise_lr_groups", "locked": false, "schema_version": 3, "solution": true}
def layerwise_lr_groups(model, base_lr, decay):
    """Optimizer param groups with lr = base_lr * decay ** (L + 1 - layer_id), one group per layer id."""
    ### BEGIN SOLUTION
    L = model.config.num_hidden_layers
    groups = {}  # layer id -> parameters
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        parts = name.split(".")
        if "embeddings" in parts:
            layer_id = 0
        elif "layers" in parts or "layer" in parts:
            key = "layers" if "layers" in parts else "layer"
            layer_id = int(parts[parts.index(key) + 1]) + 1
        else:
            layer_id = L + 1  # final LayerNorm, classifier
        groups.setdefault(layer_id, []).append(param)
    return [{"params": params, "lr": base_lr * decay ** (L + 1 - i)} for i, params in sorted(groups.items())]
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_layerwise_lr_groups", "locked": true, "points": 2, "schema_version": 3, "solution": false}
result = check_layerwise_lr_groups(layerwise_lr_groups)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %%
lr_groups = use_or_reference(result, layerwise_lr_groups, finetune.layerwise_lr_groups)
DECAY = 0.7
torch.manual_seed(0)
llrd_model = digit_model()
groups = lr_groups(llrd_model, LR, DECAY)
for layer_id, group in enumerate(groups):
    print(f"layer id {layer_id}: {len(group['params']):>2} tensors, lr {group['lr']:.2e}")


# %% [markdown]
# ## 6. Warmup
#
# At the first steps of fine-tuning the new head is still empty, its gradients are large
# and noisy, and Adam's running averages are not yet estimated: big steps then can wreck
# the pretrained features before the head makes sense. *Warmup* raises the learning rate
# linearly from 0 over the first $T_w$ steps, then a cosine decays it to 0 at step $T$:
#
# $$\eta_t = \begin{cases} \eta \, t / T_w & t < T_w \\
# \eta \cdot \tfrac{1}{2}\bigl(1 + \cos\bigl(\pi \tfrac{t - T_w}{T - T_w}\bigr)\bigr) & t \ge T_w \end{cases}$$
#
# `transformers.get_cosine_schedule_with_warmup` returns this as a scheduler that
# multiplies each group's own learning rate, so it combines with LLRD.

# %%
def schedule(total, warmup, base_lr=LR):
    # learning rate at every step of a cosine schedule with warmup, read off a dummy optimizer
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=warmup, num_training_steps=total)
    lrs = []
    for _ in range(total):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return lrs


WARMUP = STEPS // 8
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].plot(schedule(STEPS, WARMUP), ".-")
axes[0].set(title=f"our run: {STEPS} steps, warmup {WARMUP}", xlabel="step", ylabel="learning rate")
axes[1].plot(schedule(10_000, 500))
axes[1].set(title="a typical run: 10,000 steps, warmup 500", xlabel="step")
fig.tight_layout()
plt.show()
print(f"lr at step 0: {schedule(STEPS, WARMUP)[0]:.1e}, at step {WARMUP}: {schedule(STEPS, WARMUP)[WARMUP]:.1e}")

# %% [markdown]
# Fine-tuning with both, LLRD and warmup, on the same budget as before:

# %%
# NBVAL_IGNORE_OUTPUT
optimizer = torch.optim.AdamW(groups, weight_decay=0.0)  # each group its own lr; no weight decay, as in fit
scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=WARMUP, num_training_steps=STEPS)
history_llrd = fit(llrd_model, train_loader(), optimizer=optimizer, scheduler=scheduler, epochs=EPOCHS, progress=True)

# %%
accuracies["full + LLRD + warmup"] = evaluate(llrd_model, test_loader)
for name in ["full fine-tuning", "full + LLRD + warmup"]:
    print(f"{name:<22} test accuracy {100 * accuracies[name]:.1f}%")

# %% [markdown]
# Compare the two printed accuracies: they come from one seed each, and the second run
# changes two things at once, LLRD and the warmup-cosine schedule (the weight decay is 0 in
# both), so the gap alone cannot say which of the two costs or earns accuracy, nor how much of
# it another seed would keep. In a run of a few dozen steps, warmup spends an eighth of the
# budget at small learning rates and LLRD slows the lower layers down, so they have little room
# to help. They earn their keep in long runs of large models, where a bad start or too large
# steps in the early layers cost more. Exercise 2 below separates them.
#
# ## 7. Data augmentation
#
# With 1000 images, a model soon memorises them. Augmentation shows it a slightly
# different version of each image at every epoch: a label-preserving transformation.
# For digits, small rotations, shifts and zooms preserve the label (`RandomAffine`), and
# so does a shifted crop of a zero-padded image (`RandomCrop` with padding). A horizontal
# flip does *not*: a mirrored 2 is not a 2, although a mirrored shoe is still a shoe. (This
# is why `vit_course.data.make_loader(train=True)`, made for Fashion-MNIST, flips, and why
# we did not use it here.) torchvision's transforms work on uint8 tensors `(1, 28, 28)`:

# %%
affine = T.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1))
crop = T.RandomCrop(28, padding=3)
digit = train_images[first_of_each[2]].unsqueeze(0)  # (1, 28, 28) uint8
torch.manual_seed(0)
rows = {
    "RandomAffine": [affine(digit) for _ in range(7)],
    "RandomCrop(pad 3)": [crop(digit) for _ in range(7)],
    "horizontal flip": [T.functional.horizontal_flip(digit)],
}
print("augmented:", tuple(rows["RandomAffine"][0].shape), rows["RandomAffine"][0].dtype)
fig, axes = plt.subplots(3, 8, figsize=(11, 4.4))
for r, (name, samples) in enumerate(rows.items()):
    plots.show_image(digit[0], axes[r, 0], title="original" if r == 0 else None)
    axes[r, 0].set_ylabel(name, fontsize=9)
    for c in range(1, 8):
        if c <= len(samples):
            plots.show_image(samples[c - 1][0], axes[r, c])
        else:
            axes[r, c].axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# How strong can it get before a digit stops being itself? Try the sliders (run the
# notebook for the widget; the figure above is the static version).

# %%
# NBVAL_IGNORE_OUTPUT
picture = widgets.Image(format="png")
degrees = widgets.IntSlider(value=15, min=0, max=90, step=5, description="degrees")
shift = widgets.FloatSlider(value=0.1, min=0.0, max=0.4, step=0.05, description="translate")
which = widgets.Dropdown(options=list(range(10)), value=2, description="digit")


def redraw(change=None):
    transform = T.RandomAffine(degrees=degrees.value, translate=(shift.value, shift.value))
    image = train_images[first_of_each[which.value]].unsqueeze(0)
    torch.manual_seed(0)
    fig = Figure(figsize=(10, 1.6), layout="constrained")  # drawn to PNG bytes, not shown by pyplot
    for ax in fig.subplots(1, 8):
        plots.show_image(transform(image)[0], ax)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    picture.value = buffer.getvalue()


for control in (degrees, shift, which):
    control.observe(redraw, names="value")
redraw()
widgets.VBox([widgets.HBox([which, degrees, shift]), picture])

# %% [markdown]
# To train with augmentation, apply the transform in the `Dataset`'s `__getitem__` to the
# uint8 image, then `to_model_input`; each epoch then draws new versions. It pays off over
# many epochs; our two-epoch runs would not show it.
#
# ## Summary
#
# - Fine-tuning = load pretrained weights, put a new (zero-initialised) head for the new
#   labels, train on the new data. `ignore_mismatched_sizes=True` only replaces a head whose
#   *shape* differs; with the same number of classes, reset it yourself.
# - `Trainer` + `TrainingArguments` run the loop; `vit_course.train.fit` is the same loop in
#   a few lines, with a progress bar and a live loss plot.
# - A linear probe trains only the head (cheap, measures the features); full fine-tuning
#   adapts everything; training from scratch shows what pretraining is worth. Compare them
#   on the same data and the same number of steps.
# - Layer-wise learning-rate decay ($\eta\gamma^{L+1-j}$) and warmup protect the pretrained
#   layers early in training; augmentation must preserve the label (no flips for digits).
#
# ## Further reading
#
# - Dosovitskiy et al. (2021), *An Image is Worth 16x16 Words*: section 3.2 (fine-tuning:
#   the zero-initialised head, higher resolution and interpolated position embeddings),
#   section 4.1 (fine-tuning and few-shot linear evaluation), section 4.3 (how much
#   pretraining data a ViT needs), Appendix B.1.1 (fine-tuning details: SGD with momentum,
#   cosine decay, gradient clipping at norm 1).
# - Bao et al. (2022), *BEiT: BERT Pre-Training of Image Transformers*: layer-wise
#   learning-rate decay for ViT fine-tuning.
# - Steiner et al. (2022), *How to train your ViT? Data, Augmentation, and Regularization
#   in Vision Transformers*.
# - Kumar et al. (2022), *Fine-Tuning can Distort Pretrained Features and Underperform
#   Out-of-Distribution*: linear probing versus fine-tuning.
# - Hugging Face documentation: "Fine-tune a pretrained model" and `TrainingArguments`.

# %% [markdown]
# ## Exercises
#
# Open problems, not graded.
#
# 1. Run full fine-tuning and the LLRD + warmup run with three seeds each (`torch.manual_seed`
#    before `digit_model()`, and a loader seeded the same way) and report mean ± standard
#    deviation of the test accuracy. Is the gap larger than the spread?
# 2. Ablate one change at a time with the same weight decay: LLRD alone (constant lr), warmup
#    + cosine alone (one group), both. Which one moves the accuracy?
# 3. Save the fine-tuned model with `save_pretrained`, reload it with
#    `pipeline("image-classification", model=...)` and check that it predicts the same labels.
