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
# # 04 · The CLS head and the whole ViT
#
# **What you will learn**
#
# - the pre-norm transformer block, Eq. 2-3 of the paper, and what its residual connections do on real inputs
# - why pre-norm: a pre-norm and a post-norm ViT trained side by side at a high learning rate
# - the GELU MLP and the LayerNorm, and the two small details (exact GELU, `eps=1e-12`) that decide exact parity with Hugging Face
# - what the CLS token pools, compared with mean pooling on the course's trained model
# - how to assemble a whole ViT from your block, load the course's pretrained weights into it and match HF's logits
#
# **Time:** about 45 minutes. Two graded exercises.

# %%
import copy
import math
import time

import matplotlib.pyplot as plt
import torch
import transformers
from torch import nn
from torch.nn import functional as F

from vit_course import ViTConfig, VisionTransformer
from vit_course import block as reference
from vit_course.attention import MultiHeadSelfAttention
from vit_course.checks import check_transformer_block, check_vision_transformer, use_or_reference
from vit_course.data import FASHION_MNIST_LABELS, load_fashion_mnist, make_loader, to_model_input
from vit_course.hf import LEGACY, hf_name, load_hf
from vit_course.patches import PatchEmbedding
from vit_course.paths import DATA_DIR
from vit_course.train import fit

transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()  # no "Loading weights" bar in the outputs
torch.manual_seed(0)
MODEL_DIR = DATA_DIR / "models" / "vit-tiny-fashion"  # the course's ViT, trained on Fashion-MNIST

# %% [markdown]
# ## 1. The encoder in four equations
#
# Section 3.1 of the paper writes the whole ViT as
#
# $$
# \begin{aligned}
# \mathbf{z}_0 &= [\mathbf{x}_\text{class};\, \mathbf{x}_p^1 \mathbf{E};\, \dots;\, \mathbf{x}_p^N \mathbf{E}] + \mathbf{E}_{pos} && (1)\\
# \mathbf{z}'_\ell &= \mathrm{MSA}(\mathrm{LN}(\mathbf{z}_{\ell-1})) + \mathbf{z}_{\ell-1}, && \ell = 1 \dots L \quad (2)\\
# \mathbf{z}_\ell &= \mathrm{MLP}(\mathrm{LN}(\mathbf{z}'_\ell)) + \mathbf{z}'_\ell, && \ell = 1 \dots L \quad (3)\\
# \mathbf{y} &= \mathrm{LN}(\mathbf{z}_L^0) && (4)
# \end{aligned}
# $$
#
# Equation (1) is the patch embedding (notebook 01), the CLS token and the position
# embeddings (notebook 02); MSA is the attention of notebook 03. This notebook is about (2)-(4): the block, and the head that reads
# token 0. The block is **pre-norm**: each sub-layer sees a LayerNorm'd copy of the
# stream $\mathbf{z}$ and *adds* its result back, so $\mathbf{z}$ itself is never normalised
# inside the encoder (the original Transformer normalised after the sum; section 5 trains
# both).
#
# ## 2. The MLP and its GELU
#
# The MLP maps each token on its own: $D \to$ `intermediate_size` $\to D$ with a GELU
# between. GELU weighs its input by the probability that a standard normal lies below it,
#
# $$
# \mathrm{GELU}(x) = x\,\Phi(x) = \frac{x}{2}\left(1 + \mathrm{erf}\frac{x}{\sqrt 2}\right)
# \;\approx\; \frac{x}{2}\left(1 + \tanh\!\left[\sqrt{2/\pi}\,(x + 0.044715\,x^3)\right]\right),
# $$
#
# and the tanh form is a cheaper approximation. HF's `hidden_act="gelu"` is the exact one;
# `"gelu_new"` is the tanh one:

# %%
from transformers.activations import ACT2FN

