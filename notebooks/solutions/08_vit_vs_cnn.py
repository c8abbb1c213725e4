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
# # 8 · ViT vs CNN: the same data, the same budget
#
# The ViT paper's central claim about convolutional networks is a trade: a CNN builds
# locality and translation equivariance into every layer, a ViT builds in almost nothing
# and has to learn it, so "Transformers lack some of the inductive biases inherent to CNNs
# [...] and therefore do not generalize well when trained on insufficient amounts of data"
# (Dosovitskiy et al., 2021, Sec. 1 and 3.1). This notebook measures that trade in
# miniature on Fashion-MNIST instead of asserting it.
#
# **What you will learn**
# - to count what a model costs: parameters, FLOPs in closed form and measured with
#   `torch.utils.flop_counter.FlopCounterMode`, and images per second
# - to measure accuracy against training-set size for a small ViT and a small CNN trained
#   from scratch with the same steps, and read the inductive-bias story off the plot
# - to probe robustness to shifted images and to shuffled patches, and see why a ViT
#   without position embeddings cannot tell a shuffled image from the original
# - to fill the ViT-vs-CNN comparison table with numbers measured here
#
# **Time:** about 45 minutes. Three graded exercises: the FLOPs of a ViT, `shift_images` and
# `shuffle_patches`. The notebook runs top to bottom in about a minute and a half on a laptop
# CPU, most of it training ten small models.

# %%
import copy
import json
import math
import time

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from vit_course import ViTConfig, VisionTransformer, cnn, cost, robustness
from vit_course.checks import check_vit_flops, use_or_reference
from vit_course.checks.robustness import check_shift_images, check_shuffle_patches
from vit_course.data import FASHION_MNIST_LABELS, load_fashion_mnist, make_loader, to_model_input
from vit_course.paths import DATA_DIR
from vit_course.plots import show_image
from vit_course.train import evaluate, fit

torch.manual_seed(0)
torch.set_num_threads(1)  # one thread: the same numbers on every machine, and no fight over shared cores

# %% [markdown]
# ## 1. The two shipped models
#
# Both were trained by `scripts/train_fashion.py` on the same 55,000 Fashion-MNIST images
# and selected on the same held-out 5,000; their recipes differ (each got the settings that
# suit it), as the `metrics.json` next to each checkpoint records:
#
# - `data/models/vit-tiny-fashion`: a Hugging Face `ViTForImageClassification`, 28x28 images
#   in 4x4 patches (49 tokens + CLS), loaded here into the course's `VisionTransformer`;
#   it takes the gray image copied to 3 channels.
# - `data/models/cnn-fashion`: `vit_course.cnn.SmallCNN`, three blocks of two 3x3
#   convolutions, BatchNorm and ReLU, then 2x2 max-pooling; global average pooling; one linear layer.
#
# One difference in the recipes matters for this notebook: the ViT learned from the labels
# *and* from the CNN's predictions on the same images (knowledge distillation, as DeiT does
# with a convnet teacher; Touvron et al., 2021). DeiT's authors found a convnet a better
# teacher than a transformer and suggest that the student inherits some of the convnet's
# inductive bias that way (Touvron et al., 2021, Sec. 5.2, "Convnets teachers"). The recipes
# also differ in epochs and augmentation (printed below), so sections 3 and 4 compare models
# trained from scratch, the same way, without a teacher.

# %%
vit_dir, cnn_dir = DATA_DIR / "models" / "vit-tiny-fashion", DATA_DIR / "models" / "cnn-fashion"
vit = VisionTransformer.from_hf(vit_dir)
convnet = cnn.load(cnn_dir)
models = {"ViT": vit, "CNN": convnet}
CHANNELS = {"ViT": 3, "CNN": 1}  # input channels each model expects
recipes = {name: json.loads((folder / "metrics.json").read_text()) for name, folder in [("ViT", vit_dir), ("CNN", cnn_dir)]}
for name, metrics in recipes.items():
    teacher = ", distilled from the CNN" if metrics["hyperparameters"].get("distill_alpha") else ""
    print(f"{name}: trained on {metrics['train_images']:,} images for {metrics['epochs']} epochs, "
          f"augmentation {metrics['hyperparameters']['augmentation']}{teacher}")

# %%
test_images, test_labels = load_fashion_mnist("test")  # the shipped test subset: uint8 (2000, 28, 28)


def accuracy(model, images, labels, channels):
    # uint8 images -> normalised float batches -> fraction classified correctly
    return evaluate(model, make_loader(images, labels, batch_size=500, channels=channels))


test_accuracy = {name: accuracy(model, test_images, test_labels, CHANNELS[name])
                 for name, model in tqdm(models.items(), desc="test subset")}

# %%
parameters = {name: cost.count_parameters(model) for name, model in models.items()}
for name in models:
    print(f"{name}: {parameters[name]:>9,} parameters | test accuracy {100 * test_accuracy[name]:.1f}% "
          f"on {len(test_labels)} images")


