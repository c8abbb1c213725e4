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
# # 10 · Learning without labels, and with words: MAE and CLIP
#
# Two ways to train a ViT without a labelled class per image. A **masked autoencoder** (MAE,
# He et al., 2022) hides 75% of an image's patches and learns to paint them back; **CLIP**
# (Radford et al., 2021) learns from pairs of images and captions, and can then classify with
# class names it was never trained to output. Both are built here from their pieces, proven
# equal to `transformers.ViTMAEForPreTraining` and `transformers.CLIPModel`, and a small
# CLIP trained on Fashion-MNIST captions is used for zero-shot classification, retrieval and
# image similarity.
#
# **What you will learn**
# - MAE's random masking: per-sample noise, argsort, keep the lowest, `ids_restore`
# - why the MAE encoder sees only the visible patches, what the light decoder does, and why
#   the loss is taken on the masked patches only (with and without `norm_pix_loss`)
# - CLIP's symmetric contrastive loss with a learned temperature
# - zero-shot classification with prompt templates held out from training, image-text
#   retrieval and image similarity with a CLIP
#
# **Time:** about 40 minutes. Two graded exercises: `random_masking` and `clip_loss`. The
# notebook runs top to bottom in under a minute and a half on a laptop CPU.

# %%
import json
import os

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import transformers

from vit_course import clip, mae
from vit_course.checks import use_or_reference
from vit_course.checks.clip import check_clip_loss
from vit_course.checks.mae import check_random_masking
from vit_course.data import FASHION_MNIST_LABELS, load_fashion_mnist, to_model_input
from vit_course.mae import MaskedAutoencoder
from vit_course.paths import DATA_DIR
from vit_course.plots import show_image

torch.manual_seed(0)
torch.set_num_threads(min(2, torch.get_num_threads()))
transformers.logging.disable_progress_bar()  # no "Loading weights" bars in the outputs
test_images, test_labels = load_fashion_mnist("test")  # the shipped 2,000-image test subset


def max_diff(a, b):
    return (a - b).abs().max().item()


# %% [markdown]
# ## 1. MAE: hide most of the image, rebuild it
#
# MAE cuts the image into patches, embeds them as a ViT does (with fixed 2D sin-cos
# positions), and then **drops 75% of the tokens at random** before the encoder. The encoder
# sees only the visible quarter, which makes pretraining 3x or more faster (He et al., 2022, Sec. 1); a small
# **decoder** gets the encoded visible tokens back in place, fills the gaps with one learned
# `mask_token`, and predicts every patch's pixels. The loss is the mean squared error on the
# **masked** patches only: predicting the visible ones would be copying.
#
# Random masking without a loop (the paper's Sec. 3, "Masking", as its code does it): draw
# one noise value per patch, `argsort` it, and keep the first $K = \lfloor N(1 - r)\rfloor$
# patches of that order. `ids_restore`, the argsort of the argsort, is the inverse
# permutation: it puts shuffled tokens back in patch order for the decoder.
#
# ### Exercise 1 (2 points): `random_masking`
#
# Write `random_masking(x, mask_ratio, noise)` for tokens `x` of shape `(B, N, D)` and
# `noise` of shape `(B, N)`. Return `(visible, mask, ids_restore)`:
# - `visible` `(B, K, D)`: each sample's K lowest-noise tokens, in increasing-noise order
#   (`torch.gather` along dim 1);
# - `mask` `(B, N)`: 0 for a kept patch, 1 for a hidden one, in patch order;
# - `ids_restore` `(B, N)`: the inverse of the shuffle.

# %% nbgrader={"grade": false, "grade_id": "random_masking", "locked": false, "schema_version": 3, "solution": true}
def random_masking(x, mask_ratio, noise):
    # x (B, N, D), noise (B, N) -> visible (B, K, D), mask (B, N), ids_restore (B, N)
    ### BEGIN SOLUTION
    B, N, D = x.shape
    keep = int(N * (1 - mask_ratio))
    ids_shuffle = noise.argsort(dim=1)  # lowest noise first
    ids_restore = ids_shuffle.argsort(dim=1)
    visible = x.gather(1, ids_shuffle[:, :keep, None].expand(B, keep, D))
    mask = torch.ones(B, N)
    mask[:, :keep] = 0
    mask = mask.gather(1, ids_restore)
    return visible, mask, ids_restore
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_random_masking", "locked": true, "points": 2, "schema_version": 3, "solution": false}
result = check_random_masking(random_masking)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %%
mask_patches = use_or_reference(result, random_masking, mae.random_masking)

