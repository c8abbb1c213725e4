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
# # 03 · Attention
#
# **What you will learn**
#
# - scaled dot-product attention, $\mathrm{softmax}(QK^\top/\sqrt{d})\,V$, written from scratch
# - why the scores are divided by $\sqrt{d}$: without it the softmax saturates and its gradient vanishes
# - how one wide attention becomes $h$ heads: the shapes at every step of the split and the merge
# - what attention costs as the number of tokens $N$ grows
# - that your attention equals PyTorch's fused kernel and Hugging Face's ViT attention, number for number
# - what the attention weights of the course's trained ViT look like on a real image
#
# **Time:** about 45 minutes. Two graded exercises.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
import transformers
from torch import nn
from torch.nn import functional as F

from vit_course import ViTConfig, VisionTransformer, plots
from vit_course import attention as reference
from vit_course.cost import vit_flops_breakdown
from vit_course.checks import check_multi_head_self_attention, check_scaled_dot_product_attention, use_or_reference
from vit_course.data import FASHION_MNIST_LABELS, load_fashion_mnist, to_model_input
from vit_course.hf import load_hf
from vit_course.paths import DATA_DIR

transformers.logging.set_verbosity_error()
torch.manual_seed(0)
MODEL_DIR = DATA_DIR / "models" / "vit-tiny-fashion"  # the course's ViT, trained on Fashion-MNIST

# %% [markdown]
# ## 1. Attention in one line
#
# Each token asks a question (its **query** $q$), offers a label (its **key** $k$) and carries
# content (its **value** $v$). A query scores every key by a dot product; the softmax of the
# scores says how much of each value to take:
#
# $$
# \mathrm{Attention}(Q, K, V) = \underbrace{\mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d}}\right)}_{A \,\in\, \mathbb{R}^{N_q \times N_k}} V,
# \qquad Q \in \mathbb{R}^{N_q \times d},\; K \in \mathbb{R}^{N_k \times d},\; V \in \mathbb{R}^{N_k \times d_v}.
# $$
#
# The softmax runs along each row, over the keys, so every row of $A$ is a probability
# distribution: query $i$'s output is a weighted average of the values. Four tokens with
# $d = 8$:

# %%
N, d = 4, 8
q, k, v = torch.randn(3, N, d).unbind(0)  # each (N, d)
scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (N, N): query i against key j
weights = scores.softmax(dim=-1)  # (N, N), each row sums to 1
out = weights @ v  # (N, d)
print("scores", tuple(scores.shape), "| weights", tuple(weights.shape), "| out", tuple(out.shape))
print("row sums:", [round(s, 4) for s in weights.sum(dim=-1).tolist()])


# %% [markdown]
# ### Exercise 1 (2 points): `scaled_dot_product_attention`
#
# Write `scaled_dot_product_attention(q, k, v)` returning `(out, weights)`. It must work for
# any leading dimensions, `(..., N, d)`: a batch `(B, N, d)` and a batch of heads
# `(B, h, N, d)` alike, and for a different number of queries and keys.
#
# Hints: `k.transpose(-2, -1)` swaps the last two dims whatever comes before them;
# $d$ is `q.shape[-1]`; the softmax runs over the keys, `dim=-1`.

# %% nbgrader={"grade": false, "grade_id": "sdpa_solution", "locked": false, "schema_version": 3, "solution": true}
def scaled_dot_product_attention(q, k, v):
    """q (..., Nq, d), k (..., Nk, d), v (..., Nk, dv) -> out (..., Nq, dv), weights (..., Nq, Nk)."""
    ### BEGIN SOLUTION: return (out, weights) for q (..., Nq, d), k (..., Nk, d), v (..., Nk, dv)
    d = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (..., Nq, Nk)
    weights = scores.softmax(dim=-1)  # over the keys
    return weights @ v, weights  # (..., Nq, dv), (..., Nq, Nk)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "sdpa_check", "locked": true, "points": 2, "schema_version": 3, "solution": false}
result = check_scaled_dot_product_attention(scaled_dot_product_attention)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %% [markdown]
# The cells below use your function if it passed, and the course's reference if not:

# %%
attend = use_or_reference(result, scaled_dot_product_attention, reference.scaled_dot_product_attention)