# %% [markdown]
# ## 2. What they cost: FLOPs and throughput
#
# A forward pass is almost all matrix products. Counting 2 FLOPs per multiply-add (as
# `torch.utils.flop_counter` does) and leaving out LayerNorm, softmax, GELU and the
# additions (a few percent), a ViT with $N$ patches of $C \cdot P^2$ numbers, $T = N + 1$
# tokens of width $D$, MLP width $I$, $L$ layers and $K$ classes costs
#
# $$\underbrace{2 N (C P^2) D}_{\text{patch embedding}} \;+\; L \cdot 2\big(\underbrace{4 T D^2}_{q,k,v,o} + \underbrace{2 T^2 D}_{QK^\top,\ AV} + \underbrace{2 T D I}_{\text{MLP}}\big) \;+\; \underbrace{2 D K}_{\text{head, on CLS}}$$
#
# (ViT paper Table 1 for the shapes; Appendix D.5 for measured costs). The $T^2$ term is the
# attention; it grows with the square of the number of patches.

# %% [markdown]
# ### Exercise 1 (2 points): `vit_flops`, the FLOPs of a ViT
#
# Write `vit_flops(config)`: the forward FLOPs of one image for a `vit_course.ViTConfig`
# (use `config.num_patches`, `config.num_channels`, `config.patch_size`,
# `config.hidden_size`, `config.intermediate_size`, `config.num_hidden_layers`,
# `config.num_labels`; with `num_labels=0` there is no head).

# %% nbgrader={"grade": false, "grade_id": "vit_flops", "locked": false, "schema_version": 3, "solution": true}
def vit_flops(config):
    """Forward FLOPs of one image (matrix products only, 2 per multiply-add)."""
    ### BEGIN SOLUTION
    N = config.num_patches
    T = N + 1  # the CLS token goes through every layer too
    C, P = config.num_channels, config.patch_size
    D, I, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    patch_embedding = 2 * N * (C * P * P) * D
    per_layer = 2 * (4 * T * D * D + 2 * T * T * D + 2 * T * D * I)
    head = 2 * D * config.num_labels
    return patch_embedding + L * per_layer + head
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_vit_flops", "locked": true, "points": 2, "schema_version": 3, "solution": false}
result = check_vit_flops(vit_flops)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %%
flops_of = use_or_reference(result, vit_flops, cost.vit_forward_flops)


# %% [markdown]
# `FlopCounterMode` counts the FLOPs of every matrix product and convolution PyTorch runs.
# For the ViT it should agree with the formula exactly; for the CNN it is the only count we
# have (a convolution layer costs $2 \cdot H_{out} W_{out} \cdot C_{out} \cdot C_{in} k^2$).

# %%
def measured_flops(model, x):
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


one_image = test_images[:1]
flops = {name: measured_flops(model, to_model_input(one_image, channels=CHANNELS[name])) for name, model in models.items()}
print(f"ViT: formula {flops_of(vit.config):,} FLOPs | measured {flops['ViT']:,} | equal: {flops_of(vit.config) == flops['ViT']}")
print(f"CNN: measured {flops['CNN']:,} FLOPs")
print(f"ViT / CNN: {flops['ViT'] / flops['CNN']:.2f} x the FLOPs, {parameters['ViT'] / parameters['CNN']:.2f} x the parameters")

# %% [markdown]
# FLOPs are not time. Images per second depend on the machine, the threads and how well
# each operation uses them, so the next cell's numbers are yours alone (and are not
# compared when the notebook is tested).

# %%
# NBVAL_IGNORE_OUTPUT
speed = {}
for name, model in models.items():
    x = to_model_input(test_images[:256], channels=CHANNELS[name])
    with torch.inference_mode():
        model(x[:16])  # warm-up
        times = []
        for _ in range(3):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    speed[name] = len(x) / min(times)
    print(f"{name}: {speed[name]:,.0f} images/s (batch {len(x)}, {torch.get_num_threads()} thread, best of 3)")
print(f"the CNN runs {speed['CNN'] / speed['ViT']:.2f} x as many images per second as the ViT")

# %% [markdown]
# ## 3. How much data does each need? Training from scratch
#
# The paper's evidence is its Fig. 3 and 4 (Sec. 4.3): trained on ImageNet-1k alone, ViTs
# trail ResNets; with 14M (ImageNet-21k) images they about match them, and with 300M (JFT)
# images the larger ViTs overtake them. The
# explanation is inductive bias. In a CNN every layer is local and shares its weights across
# positions, so "this edge detector works everywhere" is built in; in a ViT only the patch
# embedding and the MLPs are local, attention is global from the first layer, and even the
# 2D layout of the patches has to be learned from data through the position embeddings.
#
# A miniature of that experiment: a small ViT and a small CNN, about the same FLOPs per
# image, trained **from scratch** on 250, 1,000 and 4,000 balanced Fashion-MNIST images
# with exactly the same recipe and the same number of steps, then evaluated on the same
# 2,000 test images.