t = torch.linspace(-6, 6, 2001)
exact, approx = F.gelu(t), F.gelu(t, approximate="tanh")
print('HF "gelu" is the exact erf GELU:', torch.equal(ACT2FN["gelu"](t), exact))
print('HF "gelu_new" is the tanh approximation:', torch.allclose(ACT2FN["gelu_new"](t), approx, atol=1e-6))
print(f"largest |exact - tanh| on [-6, 6]: {(exact - approx).abs().max().item():.1e}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
for y, label, style in ((exact, "GELU (exact, erf)", "-"), (approx, "GELU (tanh approx.)", "--"), (F.relu(t), "ReLU", ":")):
    axes[0].plot(t, y, style, label=label)
axes[0].set(xlim=(-4, 3), ylim=(-0.5, 3), xlabel="x", title="activations")
axes[0].legend()
axes[1].plot(t, exact - approx, color="tab:red")
axes[1].set(xlabel="x", title="exact GELU minus the tanh approximation")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. LayerNorm and its $\epsilon$
#
# LayerNorm normalises each token over its $D$ features, then scales and shifts:
#
# $$
# \mathrm{LN}(\mathbf{x}) = \frac{\mathbf{x} - \mu}{\sqrt{\sigma^2 + \epsilon}} \odot \boldsymbol\gamma + \boldsymbol\beta,
# \qquad \mu = \tfrac{1}{D}\textstyle\sum_i x_i,\quad \sigma^2 = \tfrac{1}{D}\textstyle\sum_i (x_i - \mu)^2 .
# $$
#
# HF's ViT uses $\epsilon = 10^{-12}$; `nn.LayerNorm` defaults to $10^{-5}$ and timm to
# $10^{-6}$. The $\epsilon$ matters only when $\sigma^2$ is not much larger than it: the
# relative change is about $\epsilon / 2\sigma^2$.

# %%
g = torch.Generator().manual_seed(0)
for std in (1.0, 0.1, 0.01, 0.001):
    x = torch.randn(4, 64, generator=g) * std
    a, b = F.layer_norm(x, (64,), eps=1e-12), F.layer_norm(x, (64,), eps=1e-5)
    print(f"tokens of std {std:<6}: max |LN_eps=1e-12 - LN_eps=1e-5| = {(a - b).abs().max().item():.1e}")


# %% [markdown]
# ### Exercise 1 (3 points): `TransformerBlock`
#
# Write the pre-norm block of Eq. 2-3 for a `vit_course.ViTConfig`:
#
# - `norm1`, `norm2`: `nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)`;
# - `attn`: `MultiHeadSelfAttention(config.hidden_size, config.num_attention_heads, qkv_bias=config.qkv_bias)` from `vit_course.attention` (it returns `(out, weights)`);
# - `mlp`: an `MLP` module with `fc1` (`hidden_size -> intermediate_size`), the exact GELU, and `fc2` back to `hidden_size`;
# - `forward(x)`: `x` `(B, N, D)` -> `(B, N, D)`.
#
# The check copies the reference's weights into yours by name (`norm1`, `attn.q_proj` ...,
# `norm2`, `mlp.fc1`, `mlp.fc2`), with HF's init and with large weights, so that a tanh
# GELU or a wrong $\epsilon$ shows.

# %% nbgrader={"grade": false, "grade_id": "block_solution", "locked": false, "schema_version": 3, "solution": true}
class MLP(nn.Module):
    """hidden_size -> intermediate_size -> hidden_size with the exact GELU between."""

    def __init__(self, config):
        super().__init__()
        ### BEGIN SOLUTION: create fc1 (hidden_size -> intermediate_size) and fc2 (back to hidden_size)
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION: fc2(gelu(fc1(x))) with the exact GELU
        return self.fc2(F.gelu(self.fc1(x)))
        ### END SOLUTION


class TransformerBlock(nn.Module):
    """Pre-norm: x = x + attn(norm1(x)); x = x + mlp(norm2(x))."""

    def __init__(self, config):
        super().__init__()
        ### BEGIN SOLUTION: create norm1, attn, norm2 and mlp
        D = config.hidden_size
        self.norm1 = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.attn = MultiHeadSelfAttention(D, config.num_attention_heads, qkv_bias=config.qkv_bias)
        self.norm2 = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.mlp = MLP(config)
        ### END SOLUTION

    def forward(self, x):
        """x (B, N, D) -> (B, N, D)."""
        ### BEGIN SOLUTION: Eq. 2, then Eq. 3, each inside a residual connection
        x = x + self.attn(self.norm1(x))[0]  # Eq. 2
        return x + self.mlp(self.norm2(x))  # Eq. 3
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "block_check", "locked": true, "points": 3, "schema_version": 3, "solution": false}
result = check_transformer_block(TransformerBlock)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %%
Block = use_or_reference(result, TransformerBlock, reference.TransformerBlock)