# %% [markdown]
# ## 2. Why divide by $\sqrt{d}$?
#
# Take a query and a key with independent entries of mean 0 and variance 1. Their dot
# product is a sum of $d$ independent terms $q_i k_i$, each of variance 1, so
#
# $$
# \mathrm{Var}(q \cdot k) = \sum_{i=1}^{d} \mathrm{Var}(q_i k_i) = d,
# \qquad
# \mathrm{Var}\!\left(\frac{q \cdot k}{\sqrt{d}}\right) = 1 .
# $$
#
# The scores spread out as $\sqrt{d}$: the wider the heads, the larger the gaps between
# scores. Measured on 10,000 random pairs:

# %%
g = torch.Generator().manual_seed(0)
for d in [4, 16, 64, 256, 1024]:
    q, k = torch.randn(2, 10_000, d, generator=g).unbind(0)  # 10,000 pairs
    dots = (q * k).sum(dim=-1)  # (10000,)
    print(f"d = {d:4d}   var(q.k) = {dots.var():7.1f}   var(q.k / sqrt(d)) = {(dots / math.sqrt(d)).var():.2f}")


# %% [markdown]
# Large gaps are bad for a softmax: $e^{s}$ turns a gap of 10 into a factor of 22,000,
# so the largest score takes (nearly) all the weight. Such a **saturated** softmax is
# also flat: its Jacobian $\partial A_j / \partial s_i = A_j(\delta_{ij} - A_i)$ is
# nearly zero when one $A_j$ is close to 1 and the rest close to 0, so almost no gradient
# reaches the queries and keys, and they stop learning.
#
# Below, one query meets 16 random keys. For each width $d$ we measure, over 500 draws,
# the largest weight (1 means one-hot), the entropy of the weights ($\log 16 \approx 2.77$
# means uniform) and the norm of the gradient that flows back into the scores from a
# random upstream gradient, with and without the $1/\sqrt{d}$.

# %%
def softmax_statistics(d, scaled, n_keys=16, trials=500, seed=0):
    # median over trials of: the largest weight, the entropy, the gradient norm at the scores
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(trials, 1, d, generator=g)
    k = torch.randn(trials, n_keys, d, generator=g)
    upstream = torch.randn(trials, 1, n_keys, generator=g)  # dLoss/dweights from later layers
    scores = q @ k.transpose(-2, -1) / (math.sqrt(d) if scaled else 1.0)  # (trials, 1, n_keys)
    scores.requires_grad_(True)
    weights = scores.softmax(dim=-1)
    (weights * upstream).sum().backward()
    w = weights.detach()
    entropy = -(w * w.clamp_min(1e-30).log()).sum(dim=-1)
    return {
        "max weight": w.max(dim=-1).values.median().item(),
        "entropy": entropy.median().item(),
        "grad norm": scores.grad.norm(dim=-1).median().item(),
    }


