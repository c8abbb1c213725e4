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
# # 01 · Patching: from an image to a sequence of tokens
#
# A Transformer reads a sequence of vectors. An image is a grid of pixels. The Vision
# Transformer (ViT) bridges the two in its very first line: cut the image into square
# patches, flatten each patch, and map it to a vector with one shared linear layer.
#
# **What you will learn**
#
# - how many tokens an image becomes, $N = HW/P^2$, and what a token holds;
# - `patchify` with `reshape`/`permute`, and the same thing in einops notation;
# - why each patch is flattened in $(C, P, P)$ order, and what goes wrong with $(P, P, C)$;
# - that the strided `Conv2d` of every ViT library *is* a linear layer on flattened patches;
# - the patch-size trade-off: fewer pixels per token means many more tokens, and attention
#   pays for every pair of them.
#
# **Time:** about 30 minutes. Two graded exercises.

# %%
import math

import einops
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import ImageOps
from torch import nn

from vit_course import ViTConfig, plots
from vit_course import patches
from vit_course.checks import check_conv_to_linear_weight, check_patchify, use_or_reference
from vit_course.cost import vit_flops_breakdown
from vit_course.data import load_photo

_ = torch.manual_seed(0)

# %% [markdown]
# ## 1. An image is $N$ patches
#
# Section 3.1 of the ViT paper (Dosovitskiy et al., 2021) starts from an image
# $\mathbf{x} \in \mathbb{R}^{H \times W \times C}$ and reshapes it into a sequence of flattened
# 2D patches $\mathbf{x}_p \in \mathbb{R}^{N \times (P^2 \cdot C)}$, where $P$ is the side of a
# patch and
#
# $$N = \frac{H W}{P^2} = \frac{H}{P} \cdot \frac{W}{P}$$
#
# is the number of patches: the Transformer's sequence length. Each patch is then mapped
# to $D$ dimensions by a matrix $\mathbf{E} \in \mathbb{R}^{(P^2 C) \times D}$ (Eq. 1).
# PyTorch stores images channels first, $(B, C, H, W)$, so here a patch is a $C \times P \times P$
# block.
#
# Our photo: scikit-image's cat *Chelsea*, cropped to a square and resized to the
# $224 \times 224$ that ViT-B/16 expects.

# %%
photo = ImageOps.fit(load_photo("chelsea"), (224, 224))  # centre crop, resize
image = torch.from_numpy(np.array(photo)).permute(2, 0, 1).float() / 255  # (C, H, W) in [0, 1]
images = image[None]  # (B, C, H, W) with B = 1
print("photo:", photo.size, photo.mode)
print("images:", tuple(images.shape))

# %%
fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
plots.show_patch_grid(photo, 56, ax=axes[0], numbers=True, title="P = 56: a 4 x 4 grid,\nread row by row")
plots.show_patches(photo, 56, ax=axes[1], gap=6, title="the same 16 patches,\npulled apart")
fig.tight_layout()  # two-line titles, side by side without overlapping
plt.show()

# %% [markdown]
# The numbers give the order of the tokens: row by row, left to right, like reading text.
# With ViT-B/16's $P = 16$ the same image gives many more, smaller patches:

# %%
C, H, W = image.shape
P = 16
N = (H // P) * (W // P)
print(f"grid: {H // P} x {W // P} patches, N = HW / P^2 = {H} * {W} / {P}^2 = {N}")
print(f"each patch holds C * P * P = {C} * {P} * {P} = {C * P * P} numbers")

# %% [markdown]
# ## 2. `patchify` with `reshape` and `permute`
#
# No loop over patches is needed. A reshape only *relabels* memory, so we first split each
# spatial axis into (which patch, where inside the patch), then move the axes so that the
# patch grid comes first, then merge:
#
# $$
# (B, C, H, W) \xrightarrow{\text{reshape}} (B, C, \tfrac{H}{P}, P, \tfrac{W}{P}, P)
# \xrightarrow{\text{permute}} (B, \tfrac{H}{P}, \tfrac{W}{P}, C, P, P)
# \xrightarrow{\text{reshape}} (B, N, C P^2)
# $$
#
# Step by step on the photo:

# %%
B, C, H, W = images.shape
x = images.reshape(B, C, H // P, P, W // P, P)
print("split H and W:    ", tuple(x.shape))
x = x.permute(0, 2, 4, 1, 3, 5)
print("grid first:       ", tuple(x.shape))
x = x.reshape(B, (H // P) * (W // P), C * P * P)
print("merge (B, N, CPP):", tuple(x.shape))


# %% [markdown]
# The permute is what keeps each patch's pixels together. A single `reshape(B, N, C*P*P)`
# would produce the same shape but cut the image's memory into consecutive runs of 768
# numbers: strips of pixel rows, not patches.
#
# ### Exercise 1 (2 points): `patchify`
#
# Write `patchify(images, patch_size)`: `(B, C, H, W)` to `(B, N, C*P*P)`, patches in row-major
# order, each flattened in $(C, P, P)$ order. It must work for non-square images
# ($H \ne W$), any number of channels and any batch size. Assume $H$ and $W$ are multiples of
# $P$.

# %% nbgrader={"grade": false, "grade_id": "patchify", "locked": false, "schema_version": 3, "solution": true}
def patchify(images, patch_size):
    """(B, C, H, W) -> (B, N, C*P*P): patches row by row, each flattened as (C, P, P)."""
    ### BEGIN SOLUTION
    B, C, H, W = images.shape
    P = patch_size
    x = images.reshape(B, C, H // P, P, W // P, P)  # (B, C, rows, P, cols, P)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, rows, cols, C, P, P)
    return x.reshape(B, (H // P) * (W // P), C * P * P)  # (B, N, C*P*P)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_patchify", "locked": true, "points": 2, "schema_version": 3, "solution": false}
result = check_patchify(patchify)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %%
to_patches = use_or_reference(result, patchify, patches.patchify)
tokens = to_patches(images, 16)
print("tokens:", tuple(tokens.shape))

# %% [markdown]
# ## 3. The same thing in einops
#
# [einops](https://einops.rocks) writes the reshape-permute-reshape as one pattern: `(h p1)`
# says "this axis is `h` blocks of `p1`", and the right-hand side lists the output axes.
# `b c (h p1) (w p2) -> b (h w) (c p1 p2)` is exactly our `patchify`:

# %%
tokens_einops = einops.rearrange(images, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=16, p2=16)
print("shape:", tuple(tokens_einops.shape))
print("equal to patchify:", torch.equal(tokens_einops, tokens))

# %% [markdown]
# ### Why $(C, P, P)$ and not $(P, P, C)$?
#
# Some public ViT code (for example lucidrains' `vit-pytorch`) flattens each patch with the
# pattern `b c (h p1) (w p2) -> b (h w) (p1 p2 c)`: pixel by pixel, the three colours of a
# pixel next to each other. Each token holds *the same 768 numbers*, only in a different
# order:

# %%
tokens_ppc = einops.rearrange(images, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=16, p2=16)
same_numbers = torch.equal(tokens_ppc.sort(dim=-1).values, tokens.sort(dim=-1).values)
print("same numbers in every token:", same_numbers)
print("same order:                 ", torch.equal(tokens_ppc, tokens))

# %% [markdown]
# For a model trained from scratch the order does not matter: the linear layer learns
# whatever order it is fed. It matters the moment you load *pretrained* weights. Hugging
# Face's `ViTPatchEmbeddings` and timm's `PatchEmbed` store the patch embedding as a
# `Conv2d` kernel of shape $(D, C, P, P)$, and its memory is laid out in $(C, P, P)$ order.
# The next section shows that this kernel, reshaped, is the linear layer, but only for
# patches flattened in the same order.
#
# ## 4. A strided convolution is a linear layer on patches
#
# A `Conv2d` with `kernel_size = stride = P` visits each patch exactly once. Output channel
# $d$ at grid position $(i, j)$ is
#
# $$
# y_{d,i,j} = b_d + \sum_{c=1}^{C} \sum_{u=1}^{P} \sum_{v=1}^{P}
# K_{d,c,u,v} \; x_{c,\,iP+u,\,jP+v}
# = b_d + \mathbf{K}_d \cdot \mathbf{x}_p^{(i,j)},
# $$
#
# a dot product of the kernel $\mathbf{K}_d$ with the patch, both flattened in $(c, u, v)$ order.
# Stacking the $D$ flattened kernels as rows gives the weight of an `nn.Linear(C*P*P, D)`.
# `vit_course.patches` has both forms; `LinearPatchEmbedding.from_conv` copies the reshaped
# kernel:

# %%
torch.manual_seed(0)
conv_embed = patches.PatchEmbedding(patch_size=16, num_channels=3, hidden_size=192)
linear_embed = patches.LinearPatchEmbedding.from_conv(conv_embed)
print("conv kernel:  ", tuple(conv_embed.proj.weight.shape))
print("linear weight:", tuple(linear_embed.proj.weight.shape))
with torch.no_grad():
    out_conv = conv_embed(images)  # conv, then flatten(2).transpose(1, 2)
    out_linear = linear_embed(images)  # patchify, then Linear
print("outputs:", tuple(out_conv.shape), tuple(out_linear.shape))
print("max |conv - linear| < 1e-5:", (out_conv - out_linear).abs().max().item() < 1e-5)

# %% [markdown]
# Now feed the same linear layer the $(P, P, C)$ tokens: same weights, same pixels, only the
# order inside each patch differs.

# %%
with torch.no_grad():
    out_ppc = linear_embed.proj(tokens_ppc)
diff = (out_ppc - out_conv).abs().max().item()
print("(P, P, C) tokens match the conv:", torch.allclose(out_ppc, out_conv, atol=1e-5))
print(f"max |difference|: {diff:.2f} (the outputs themselves are about {out_conv.abs().max().item():.2f})")


# %% [markdown]
# ### Exercise 2 (2 points): `conv_to_linear_weight`
#
# Write `conv_to_linear_weight(conv)`: given the patch-embedding `nn.Conv2d` (kernel and stride
# $P$, weight $(D, C, P, P)$, maybe a bias), return `(weight, bias)` of the equivalent
# `nn.Linear`: `weight` of shape $(D, C \cdot P \cdot P)$ in the order that `patchify` uses, and
# `bias` of shape $(D,)$, or `None` when the conv has no bias.

# %% nbgrader={"grade": false, "grade_id": "conv_to_linear_weight", "locked": false, "schema_version": 3, "solution": true}
def conv_to_linear_weight(conv):
    """Conv2d patch embedding -> (weight (D, C*P*P), bias (D,) or None) of the same map as a Linear."""
    ### BEGIN SOLUTION
    weight = conv.weight.detach().reshape(conv.out_channels, -1)  # (D, C*P*P), (C, P, P) order
    bias = None if conv.bias is None else conv.bias.detach()
    return weight, bias
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_conv_to_linear_weight", "locked": true, "points": 2, "schema_version": 3, "solution": false}
result = check_conv_to_linear_weight(conv_to_linear_weight)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %%
conv_as_linear = use_or_reference(result, conv_to_linear_weight, patches.conv_to_linear_weight)
weight, bias = conv_as_linear(conv_embed.proj)
linear = nn.Linear(3 * 16 * 16, 192)
with torch.no_grad():
    linear.weight.copy_(weight)
    linear.bias.copy_(bias)
    out = linear(to_patches(images, 16))
print("your Linear on patchify(images) equals the conv:", torch.allclose(out, out_conv, atol=1e-5))

# %% [markdown]
# So the "patch embedding" $\mathbf{E}$ of Eq. 1 is one matrix applied to every patch.
# Libraries use the conv because it is one fused call with no reshape of the image;
# the linear form is the one that explains it.
#
# ## 5. The patch-size trade-off
#
# The patch size sets the sequence length: halving $P$ multiplies $N$ by 4. Self-attention
# compares every token with every other, so its score matrix has $N^2$ entries per head and
# per layer, while the linear layers (the projections and the MLP) grow only like $N$.
# The table counts the forward FLOPs of a ViT-B (12 layers, $D = 768$) at $224 \times 224$ for
# several patch sizes with `vit_course.cost.vit_flops_breakdown`; *attention* is the two
# $N^2$ products $\mathbf{Q}\mathbf{K}^\top$ and $\mathbf{A}\mathbf{V}$ (CLS token included,
# $T = N + 1$).

# %%
patch_sizes = [4, 8, 14, 16, 32]
rows = []
for p in patch_sizes:
    flops = vit_flops_breakdown(ViTConfig(image_size=224, patch_size=p))
    n = (224 // p) ** 2
    attention = flops["attention_scores"] + flops["attention_values"]
    total = sum(flops.values())
    rows.append((p, n, attention, total))

print(f"{'P':>3} {'grid':>9} {'N':>6} {'N^2':>12} {'attention GFLOPs':>17} {'total GFLOPs':>13} {'attention share':>16}")
for p, n, attention, total in rows:
    grid = f"{224 // p} x {224 // p}"
    print(f"{p:>3} {grid:>9} {n:>6} {n * n:>12,} {attention / 1e9:>17.1f} {total / 1e9:>13.1f} {attention / total:>16.0%}")

# %%
ns = np.array([n for _, n, _, _ in rows])
attention_gflops = np.array([a for _, _, a, _ in rows]) / 1e9
total_gflops = np.array([t for _, _, _, t in rows]) / 1e9

fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
axes[0].plot(patch_sizes, ns, "o-", label="tokens N")
axes[0].plot(patch_sizes, ns**2, "s-", label="attention pairs N$^2$")
axes[0].set_title("sequence length at 224 x 224")
axes[1].plot(patch_sizes, attention_gflops, "s-", label="attention (Q K$^T$, A V)")
axes[1].plot(patch_sizes, total_gflops - attention_gflops, "o-", label="everything else")
axes[1].set_title("ViT-B forward GFLOPs per image")
for ax in axes:
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(patch_sizes, [str(p) for p in patch_sizes])
    ax.set_xlabel("patch size P")
    ax.legend()
plt.tight_layout()
plt.show()

# %%
small, base = rows[0], rows[3]
print(
    f"Going from P = {base[0]} to P = {small[0]} multiplies the tokens by {small[1] // base[1]}, "
    f"the attention FLOPs by {small[2] / base[2]:.0f} and the whole forward pass by {small[3] / base[3]:.0f}; "
    f"attention's share grows from {base[2] / base[3]:.0%} to {small[2] / small[3]:.0%}."
)

# %% [markdown]
# Smaller patches see finer detail and often classify better, but they are paid for
# quadratically. How much better? The ViT paper does not train every patch size on every
# dataset, but its Table 5 (Appendix C) lists ViT-B/16 and ViT-B/32 side by side: top-1
# accuracy after pre-training on ImageNet, ImageNet-21k or JFT-300M and fine-tuning at
# $384 \times 384$ on six datasets. The cell holds the table's two columns, copied from the
# paper (cited data, not computed here), and compares them pair by pair:

# %%
# Dosovitskiy et al., 2021, Table 5 (Appendix C): top-1 accuracy in %, fine-tuned at 384 x 384
# {pre-training data: {dataset: (ViT-B/16, ViT-B/32)}}, copied from the paper
TABLE_5 = {
    "ImageNet": {"ImageNet": (77.91, 73.38), "ImageNet ReaL": (83.57, 79.56), "CIFAR-10": (98.13, 97.77),
                 "CIFAR-100": (87.13, 86.31), "Oxford-IIIT Pets": (93.81, 92.04), "Oxford Flowers-102": (89.49, 85.43)},
    "ImageNet-21k": {"ImageNet": (83.97, 81.28), "ImageNet ReaL": (88.35, 86.63), "CIFAR-10": (98.95, 98.79),
                     "CIFAR-100": (91.67, 91.97), "Oxford-IIIT Pets": (94.43, 93.02), "Oxford Flowers-102": (99.38, 99.11)},
    "JFT-300M": {"ImageNet": (84.15, 80.73), "ImageNet ReaL": (88.85, 86.27), "CIFAR-10": (99.00, 98.61),
                 "CIFAR-100": (91.87, 90.49), "Oxford-IIIT Pets": (95.80, 93.40), "Oxford Flowers-102": (99.56, 99.27)},
}

print(f"{'pre-trained on':<14} {'fine-tuned on':<20} {'B/16':>6} {'B/32':>6} {'B/16 - B/32':>12}")
pairs = []
for pretrain, results in TABLE_5.items():
    for dataset, (b16, b32) in results.items():
        pairs.append((pretrain, dataset, b16 - b32))
        print(f"{pretrain:<14} {dataset:<20} {b16:6.2f} {b32:6.2f} {b16 - b32:+12.2f}")
ahead = [p for p in pairs if p[2] > 0]
behind = [f"{dataset} after {pretrain} ({gap:+.2f})" for pretrain, dataset, gap in pairs if gap <= 0]
print(f"\nViT-B/16 is ahead of ViT-B/32 in {len(ahead)} of {len(pairs)} pairs; "
      f"not ahead: {', '.join(behind) or 'none'}.")
print(f"Its lead ranges from {min(p[2] for p in ahead):.2f} to {max(p[2] for p in ahead):.2f} points.")

# %% [markdown]
# So the smaller patch wins almost everywhere in the table, by up to a few points, but
# not on every dataset: the cell names the exception. That gain costs the factor of 4 in
# tokens, and more in attention, counted above.
#
# **A note on units.** `vit_flops_breakdown` counts a multiply-add as 2 FLOPs, as
# `torch.utils.flop_counter` does. torchvision's model table (its "GFLOPS" column) and
# timm's model cards ("GMACs") count multiply-adds, so the number they quote for ViT-B/16
# is half of ours. The cell computes all three: our closed form, PyTorch's FLOP counter
# running torchvision's own `vit_b_16` built on the `meta` device (shapes only: no memory,
# no weights, no time), and the number torchvision ships in that model's weights metadata.

# %%
import torchvision
from torch.utils.flop_counter import FlopCounterMode

ours = sum(vit_flops_breakdown(ViTConfig(image_size=224, patch_size=16, num_labels=1000)).values())  # ViT-B/16
with torch.device("meta"):  # shapes only
    torchvision_vit, meta_image = torchvision.models.vit_b_16(), torch.empty(1, 3, 224, 224)
with FlopCounterMode(display=False) as counter, torch.no_grad():
    torchvision_vit(meta_image)
counted = counter.get_total_flops()
listed = torchvision.models.ViT_B_16_Weights.IMAGENET1K_V1.meta["_ops"]  # torchvision's "GFLOPS" column
print(f"vit_flops_breakdown:                     {ours / 1e9:.2f} GFLOPs (2 per multiply-add) = {ours / 2e9:.2f} GMACs")
print(f"flop_counter on torchvision's vit_b_16:  {counted / 1e9:.2f} GFLOPs, equal to ours: {counted == ours}")
print(f"torchvision's table lists for vit_b_16:  {listed:.2f} 'GFLOPS', our count / {ours / 1e9 / listed:.2f}")


# %% [markdown]
# Quoting a ViT's cost, say which unit: "35.13 GFLOPs" and "17.56 GFLOPS" above are
# the same forward pass. The quadratic cost of small patches is why ViT uses $P = 14$ to $32$ at
# $224 \times 224$, and why models meant for small patches or big images restrict attention
# to windows (Swin) or reduce the tokens.
#
# Slide through the patch sizes to see the grid a ViT would use on our photo (run the
# notebook to use the slider; a static version follows).

# %%
# NBVAL_IGNORE_OUTPUT
def draw_grid(fig, patch_size):
    n = (224 // patch_size) ** 2
    plots.show_patch_grid(photo, patch_size, ax=fig.subplots(), title=f"P = {patch_size}: N = {n} tokens\nN$^2$ = {n * n:,} pairs")


plots.figure_widget(draw_grid, figsize=(3.6, 3.6),
                    patch_size=widgets.SelectionSlider(options=[4, 7, 8, 14, 16, 28, 32, 56], value=16,
                                                       description="patch size"))

# %%
fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
for ax, p in zip(axes, [8, 16, 32]):
    n = (224 // p) ** 2
    plots.show_patch_grid(photo, p, ax=ax, title=f"P = {p}: N = {n} tokens")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Summary
#
# - A ViT cuts an $H \times W$ image into $N = HW/P^2$ patches of $C \cdot P^2$ numbers each:
#   224 x 224 with $P = 16$ gives 196 tokens of 768 numbers.
# - `patchify` is reshape, permute, reshape; einops writes it as
#   `b c (h p1) (w p2) -> b (h w) (c p1 p2)`.
# - The patch embedding is one linear map shared by all patches. Libraries implement it as a
#   `Conv2d` with kernel and stride $P$; its kernel reshaped to $(D, C P^2)$ is the linear
#   weight, *if* patches are flattened in $(C, P, P)$ order. The $(P, P, C)$ order holds the same
#   numbers but does not match pretrained conv weights.
# - The sequence length grows like $1/P^2$ and attention like $1/P^4$: the patch size is the
#   main knob between detail and cost.
#
# ## Further reading
#
# - Dosovitskiy et al., 2021, *An Image is Worth 16x16 Words*: Sec. 3.1 (Eq. 1, the patch
#   embedding; "Hybrid Architecture", patches from a CNN feature map), Sec. 4.1 "Model
#   Variants" (sequence length is inversely proportional to the square of the patch size),
#   Sec. 4.5 and Fig. 7 (left: the learned embedding filters), Appendix D.5 (empirical
#   computational costs).
# - Next notebook: **02 · Position embeddings**: the patches lost their place; how the model
#   gets it back.

# %% [markdown]
# ## Exercises
#
# Open problems, not graded.
#
# 1. Write `unpatchify(tokens, patch_size, H, W)`, the inverse of `patchify`, and check that
#    `unpatchify(patchify(x, P), P, H, W)` gives `x` back for a non-square image.
# 2. The patch embedding is a Conv2d with kernel = stride = $P$. What changes if the stride is
#    $P/2$ (overlapping patches)? Count the tokens and the FLOPs for ViT-B at $224 \times 224$.
# 3. At which image size does attention reach half of ViT-B/16's forward FLOPs? Find it with
#    `vit_flops_breakdown` and compare with $N = 6D$ from notebook 03.
