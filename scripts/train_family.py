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
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from vit_course import runs
from vit_course.cost import count_parameters
from vit_course.data import FASHION_MNIST_LABELS, load_fashion_mnist, to_model_input
from vit_course.train import TrainingDiverged
from vit_course.validation import integer

OUT_NAMES = {"swin": "swin-tiny-fashion", "mae": "mae-tiny-fashion", "clip": "clip-tiny-fashion"}

HYPERPARAMETERS = {
    "swin": dict(epochs=6, batch_size=64, lr=2e-3, weight_decay=0.05, embed_dim=32, depths=[2, 2], num_heads=[2, 4],
                 window_size=7, patch_size=2),
    "mae": dict(epochs=8, batch_size=64, lr=1.5e-3, weight_decay=0.05, hidden_size=64, num_layers=4, num_heads=4,
                decoder_hidden_size=32, decoder_layers=2, mask_ratio=0.75, norm_pix_loss=False, patch_size=4,
                probe_steps=300),
    "clip": dict(steps=1500, batch_size=10, lr=1e-3, weight_decay=0.05, hidden_size=64, num_layers=3, num_heads=4,
                 text_hidden_size=64, text_layers=2, projection_dim=32, patch_size=4),
}

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


def cosine_lr(optimizer: torch.optim.Optimizer, step: int, total: int, peak: float, warmup: int) -> None:
    """Linear warmup, then cosine to 0: transformers' `get_cosine_schedule_with_warmup`, but
    computed as the shipped runs computed it (the library's float rounding differs in the last
    bit on about a fifth of the steps, which changes every later weight)."""
    lr = peak * step / warmup if step < warmup else 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
    for group in optimizer.param_groups:
        group["lr"] = lr


def check_loss(loss: torch.Tensor, kind: str, step: int) -> None:
    """Stop before the update when the loss is NaN or infinite (as `vit_course.train.fit` does)."""
    if not math.isfinite(loss.item()):
        raise TrainingDiverged(f"{kind}: the loss is {loss.item()} at step {step + 1}")