# %% [markdown]
# ## 4. What the residual stream does
#
# Because every block *adds* to $\mathbf{z}$, the stream is a running sum: the embeddings
# plus every attention and MLP update so far. Here are the sizes (L2 norm per token,
# averaged over 100 test images and all tokens) of the stream entering each block and of
# the two updates the block adds, in the course's trained ViT
# (`data/models/vit-tiny-fashion`, 28 x 28 Fashion-MNIST images; its size is printed with
# the weights in section 8):

# %%
model = VisionTransformer.from_hf(MODEL_DIR)
test_images, test_labels = load_fashion_mnist("test")
x = to_model_input(test_images[:100], channels=3)  # (100, 3, 28, 28), normalised as in training

stream, attn_update, mlp_update = [], [], []
with torch.no_grad():
    z = model.embed(x)  # (100, 50, D): Eq. 1
    for blk in model.blocks:
        stream.append(z.norm(dim=-1).mean().item())
        a = blk.attn(blk.norm1(z))[0]
        attn_update.append(a.norm(dim=-1).mean().item())
        z = z + a  # Eq. 2
        m = blk.mlp(blk.norm2(z))
        mlp_update.append(m.norm(dim=-1).mean().item())
        z = z + m  # Eq. 3
    stream.append(z.norm(dim=-1).mean().item())

print(f"{'block':>5} {'|stream in|':>12} {'|attn update|':>14} {'|mlp update|':>13}")
for i in range(len(model.blocks)):
    print(f"{i:5d} {stream[i]:12.2f} {attn_update[i]:14.2f} {mlp_update[i]:13.2f}")
print(f"{'out':>5} {stream[-1]:12.2f}")

# %%
blocks = range(len(model.blocks))
fig, ax = plt.subplots(figsize=(6.5, 3.4))
ax.plot(range(len(stream)), stream, "o-", label="residual stream |z| (entering block i)")
ax.plot(blocks, attn_update, "s--", label="attention update |MSA(LN(z))|")
ax.plot(blocks, mlp_update, "^--", label="MLP update |MLP(LN(z'))|")
ax.set(xlabel="block i", ylabel="mean L2 norm per token", title="The stream and what each block adds")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
ratio = max(max(a, m) / s for a, m, s in zip(attn_update, mlp_update, stream))
print(f"the largest update is {ratio:.2f} times the norm of the stream it is added to")


# %% [markdown]
# Each block writes a correction into a stream that carries everything computed so far;
# nothing is overwritten, and a block that has nothing to add can output (close to) zero.
# The identity path is also why gradients reach the first blocks of deep stacks.
# Because the stream is never normalised inside the encoder, its norm can grow from block
# to block; Eq. 4 normalises it once at the end.