# %%
small_vit_config = ViTConfig(image_size=28, patch_size=7, num_channels=1, hidden_size=64, num_hidden_layers=4,
                             num_attention_heads=4, intermediate_size=128, num_labels=10, attn_implementation="sdpa")
small_cnn_config = cnn.CNNConfig(channels=(8, 16, 32))


def make_model(kind):
    return VisionTransformer(small_vit_config) if kind == "ViT" else cnn.SmallCNN(small_cnn_config)


gray_image = to_model_input(one_image)  # (1, 1, 28, 28)
small_flops = {"ViT": flops_of(small_vit_config), "CNN": measured_flops(make_model("CNN").eval(), gray_image)}
for kind in ("ViT", "CNN"):
    print(f"small {kind}: {cost.count_parameters(make_model(kind)):>7,} parameters, {small_flops[kind] / 1e6:.2f} MFLOPs per image")

# %% [markdown]
# The recipe, the same for both: AdamW (learning rate $2\cdot10^{-3}$, weight decay 0.05),
# one-cycle schedule (10% warm-up, then cosine decay), gradient clipping at 1, batches of 32,
# no augmentation, and **300 steps** whatever the data size: about 38 passes over 250
# images, 2.4 over 4,000. Same compute, different amounts of data.

# %%
STEPS, BATCH_SIZE, LR = 300, 32, 2e-3
SIZES = (250, 1000, 4000)
train_images, train_labels = load_fashion_mnist("train")  # the shipped 6000-image training subset


def balanced_subset(n):
    # the first n / 10 images of each class
    return torch.cat([torch.nonzero(train_labels == c).flatten()[: n // 10] for c in range(10)])


def train_from_scratch(kind, n, seed=0, bar=None):
    torch.manual_seed(seed)
    model = make_model(kind)
    idx = balanced_subset(n)
    loader = make_loader(train_images[idx], train_labels[idx], BATCH_SIZE, train=True, augment=False, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.05)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=STEPS, pct_start=0.1)
    fit(model, loader, optimizer=optimizer, scheduler=scheduler, epochs=math.ceil(STEPS / len(loader)),
        max_steps=STEPS, clip_grad_norm=1.0,
        callback=None if bar is None else lambda step, loss: bar.update())  # one tick per step
    return model.eval()


print("images per class:", torch.bincount(train_labels[balanced_subset(SIZES[0])]).tolist())

# %%
# NBVAL_IGNORE_OUTPUT
# six small models of 300 steps each, about half a minute: one bar counts the steps of all of them
trained = {}  # (kind, n) -> model
with tqdm(total=len(SIZES) * 2 * STEPS, desc="6 models from scratch") as bar:
    for n in SIZES:
        for kind in ("ViT", "CNN"):
            trained[kind, n] = train_from_scratch(kind, n, bar=bar)

# %%
scratch = {key: accuracy(model, test_images, test_labels, channels=1) for key, model in trained.items()}
for n in SIZES:
    print(f"{n:5,} training images: ViT {100 * scratch['ViT', n]:.1f}% | CNN {100 * scratch['CNN', n]:.1f}%")

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.6))
for kind, marker in [("ViT", "o"), ("CNN", "s")]:
    ax.plot(SIZES, [100 * scratch[kind, n] for n in SIZES], marker=marker, label=f"small {kind}")
ax.set_xscale("log")
ax.set_xticks(SIZES, [f"{n:,}" for n in SIZES])
ax.minorticks_off()
ax.set(xlabel="training images (log scale)", ylabel="test accuracy (%)",
       title=f"From scratch, {STEPS} steps of {BATCH_SIZE}, same recipe")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
plt.show()

# %%
gaps = {n: 100 * (scratch["CNN", n] - scratch["ViT", n]) for n in SIZES}
small, large = SIZES[0], SIZES[-1]
leader = "the CNN" if gaps[small] > 0 else "the ViT"
change = gaps[large] - gaps[small]
if abs(change) < 2:  # one seed on 2,000 test images cannot resolve less
    trend = f"about the same ({change:+.1f} points, too little for one seed to tell)"
else:
    trend = f"{'narrower' if abs(gaps[large]) < abs(gaps[small]) else 'wider'} by {abs(change):.1f} points"
print(f"With {small:,} images {leader} leads by {abs(gaps[small]):.1f} points; with {large:,} the gap "
      f"(CNN minus ViT) is {gaps[large]:.1f} points: {trend}.")
print(f"The ViT gains {100 * (scratch['ViT', large] - scratch['ViT', small]):.1f} points from "
      f"{small:,} to {large:,} images, the CNN {100 * (scratch['CNN', large] - scratch['CNN', small]):.1f}.")

# %% [markdown]
# Read these numbers with their limits: one seed, 300 steps, tiny models, and a 2,000-image
# test set (one image is 0.05 points). The paper's crossover needs 10 to 100 times more data
# than ImageNet-1k; here we only see the low-data end of its Fig. 3, where the paper
# expects the built-in bias of the CNN to be worth the most. Section 4 trains the 4,000-image pair
# with two more seeds, which shows how much of the gap at that end is noise.