dims = [2**i for i in range(1, 12)]  # 2 ... 2048
stats = {scaled: [softmax_statistics(d, scaled) for d in dims] for scaled in (False, True)}
print(f"{'d':>5} | {'max weight':>10} {'entropy':>8} {'grad norm':>10} | {'max weight':>10} {'entropy':>8} {'grad norm':>10}")
print(f"{'':>5} | {'unscaled q.k':^30} | {'scaled q.k / sqrt(d)':^30}")
for i, d in enumerate(dims[::2]):
    u, s = stats[False][2 * i], stats[True][2 * i]
    print(f"{d:5d} | {u['max weight']:10.3f} {u['entropy']:8.3f} {u['grad norm']:10.1e} | "
          f"{s['max weight']:10.3f} {s['entropy']:8.3f} {s['grad norm']:10.1e}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
for scaled, style in ((False, "o-"), (True, "s-")):
    label = "scaled: q.k / sqrt(d)" if scaled else "unscaled: q.k"
    for ax, key in zip(axes, ("max weight", "entropy", "grad norm")):
        ax.plot(dims, [s[key] for s in stats[scaled]], style, label=label)
axes[1].axhline(math.log(16), color="gray", ls="--", lw=1, label="uniform over 16 keys")
axes[2].set_yscale("log")
for ax, title in zip(axes, ("largest weight (1 = one-hot)", "entropy of the weights", "gradient norm at the scores")):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("head size d")
    ax.set_title(title)
axes[1].legend(fontsize=8)
fig.suptitle("Unscaled scores saturate the softmax as d grows; dividing by sqrt(d) keeps it in a learnable range")
fig.tight_layout()
plt.show()

# %%
u, s = stats[False][dims.index(64)], stats[True][dims.index(64)]
print(f"At d = 64 (ViT-B's head size) the median gradient is {u['grad norm']:.1e} unscaled "
      f"and {s['grad norm']:.1e} scaled: {s['grad norm'] / u['grad norm']:.0f} times larger.")


# %% [markdown]
# ### Explore: sharpening with $d$
#
# The same query and keys, one draw: the weights of one query over 16 keys. The slider
# sets $\log_2 d$. Without scaling, the bars collapse onto one key as $d$ grows; with
# scaling they keep the same spread. The static figure under it shows three values of $d$.

# %%
def plot_softmax_row(d, axes, n_keys=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(1, d, generator=g), torch.randn(n_keys, d, generator=g)
    raw = (q @ k.T)[0]  # (n_keys,)
    for ax, (title, s) in zip(axes, (("unscaled", raw), ("scaled by 1/sqrt(d)", raw / math.sqrt(d)))):
        ax.bar(range(n_keys), s.softmax(dim=-1).numpy(), color="tab:blue" if title == "unscaled" else "tab:orange")
        ax.set_ylim(0, 1)
        ax.set_title(f"d = {d}, {title}", fontsize=9)
        ax.set_xticks([])


fig, axes = plt.subplots(2, 3, figsize=(11, 4), sharey=True)
for col, d in enumerate([4, 64, 1024]):
    plot_softmax_row(d, axes[:, col])
axes[0, 0].set_ylabel("weight")
axes[1, 0].set_ylabel("weight")
fig.suptitle("One query's weights over 16 keys")
fig.tight_layout()
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
import ipywidgets as widgets


def explore_softmax(fig, log2_d):
    axes = fig.subplots(1, 2, sharey=True)
    plot_softmax_row(2**log2_d, axes)
    fig.tight_layout()


plots.figure_widget(explore_softmax, figsize=(9, 2.6),
                    log2_d=widgets.IntSlider(value=6, min=1, max=11, description="log2 d"))

# %% [markdown]
# ## 3. Many heads: split, attend, merge
#
# One attention over all $D$ features makes each token take one weighted average. ViT
# (Appendix A of the paper) runs $h$ attentions side by side, each on its own $d = D/h$
# features, so a token can look at several places at once:
#
# $$
# \mathrm{MSA}(X) = \mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_h)\, W^O,
# \qquad \mathrm{head}_i = \mathrm{Attention}(X W_i^Q,\; X W_i^K,\; X W_i^V).
# $$
#
# In code the $h$ small projections are one $D \times D$ `Linear` each for queries, keys
# and values; splitting its output into heads is a reshape and a transpose. The shapes at
# every step, for a batch of $B = 2$ sequences of $N = 5$ tokens of width $D = 12$ and
# $h = 3$ heads:

# %%
B, N, D, h = 2, 5, 12, 3
d = D // h  # head size
x = torch.randn(B, N, D)  # think of it as q = q_proj(x)
print(f"x                            {tuple(x.shape)}   (B, N, D)")
t = x.reshape(B, N, h, d)
print(f"reshape to heads             {tuple(t.shape)}   (B, N, h, d): D cut into h pieces of d")
heads = t.transpose(1, 2)
print(f"transpose(1, 2)              {tuple(heads.shape)}   (B, h, N, d): each head a sequence of its own")
out, weights = attend(heads, heads, heads)
print(f"attention in every head      {tuple(out.shape)}   weights {tuple(weights.shape)} (B, h, N, N)")
merged = out.transpose(1, 2).reshape(B, N, D)
print(f"transpose back and reshape   {tuple(merged.shape)}   (B, N, D), ready for o_proj")

# %% [markdown]
# Head $i$ must see features $i d, \dots, (i+1)d - 1$ of *every* token. Reshaping straight to
# `(B, h, N, d)` gives the right shape but the wrong numbers: it cuts the flat sequence
# into $h$ chunks, so a "head" gets whole tokens, mixed across positions. The `einops`
# notation says which axis goes where, and agrees with reshape-then-transpose:

# %%
from einops import rearrange

wrong = x.reshape(B, h, N, d)  # right shape, wrong grouping
print("head 0 = first d features of every token (reshape + transpose):", torch.equal(heads[:, 0], x[..., :d]))
print("head 0 = first d features of every token (reshape only):       ", torch.equal(wrong[:, 0], x[..., :d]))
print("einops 'b n (h d) -> b h n d' equals reshape + transpose:       ",
      torch.equal(rearrange(x, "b n (h d) -> b h n d", h=h), heads))
print("merge undoes split:", torch.equal(heads.transpose(1, 2).reshape(B, N, D), x))


# %% [markdown]
# ### Exercise 2 (3 points): `MultiHeadSelfAttention`
#
# Write the module that HF calls `ViTAttention` (its `ViTSelfAttention` plus the output
# projection). With `hidden_size` $D$ and `num_heads` $h$:
#
# - `q_proj`, `k_proj`, `v_proj`: `nn.Linear(D, D, bias=qkv_bias)`; `o_proj`: `nn.Linear(D, D)` (always with a bias);
# - `forward(x)`: `x` `(B, N, D)` -> `(out, weights)` with `out` `(B, N, D)` and the weights of every head `(B, h, N, N)`.
#
# Use `attend` (your function from exercise 1, or the reference) inside each head. The
# check copies the reference's weights into your four projections, so keep those names.

# %% nbgrader={"grade": false, "grade_id": "mhsa_solution", "locked": false, "schema_version": 3, "solution": true}
class MultiHeadSelfAttention(nn.Module):
    """Self-attention with num_heads heads of size hidden_size // num_heads."""

    def __init__(self, hidden_size, num_heads, qkv_bias=True):
        super().__init__()
        ### BEGIN SOLUTION: create q_proj, k_proj, v_proj (bias=qkv_bias) and o_proj; keep num_heads and head_dim
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.o_proj = nn.Linear(hidden_size, hidden_size)
        ### END SOLUTION

    def forward(self, x):
        """x (B, N, D) -> out (B, N, D), weights (B, h, N, N)."""
        ### BEGIN SOLUTION: project, split into heads, attend, merge the heads, apply o_proj
        B, N, D = x.shape

        def split(t):
            return t.reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, N, d)

        out, weights = attend(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        out = out.transpose(1, 2).reshape(B, N, D)  # (B, N, D)
        return self.o_proj(out), weights
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "mhsa_check", "locked": true, "points": 3, "schema_version": 3, "solution": false}
result = check_multi_head_self_attention(MultiHeadSelfAttention)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %%
MHSA = use_or_reference(result, MultiHeadSelfAttention, reference.MultiHeadSelfAttention)

# %% [markdown]
# ## 4. The same numbers as PyTorch and Hugging Face
#
# PyTorch has a fused kernel, `F.scaled_dot_product_attention`: faster, less memory, but
# it returns only the output, not the weights. On a batch of 4-head inputs:

# %%
q, k, v = torch.randn(3, 2, 4, 7, 16).unbind(0)  # each (B, h, N, d)
out, weights = attend(q, k, v)
fused = F.scaled_dot_product_attention(q, k, v)
print("same shape:", out.shape == fused.shape, tuple(out.shape))
print("max abs diff < 1e-5:", (out - fused).abs().max().item() < 1e-5)

# %% [markdown]
# Now Hugging Face. A tiny, randomly initialised `transformers.ViTModel` with the **eager**
# attention (the default SDPA backend returns no weights) gives the attention weights of
# every layer with `output_attentions=True`:

# %%
hf_config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=96)
torch.manual_seed(0)
hf_model = transformers.ViTModel(hf_config, add_pooling_layer=False).eval()
hf_model.set_attn_implementation("eager")
pixels = torch.randn(2, 3, 32, 32)
with torch.no_grad():
    hf_out = hf_model(pixels, output_attentions=True, output_hidden_states=True)