# %% [markdown]
# ## 5. Pre-norm versus post-norm, trained
#
# The original Transformer (Vaswani et al., 2017) normalised *after* each residual sum,
# $\mathbf{z}' = \mathrm{LN}(\mathbf{z} + \mathrm{MSA}(\mathbf{z}))$ and
# $\mathbf{z} = \mathrm{LN}(\mathbf{z}' + \mathrm{MLP}(\mathbf{z}'))$: **post-norm**. ViT puts the
# LayerNorm inside each branch instead (pre-norm, Eq. 2-3), so the identity path from the
# loss down to the first block never passes through a LayerNorm. Xiong et al. (2020) show
# that post-norm's gradients near the output are large at initialisation, so it needs a
# learning-rate warm-up, while pre-norm trains without one.
#
# Watch it happen. A small ViT (6 blocks, $D = 64$, $7 \times 7$ patches of Fashion-MNIST, so
# 16 patch tokens) is trained for 60 steps with AdamW at a high learning rate, $10^{-2}$, and
# no warm-up, once in each order. `PostNormBlock` below is the reference block with the
# sums and norms reordered: the post-norm model holds copies of the pre-norm model's initial
# weights, and both see the same batches. Three seeds; as a control, one seed at $10^{-3}$.

# %%
class PostNormBlock(reference.TransformerBlock):
    """The original Transformer's order, with the same parameters: normalise after each sum."""

    def forward(self, x):
        x = self.norm1(x + self.attn(x)[0])  # z' = LN(z + MSA(z))
        return self.norm2(x + self.mlp(x))  # z = LN(z' + MLP(z'))


small = ViTConfig(image_size=28, patch_size=7, num_channels=1, hidden_size=64, num_hidden_layers=6,
                  num_attention_heads=4, intermediate_size=128, num_labels=10)


def small_vit(norm, seed):
    """A freshly initialised small ViT; norm="post" swaps in PostNormBlocks with the same weights."""
    torch.manual_seed(seed)
    model = VisionTransformer(small)  # pre-norm blocks
    if norm == "post":
        for i, blk in enumerate(model.blocks):
            post = PostNormBlock(small)
            post.load_state_dict(blk.state_dict())
            model.blocks[i] = post
    return model


pre_model, post_model = small_vit("pre", 0), small_vit("post", 0)
same_weights = all(torch.equal(a, b) for a, b in zip(pre_model.state_dict().values(), post_model.state_dict().values()))
x_small = to_model_input(test_images[:4])  # (4, 1, 28, 28)
with torch.no_grad():
    differ = not torch.allclose(pre_model(x_small), post_model(x_small))
print(f"{sum(p.numel() for p in pre_model.parameters()):,} parameters; same initial weights: {same_weights}; "
      f"different outputs: {differ}")

# %%
# NBVAL_IGNORE_OUTPUT
from tqdm.auto import tqdm

HIGH_LR, LOW_LR, SEEDS, STEPS = 1e-2, 1e-3, (0, 1, 2), 60
runs = [(HIGH_LR, norm, seed) for seed in SEEDS for norm in ("pre", "post")]
runs += [(LOW_LR, norm, SEEDS[0]) for norm in ("pre", "post")]  # the control
train_images, train_labels = load_fashion_mnist("train")
losses = {}  # (lr, norm, seed) -> the loss of every step
threads = torch.get_num_threads()
torch.set_num_threads(1)  # one thread: the same numbers on every machine
start = time.perf_counter()
try:
    for lr, norm, seed in tqdm(runs, desc="training runs"):
        loader = make_loader(train_images, train_labels, batch_size=64, train=True, augment=False, seed=seed)
        losses[lr, norm, seed] = fit(small_vit(norm, seed), loader, lr=lr, max_steps=STEPS).losses
finally:
    torch.set_num_threads(threads)
print(f"{len(runs)} runs of {STEPS} steps in {time.perf_counter() - start:.0f} s")

# %%
chance = math.log(10)  # the loss of a uniform guess over 10 classes


def final_loss(lr, norm, seed):
    return sum(losses[lr, norm, seed][-10:]) / 10  # mean over the last 10 steps


def at_chance(lr, norm, seed):
    return final_loss(lr, norm, seed) > chance - 0.1  # no better than a uniform guess