# %% [markdown]
# ## 4. Robustness to translation
#
# A convolution is translation-equivariant: shift the input and its feature maps shift with
# it; global average pooling then forgets where things were. A ViT is equivariant only to
# shifts by whole patches, and even then its position embeddings are not. A shift smaller
# than a patch changes what every patch contains.
#
# A fair test needs two models that differ only in what they are, not in how they were
# trained. The shipped pair does not qualify: only its CNN was trained on randomly shifted
# images, and the ViT had a teacher (the recipes, again, below). A gap between them would mix
# augmentation, teacher and architecture. So the test runs on the small models of section 3,
# trained the same way on the same 4,000 images with no augmentation at all: neither has seen
# a shifted image. Each is trained with three seeds (seed 0 is section 3's model).

# %%
for name, metrics in recipes.items():
    print(f"{name}: augmentation {metrics['hyperparameters']['augmentation']}")


# %% [markdown]
# ### Exercise 2 (1 point): `shift_images`
#
# Write `shift_images(images, dx, dy)`: move the content of `(..., H, W)` images `dx` pixels
# right and `dy` pixels down (negative values: left and up), filling the uncovered pixels
# with 0, the black background. No wrap-around (that is what `torch.roll` would do):
# $\text{out}[\dots, y, x] = \text{images}[\dots, y - dy, x - dx]$ where that pixel exists.

# %% nbgrader={"grade": false, "grade_id": "shift_images", "locked": false, "schema_version": 3, "solution": true}
def shift_images(images, dx, dy):
    """Move (..., H, W) images dx pixels right and dy pixels down, filling with 0."""
    ### BEGIN SOLUTION
    H, W = images.shape[-2:]
    out = torch.zeros_like(images)
    if abs(dx) >= W or abs(dy) >= H:
        return out  # everything moved out of view
    out[..., max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = \
        images[..., max(-dy, 0):H + min(-dy, 0), max(-dx, 0):W + min(-dx, 0)]
    return out
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_shift_images", "locked": true, "points": 1, "schema_version": 3, "solution": false}
result = check_shift_images(shift_images)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %%
shift_by = use_or_reference(result, shift_images, robustness.shift_images)

# %%
SHIFTS = range(5)
fig, axes = plt.subplots(1, len(SHIFTS), figsize=(1.8 * len(SHIFTS), 2.1))
for ax, s in zip(axes, SHIFTS):
    show_image(shift_by(test_images[0], s, s), ax, f"dx = dy = {s}")
fig.tight_layout()
plt.show()

# %% [markdown]
# Two more seeds of each small model, then the accuracy on the first 400 test
# images shifted right by $s$ pixels and shifted down by $s$ pixels, averaged over the two,
# as mean ± standard deviation over the three seeds. The small ViT's patches are 7 x 7
# pixels, so no shift here moves the image by a whole patch.

# %%
# NBVAL_IGNORE_OUTPUT
SEEDS, N_LARGE = (0, 1, 2), SIZES[-1]
small_models = {(kind, 0): trained[kind, N_LARGE] for kind in ("ViT", "CNN")}  # seed 0: section 3's models
with tqdm(total=(len(SEEDS) - 1) * 2 * STEPS, desc="2 more seeds") as bar:
    for seed in SEEDS[1:]:
        for kind in ("ViT", "CNN"):
            small_models[kind, seed] = train_from_scratch(kind, N_LARGE, seed=seed, bar=bar)

# %%
N_ROBUST = 400
images, labels = test_images[:N_ROBUST], test_labels[:N_ROBUST]
shift_accuracy = {}  # kind -> (seeds, shifts) in percent
for kind in ("ViT", "CNN"):
    rows = []
    for seed in SEEDS:
        row = []
        for s in SHIFTS:
            moved = [images] if s == 0 else [shift_by(images, s, 0), shift_by(images, 0, s)]
            row.append(sum(accuracy(small_models[kind, seed], m, labels, 1) for m in moved) / len(moved))
        rows.append(row)
    shift_accuracy[kind] = 100 * torch.tensor(rows)
for s in SHIFTS:
    print(f"shift {s} px: " + " | ".join(f"{kind} {shift_accuracy[kind][:, s].mean():.1f} ± "
                                         f"{shift_accuracy[kind][:, s].std():.1f}%" for kind in ("ViT", "CNN")))

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.4))
for kind, marker in [("ViT", "o"), ("CNN", "s")]:
    acc = shift_accuracy[kind]
    ax.errorbar(list(SHIFTS), acc.mean(0), yerr=acc.std(0), marker=marker, capsize=3, label=f"small {kind}")
ax.set(xlabel="shift (pixels)", ylabel="test accuracy (%)",
       title=f"Shifted test images ({N_ROBUST}), {len(SEEDS)} seeds, no augmentation")