print("layers:", len(hf_out.attentions), "| weights per layer:", tuple(hf_out.attentions[0].shape), "(B, h, 1+N, 1+N)")

# %% [markdown]
# `vit_course.hf.load_hf` renames HF's parameters to ours (`blocks.0.attn.q_proj.weight`
# and so on). Copy layer 0's four projections into your module and feed it what HF's first
# attention sees: the embeddings after the first LayerNorm. (`MHSA` is your module if it
# passed its check, else the reference, which has the same name; the line below says which.)

# %%
config, state = load_hf(hf_model)  # our config, HF's weights under our names
prefix = "blocks.0.attn."
mine = MHSA(config.hidden_size, config.num_attention_heads).eval()
mine.load_state_dict({key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)})
z0 = hf_out.hidden_states[0]  # (B, 1+N, D): the embeddings, the input of layer 0
x0 = F.layer_norm(z0, (config.hidden_size,), state["blocks.0.norm1.weight"], state["blocks.0.norm1.bias"],
                  eps=config.layer_norm_eps)
with torch.no_grad():
    _, my_weights = mine(x0)
diff = (my_weights - hf_out.attentions[0]).abs().max().item()
whose = "your MultiHeadSelfAttention" if MHSA is MultiHeadSelfAttention else f"the reference {MHSA.__module__}.{MHSA.__name__}"
print(f"block 0: the weights of {whose} equal HF's (max abs diff < 1e-5):", diff < 1e-5)