print(f"mean loss over the last 10 of {STEPS} steps (chance: ln 10 = {chance:.2f})")
print(f"{'lr':>6} {'norm':>5} " + " ".join(f"seed {s}" for s in SEEDS) + "   mean ± sd")
for norm in ("pre", "post"):
    finals = torch.tensor([final_loss(HIGH_LR, norm, s) for s in SEEDS])
    print(f"{HIGH_LR:>6g} {norm:>5} " + " ".join(f"{v:6.2f}" for v in finals.tolist())
          + f"   {finals.mean():.2f} ± {finals.std():.2f}")
for norm in ("pre", "post"):
    print(f"{LOW_LR:>6g} {norm:>5} {final_loss(LOW_LR, norm, SEEDS[0]):6.2f}   (the control, one seed)")

stuck = {norm: sum(at_chance(HIGH_LR, norm, s) for s in SEEDS) for norm in ("pre", "post")}
print(f"\nAt lr {HIGH_LR:g}, no warm-up: post-norm ended at chance in {stuck['post']} of {len(SEEDS)} seeds, "
      f"pre-norm in {stuck['pre']} of {len(SEEDS)}.")
control = [norm for norm in ("pre", "post") if not at_chance(LOW_LR, norm, SEEDS[0])]
print(f"At lr {LOW_LR:g}, the orders that learned: {', '.join(control) or 'none'}.")


# %%
def smooth(values, k=5):
    return torch.tensor(values).unfold(0, k, 1).mean(1)  # running mean over k steps


fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
for ax, lr in zip(axes, (HIGH_LR, LOW_LR)):
    for (run_lr, norm, seed), curve in losses.items():
        if run_lr == lr:
            ax.plot(range(5, STEPS + 1), smooth(curve), color="tab:blue" if norm == "pre" else "tab:orange",
                    label=f"{norm}-norm" if seed == SEEDS[0] else None)
    ax.axhline(chance, color="gray", ls="--", lw=1, label="chance, ln 10")
    ax.set(xlabel="step", title=f"lr {lr:g}, no warm-up" + (" (3 seeds)" if lr == HIGH_LR else " (1 seed)"))
    ax.legend(fontsize=8)
axes[0].set_ylabel("training loss (running mean of 5 steps)")
fig.tight_layout()
plt.show()

# %% [markdown]
# The results cell reads the curves: at $10^{-2}$ every post-norm run ends at the loss
# of a uniform guess (its last 10 steps within 0.1 of $\ln 10$) while every pre-norm run learns, and at $10^{-3}$ both orders learn.
# Same weights, same batches, same optimiser: only where the LayerNorm sits differs. A
# warm-up, a learning rate that starts small and grows (`transformers.get_linear_schedule_with_warmup`),
# is the usual cure for post-norm; exercise 1 at the end tries it.
#
# ## 6. Small details, exact parity
#
# The trained model uses the exact GELU and $\epsilon = 10^{-12}$. Swap either for the
# common alternative in a copy of the model and compare the logits on 8 test images: the
# cell prints the largest difference and whether any of the 8 predictions changes.

# %%
x8 = to_model_input(test_images[:8], channels=3)
with torch.no_grad():
    logits = model(x8)
    tanh_model = copy.deepcopy(model)
    for blk in tanh_model.blocks:
        blk.mlp.act = nn.GELU(approximate="tanh")
    eps_model = copy.deepcopy(model)
    for module in eps_model.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = 1e-5
    for name, variant in (("tanh GELU", tanh_model), ("LayerNorm eps 1e-5", eps_model)):
        other = variant(x8)
        diff = (other - logits).abs().max().item()
        same = torch.equal(other.argmax(-1), logits.argmax(-1))
        print(f"{name:>18}: max logit difference {diff:.0e}, within 1e-5: {diff < 1e-5}, same predictions: {same}")