ax.set_xticks(list(SHIFTS))
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
plt.show()
drop = {kind: shift_accuracy[kind][:, 0] - shift_accuracy[kind][:, -1] for kind in ("ViT", "CNN")}  # (seeds,)
for kind in ("ViT", "CNN"):
    print(f"from 0 to {SHIFTS[-1]} px the small {kind} loses {drop[kind].mean():.1f} ± {drop[kind].std():.1f} points "
          f"(seeds: {', '.join(f'{d:.1f}' for d in drop[kind].tolist())})")
if drop["ViT"].min() > drop["CNN"].max():
    print(f"In every seed the ViT loses more than the CNN. Trained the same way, on the same images, without "
          f"augmentation, the two differ only in the model, so the gap belongs to the model: convolutions and pooling "
          f"against patches and learned positions (and their different sizes; these runs cannot separate the parts).")
elif drop["CNN"].min() > drop["ViT"].max():
    print("In every seed the CNN loses more than the ViT: the built-in equivariance did not show here.")
else:
    print("The seeds overlap: with three seeds this test cannot tell which model is more robust to shifts.")


# %% [markdown]
# ## 5. Shuffled patches: what position embeddings are for
#
# Cut each 28x28 image into its 7x7 grid of 4x4 patches (exactly the ViT's patches) and put
# the patches back in a random order. Self-attention treats its input as a *set*: permute the
# tokens and every output is permuted the same way, and the CLS token, which attends to all
# of them, does not change at all. The only thing that tells a ViT where a patch was is its
# position embedding (paper Sec. 3.1, and Appendix D.4 for what happens without one).

# %% [markdown]
# ### Exercise 3 (2 points): `shuffle_patches`
#
# Write `shuffle_patches(images, patch_size, generator)`: cut `(..., H, W)` images into
# `patch_size x patch_size` patches numbered row by row, draw **one** permutation
# `perm = torch.randperm(N, generator=generator)` for all the images, and put input patch
# `perm[k]` in position `k`. (Hint: reshape to `(..., H/P, P, W/P, P)`, bring the two `P`
# axes last, flatten the grid, index, and undo the same steps.)

# %% nbgrader={"grade": false, "grade_id": "shuffle_patches", "locked": false, "schema_version": 3, "solution": true}
def shuffle_patches(images, patch_size, generator=None):
    """(..., H, W) images with their P x P patches in the order torch.randperm(N, generator=generator)."""
    ### BEGIN SOLUTION
    H, W = images.shape[-2:]
    P = patch_size
    rows, cols = H // P, W // P
    lead = images.shape[:-2]
    patches = images.reshape(*lead, rows, P, cols, P).transpose(-3, -2)  # (..., rows, cols, P, P)
    patches = patches.reshape(*lead, rows * cols, P, P)  # (..., N, P, P), row-major
    perm = torch.randperm(rows * cols, generator=generator)
    patches = patches[..., perm, :, :]  # output patch k = input patch perm[k]
    patches = patches.reshape(*lead, rows, cols, P, P).transpose(-3, -2)  # (..., rows, P, cols, P)
    return patches.reshape(*lead, H, W)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_shuffle_patches", "locked": true, "points": 2, "schema_version": 3, "solution": false}
result = check_shuffle_patches(shuffle_patches)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %%
shuffle = use_or_reference(result, shuffle_patches, robustness.shuffle_patches)

# %%
P = vit.config.patch_size
shuffled = shuffle(images, P, torch.Generator().manual_seed(0))  # one order for all 400 images
fig, axes = plt.subplots(2, 5, figsize=(9, 3.8))
for col in range(5):
    show_image(images[col], axes[0, col], FASHION_MNIST_LABELS[labels[col]])
    show_image(shuffled[col], axes[1, col])
axes[0, 0].set_ylabel("original")
axes[1, 0].set_ylabel("shuffled")
fig.tight_layout()
plt.show()

# %% [markdown]
# A third model for this test: the shipped ViT with its position information removed. We give
# every patch the same position embedding (the average of the learned ones), so nothing in
# the model depends on where a patch sits. It was trained with positions, so it may do worse
# on ordinary images too; but shuffling can no longer change its answer, up to rounding:

# %%
vit_no_pos = copy.deepcopy(vit)
with torch.no_grad():
    patch_positions = vit_no_pos.pos_embed[:, 1:]  # (1, N, D); row 0 belongs to CLS
    vit_no_pos.pos_embed[:, 1:] = patch_positions.mean(dim=1, keepdim=True)
    x, x_shuffled = to_model_input(images, channels=3), to_model_input(shuffled, channels=3)
    difference = (vit_no_pos(x) - vit_no_pos(x_shuffled)).abs().max()
print("ViT without positions, logits on shuffled vs original images: max difference < 1e-4:", bool(difference < 1e-4))

