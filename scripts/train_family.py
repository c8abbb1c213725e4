"""Train the ViT family's small Fashion-MNIST models on one CPU thread in minutes, and ship them.

- `swin`: a two-stage `transformers.SwinForImageClassification` (28x28, patch 2, window 7)
  -> `data/models/swin-tiny-fashion/` (notebook 09).
- `mae`: a `transformers.ViTMAEForPreTraining` (patch 4, 75% masking) pretrained without
  labels -> `data/models/mae-tiny-fashion/`; its metrics.json holds linear-probe accuracies
  of its encoder, of the same encoder randomly initialised, and of the supervised course ViT.
  transformers 5.23 leaves both fixed sin-cos position tables of a freshly built
  `ViTMAEForPreTraining` at zero (and they are not trained): `new_mae` fills them, or the
  model cannot tell one patch from another (its loss stalls near 0.92).
- `clip`: a `transformers.CLIPModel` (a ViT on the images, a small text transformer on
  captions built from the class names and training templates) with a word-level tokenizer
  -> `data/models/clip-tiny-fashion/`; zero-shot accuracy uses templates held out from
  training (notebook 10).

The training loop is `vit_course.train.fit` (the one the notebooks and
`scripts/train_fashion.py` use): each model is a typed recipe (`SwinRecipe`, `MAERecipe`,
`CLIPRecipe`), a loader of its batches, a loss (`fit`'s `loss_fn` or `compute_loss`) and
transformers' `get_cosine_schedule_with_warmup`; this script holds those and the orchestration.

Data: the shipped 6000-image training subset (`data/fashion_mnist/train.npz`), so anyone can
rerun this; figures are measured on the official 10k test split, never used to choose
anything.

Where the models go is `vit_course.runs`, as for `scripts/train_fashion.py`: a new folder
`runs/<time>/` by default; `--ship` replaces the model in `data/models/` and records it in
`data/MANIFEST.json`; a model folder already in `--out-dir` is replaced only with
`--overwrite`. Arguments are checked before training (a bad one: status 2); a loss or
weights that become NaN or infinite stop the run, nothing is saved, status 1.

    python scripts/train_family.py --model swin --threads 1           # into runs/<time>/
    python scripts/train_family.py --model mae --threads 1 --ship     # replace the shipped MAE
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vit_course import runs
from vit_course.cost import count_parameters
from vit_course.data import FASHION_MNIST_LABELS, load_fashion_mnist, to_model_input
from vit_course.train import History, TrainingDiverged, fit
from vit_course.validation import integer, number

OUT_NAMES = {"swin": "swin-tiny-fashion", "mae": "mae-tiny-fashion", "clip": "clip-tiny-fashion"}
WARMUP_SHARE = 20  # a linear warmup over the first 1/20 of the steps, then cosine to 0
FIRST_LOSSES = 20  # the loss of the first steps, recorded exactly: a rerun can be compared step by step


@dataclass(frozen=True)
class Recipe:
    """What every family model's recipe holds; each field is checked when the recipe is made."""

    batch_size: int = 64
    lr: float = 2e-3  # peak, after the warmup
    weight_decay: float = 0.05
    patch_size: int = 4

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.type == "int":
                integer(getattr(self, f.name), f.name, minimum=1)
            elif f.type == "float":  # lr > 0, the others >= 0 (a ratio at most 1)
                number(getattr(self, f.name), f.name, low=0.0, low_open=f.name == "lr",
                       high=1.0 if f.name.endswith("ratio") else None)

    @classmethod
    def from_record(cls, hyperparameters: dict) -> Recipe:
        """The recipe a metrics.json's `hyperparameters` record (lists back to tuples; seed left out)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in hyperparameters.items() if k in names})

    def record(self) -> dict:
        """The fields as metrics.json records them."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class SwinRecipe(Recipe):
    epochs: int = 6
    embed_dim: int = 32
    depths: tuple[int, ...] = (2, 2)
    num_heads: tuple[int, ...] = (2, 4)
    window_size: int = 7
    patch_size: int = 2
    label_smoothing: float = 0.1
    clip_grad_norm: float = 1.0