# %% [markdown]
# Differences this small rarely change a prediction, but a parity test at $10^{-5}$ sees
# them (the `within 1e-5` column): they are the first suspects when a reimplementation
# "almost" matches HF.
#
# ## 7. The CLS token versus mean pooling
#
# After the last block, Eq. 4 keeps a single token: $\mathbf{y} = \mathrm{LN}(\mathbf{z}_L^0)$,
# the CLS token. It starts as the same learned vector for every image and owns no patch;
# whatever it knows it gathered by attention. The alternative, **global average pooling**
# (GAP), averages the patch tokens instead:
#
# $$
# \mathbf{y}_\text{CLS} = \mathrm{LN}(\mathbf{z}_L)_0,
# \qquad
# \mathbf{y}_\text{GAP} = \frac{1}{N} \sum_{i=1}^{N} \mathrm{LN}(\mathbf{z}_L)_i .
# $$
#
# The paper (Appendix D.3, Fig. 9) finds the two equally good once the learning rate is
# tuned for each. Our model was trained with CLS, so its head has only ever seen CLS
# features. Which of the two features holds more class information? We compare them with
# two classifiers that are fitted here, on 100 training images per class, and tested on
# 100 test images per class: the nearest class mean (cosine) and a linear probe (logistic
# regression).

# %%
def first_per_class(labels, n):
    # indices of the first n images of each class, class by class
    return torch.cat([(labels == c).nonzero()[:n, 0] for c in range(10)])


train_images, train_labels = load_fashion_mnist("train")
train_idx, test_idx = first_per_class(train_labels, 100), first_per_class(test_labels, 100)
with torch.no_grad():
    train_tokens = model.forward_features(to_model_input(train_images[train_idx], channels=3))  # (1000, 50, D)
    test_tokens = model.forward_features(to_model_input(test_images[test_idx], channels=3))
y_train, y_test = train_labels[train_idx], test_labels[test_idx]
features = {
    "CLS token": (train_tokens[:, 0], test_tokens[:, 0]),
    "mean of patch tokens": (train_tokens[:, 1:].mean(1), test_tokens[:, 1:].mean(1)),
}
print("features:", {name: tuple(f[0].shape) for name, f in features.items()})


# %%
def nearest_class_mean_accuracy(train_f, y_train, test_f, y_test):
    train_f, test_f = F.normalize(train_f, dim=-1), F.normalize(test_f, dim=-1)
    means = F.normalize(torch.stack([train_f[y_train == c].mean(0) for c in range(10)]), dim=-1)
    return 100 * ((test_f @ means.T).argmax(-1) == y_test).float().mean().item()