# %%
probes = {"ViT": (vit, 3), "ViT, no positions": (vit_no_pos, 3), "CNN": (convnet, 1)}
shuffle_accuracy = {}
for name, (model, channels) in probes.items():
    shuffle_accuracy[name] = (accuracy(model, images, labels, channels), accuracy(model, shuffled, labels, channels))
    original, mixed = shuffle_accuracy[name]
    print(f"{name:18s} original {100 * original:5.1f}% | shuffled 4x4 patches {100 * mixed:5.1f}%")


# %% [markdown]
# The ViT without positions gives the same answers on both (the difference above is rounding),
# so whatever the shipped ViT loses on shuffled images is what its position embeddings
# contributed. The CNN has no position embeddings to remove: it reads the layout through its
# overlapping local filters, and shuffling breaks every edge between patches. Naseer et al.
# (2021) run the same test on ImageNet models and report that DeiT loses less accuracy than a
# ResNet-50 when patches are shuffled: at that scale ViTs seem to rely less on the exact layout.

# %% [markdown]
# ## 6. The comparison table, measured
#
# The course's earlier table compared the two families in words. Here it is again with the
# numbers this notebook measured filled in (built from the variables above, so it cannot
# drift from them). The from-scratch rows are seed 0's; the shift row is the mean ± sd of three
# seeds of the small models. Throughput is left out of the table: it depends on your machine; see
# the measurement in section 2.

# %%
def pct(x):
    return f"{100 * x:.1f}%"


def mean_sd(percents):
    return f"{percents.mean():.1f} ± {percents.std():.1f}%"


rows = [
    ("Inductive bias", "patches + learned positions; attention is global from layer 1",
     "locality, weight sharing and translation equivariance in every layer"),
    ("Parameters (shipped)", f"{parameters['ViT']:,}", f"{parameters['CNN']:,}"),
    ("FLOPs per image (shipped)", f"{flops['ViT'] / 1e6:.1f} M", f"{flops['CNN'] / 1e6:.1f} M"),
    ("Test accuracy (shipped)", pct(test_accuracy["ViT"]), pct(test_accuracy["CNN"])),
    *[(f"From scratch, {n:,} images", pct(scratch["ViT", n]), pct(scratch["CNN", n])) for n in SIZES],
    (f"Small, shifted by {SHIFTS[-1]} px ({len(SEEDS)} seeds)", mean_sd(shift_accuracy["ViT"][:, -1]),
     mean_sd(shift_accuracy["CNN"][:, -1])),
    ("Shuffled 4x4 patches", pct(shuffle_accuracy["ViT"][1]), pct(shuffle_accuracy["CNN"][1])),
    ("Interpretability", "attention maps per layer and head (notebook 07)",
     "needs gradients or activations (e.g. Grad-CAM)"),
]
table = "| | ViT | CNN |\n|---|---|---|\n" + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
display(Markdown(table))

# %% [markdown]
# ## Summary
#
# - **Cost:** the closed-form FLOP count of a ViT matches `FlopCounterMode` exactly; FLOPs and
#   parameters do not predict speed on their own (section 2 measures both models).
# - **Data:** trained from scratch with the same recipe and steps, the small CNN and the small
#   ViT were compared at three data sizes; the sentence under the plot says how the gap moves.
#   It is the low-data end of the paper's Fig. 3, measured with one seed (three at 4,000 images).
# - **Translation:** the small ViT and CNN, trained the same way without augmentation, were
#   tested on images shifted by 1 to 4 pixels over three seeds; the lines under the plot say
#   which loses more and whether the seeds agree. The shipped pair cannot answer this: only its
#   CNN saw shifted images in training. A CNN gets translation equivariance from its
#   convolutions; a ViT has to learn it, from data or from augmentation.
# - **Patch order:** without position embeddings a ViT cannot see the order of its patches
#   (its logits did not change); its position embeddings carry all the layout it knows.
#
# ## Further reading
#
# - Dosovitskiy et al. (2021), "An Image is Worth 16x16 Words": Sec. 3.1 "Inductive bias";
#   Sec. 4.3 "Pre-training data requirements" (Fig. 3 and 4); Sec. 4.4 "Scaling study" (Fig. 5,
#   accuracy vs pre-training compute); Appendix D.4 (position embeddings), D.5 "Empirical
#   computational costs".
# - Naseer et al. (2021), "Intriguing Properties of Vision Transformers" (occlusion and patch
#   shuffling).
# - Raghu et al. (2021), "Do Vision Transformers See Like Convolutional Neural Networks?"
# - Touvron et al. (2021), "Training data-efficient image transformers & distillation through
#   attention" (DeiT): a ViT taught by a convnet teacher.
# - d'Ascoli et al. (2021), "ConViT: Improving Vision Transformers with Soft Convolutional
#   Inductive Biases"; Liu et al. (2022), "A ConvNet for the 2020s".
#
# ## Exercises
#
# Open problems, not graded.
#
# 1. Repeat section 3 with three seeds at every size and plot the spread: does the gap between
#    the small CNN and the small ViT change with the number of images by more than the noise?
# 2. Train both small models with `RandomShiftFlip` augmentation (`make_loader(..., augment=True)`)
#    and repeat the shift test: how much of the CNN's lead does the augmentation buy back?
# 3. Train a ViT without position embeddings from scratch and test it on shuffled patches. How
#    close does it come to the ViT with positions on ordinary images?
#