# %% [markdown]
# And the whole model: `VisionTransformer.from_hf` copies every weight, and
# `attention_maps(x)` returns one `(B, h, 1+N, 1+N)` tensor per layer, as HF's `attentions`:

# %%
ours = VisionTransformer.from_hf(hf_model)
maps = ours.attention_maps(pixels)
for layer, (a, b) in enumerate(zip(maps, hf_out.attentions)):
    print(f"block {layer}: attention maps equal HF's (max abs diff < 1e-5): {(a - b).abs().max().item() < 1e-5}")
with torch.no_grad():
    same = (ours.forward_features(pixels) - hf_out.last_hidden_state).abs().max().item() < 1e-5
print("last hidden state equal:", same)

# %% [markdown]
# ## 5. What attention costs as $N$ grows
#
# Per layer and image, with $T = N + 1$ tokens of width $D$ and an MLP of width $4D$
# (2 FLOPs per multiply-add, as `vit_course.cost` counts them):
#
# | step | FLOPs | memory |
# |---|---|---|
# | $q, k, v, o$ projections | $4 \cdot 2 T D^2 = 8 T D^2$ | $O(TD)$ |
# | scores $QK^\top$ | $2 T^2 D$ | the $h \times T \times T$ weights |
# | weights $\cdot V$ | $2 T^2 D$ | |
# | MLP, $D \to 4D \to D$ | $2 \cdot 2 T D \cdot 4D = 16 T D^2$ | $O(TD)$ |
#
# The projections and the MLP grow like $T$, attention like $T^2$. Attention's FLOPs
# overtake the projections' when $4T^2D > 8TD^2$, at $T = 2D$. But the MLP costs twice the
# projections, so attention is half of a layer's FLOPs only when $4T^2D > 24TD^2$, at
# $T = 6D$. The weights themselves, $h T^2$ floats per layer, are what the fused kernel
# avoids storing. The plot shows the three terms for ViT-B ($D = 768$, $h = 12$):

# %%
D, h = 768, 12  # ViT-B
Ns = torch.tensor([2**i for i in range(4, 15)], dtype=torch.float64)  # 16 ... 16384 tokens
proj_flops, mlp_flops, attn_flops = 8 * Ns * D**2, 16 * Ns * D**2, 4 * Ns**2 * D
weights_mib = h * Ns**2 * 4 / 2**20  # fp32, one layer, one image

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
axes[0].loglog(Ns, proj_flops, "o-", label="projections  8 T D²")
axes[0].loglog(Ns, mlp_flops, "^-", label="MLP  16 T D²")
axes[0].loglog(Ns, proj_flops + mlp_flops, "--", color="gray", label="projections + MLP  24 T D²")
axes[0].loglog(Ns, attn_flops, "s-", label="attention  4 T² D")
axes[0].axvline(2 * D, color="gray", ls="--", lw=1, label="T = 2D")
axes[0].axvline(6 * D, color="black", ls=":", lw=1, label="T = 6D")
axes[0].set(xlabel="tokens T", ylabel="FLOPs per layer", title="FLOPs per layer (D = 768)")
axes[0].legend(fontsize=8)
axes[1].loglog(Ns, weights_mib, "s-", color="tab:red")
axes[1].set(xlabel="tokens T", ylabel="MiB", title="attention weights per layer (h = 12, fp32)")
for ax in axes:
    for n, name in ((197, "ViT-B/16 at 224"), (577, "at 384")):
        ax.axvline(n, color="tab:green", lw=0.8)
        ax.text(n, ax.get_ylim()[1], name, rotation=90, va="top", ha="right", fontsize=7)