def gray(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> normalised float (N, 1, 28, 28)."""
    return to_model_input(images, channels=1)


def batches(n: int, batch_size: int, generator: torch.Generator):
    order = torch.randperm(n, generator=generator)
    for start in range(0, n - batch_size + 1, batch_size):
        yield order[start:start + batch_size]


# swin ------------------------------------------------------------------------------------


def train_swin(hp: dict, seed: int) -> tuple[torch.nn.Module, dict]:
    import transformers

    torch.manual_seed(seed)
    config = transformers.SwinConfig(
        image_size=28, patch_size=hp["patch_size"], num_channels=1, embed_dim=hp["embed_dim"], depths=hp["depths"],
        num_heads=hp["num_heads"], window_size=hp["window_size"], drop_path_rate=0.0, num_labels=10,
        id2label=dict(enumerate(FASHION_MNIST_LABELS)), label2id={n: i for i, n in enumerate(FASHION_MNIST_LABELS)})
    model = transformers.SwinForImageClassification(config)
    images, labels = load_fashion_mnist("train")
    x = gray(images)
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    g = torch.Generator().manual_seed(seed)
    total = hp["epochs"] * (len(x) // hp["batch_size"])
    step, history = 0, []
    for epoch in range(hp["epochs"]):
        model.train()
        losses = []
        for idx in batches(len(x), hp["batch_size"], g):
            xb = x[idx]
            flip = torch.rand(len(idx), generator=g) < 0.5  # horizontal flips
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            cosine_lr(optimizer, step, total, hp["lr"], warmup=total // 20)
            loss = F.cross_entropy(model(pixel_values=xb).logits, labels[idx], label_smoothing=0.1)
            check_loss(loss, "swin", step)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
            step += 1
        history.append({"epoch": epoch + 1, "train_loss": round(sum(losses) / len(losses), 5)})
        print(f"swin epoch {epoch + 1}: loss {history[-1]['train_loss']:.4f}", flush=True)
    model.eval()
    accuracy, correct = classifier_accuracy(lambda xb: model(pixel_values=xb).logits)
    return model, {"test_accuracy": accuracy, "test_correct": correct, "history": history}


@torch.inference_mode()
def classifier_accuracy(logits_fn) -> tuple[float, int]:
    images, labels = load_fashion_mnist("test", source="full")  # the official 10k test split
    x = gray(images)
    preds = torch.cat([logits_fn(x[i:i + 500]).argmax(-1) for i in range(0, len(x), 500)])
    correct = int((preds == labels).sum())
    return correct / len(labels), correct


# mae -------------------------------------------------------------------------------------


def mae_config(hp: dict):
    import transformers

    return transformers.ViTMAEConfig(
        image_size=28, patch_size=hp["patch_size"], num_channels=1, hidden_size=hp["hidden_size"],
        num_hidden_layers=hp["num_layers"], num_attention_heads=hp["num_heads"], intermediate_size=2 * hp["hidden_size"],
        decoder_hidden_size=hp["decoder_hidden_size"], decoder_num_hidden_layers=hp["decoder_layers"],
        decoder_num_attention_heads=4, decoder_intermediate_size=2 * hp["decoder_hidden_size"],
        mask_ratio=hp["mask_ratio"], norm_pix_loss=hp["norm_pix_loss"])


def new_mae(hp: dict):
    """A `ViTMAEForPreTraining` at random init, with its sin-cos position tables filled in."""
    import transformers

    from vit_course.mae import mae_position_embedding

    model = transformers.ViTMAEForPreTraining(mae_config(hp))
    grid = 28 // hp["patch_size"]
    with torch.no_grad():
        model.vit.embeddings.position_embeddings.copy_(mae_position_embedding(grid, hp["hidden_size"]))
        model.decoder.decoder_pos_embed.copy_(mae_position_embedding(grid, hp["decoder_hidden_size"]))
    return model


def train_mae(hp: dict, seed: int) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(seed)
    model = new_mae(hp)
    images, _ = load_fashion_mnist("train")  # the labels are not used
    x = gray(images)
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"], betas=(0.9, 0.95))
    g = torch.Generator().manual_seed(seed)
    total = hp["epochs"] * (len(x) // hp["batch_size"])
    step, history = 0, []
    for epoch in range(hp["epochs"]):
        model.train()
        losses = []
        for idx in batches(len(x), hp["batch_size"], g):
            cosine_lr(optimizer, step, total, hp["lr"], warmup=total // 20)
            noise = torch.rand(len(idx), model.config.image_size ** 2 // hp["patch_size"] ** 2, generator=g)
            loss = model(pixel_values=x[idx], noise=noise).loss
            check_loss(loss, "mae", step)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
        history.append({"epoch": epoch + 1, "train_loss": round(sum(losses) / len(losses), 5)})
        print(f"mae epoch {epoch + 1}: loss {history[-1]['train_loss']:.4f}", flush=True)
    model.eval()
    probes = probe_accuracies(model, hp, seed)
    return model, {"linear_probe": probes, "history": history}


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


def probe_accuracies(hf_mae, hp: dict, seed: int) -> dict:
    """Linear probes of: the pretrained MAE encoder, the same encoder at random init, the supervised course ViT."""
    import transformers

    from vit_course import VisionTransformer
    from vit_course.mae import MaskedAutoencoder

    train_images, train_labels = load_fashion_mnist("train")
    test_images, test_labels = load_fashion_mnist("test", source="full")
    torch.manual_seed(seed + 1)
    random_mae = new_mae(hp).eval()
    encoders = {
        "mae_pretrained": (MaskedAutoencoder.from_hf(hf_mae), 1),
        "random_init": (MaskedAutoencoder.from_hf(random_mae), 1),
        "supervised_vit": (VisionTransformer.from_hf(runs.shipped_dir() / "vit-tiny-fashion"), 3),
    }
    out = {}
    for name, (encoder, channels) in encoders.items():
        train_x = pooled_features(encoder, to_model_input(train_images, channels=channels))
        test_x = pooled_features(encoder, to_model_input(test_images, channels=channels))
        out[name] = round(linear_probe(train_x, train_labels, test_x, test_labels, hp["probe_steps"], seed), 4)
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


def clip_config(hp: dict, tokenizer):
    import transformers

    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in
           [("pad_token_id", "[PAD]"), ("bos_token_id", "[BOS]"), ("eos_token_id", "[EOS]")]}
    text = dict(vocab_size=len(tokenizer), hidden_size=hp["text_hidden_size"], intermediate_size=2 * hp["text_hidden_size"],
                num_hidden_layers=hp["text_layers"], num_attention_heads=4, max_position_embeddings=16,
                **ids)
    vision = dict(image_size=28, patch_size=hp["patch_size"], num_channels=1, hidden_size=hp["hidden_size"],
                  intermediate_size=2 * hp["hidden_size"], num_hidden_layers=hp["num_layers"],
                  num_attention_heads=hp["num_heads"])
    return transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=hp["projection_dim"])


def features(output) -> torch.Tensor:
    """`get_image_features` / `get_text_features` return a tensor or an output object, by version."""
    return getattr(output, "pooler_output", output)


def captions_for(labels: torch.Tensor, templates: list[str], generator: torch.Generator) -> list[str]:
    picks = torch.randint(len(templates), (len(labels),), generator=generator)
    return [templates[int(t)].format(CLASS_WORDS[int(c)]) for c, t in zip(labels, picks)]


def train_clip(hp: dict, seed: int):
    import transformers

    from vit_course.clip import clip_loss

    torch.manual_seed(seed)
    tokenizer = make_tokenizer()
    model = transformers.CLIPModel(clip_config(hp, tokenizer))
    images, labels = load_fashion_mnist("train")
    x = gray(images)
    by_class = [torch.nonzero(labels == c).flatten() for c in range(10)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    g = torch.Generator().manual_seed(seed)
    history, losses = [], []
    model.train()
    for step in range(hp["steps"]):
        # one image of each class per batch: no caption is a false negative for another image
        idx = torch.stack([c[torch.randint(len(c), (1,), generator=g)] for c in by_class]).flatten()
        text = tokenizer(captions_for(labels[idx], TRAIN_TEMPLATES, g), padding=True, return_tensors="pt")
        cosine_lr(optimizer, step, hp["steps"], hp["lr"], warmup=hp["steps"] // 20)
        image_embeds = features(model.get_image_features(pixel_values=x[idx]))
        text_embeds = features(model.get_text_features(**text))
        loss = clip_loss(image_embeds, text_embeds, model.logit_scale)
        check_loss(loss, "clip", step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # CLIP's cap on the scale
        losses.append(loss.item())
        if (step + 1) % 250 == 0:
            history.append({"step": step + 1, "train_loss": round(sum(losses) / len(losses), 5)})
            print(f"clip step {step + 1}: loss {history[-1]['train_loss']:.4f}", flush=True)
            losses = []
    model.eval()
    return (model, tokenizer), {**clip_metrics(model, tokenizer), "history": history}


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
    parser.add_argument("--epochs", type=int, help="swin and mae: epochs (default in HYPERPARAMETERS)")
    runs.add_output_arguments(parser)
    return parser


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict:
    """Every argument checked before training (status 2); returns the hyperparameters."""
    hp = dict(HYPERPARAMETERS[args.model])
    try:
        integer(args.threads, "--threads", minimum=1)
        if args.epochs is not None:
            if "epochs" not in hp:
                raise ValueError(f"--epochs: {args.model} trains for a number of steps ({hp['steps']}), not epochs")
            hp["epochs"] = integer(args.epochs, "--epochs", minimum=1)
        runs.resolve_output(args, [OUT_NAMES[args.model]])
    except ValueError as err:
        parser.error(str(err))
    return hp


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    hp = check_args(args, parser)
    torch.set_num_threads(args.threads)
    start = time.time()
    try:
        model, metrics = {"swin": train_swin, "mae": train_mae, "clip": train_clip}[args.model](hp, args.seed)
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
        "hyperparameters": {**hp, "seed": args.seed},
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