# %% [markdown]
# ## 7. Making the ViT fast, and seeing where the time goes
#
# Section 2 timed the two models as they are. The ViT in `vit_course` is written to be read:
# three separate projections for queries, keys and values, and attention computed as the
# formula says, weights and all. A deployed model does the same arithmetic in fewer, larger
# steps. `VisionTransformer.from_hf(path, attn_implementation="fast")` builds the *fast path*:
#
# - **one `qkv` Linear** of width $3D$ instead of three of width $D$: one larger matrix
#   product instead of three (the three weight matrices are stacked when the checkpoint is
#   loaded, `vit_course.attention.fuse_qkv_state_dict`);
# - **PyTorch's fused attention**, `F.scaled_dot_product_attention`, which never stores the
#   $N \times N$ weights;
# - **oneDNN's matrix product** for every Linear layer of the blocks on the CPU
#   (`vit_course.fast_linear.FastLinear`, the same weights), with the MLP's GELU applied to
#   each tile of fc1's output inside the product instead of in a second pass over it;
# - and, on the CPU, **int8**: `vit_course.bench.quantize_int8` swaps every Linear layer for
#   PyTorch's dynamically quantized one (weights stored once as 8-bit integers with a scale,
#   each input quantized on the fly, the products done in integers).
#
# A fast path is only worth having if it computes the same function. The first three steps
# change no number beyond rounding; int8 does, so we measure what it costs in accuracy.

# %%
import statistics

from torch.profiler import ProfilerActivity, profile

from vit_course.bench import INT8_PEAK_GAIN, PeakMemory, amdahl, linear_share, quantize_int8, time_per_call

vit_fast = VisionTransformer.from_hf(vit_dir, attn_implementation="fast")
vit_int8 = quantize_int8(vit_fast)
print("block 0 of the fast path:", [k for k in vit_fast.state_dict() if k.startswith("blocks.0.attn")])
x = to_model_input(test_images[:200], channels=3)
with torch.no_grad():
    gap = (vit_fast(x) - vit(x)).abs().max().item()
print(f"fast vs teaching path, largest logit difference below 1e-4: {gap < 1e-4}")

# %%
# NBVAL_IGNORE_OUTPUT
# int8 kernels differ between CPUs (AVX2, AVX-512, VNNI): a few images may change from machine to machine
acc_fast = accuracy(vit_fast, test_images, test_labels, channels=3)
acc_int8 = accuracy(vit_int8, test_images, test_labels, channels=3)
print(f"test subset ({len(test_labels):,} images): fp32 fast path {100 * acc_fast:.2f}%, "
      f"int8 {100 * acc_int8:.2f}%, {100 * (acc_fast - acc_int8):.2f} points lost")

# %% [markdown]
# ### Timing them side by side
#
# On a machine that does other work, one timing says little. Each round below runs every
# variant once, in turn, so whatever slows the machine slows them all alike; the median over
# rounds is what we keep. Your numbers are your machine's (and are not compared when the
# notebook is tested).

# %%
# NBVAL_IGNORE_OUTPUT
variants = {
    "teaching (eager)": vit,
    "teaching + fused attention": VisionTransformer.from_hf(vit_dir, attn_implementation="sdpa"),
    "fast": vit_fast,
    "fast, int8": vit_int8,
}
x = to_model_input(test_images[:256], channels=3)
rates = {name: [] for name in variants}
with torch.inference_mode():
    for model in variants.values():
        model(x)  # warm-up
    for _ in tqdm(range(5), desc="timing rounds"):
        for name, model in variants.items():
            rates[name].append(len(x) / time_per_call(lambda: model(x), min_seconds=0.1))
base = statistics.median(rates["teaching (eager)"])
for name, r in rates.items():
    print(f"{name:27s} {statistics.median(r):7,.0f} images/s  x {statistics.median(r) / base:.2f} "
          f"(batch {len(x)}, {torch.get_num_threads()} thread)")

# %% [markdown]
# ### The memory of attention weights grows with $N^2$
#
# The teaching path materialises $\mathrm{softmax}(QK^\top/\sqrt{d})$ for every head: $B \cdot h
# \cdot N^2$ numbers per layer, 4 bytes each in fp32, and the scores before the softmax as
# well. The fused kernel walks through the keys in blocks keeping running sums, so what it
# needs beyond its inputs and output grows like $N$, not $N^2$. The formula first, for one
# layer of the shipped ViT's width and one image:

# %%
heads, width = vit.config.num_attention_heads, vit.config.hidden_size
SEQ = (256, 512, 1024, 2048)
weight_mib = {n: heads * n * n * 4 / 2**20 for n in SEQ}
for n in SEQ:
    print(f"N = {n:5,}: attention weights {weight_mib[n]:6.1f} MiB ({heads} heads, fp32)")