fig.tight_layout()
plt.show()


# %% [markdown]
# Where exactly, for a real ViT-B/16? `vit_flops_breakdown` counts every matrix product
# of the forward pass, the patch embedding included. The cell grows a square image one
# patch at a time and finds the first size at which attention passes the projections, and
# the first at which it passes half of the whole forward pass:

# %%
def attention_shares(image_size, patch_size=16):
    """Attention's share of (attention + projections) and of the whole forward pass, ViT-B."""
    flops = vit_flops_breakdown(ViTConfig(image_size=image_size, patch_size=patch_size))
    attention = flops["attention_scores"] + flops["attention_values"]
    projections = flops["qkv_projections"] + flops["output_projection"]
    return attention / (attention + projections), attention / sum(flops.values())


vit_b = ViTConfig()  # ViT-B: D = 768, 12 heads, MLP 3072
D, P = vit_b.hidden_size, 16
sizes = range(P, 4096 + 1, P)  # square images, one patch more per side each step
for what, k in (("the projections' FLOPs", 0), ("half of the forward pass", 1)):
    size = next(s for s in sizes if attention_shares(s)[k] > 0.5)
    T = (size // P) ** 2 + 1
    print(f"attention passes {what} at {size} x {size}: T = {T} tokens = {T / D:.2f} D")
print()
for size in (224, 384, 1024):
    T = (size // P) ** 2 + 1
    vs_proj, vs_all = attention_shares(size)
    print(f"{size:4d} x {size:<4d} (T = {T:4d}): attention is {vs_proj:5.1%} of attention + projections, "
          f"{vs_all:5.1%} of the forward pass; weights {h * T * T * 4 / 2**20:5.1f} MiB per layer")


# %% [markdown]
# At ViT-B/16's 197 tokens attention is a small share of the work. Even at
# $1024 \times 1024$ it is still less than half of the forward pass: the MLP and the
# projections, linear in $T$, remain the bigger cost until about $T = 6D$. What grows
# fastest is the memory of the weights, which the fused kernel never stores. Timing the
# two on this machine (batch 1, 4 heads of size 32; the numbers vary from run to run, so
# nbval ignores this cell):

# %%
# NBVAL_IGNORE_OUTPUT
def best_time(fn, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


print(f"{'N':>6} {'ours (ms)':>10} {'fused (ms)':>11} {'weights (MiB)':>14}")
with torch.no_grad():
    for n in (64, 256, 1024, 2048):
        q, k, v = torch.randn(3, 1, 4, n, 32).unbind(0)
        ours_s = best_time(lambda: attend(q, k, v))
        fused_s = best_time(lambda: F.scaled_dot_product_attention(q, k, v))
        print(f"{n:6d} {1000 * ours_s:10.2f} {1000 * fused_s:11.2f} {4 * n * n * 4 / 2**20:14.1f}")

# %% [markdown]
# ## 6. Attention in a trained ViT
#
# The course's own ViT (`data/models/vit-tiny-fashion`) was trained on Fashion-MNIST's
# 28 x 28 images; the cell prints its size. `attention_maps` gives the weights of every
# layer for a test image:

# %%
model = VisionTransformer.from_hf(MODEL_DIR)
images, labels = load_fashion_mnist("test")
i = int((labels == FASHION_MNIST_LABELS.index("Ankle boot")).nonzero()[0])  # the first ankle boot
x = to_model_input(images[i : i + 1], channels=3)  # (1, 3, 28, 28), normalised as in training
maps = model.attention_maps(x)
c = model.config
print(f"{c.num_hidden_layers} blocks of {c.num_attention_heads} heads, D = {c.hidden_size}, "
      f"{c.patch_size} x {c.patch_size} patches: {c.num_patches} patch tokens + CLS")
with torch.no_grad():
    predicted = model(x).argmax(-1).item()
print(f"{len(maps)} layers, weights of shape {tuple(maps[0].shape)} each")
print(f"true: {FASHION_MNIST_LABELS[labels[i]]}, predicted: {FASHION_MNIST_LABELS[predicted]}")
print("every row sums to 1:", all(torch.allclose(m.sum(-1), torch.ones(1)) for m in maps))

# %% [markdown]
# Row 0 of a map is what the CLS token, the one the classifier reads, takes from each
# patch. Reshaped to the grid of patches, per head of the first and the last block:

# %%
rows, cols = model.config.grid_size
layers = [0, len(maps) - 1]
heads = maps[0].shape[1]
fig, axes = plt.subplots(len(layers), heads + 1, figsize=(2.2 * (heads + 1), 2.3 * len(layers)))
for r, layer in enumerate(layers):
    axes[r, 0].imshow(images[i], cmap="gray")
    axes[r, 0].set_title(FASHION_MNIST_LABELS[labels[i]] if r == 0 else "", fontsize=9)
    axes[r, 0].set_ylabel(f"block {layer}")
    for head in range(heads):
        cls_row = maps[layer][0, head, 0, 1:].reshape(rows, cols)  # CLS -> the 49 patches
        axes[r, head + 1].imshow(cls_row, cmap="viridis")
        axes[r, head + 1].set_title(f"head {head + 1}", fontsize=9)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("What the CLS token attends to, per head (each panel on its own colour scale)")
fig.tight_layout()
plt.show()

# %% [markdown]
# The full $(1+N) \times (1+N)$ matrices (averaged over heads) show every token's attention:
# token 0 is CLS, then the patches row by row. A bright diagonal means tokens attending to
# themselves, bands next to it neighbours in the same row of patches, vertical stripes keys
# that many queries read. Compare the first block with the last.

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, layer in zip(axes, layers):
    im = ax.imshow(maps[layer][0].mean(0), cmap="magma")
    ax.set(title=f"block {layer}, mean over heads", xlabel="key token", ylabel="query token")
    fig.colorbar(im, ax=ax, fraction=0.046)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Summary
#
# - Attention is $\mathrm{softmax}(QK^\top/\sqrt{d})\,V$: every query takes a weighted average of the values, weights from query-key dot products.
# - Unscaled dot products have variance $d$; the softmax then saturates towards one-hot and its gradient vanishes (the table in section 2). Dividing by $\sqrt{d}$ keeps the scores at unit variance.
# - Multi-head attention is a reshape `(B, N, D) -> (B, N, h, d)` and a transpose to `(B, h, N, d)`; merging is the exact inverse. Reshaping straight to `(B, h, N, d)` has the right shape and the wrong numbers.
# - Attention costs $O(N^2 D)$ FLOPs and $O(hN^2)$ memory per layer; the projections $O(ND^2)$. Attention's FLOPs pass the projections' at about $T = 2D$ tokens, but half of the forward pass (MLP included) only at about $T = 6D$: for ViT-B/16 an image of more than $1024 \times 1024$ (section 5).
# - Your attention gives the same numbers as `F.scaled_dot_product_attention` and as HF's eager `ViTAttention`.
#
# ## Further reading
#
# - Dosovitskiy et al. (2021), *An Image is Worth 16x16 Words*: Sec. 3.1 (Eq. 2-3, the encoder), Appendix A (multihead self-attention, Eq. 5-8), Sec. 4.5 and Appendix D.7-D.8 (attention distance and attention maps), Appendix D.5 (empirical computational costs).
# - Vaswani et al. (2017), *Attention Is All You Need*: Sec. 3.2.1 (scaled dot-product attention, and footnote 4 on the variance of $q \cdot k$), Sec. 3.2.2 (multi-head attention).
# - Dao et al. (2022), *FlashAttention*: how the fused kernel avoids storing the $N \times N$ weights.

# %% [markdown]
# ## Exercises
#
# Open problems, not graded.
#
# 1. Add an attention mask to your `scaled_dot_product_attention` (`mask` of shape `(Nq, Nk)`,
#    `False` = not allowed) and check it against `F.scaled_dot_product_attention(attn_mask=...)`.
# 2. Find section 5's two crossovers for ViT-S ($D = 384$, `ViTConfig(hidden_size=384,
#    num_attention_heads=6, intermediate_size=1536)`) and ViT-L ($D = 1024$): do they move with
#    $D$ as $T = 2D$ and $T = 6D$ predict?
# 3. Train the tiny ViT for a few hundred steps with and without the $1/\sqrt{d}$ scaling at a
#    high learning rate and compare the loss curves and the entropy of the attention rows.