def linear_probe_accuracy(train_f, y_train, test_f, y_test, steps=100):
    mean, std = train_f.mean(0), train_f.std(0) + 1e-6
    train_f, test_f = (train_f - mean) / std, (test_f - mean) / std
    torch.manual_seed(0)
    probe = nn.Linear(train_f.shape[1], 10)
    optimizer = torch.optim.LBFGS(probe.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(probe(train_f), y_train) + 1e-3 * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return 100 * (probe(test_f).argmax(-1) == y_test).float().mean().item()


with torch.no_grad():
    head_accuracy = 100 * (model.head(test_tokens[:, 0]).argmax(-1) == y_test).float().mean().item()
print(f"the model's own head on the CLS token: {head_accuracy:.1f}% on these {len(y_test)} test images")
print(f"{'features':>22} {'nearest class mean':>19} {'linear probe':>13}")
for name, (train_f, test_f) in features.items():
    ncm = nearest_class_mean_accuracy(train_f, y_train, test_f, y_test)
    probe = linear_probe_accuracy(train_f, y_train, test_f, y_test)
    print(f"{name:>22} {ncm:18.1f}% {probe:12.1f}%")


# %% [markdown]
# Read the table above: both features were computed by the same network, but only the CLS
# token was trained to be classified. The mean of the patch tokens still holds what the
# patches learned about the image; how much, the two classifiers measure. To train a GAP
# model, pool with `features[:, 1:].mean(1)` and drop the CLS token (timm's
# `global_pool="avg"`).
#
# ## 8. The whole ViT
#
# ### Exercise 2 (4 points): `MyViT`
#
# Assemble Eq. 1-4 from your block. With `config` a `vit_course.ViTConfig`, `D = config.hidden_size`:
#
# - `patch_embed`: `PatchEmbedding(config.patch_size, config.num_channels, D)` (notebook 01; its `proj` is the Conv2d), images `(B, C, H, W)` -> tokens `(B, N, D)`;
# - `cls_token`: a parameter `(1, 1, D)`; `pos_embed`: a parameter `(1, 1 + N, D)` with `N = config.num_patches`;
# - `blocks`: an `nn.ModuleList` of `config.num_hidden_layers` `Block(config)`s;
# - `norm`: the final LayerNorm; `head`: `nn.Linear(D, config.num_labels)`;
# - `forward(pixel_values)` -> logits `(B, num_labels)`: prepend CLS, add the positions, run the blocks, normalise, classify token 0.
#
# Parameters can start at zero: the check loads the reference's weights into your model
# (so the names must be the ones above) and compares the logits.

# %% nbgrader={"grade": false, "grade_id": "vit_solution", "locked": false, "schema_version": 3, "solution": true}
class MyViT(nn.Module):
    """Eq. 1-4: patches + CLS + positions -> blocks -> LayerNorm -> head on token 0."""

    def __init__(self, config):
        super().__init__()
        ### BEGIN SOLUTION: create patch_embed, cls_token, pos_embed, blocks, norm and head
        D = config.hidden_size
        self.patch_embed = PatchEmbedding(config.patch_size, config.num_channels, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.num_patches, D))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.head = nn.Linear(D, config.num_labels)
        ### END SOLUTION

    def forward(self, pixel_values):
        """(B, C, H, W) -> logits (B, num_labels)."""
        ### BEGIN SOLUTION: patch tokens, CLS first, add pos_embed, the blocks, norm, head on token 0
        x = self.patch_embed(pixel_values)  # (B, N, D)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, D)
        x = torch.cat([cls, x], dim=1) + self.pos_embed  # (B, 1+N, D): Eq. 1
        for block in self.blocks:
            x = block(x)  # Eq. 2-3
        return self.head(self.norm(x)[:, 0])  # Eq. 4, then the classifier
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "vit_check", "locked": true, "points": 4, "schema_version": 3, "solution": false}
result = check_vision_transformer(MyViT)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %%
ViT = use_or_reference(result, MyViT, VisionTransformer)

# %% [markdown]
# ### Loading the course's pretrained weights
#
# `vit_course.hf.load_hf(path)` reads a `save_pretrained` folder and returns our config and
# the weights renamed to our names, every key and shape checked:

# %%
config, state_dict = load_hf(MODEL_DIR)
print(f"{len(state_dict)} tensors; hidden_size={config.hidden_size}, {config.num_hidden_layers} blocks, "
      f"{config.num_attention_heads} heads, patch {config.patch_size}, {config.num_patches} patches, "
      f"{config.num_labels} classes, hidden_act={config.hidden_act!r}, layer_norm_eps={config.layer_norm_eps:g}")
print(f"  {'our name':<28} {'shape':<14}    the name in the checkpoint file")
for key in ("cls_token", "pos_embed", "blocks.0.attn.q_proj.weight", "head.weight"):
    print(f"  {key:<28} {str(tuple(state_dict[key].shape)):<14} <- {hf_name(key, LEGACY, 'vit.')}")

# %%
mine = ViT(config)
mine.load_state_dict(state_dict)
mine.eval()
print("loaded into", type(mine).__name__)

# %% [markdown]
# ### The same logits as Hugging Face
#
# Now the reference implementation the checkpoint was trained with:
# `transformers.ViTForImageClassification`, on 8 test images.