# %%
P = 4
patches = mae.mae_patchify(to_model_input(test_images[:4], channels=1), P)  # (4, 49, 16)
noise = torch.rand(4, 49, generator=torch.Generator().manual_seed(0))
visible, mask, ids_restore = mask_patches(patches, 0.75, noise)
print("visible:", tuple(visible.shape), "| hidden per image:", mask.sum(1).tolist())
shown = mae.mae_unpatchify(patches * (1 - mask[..., None]), P, 28, 1)  # hidden patches set to 0
fig, axes = plt.subplots(2, 4, figsize=(7, 3.8))
for i in range(4):
    show_image(test_images[i], axes[0, i], FASHION_MNIST_LABELS[test_labels[i]])
    show_image(shown[i, 0], axes[1, i], "what the encoder sees")
fig.tight_layout()
plt.show()

# %% [markdown]
# **The whole model, against HF.** `vit_course.mae.MaskedAutoencoder` is the encoder (the
# course's transformer blocks on the visible tokens plus CLS), the decoder, and the loss.
# Given the same `noise`, it must give `transformers.ViTMAEForPreTraining`'s loss, logits,
# mask and `ids_restore`, with and without `norm_pix_loss` (each target patch normalised by
# its own mean and standard deviation, which the paper found gives better features). One
# detail to keep: MAE's pixel target flattens a patch as $(P, P, C)$, while a ViT's patch
# embedding reads $(C, P, P)$; for one channel the two agree.