# %% [markdown]
# Now measured: the peak memory of one attention layer's forward pass on $N$ random tokens,
# teaching path against fast path. `PeakMemory` reads the process's resident memory every
# half millisecond while the layer runs (on a GPU it would ask the CUDA allocator).

# %%
# NBVAL_IGNORE_OUTPUT
measured = {"teaching": [], "fast": []}
with torch.inference_mode():
    for n in SEQ:
        tokens = torch.randn(1, n, width)
        for name, layer in (("teaching", vit.blocks[0].attn), ("fast", vit_fast.blocks[0].attn)):
            with PeakMemory(tokens.device) as mem:
                layer(tokens, need_weights=False)
            measured[name].append(mem.mib)
for n, teaching_mib, fast_mib in zip(SEQ, measured["teaching"], measured["fast"]):
    print(f"N = {n:5,}: teaching {teaching_mib:6.1f} MiB, fast {fast_mib:5.1f} MiB")
fig, ax = plt.subplots(figsize=(5.5, 3.4))
ax.plot(SEQ, [weight_mib[n] for n in SEQ], "k--", label=r"$h N^2 \times 4$ bytes")
ax.plot(SEQ, measured["teaching"], marker="o", label="teaching path, measured peak")
ax.plot(SEQ, [max(m, 0.1) for m in measured["fast"]], marker="s", label="fast path, measured peak")
ax.set(xscale="log", yscale="log", xlabel="tokens N", ylabel="MiB", title="One attention layer, one image")
ax.set_xticks(SEQ, [f"{n:,}" for n in SEQ])
ax.minorticks_off()
ax.legend()
plt.show()

# %% [markdown]
# ### Where the time goes: `torch.profiler`
#
# The profiler records every operator PyTorch runs, how often and for how long. `self` time is
# the time spent in the operator itself, not in the operators it calls. Sorted by it, the top
# rows say where a forward pass of 256 images spends its time: look for the matrix products
# (`aten::addmm` in Linear layers, `mkldnn::_linear_pointwise` in the fast path's, `aten::bmm` for $QK^\top$ and the weighted sum of values in
# the teaching path), the softmax, the GELU and the LayerNorms.

# %%
# NBVAL_IGNORE_OUTPUT
MATRIX_PRODUCTS = {"aten::addmm", "aten::mm", "aten::bmm", "quantized::linear_dynamic", "mkldnn::_linear_pointwise",
                   "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::convolution"}
for name in ("teaching (eager)", "fast"):
    model = variants[name]
    with torch.inference_mode():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    products = sum(e.self_cpu_time_total for e in events if e.key in MATRIX_PRODUCTS)
    print(f"{name}: {100 * products / total:.0f}% of the time in matrix products and fused attention")
    print(events.table(sort_by="self_cpu_time_total", row_limit=6, max_name_column_width=40))
share = linear_share(vit_fast, x)  # int8 changes the Linear layers only
print(f"fast: {100 * share:.0f}% of the time in Linear layers. If int8 made them {INT8_PEAK_GAIN}x faster, "
      f"the model would run {amdahl(share, INT8_PEAK_GAIN):.2f}x faster; if infinitely fast, {amdahl(share):.2f}x")

# %% [markdown]
# What the cells above show on your machine: the fast path gives the same logits as the
# teaching path; it spends a larger share of its time in matrix products (the printed
# percentage), because it has fewer small operators around them; the memory the teaching path
# needs for attention follows the $hN^2$ line, the fused kernel's stays far below it; int8
# changes the accuracy by the points printed, and its speed-up is the last line of the timing
# table. Compare that speed-up with the bound printed under the profile. This is *Amdahl's
# law*: if the part int8 speeds up takes a share $s$ of the time and runs $k$ times faster,
# the whole model runs $1 / (1 - s + s/k)$ times faster. So a model that spends most of its
# time outside its Linear layers gains little from int8, however fast the int8 kernels are.
# This small ViT spends much of its time in attention over 50 tokens, LayerNorms and
# additions. The README's table shows int8 at about twice the fp32 fast path on ViT-S/16 and
# ViT-B/16: by the same law, their Linear layers take a larger share of the time.
#
# For bigger models, `python scripts/bench.py` (or `vit-course bench`) runs the same
# side-by-side comparison for ViT-S/16 and ViT-B/16 against transformers (eager and SDPA
# attention) and timm, for eval and for a training step, with GFLOP/s as a fraction of the
# machine's matrix-product peak and peak memory; the README shows one run.
#
# **Try next:** profile with `profile(..., record_shapes=True)` and
# `events = prof.key_averages(group_by_input_shape=True)` to see which Linear layers (which
# shapes) cost most; time batch 1 against batch 256 (small batches leave the matrix products
# too small to keep the cores busy); add `torch.set_num_threads(2)` and see what a second
# core buys each variant.