@dataclass(frozen=True)
class MAERecipe(Recipe):
    epochs: int = 8
    lr: float = 1.5e-3
    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 4
    decoder_hidden_size: int = 32
    decoder_layers: int = 2
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False
    probe_steps: int = 300  # full-batch steps of each linear probe


@dataclass(frozen=True)
class CLIPRecipe(Recipe):
    steps: int = 1500
    batch_size: int = 10  # one image of each class
    lr: float = 1e-3
    hidden_size: int = 64
    num_layers: int = 3
    num_heads: int = 4
    text_hidden_size: int = 64
    text_layers: int = 2
    projection_dim: int = 32


RECIPES = {"swin": SwinRecipe(), "mae": MAERecipe(), "clip": CLIPRecipe()}

# captions: "{}" is the class name; the last two are held out for zero-shot evaluation. They
# are new sentences made of words the training captions use: a word never seen in training
# would keep its random embedding (the tokenizer is word-level), which tests nothing
TEMPLATES = [
    "a photo of a {}", "a picture of a {}", "an image of a {}", "a {} on a plain background",
    "a small photo of the {}", "a product photo of a {}",
    "a small product picture of the {}", "an image of the {} on a background",
]
TRAIN_TEMPLATES, HELDOUT_TEMPLATES = TEMPLATES[:6], TEMPLATES[6:]
CLASS_WORDS = [name.lower().replace("/", " or ").replace("-", " ") for name in FASHION_MNIST_LABELS]