# %%
for norm_pix_loss in (False, True):
    cfg = transformers.ViTMAEConfig(image_size=28, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=64, decoder_hidden_size=16,
                                    decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                                    decoder_intermediate_size=32, norm_pix_loss=norm_pix_loss)
    torch.manual_seed(0)
    hf_mae = transformers.ViTMAEForPreTraining(cfg).eval()
    ours = MaskedAutoencoder.from_hf(hf_mae)
    x = to_model_input(test_images[:4], channels=1)
    noise = torch.rand(4, 49, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = ours(x, noise=noise), hf_mae(x, noise=noise)
    print(f"norm_pix_loss={norm_pix_loss}: loss, logits, mask within 1e-5 of HF:",
          all(max_diff(p, q) < 1e-5 for p, q in [(a.loss, b.loss), (a.logits, b.logits), (a.mask, b.mask)]),
          "| ids_restore equal:", torch.equal(a.ids_restore, b.ids_restore))

# %% [markdown]
# **A small MAE, pretrained.** `data/models/mae-tiny-fashion` was pretrained by
# `scripts/train_family.py --model mae` on the 6,000 training images, without their labels,
# in minutes on one CPU thread. Its reconstructions of test images at 75% masking (the
# decoder predicts every patch; the visible ones are pasted back, as in the paper's figures):

# %%
mae_dir = DATA_DIR / "models" / "mae-tiny-fashion"
shipped_mae = MaskedAutoencoder.from_hf(mae_dir)
x = to_model_input(test_images[:6], channels=1)
noise = torch.rand(6, 49, generator=torch.Generator().manual_seed(2))
with torch.no_grad():
    out = shipped_mae(x, noise=noise)
P = shipped_mae.config.patch_size
target = mae.mae_patchify(x, P)
pasted = mae.mae_unpatchify(out.logits * out.mask[..., None] + target * (1 - out.mask[..., None]), P, 28, 1)
masked_view = mae.mae_unpatchify(target * (1 - out.mask[..., None]), P, 28, 1)
fig, axes = plt.subplots(3, 6, figsize=(9, 4.8))
for i in range(6):
    show_image(x[i, 0], axes[0, i])
    show_image(masked_view[i, 0], axes[1, i])
    show_image(pasted[i, 0], axes[2, i])
for row, name in enumerate(["original", "75% masked", "reconstructed"]):
    axes[row, 0].set_ylabel(name)
fig.tight_layout()
plt.show()
print(f"reconstruction loss on the masked patches of these 6 images: {out.loss:.3f}")

# %% [markdown]
# **A linear probe.** Freeze an encoder, average its patch tokens, and fit only a linear
# classifier on the 6,000 training images; test on the official 10,000. The script did this for
# the pretrained MAE encoder, for the same encoder at random initialisation, and for the
# supervised course ViT (trained with labels on 55,000 images); its `metrics.json` holds the
# results, and `tests/test_family_models.py` reproduces them:

# %%
mae_metrics = json.loads((mae_dir / "metrics.json").read_text())
for name, acc in mae_metrics["linear_probe"].items():
    print(f"{name:16s} linear-probe accuracy on the official test split: {acc:.4f}")
print(f"pretraining: {mae_metrics['hyperparameters']['epochs']} epochs, {mae_metrics['train_seconds'] / 60:.1f} min, "
      f"`{mae_metrics['command']}`")


# %% [markdown]
# Read the three numbers with their budgets: the MAE encoder was pretrained for minutes on
# 6,000 unlabelled images, the supervised ViT for an hour on 55,000 labelled ones. The paper's
# point (its Fig. 9 and Table 3) is about scale: MAE's features shine after fine-tuning and with
# long pretraining; linear probing is where MAE is weakest.

# %% [markdown]
# ## 2. CLIP: images and captions in one space
#
# CLIP has an image encoder (here a small ViT) and a text encoder (a small transformer over
# word tokens). Each output is projected to a shared width $E$ and normalised to unit length.
# For a batch of $B$ matching (image, caption) pairs, the $B\times B$ matrix of cosine
# similarities, times a learned scale $e^{t}$, is read as logits twice: each image must pick
# its caption among the $B$ captions, and each caption its image (the paper's Fig. 3).
#
# $$\mathcal{L} = \tfrac12\left[\mathrm{CE}(e^{t}\, I T^\top, \text{arange } B) + \mathrm{CE}(e^{t}\, T I^\top, \text{arange } B)\right]$$
#
# $t$ (`logit_scale`) starts at $\ln(1/0.07)$ and is learned; the scale is $e^{t}$, so it stays positive.
#
# ### Exercise 2 (2 points): `clip_loss`
#
# Write `clip_loss(image_embeds, text_embeds, logit_scale)`: `image_embeds` and `text_embeds`
# are `(B, E)` (pair `i` is row `i` of each, not normalised yet), `logit_scale` a 0-d tensor.
# Return the loss above as a 0-d tensor.

# %% nbgrader={"grade": false, "grade_id": "clip_loss", "locked": false, "schema_version": 3, "solution": true}
def clip_loss(image_embeds, text_embeds, logit_scale):
    # (B, E), (B, E), () -> ()
    ### BEGIN SOLUTION
    image_embeds = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
    text_embeds = text_embeds / text_embeds.norm(dim=-1, keepdim=True)
    logits_per_image = logit_scale.exp() * image_embeds @ text_embeds.T  # (B, B)
    targets = torch.arange(len(image_embeds))
    return (F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_image.T, targets)) / 2
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_clip_loss", "locked": true, "points": 2, "schema_version": 3, "solution": false}
result = check_clip_loss(clip_loss)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %%
contrastive_loss = use_or_reference(result, clip_loss, clip.clip_loss)

# %%
clip_dir = DATA_DIR / "models" / "clip-tiny-fashion"
clip_model = transformers.CLIPModel.from_pretrained(clip_dir).eval()
tokenizer = transformers.AutoTokenizer.from_pretrained(clip_dir)
captions = [f"a photo of a {name.lower().replace('/', ' or ').replace('-', ' ')}" for name in FASHION_MNIST_LABELS]
idx = torch.stack([torch.nonzero(test_labels == c)[0, 0] for c in range(10)])  # one test image per class
x = to_model_input(test_images[idx], channels=1)
text = tokenizer(captions, padding=True, return_tensors="pt")


def features(output):  # a tensor, or an output object in some transformers versions
    return getattr(output, "pooler_output", output)