# %%
hf_model = transformers.ViTForImageClassification.from_pretrained(MODEL_DIR).eval()
pick = torch.randperm(len(test_labels), generator=torch.Generator().manual_seed(0))[:8]
x8 = to_model_input(test_images[pick], channels=3)  # (8, 3, 28, 28)
with torch.no_grad():
    hf_logits = hf_model(pixel_values=x8).logits
    my_logits = mine(x8)
print("logits shape:", tuple(my_logits.shape))
print("max abs diff < 1e-5:", (my_logits - hf_logits).abs().max().item() < 1e-5)
print("same predictions:", torch.equal(my_logits.argmax(-1), hf_logits.argmax(-1)))

# %%
predicted = my_logits.argmax(-1)
fig, axes = plt.subplots(1, 8, figsize=(14, 2.4))
for ax, i, p in zip(axes, pick.tolist(), predicted.tolist()):
    true = FASHION_MNIST_LABELS[test_labels[i]]
    ax.imshow(test_images[i], cmap="gray")
    ax.set_title(f"true: {true}\npred: {FASHION_MNIST_LABELS[p]}", fontsize=8,
                 color="tab:green" if p == test_labels[i] else "tab:red")
    ax.axis("off")
fig.suptitle("Your ViT with the course's weights (green: right, red: wrong)", y=1.05)
plt.show()
print("correct:", int((predicted == test_labels[pick]).sum()), "of", len(pick))

# %% [markdown]
# ## Summary
#
# - A ViT block is pre-norm: $\mathbf{z} \leftarrow \mathbf{z} + \mathrm{MSA}(\mathrm{LN}(\mathbf{z}))$, then $\mathbf{z} \leftarrow \mathbf{z} + \mathrm{MLP}(\mathrm{LN}(\mathbf{z}))$. The residual stream is a running sum; each block adds an update to it (section 4).
# - Post-norm, the original Transformer's order, ends at chance at a learning rate of $10^{-2}$ without warm-up in every seed, where pre-norm learns (section 5).
# - The MLP uses the exact erf GELU (HF's `"gelu"`), the LayerNorms $\epsilon = 10^{-12}$; the tanh GELU and $\epsilon = 10^{-5}$ change the logits by more than a parity test allows (section 6).
# - The classifier reads only the final-LayerNorm'd CLS token, Eq. 4; mean pooling of the patch tokens is the alternative, compared in section 7.
# - Your `MyViT` with the course's weights gives HF's logits to within $10^{-5}$.
#
# ## Further reading
#
# - Dosovitskiy et al. (2021), *An Image is Worth 16x16 Words*: Sec. 3.1 (Eq. 1-4 and the class token), Appendix D.3 (head type and class token: CLS versus global average pooling, Fig. 9), Table 1 (ViT-B/L/H sizes).
# - Xiong et al. (2020), *On Layer Normalization in the Transformer Architecture*: why pre-norm trains without warm-up tricks.
# - Hendrycks & Gimpel (2016), *Gaussian Error Linear Units (GELUs)*; Ba, Kiros & Hinton (2016), *Layer Normalization*.
# - Elhage et al. (2021), *A Mathematical Framework for Transformer Circuits*: the residual stream as a shared channel.

# %% [markdown]
# ## Exercises
#
# Open problems, not graded.
#
# 1. Give the post-norm model of section 5 a warm-up: pass
#    `scheduler=transformers.get_linear_schedule_with_warmup(optimizer, 20, STEPS)` to `fit`
#    (with `optimizer=torch.optim.AdamW(model.parameters(), lr=HIGH_LR)`). Does it learn at
#    $10^{-2}$ now? How high can pre-norm go before it stalls too?
# 2. Replace CLS pooling by global average pooling in your `MyViT` and compare the two
#    classifiers on Fashion-MNIST after the same number of steps.
# 3. Count the parameters of your `MyViT` by hand (patch embedding, CLS, positions, blocks,
#    norm, head) and check the total against `vit_course.cost.count_parameters`.