def gray(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> normalised float (N, 1, 28, 28)."""
    return to_model_input(images, channels=1)


class ShuffledBatches:
    """`n // batch_size` batches a pass (the last, partial one dropped), in a new shuffle drawn
    from `generator` each pass; `make_batch(indices)` builds each batch and may draw from the
    same generator (flips, MAE's masking noise), so one seed fixes the whole run."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator,
                 make_batch: Callable[[torch.Tensor], Any]) -> None:
        self.n, self.batch_size, self.generator, self.make_batch = n, batch_size, generator, make_batch

    def __len__(self) -> int:
        return self.n // self.batch_size

    def __iter__(self) -> Iterator[Any]:
        order = torch.randperm(self.n, generator=self.generator)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield self.make_batch(order[start:start + self.batch_size])


def schedule(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """transformers' linear warmup over the first 1/20 of the steps, then cosine to 0.

    The shipped models were trained before the script moved onto `fit`, by loops that
    computed the same schedule themselves; the float rounding differs in the last bit on
    some steps, so a rerun does not give their weights bit for bit (tests/test_train_family_script.py).
    """
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, total_steps // WARMUP_SHARE, total_steps)


def epoch_log(kind: str, steps_per_epoch: int, log: list[dict]) -> Callable[[int, History], None]:
    """`fit`'s `epoch_callback`: the mean training loss of each epoch, into `log` and printed."""

    def end_of_epoch(epoch: int, history: History) -> None:
        losses = history.losses[(epoch - 1) * steps_per_epoch:]
        log.append({"epoch": epoch, "train_loss": round(sum(losses) / len(losses), 5)})
        print(f"{kind} epoch {epoch}: loss {log[-1]['train_loss']:.4f}", flush=True)

    return end_of_epoch


# swin ------------------------------------------------------------------------------------


def new_swin(recipe: SwinRecipe) -> torch.nn.Module:
    import transformers

    config = transformers.SwinConfig(
        image_size=28, patch_size=recipe.patch_size, num_channels=1, embed_dim=recipe.embed_dim,
        depths=list(recipe.depths), num_heads=list(recipe.num_heads), window_size=recipe.window_size,
        drop_path_rate=0.0, num_labels=10, id2label=dict(enumerate(FASHION_MNIST_LABELS)),
        label2id={n: i for i, n in enumerate(FASHION_MNIST_LABELS)})
    return transformers.SwinForImageClassification(config)


def fit_swin(recipe: SwinRecipe, seed: int, max_steps: int | None = None) -> tuple[torch.nn.Module, History, list]:
    """A Swin trained with labels on the shipped 6000 images, each batch h-flipped at random."""
    torch.manual_seed(seed)
    model = new_swin(recipe)
    images, labels = load_fashion_mnist("train")
    x = gray(images)
    g = torch.Generator().manual_seed(seed)

    def flipped(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flip = torch.rand(len(idx), generator=g) < 0.5  # horizontal flips
        return torch.where(flip[:, None, None, None], x[idx].flip(-1), x[idx]), labels[idx]

    loader = ShuffledBatches(len(x), recipe.batch_size, g, flipped)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    log: list[dict] = []
    history = fit(model, loader, optimizer=optimizer, scheduler=schedule(optimizer, recipe.epochs * len(loader)),
                  epochs=recipe.epochs, max_steps=max_steps, clip_grad_norm=recipe.clip_grad_norm,
                  loss_fn=partial(F.cross_entropy, label_smoothing=recipe.label_smoothing),
                  epoch_callback=epoch_log("swin", len(loader), log))
    return model.eval(), history, log


def train_swin(recipe: SwinRecipe, seed: int) -> tuple[torch.nn.Module, dict]:
    model, history, log = fit_swin(recipe, seed)
    accuracy, correct = classifier_accuracy(lambda xb: model(pixel_values=xb).logits)
    return model, {"test_accuracy": accuracy, "test_correct": correct, "history": log,
                   "first_losses": history.losses[:FIRST_LOSSES]}


@torch.inference_mode()
def classifier_accuracy(logits_fn: Callable[[torch.Tensor], torch.Tensor]) -> tuple[float, int]:
    images, labels = load_fashion_mnist("test", source="full")  # the official 10k test split
    x = gray(images)
    preds = torch.cat([logits_fn(x[i:i + 500]).argmax(-1) for i in range(0, len(x), 500)])
    correct = int((preds == labels).sum())
    return correct / len(labels), correct


# mae -------------------------------------------------------------------------------------


def mae_config(recipe: MAERecipe) -> Any:
    import transformers

    return transformers.ViTMAEConfig(
        image_size=28, patch_size=recipe.patch_size, num_channels=1, hidden_size=recipe.hidden_size,
        num_hidden_layers=recipe.num_layers, num_attention_heads=recipe.num_heads,
        intermediate_size=2 * recipe.hidden_size, decoder_hidden_size=recipe.decoder_hidden_size,
        decoder_num_hidden_layers=recipe.decoder_layers, decoder_num_attention_heads=4,
        decoder_intermediate_size=2 * recipe.decoder_hidden_size, mask_ratio=recipe.mask_ratio,
        norm_pix_loss=recipe.norm_pix_loss)


def new_mae(recipe: MAERecipe) -> torch.nn.Module:
    """A `ViTMAEForPreTraining` at random init, with its sin-cos position tables filled in."""
    import transformers

    from vit_course.mae import mae_position_embedding

    model = transformers.ViTMAEForPreTraining(mae_config(recipe))
    grid = 28 // recipe.patch_size
    with torch.no_grad():
        model.vit.embeddings.position_embeddings.copy_(mae_position_embedding(grid, recipe.hidden_size))
        model.decoder.decoder_pos_embed.copy_(mae_position_embedding(grid, recipe.decoder_hidden_size))
    return model


def mae_loss(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """`fit`'s `compute_loss`: the masked-patch loss of images `(B, 1, 28, 28)` under masking `noise` `(B, L)`."""
    x, noise = batch
    return model(pixel_values=x, noise=noise).loss


def fit_mae(recipe: MAERecipe, seed: int, max_steps: int | None = None) -> tuple[torch.nn.Module, History, list]:
    """An MAE pretrained on the shipped 6000 images, without their labels."""
    torch.manual_seed(seed)
    model = new_mae(recipe)
    x = gray(load_fashion_mnist("train")[0])  # the labels are not used
    g = torch.Generator().manual_seed(seed)
    patches = (28 // recipe.patch_size) ** 2

    def masked(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[idx], torch.rand(len(idx), patches, generator=g)  # the noise that picks the masked patches

    loader = ShuffledBatches(len(x), recipe.batch_size, g, masked)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay,
                                  betas=(0.9, 0.95))
    log: list[dict] = []
    history = fit(model, loader, optimizer=optimizer, scheduler=schedule(optimizer, recipe.epochs * len(loader)),
                  epochs=recipe.epochs, max_steps=max_steps, compute_loss=mae_loss,
                  epoch_callback=epoch_log("mae", len(loader), log))
    return model.eval(), history, log


def train_mae(recipe: MAERecipe, seed: int) -> tuple[torch.nn.Module, dict]:
    model, history, log = fit_mae(recipe, seed)
    return model, {"linear_probe": probe_accuracies(model, recipe, seed), "history": log,
                   "first_losses": history.losses[:FIRST_LOSSES]}


@torch.inference_mode()
def pooled_features(encoder, images: torch.Tensor) -> torch.Tensor:
    """Mean of the patch tokens (CLS left out) of `encoder.forward_features`, batch by batch."""
    return torch.cat([encoder.forward_features(images[i:i + 500])[:, 1:].mean(1) for i in range(0, len(images), 500)])


def linear_probe(train_x, train_y, test_x, test_y, steps: int, seed: int) -> float:
    """A linear classifier on standardised frozen features (full-batch AdamW), test accuracy."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    torch.manual_seed(seed)
    head = torch.nn.Linear(train_x.shape[1], 10)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(steps):
        loss = F.cross_entropy(head(train_x), train_y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float((head(test_x).argmax(-1) == test_y).float().mean())


def probe_accuracies(hf_mae: torch.nn.Module, recipe: MAERecipe, seed: int) -> dict:
    """Linear probes of: the pretrained MAE encoder, the same encoder at random init, the supervised course ViT."""
    import transformers

    from vit_course import VisionTransformer
    from vit_course.mae import MaskedAutoencoder

    train_images, train_labels = load_fashion_mnist("train")
    test_images, test_labels = load_fashion_mnist("test", source="full")
    torch.manual_seed(seed + 1)
    random_mae = new_mae(recipe).eval()
    encoders = {
        "mae_pretrained": (MaskedAutoencoder.from_hf(hf_mae), 1),
        "random_init": (MaskedAutoencoder.from_hf(random_mae), 1),
        "supervised_vit": (VisionTransformer.from_hf(runs.shipped_dir() / "vit-tiny-fashion"), 3),
    }
    out = {}
    for name, (encoder, channels) in encoders.items():
        train_x = pooled_features(encoder, to_model_input(train_images, channels=channels))
        test_x = pooled_features(encoder, to_model_input(test_images, channels=channels))
        out[name] = round(linear_probe(train_x, train_labels, test_x, test_labels, recipe.probe_steps, seed), 4)
        print(f"linear probe, {name}: {out[name]:.4f}", flush=True)
    return out


# clip ------------------------------------------------------------------------------------


def make_tokenizer():
    """A word-level tokenizer over the captions' words, as a `PreTrainedTokenizerFast`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for t in TEMPLATES for w in t.replace("{}", " ").split()} | {w for c in CLASS_WORDS for w in c.split()})
    # the special tokens last, [EOS] the highest id, as in CLIP's own vocabulary: CLIPTextModel
    # pools the hidden state at [EOS] (found as the largest id when eos_token_id is 2)
    vocab = {**{w: i for i, w in enumerate(words)}}
    for special in ("[UNK]", "[PAD]", "[BOS]", "[EOS]"):
        vocab[special] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]",
                                   unk_token="[UNK]", model_max_length=16)


def clip_config(recipe: CLIPRecipe, tokenizer: Any) -> Any:
    import transformers

    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in
           [("pad_token_id", "[PAD]"), ("bos_token_id", "[BOS]"), ("eos_token_id", "[EOS]")]}
    text = dict(vocab_size=len(tokenizer), hidden_size=recipe.text_hidden_size, intermediate_size=2 * recipe.text_hidden_size,
                num_hidden_layers=recipe.text_layers, num_attention_heads=4, max_position_embeddings=16,
                **ids)
    vision = dict(image_size=28, patch_size=recipe.patch_size, num_channels=1, hidden_size=recipe.hidden_size,
                  intermediate_size=2 * recipe.hidden_size, num_hidden_layers=recipe.num_layers,
                  num_attention_heads=recipe.num_heads)
    return transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=recipe.projection_dim)


def features(output) -> torch.Tensor:
    """`get_image_features` / `get_text_features` return a tensor or an output object, by version."""
    return getattr(output, "pooler_output", output)


def captions_for(labels: torch.Tensor, templates: list[str], generator: torch.Generator) -> list[str]:
    picks = torch.randint(len(templates), (len(labels),), generator=generator)
    return [templates[int(t)].format(CLASS_WORDS[int(c)]) for c, t in zip(labels, picks)]


class CaptionedBatches:
    """`steps` batches of one training image of each class (so no caption is a false negative
    for another image in the batch), each with a caption from a training template; images,
    classes and templates drawn from `generator`."""

    def __init__(self, x: torch.Tensor, labels: torch.Tensor, steps: int, tokenizer: Any,
                 generator: torch.Generator) -> None:
        self.x, self.labels, self.steps, self.tokenizer, self.generator = x, labels, steps, tokenizer, generator
        self.by_class = [torch.nonzero(labels == c).flatten() for c in range(10)]

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, Any]]:
        g = self.generator
        for _ in range(self.steps):
            idx = torch.stack([c[torch.randint(len(c), (1,), generator=g)] for c in self.by_class]).flatten()
            text = self.tokenizer(captions_for(self.labels[idx], TRAIN_TEMPLATES, g), padding=True,
                                  return_tensors="pt")
            yield self.x[idx], text