with torch.no_grad():
    out = clip_model(pixel_values=x, **text, return_loss=True)
    image_embeds = features(clip_model.get_image_features(pixel_values=x))
    text_embeds = features(clip_model.get_text_features(**text))
    ours_loss = contrastive_loss(image_embeds, text_embeds, clip_model.logit_scale)
    ours_logits, _ = clip.clip_logits(image_embeds, text_embeds, clip_model.logit_scale)
print("your loss within 1e-5 of CLIPModel's:", abs(ours_loss.item() - out.loss.item()) < 1e-5)
print("logits_per_image within 1e-4 of CLIPModel's:", max_diff(ours_logits, out.logits_per_image) < 1e-4)
print(f"learned temperature: exp(t) = {clip_model.logit_scale.exp().item():.1f}")

# %% [markdown]
# That model is `data/models/clip-tiny-fashion`, a `transformers.CLIPModel` trained by
# `scripts/train_family.py --model clip` on the 6,000 training images, each paired with a
# caption made from its class name and one of six templates ("a photo of a {}", "a product photo
# of a {}", ...); two more templates were held out. Its tokenizer is word-level (a
# `tokenizer.json` that `AutoTokenizer` loads).
#
# **Zero-shot classification.** Embed one caption per class with the *held-out* templates
# (averaged), and label each image with the closest class caption: no classifier was ever
# trained on these class embeddings.

# %%
clip_metrics = json.loads((clip_dir / "metrics.json").read_text())
heldout = clip_metrics["heldout_templates"]
class_words = [name.lower().replace("/", " or ").replace("-", " ") for name in FASHION_MNIST_LABELS]
with torch.no_grad():
    image_all = F.normalize(features(clip_model.get_image_features(pixel_values=to_model_input(test_images, channels=1))), dim=-1)
    class_embeds = []
    for words in class_words:
        t = tokenizer([template.format(words) for template in heldout], padding=True, return_tensors="pt")
        class_embeds.append(F.normalize(F.normalize(features(clip_model.get_text_features(**t)), dim=-1).mean(0), dim=0))
    class_embeds = torch.stack(class_embeds)  # (10, E)
similarity = image_all @ class_embeds.T  # (2000, 10)
zero_shot = (similarity.argmax(-1) == test_labels).float().mean().item()
print("held-out templates:", heldout)
print(f"zero-shot accuracy, shipped test subset (2,000): {zero_shot:.4f}")
print(f"zero-shot accuracy, official test split (10,000, metrics.json): {clip_metrics['zero_shot_accuracy_heldout_templates']:.4f}"
      f" | with the training templates: {clip_metrics['zero_shot_accuracy_train_templates']:.4f}")

# %% [markdown]
# **Text to image.** The same similarities read the other way: for a caption, the closest
# test images. And **image similarity with CLIP**, as the course's sources show it: embed
# images, compare by cosine similarity, and the nearest neighbours of a query image are
# images the model finds alike.

# %%
queries = ["a small product picture of the sneaker", "an image of the bag on a background", "a small product picture of the dress"]
fig, axes = plt.subplots(len(queries), 6, figsize=(9, 1.7 * len(queries)))
with torch.no_grad():
    for row, query in enumerate(queries):
        q = F.normalize(features(clip_model.get_text_features(**tokenizer([query], return_tensors="pt"))), dim=-1)
        top = (image_all @ q[0]).topk(6).indices
        for col, i in enumerate(top):
            show_image(test_images[i], axes[row, col], FASHION_MNIST_LABELS[test_labels[i]])
        axes[row, 0].set_ylabel(query.split(" the ")[1].split()[0])
fig.suptitle("text -> image: the 6 closest test images per caption")
fig.tight_layout()
plt.show()
print(f"precision@100 of text -> image retrieval, official test split: {clip_metrics['text_to_image_precision_at_100']:.4f}")

# %%
query_ids = [0, 1, 2]
fig, axes = plt.subplots(len(query_ids), 6, figsize=(9, 1.7 * len(query_ids)))
for row, qi in enumerate(query_ids):
    sims = image_all @ image_all[qi]
    neighbours = sims.topk(6).indices  # the query itself comes first
    for col, i in enumerate(neighbours):
        title = "query" if col == 0 else f"{sims[i]:.2f}"
        show_image(test_images[i], axes[row, col], title)