def clip_contrastive_loss(model: torch.nn.Module, batch: tuple[torch.Tensor, Any]) -> torch.Tensor:
    """`fit`'s `compute_loss`: CLIP's symmetric cross-entropy over the batch's image-caption pairs."""
    from vit_course.clip import clip_loss

    x, text = batch
    image_embeds = features(model.get_image_features(pixel_values=x))
    text_embeds = features(model.get_text_features(**text))
    return clip_loss(image_embeds, text_embeds, model.logit_scale)


def fit_clip(recipe: CLIPRecipe, seed: int, max_steps: int | None = None) -> tuple[tuple, History, list]:
    """A CLIP (and its word-level tokenizer) trained on the shipped 6000 images with captions."""
    import transformers

    torch.manual_seed(seed)
    tokenizer = make_tokenizer()
    model = transformers.CLIPModel(clip_config(recipe, tokenizer))
    images, labels = load_fashion_mnist("train")
    loader = CaptionedBatches(gray(images), labels, recipe.steps, tokenizer, torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    log: list[dict] = []
    history = History()

    def after_step(step: int, loss: float) -> None:
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # CLIP's cap on the scale, after every update
        if step % 250 == 0:
            losses = history.losses[step - 250:]
            log.append({"step": step, "train_loss": round(sum(losses) / len(losses), 5)})
            print(f"clip step {step}: loss {log[-1]['train_loss']:.4f}", flush=True)

    fit(model, loader, optimizer=optimizer, scheduler=schedule(optimizer, recipe.steps), max_steps=max_steps,
        compute_loss=clip_contrastive_loss, callback=after_step, history=history)
    return (model.eval(), tokenizer), history, log


def train_clip(recipe: CLIPRecipe, seed: int) -> tuple[tuple, dict]:
    (model, tokenizer), history, log = fit_clip(recipe, seed)
    return (model, tokenizer), {**clip_metrics(model, tokenizer), "history": log,
                                "first_losses": history.losses[:FIRST_LOSSES]}


@torch.inference_mode()
def clip_embeddings(model, tokenizer, images: torch.Tensor, templates: list[str]):
    """(unit image embeddings (N, E), unit class embeddings (10, E), each class averaged over `templates`)."""
    x = gray(images)
    image = torch.cat([features(model.get_image_features(pixel_values=x[i:i + 500])) for i in range(0, len(x), 500)])
    classes = []
    for words in CLASS_WORDS:
        text = tokenizer([t.format(words) for t in templates], padding=True, return_tensors="pt")
        e = F.normalize(features(model.get_text_features(**text)), dim=-1).mean(0)
        classes.append(F.normalize(e, dim=-1))
    return F.normalize(image, dim=-1), torch.stack(classes)


def clip_metrics(model, tokenizer) -> dict:
    images, labels = load_fashion_mnist("test", source="full")
    image, classes = clip_embeddings(model, tokenizer, images, HELDOUT_TEMPLATES)
    sims = image @ classes.T  # (N, 10)
    zero_shot = float((sims.argmax(-1) == labels).float().mean())
    _, train_classes = clip_embeddings(model, tokenizer, images[:1], TRAIN_TEMPLATES)
    zero_shot_train_templates = float(((image @ train_classes.T).argmax(-1) == labels).float().mean())
    top = sims.T.topk(100, dim=1).indices  # text -> image: the 100 test images closest to each class prompt
    text_to_image_p100 = float((labels[top] == torch.arange(10)[:, None]).float().mean())
    neighbours = (image[:1000] @ image.T).topk(6, dim=1).indices[:, 1:]  # image similarity, self excluded
    image_knn_same_class = float((labels[neighbours] == labels[:1000, None]).float().mean())
    out = {
        "zero_shot_accuracy_heldout_templates": round(zero_shot, 4),
        "zero_shot_accuracy_train_templates": round(zero_shot_train_templates, 4),
        "text_to_image_precision_at_100": round(text_to_image_p100, 4),
        "image_to_image_top5_same_class": round(image_knn_same_class, 4),
        "train_templates": TRAIN_TEMPLATES,
        "heldout_templates": HELDOUT_TEMPLATES,
    }
    for k, v in out.items():
        print(f"{k}: {v}", flush=True)
    return out


# writing ---------------------------------------------------------------------------------


def save_function(kind: str, model) -> Callable[[Path], None]:
    """What writes the trained model (and CLIP's tokenizer) into a folder."""

    def save(folder: Path) -> None:
        if kind == "clip":
            model[1].save_pretrained(folder)  # the tokenizer
        (model[0] if kind == "clip" else model).save_pretrained(folder)

    return save


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(OUT_NAMES), required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="swin and mae: epochs (default: the recipe's, RECIPES)")
    runs.add_output_arguments(parser)
    return parser


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Recipe:
    """Every argument checked before training (status 2); returns the recipe to train with."""
    recipe = RECIPES[args.model]
    try:
        integer(args.threads, "--threads", minimum=1)
        if args.epochs is not None:
            if not hasattr(recipe, "epochs"):
                raise ValueError(f"--epochs: {args.model} trains for a number of steps ({recipe.steps}), not epochs")
            recipe = dataclasses.replace(recipe, epochs=integer(args.epochs, "--epochs", minimum=1))
        runs.resolve_output(args, [OUT_NAMES[args.model]])
    except ValueError as err:
        parser.error(str(err))
    return recipe


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    recipe = check_args(args, parser)
    torch.set_num_threads(args.threads)
    start = time.time()
    try:
        model, metrics = {"swin": train_swin, "mae": train_mae, "clip": train_clip}[args.model](recipe, args.seed)
        core = model[0] if isinstance(model, tuple) else model
        runs.check_finite(core, f"{args.model} after training")
    except TrainingDiverged as err:
        print(f"training diverged: {err}. Nothing saved.", file=sys.stderr)
        return 1
    metrics = {
        "model": args.model,
        **metrics,
        "num_parameters": count_parameters(core),
        "train_images": 6000,
        "train_seconds": round(time.time() - start, 1),
        "hyperparameters": {**recipe.record(), "seed": args.seed, "optimizer": "AdamW",
                            "schedule": "transformers.get_cosine_schedule_with_warmup, per step"},
        "command": runs.recorded_command("train_family.py", argv),
        "torch_threads": args.threads,
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__,
                     "python": platform.python_version()},
    }
    if not args.no_save:
        runs.write_model_folder(args.out_dir / OUT_NAMES[args.model], core, save_function(args.model, model), metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