fig.suptitle("image similarity with CLIP: each query and its 5 nearest test images (cosine)")
fig.tight_layout()
plt.show()
same = [(test_labels[(image_all @ image_all[q]).topk(6).indices[1:]] == test_labels[q]).float().mean().item() for q in range(200)]
print(f"share of the 5 nearest neighbours in the query's class, first 200 test images: {sum(same) / len(same):.3f}")

# %% [markdown]
# ## 3. Online: the real models
#
# With the hub reachable (start JupyterLab with `HF_HUB_OFFLINE=0`), the same code runs on
# `facebook/vit-mae-base` and `openai/clip-vit-base-patch32`. Offline the cell says it is skipped.

# %%
if os.environ.get("HF_HUB_OFFLINE", "0") == "1":
    print("offline: skipped (set HF_HUB_OFFLINE=0 before starting Jupyter to load facebook/vit-mae-base "
          "and openai/clip-vit-base-patch32)")
else:
    hub_mae = transformers.ViTMAEForPreTraining.from_pretrained("facebook/vit-mae-base").eval()
    x, noise = torch.randn(1, 3, 224, 224), torch.rand(1, 196)
    with torch.no_grad():
        print("MAE loss within 1e-4 of HF:", abs(MaskedAutoencoder.from_hf(hub_mae)(x, noise=noise).loss - hub_mae(x, noise=noise).loss) < 1e-4)
    hub_clip = transformers.CLIPModel.from_pretrained("openai/clip-vit-base-patch32").eval()
    processor = transformers.CLIPProcessor.from_pretrained("openai/clip-vit-base-patch32")
    inputs = processor(text=["a photo of a cat", "a photo of a dog"], images=[torch.zeros(3, 224, 224)] * 2,
                       return_tensors="pt", padding=True)
    with torch.no_grad():
        out = hub_clip(**inputs, return_loss=True)
        i, t = features(hub_clip.get_image_features(pixel_values=inputs["pixel_values"])), features(
            hub_clip.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]))
    print("CLIP loss within 1e-4 of HF:", abs(clip.clip_loss(i, t, hub_clip.logit_scale) - out.loss) < 1e-4)

# %% [markdown]
# ## Summary
#
# - **MAE:** per-sample noise, argsort, keep the lowest $K = \lfloor N(1-r) \rfloor$; `ids_restore`
#   is the inverse permutation that lets the decoder put mask tokens in place. The encoder runs
#   on the visible quarter only; the loss counts the masked patches only. Built from these
#   pieces, it equals `ViTMAEForPreTraining` given the same noise.
# - **CLIP:** unit-length embeddings, a learned scale $e^{t}$, and a cross-entropy in both
#   directions over the batch. Equal to `CLIPModel`'s loss and logits.
# - **Without a classifier:** a CLIP trained on captions labels images with captions it did
#   not see in training (the held-out templates), retrieves images for a caption, and finds
#   similar images; the accuracies printed above are measured, on the official test split in
#   `metrics.json` and reproduced by `tests/test_family_models.py`.
#
# ## Further reading
#
# - He et al. (2022), "Masked Autoencoders Are Scalable Vision Learners": Sec. 3 (masking,
#   encoder, decoder, target), Fig. 5 (mask ratio), Table 1.
# - Radford et al. (2021), "Learning Transferable Visual Models From Natural Language
#   Supervision": Fig. 3 (the training loop in pseudocode), Sec. 3.1.4 (prompt engineering and
#   ensembling).
# - Bao et al. (2022), "BEiT"; Xie et al. (2022), "SimMIM" (masked image modelling with a
#   different target); Zhai et al. (2023), "SigLIP" (a sigmoid instead of the softmax).
#

# %% [markdown]
# ## Exercises
#
# Open problems, not graded.
#
# 1. Change the mask ratio of `random_masking` to 0.5 and 0.9 and look at what is left of an
#    image. Reconstruct the same test images with the shipped MAE at each ratio: at which
#    ratio does the loss on the masked patches grow fastest?
# 2. Add a third held-out template (your own wording) and see how the zero-shot accuracy
#    moves. Is one template ever better than the average of several?
# 3. Replace CLIP's softmax loss by SigLIP's pairwise sigmoid loss (Zhai et al., 2023) and check
#    on a random batch that it no longer needs the whole batch to normalise each row.
