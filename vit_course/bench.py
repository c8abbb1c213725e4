"""How fast is each ViT implementation? Images per second, side by side, in one process.

    python scripts/bench.py                 # ViT-S/16 batch 8 and ViT-B/16 batch 4
    vit-course bench --models vit_s16 --rounds 5

Every candidate runs the same architecture on the same input: vit_course's teaching path
(`attn_implementation="eager"`), its fused-attention path (`"sdpa"`), its fast path
(`"fast"`: one qkv Linear + fused attention), the fast path under `torch.compile`, with
bf16 autocast, and with its Linear layers dynamically quantized to int8
(`quantize_int8`), transformers' `ViTForImageClassification` with eager and SDPA
attention, and timm's `VisionTransformer` when timm is installed. Rounds are interleaved
(every candidate once per round, in turn), so a machine shared with other work slows all
of them alike; the table shows medians over rounds.

Columns: images/s for eval (no grad) and for a training step (forward, cross-entropy,
backward, AdamW step), their ratio to HF SDPA in the same run, GFLOP/s (forward FLOPs from
`vit_course.cost.vit_forward_flops`, three times that for a training step), that as a
fraction of the same run's square-matmul GFLOP/s (`matmul_gflops`, also timed every
round), and peak memory of one step: on a GPU `torch.cuda.max_memory_allocated`, on the
CPU the sampled rise of the process's resident memory. On a GPU when one is present, on
the CPU otherwise. Notebook 08 uses `time_per_call` and `quantize_int8`.

Used by notebook 08.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .config import ViTConfig
from .cost import vit_forward_flops
from .vit import VisionTransformer

# the shapes of Dosovitskiy et al. (2021) Table 1 and DeiT's ViT-S (Touvron et al., 2021)
MODELS = {
    "vit_ti16": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768),
    "vit_s16": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "vit_b16": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    # a few-millisecond model for smoke tests
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8),
}
DEFAULT_BATCH = {"vit_ti16": 8, "vit_s16": 8, "vit_b16": 4, "tiny": 4}
CANDIDATES = ("hf_sdpa", "hf_eager", "timm", "vc_eager", "vc_sdpa", "vc_fast", "vc_fast_compile", "vc_fast_bf16", "vc_fast_int8")
BASELINE = "hf_sdpa"


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` whose `nn.Linear` layers run in int8 (weights quantized once, each
    input per batch: PyTorch's dynamic quantization, CPU only). The rest stays fp32."""
    import copy
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


def time_per_call(fn: Callable[[], object], min_seconds: float = 0.2, device: torch.device | None = None) -> float:
    """Seconds per call of `fn`: calls it until `min_seconds` have passed (at least once)."""
    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else (lambda: None)
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def matmul_gflops(n: int = 2048, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, min_seconds: float = 0.2) -> float:
    """GFLOP/s of an (n, n) @ (n, n) product: the machine's practical peak for this dtype."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm up
    return 2 * n**3 / time_per_call(lambda: a @ b, min_seconds, device) / 1e9


def _return_freed_memory_at_once() -> None:
    """Make glibc give every block of 256 KiB or more back to the system when it is freed
    (its default raises that threshold as a program runs, and freed tensors then stay in
    the resident set, hiding the next step's peak). No-op off glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD, fixed: no more dynamic raising
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory while the `with` block runs, in MiB above what was in use at its start.

    On a GPU, from the CUDA allocator. On the CPU, the resident set size read from
    /proc/self/statm every half millisecond by a thread: tensors are large blocks that
    glibc maps and unmaps, so it rises and falls with them (Linux only; NaN elsewhere).
    """

    def __init__(self, device: torch.device) -> None:
        self.device, self.mib = device, 0.0

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._rss())
            time.sleep(0.0005)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
        elif not Path("/proc/self/statm").exists():
            self._thread = None  # not Linux: no cheap resident-size reading
        else:
            _return_freed_memory_at_once()
            self._start = self._peak = self._rss()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self._start) / 2**20
        elif self._thread is None:
            self.mib = float("nan")
        else:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, self._rss())
            self.mib = (self._peak - self._start) / 2**20


@dataclass
class Candidate:
    name: str
    model: nn.Module
    eval_fn: Callable[[], object]
    train_fn: Callable[[], object] | None  # None: eval only (int8, bf16)
    eval_rates: list[float] = field(default_factory=list)
    train_rates: list[float] = field(default_factory=list)
    eval_mib: float = float("nan")
    train_mib: float = float("nan")


def _hf_model(config: ViTConfig, attn: str):
    import transformers

    model = transformers.ViTForImageClassification(config.to_hf())
    model.set_attn_implementation(attn)
    return model


def _timm_model(config: ViTConfig):
    import timm.models.vision_transformer as tv

    return tv.VisionTransformer(
        img_size=config.image_size, patch_size=config.patch_size, in_chans=config.num_channels,
        num_classes=config.num_labels, embed_dim=config.hidden_size, depth=config.num_hidden_layers,
        num_heads=config.num_attention_heads, mlp_ratio=config.intermediate_size / config.hidden_size,
        qkv_bias=config.qkv_bias,
    )


def build_candidates(config: ViTConfig, x: torch.Tensor, labels: torch.Tensor, names=CANDIDATES) -> list[Candidate]:
    """Every candidate in `names` that this machine can run, sharing HF's random weights."""
    device = x.device
    hf_sdpa = _hf_model(config, "sdpa")
    teaching = VisionTransformer.from_hf(hf_sdpa)
    out = []
    for name in names:
        if name == "timm":
            try:
                model = _timm_model(config)
            except ImportError:
                continue  # timm is optional (pip install "vit-course[bench]")
        elif name.startswith("hf_"):
            model = hf_sdpa if name == "hf_sdpa" else _hf_model(config, "eager")
            model.load_state_dict(hf_sdpa.state_dict())
        elif name == "vc_eager":
            model = teaching
        else:
            attn = "sdpa" if name == "vc_sdpa" else "fast"
            model = VisionTransformer(replace(config, attn_implementation=attn))
            model.load_state_dict(teaching.state_dict())
        if name == "vc_fast_int8":
            if device.type != "cpu":
                continue  # dynamic quantization runs on the CPU only
            model = quantize_int8(model)
        model = model.to(device)
        run = torch.compile(model) if name == "vc_fast_compile" else model
        is_hf = name.startswith("hf_")

        def forward(run=run, is_hf=is_hf):
            return run(x).logits if is_hf else run(x)

        if name == "vc_fast_bf16":
            def eval_fn(forward=forward):
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
                    return forward()
        else:
            def eval_fn(forward=forward):
                with torch.no_grad():
                    return forward()

        train_fn = None
        if name not in ("vc_fast_int8", "vc_fast_bf16"):
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

            def train_fn(forward=forward, model=model, optimizer=optimizer):
                model.train()
                loss = F.cross_entropy(forward(), labels)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                model.eval()
        model.eval()
        out.append(Candidate(name, model, eval_fn, train_fn))
    return out


@dataclass
class Result:
    model: str
    batch: int
    device: str
    threads: int
    rounds: int
    forward_flops: int  # per image
    peak_gflops: list[float]
    candidates: list[Candidate]

    def rows(self) -> list[dict]:
        base = {c.name: c for c in self.candidates}.get(BASELINE)
        peak = statistics.median(self.peak_gflops)
        rows = []
        for c in self.candidates:
            ev = statistics.median(c.eval_rates)
            tr = statistics.median(c.train_rates) if c.train_rates else float("nan")
            gflops = ev * self.forward_flops / 1e9
            rows.append(dict(
                candidate=c.name, eval_img_s=ev,
                eval_ratio=ev / statistics.median(base.eval_rates) if base else float("nan"),
                train_img_s=tr,
                train_ratio=tr / statistics.median(base.train_rates) if base and c.train_rates else float("nan"),
                eval_gflops=gflops, eval_peak_fraction=gflops / peak,
                train_gflops=3 * tr * self.forward_flops / 1e9,
                train_peak_fraction=3 * tr * self.forward_flops / 1e9 / peak,
                eval_mib=c.eval_mib, train_mib=c.train_mib,
            ))
        return rows

    def table(self) -> str:
        """The result as a Markdown table, with a header line saying what was run."""
        peak = statistics.median(self.peak_gflops)
        head = (f"{self.model}, batch {self.batch}, {self.device}, {self.threads} threads, "
                f"median of {self.rounds} interleaved rounds; {self.forward_flops / 1e9:.2f} GFLOP per image "
                f"forward; 2048x2048 matmul peak {peak:.0f} GFLOP/s")
        lines = [head, "",
                 "| candidate | eval img/s | x HF SDPA | train img/s | x HF SDPA | eval GFLOP/s | % of peak | train % of peak | eval MiB | train MiB |",
                 "|---|---|---|---|---|---|---|---|---|---|"]

        def f(v, fmt):
            return "-" if v != v else format(v, fmt)

        for r in self.rows():
            lines.append(
                f"| {r['candidate']} | {f(r['eval_img_s'], '.1f')} | {f(r['eval_ratio'], '.2f')} | "
                f"{f(r['train_img_s'], '.1f')} | {f(r['train_ratio'], '.2f')} | {f(r['eval_gflops'], '.0f')} | "
                f"{f(100 * r['eval_peak_fraction'], '.0f')} | {f(100 * r['train_peak_fraction'], '.0f')} | "
                f"{f(r['eval_mib'], '.0f')} | {f(r['train_mib'], '.0f')} |")
        return "\n".join(lines)


def run(model: str = "vit_s16", batch: int | None = None, rounds: int = 5, min_seconds: float = 1.0,
        candidates=CANDIDATES, train: bool = True, device: str | None = None, seed: int = 0,
        log: Callable[[str], None] | None = None) -> Result:
    """Benchmark every candidate on `model` (a key of MODELS), interleaved over `rounds`."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
    unknown = sorted(set(candidates) - set(CANDIDATES))
    if unknown:
        raise ValueError(f"candidates must be among {list(CANDIDATES)}, got unknown {unknown}")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    log = log or (lambda message: None)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    batch = batch or DEFAULT_BATCH[model]
    torch.manual_seed(seed)
    config = ViTConfig(**{**MODELS[model], "num_labels": 10})
    x = torch.randn(batch, config.num_channels, *((config.image_size,) * 2), device=dev)
    labels = torch.randint(0, config.num_labels, (batch,), device=dev)
    cands = build_candidates(config, x, labels, candidates)
    log(f"{model}: warming up {', '.join(c.name for c in cands)}")
    for c in cands:  # warm-up (torch.compile compiles here) and one measured step for memory
        c.eval_fn()
        with PeakMemory(dev) as mem:
            c.eval_fn()
        c.eval_mib = mem.mib
        if train and c.train_fn is not None:
            c.train_fn()
            with PeakMemory(dev) as mem:
                c.train_fn()
            c.train_mib = mem.mib
    peaks = []
    for r in range(rounds):
        peaks.append(matmul_gflops(device=dev, min_seconds=min_seconds / 4))
        for c in cands:
            c.eval_rates.append(batch / time_per_call(c.eval_fn, min_seconds, dev))
            if train and c.train_fn is not None:
                c.train_rates.append(batch / time_per_call(c.train_fn, min_seconds, dev))
        log(f"{model}: round {r + 1}/{rounds} done")
    return Result(model, batch, str(dev), torch.get_num_threads(), rounds, vit_forward_flops(config), peaks, cands)


@dataclass
class Int8Report:
    """What int8 costs and buys on a trained model: accuracy on a test split and speed."""

    model: str
    images: int
    fp32_accuracy: float
    int8_accuracy: float
    batch: int
    rounds: int
    fp32_rates: list[float]  # images/s of the fp32 fast path, one per round
    int8_rates: list[float]

    @property
    def points_lost(self) -> float:
        return 100 * (self.fp32_accuracy - self.int8_accuracy)

    @property
    def speedup(self) -> float:
        return statistics.median(self.int8_rates) / statistics.median(self.fp32_rates)

    def table(self) -> str:
        return "\n".join([
            f"{self.model}: {self.images} test images; speed at batch {self.batch}, median of {self.rounds} interleaved rounds",
            "",
            "| path | test accuracy | img/s | x fp32 fast |",
            "|---|---|---|---|",
            f"| fp32 fast | {100 * self.fp32_accuracy:.2f}% | {statistics.median(self.fp32_rates):.0f} | 1.00 |",
            f"| int8 fast | {100 * self.int8_accuracy:.2f}% | {statistics.median(self.int8_rates):.0f} | {self.speedup:.2f} |",
            "",
            f"int8 loses {self.points_lost:.2f} points and runs {self.speedup:.2f}x the fp32 fast path",
        ])


def int8_report(model_dir: str | None = None, source: str = "full", batch: int = 256,
                rounds: int = 5, min_seconds: float = 1.0) -> Int8Report:
    """Accuracy of the fp32 fast path and its int8 copy on Fashion-MNIST's test split
    (`source="full"`: the official 10k; "subset": the shipped 2000), and their speed."""
    from .data import load_fashion_mnist, to_model_input
    from .paths import DATA_DIR

    model_dir = model_dir or DATA_DIR / "models" / "vit-tiny-fashion"  # the course ViT
    fp32 = VisionTransformer.from_hf(model_dir, attn_implementation="fast")
    int8 = quantize_int8(fp32)
    images, labels = load_fashion_mnist("test", source=source)
    x = to_model_input(images, channels=fp32.config.num_channels, size=max(*(fp32.config.grid_size)) * fp32.config.patch_size)
    accuracy = {}
    with torch.no_grad():
        for name, model in (("fp32", fp32), ("int8", int8)):
            preds = torch.cat([model(chunk).argmax(-1) for chunk in x.split(1000)])
            accuracy[name] = (preds == labels).float().mean().item()
    sample = x[:batch]
    rates = {"fp32": [], "int8": []}
    with torch.no_grad():
        for model in (fp32, int8):
            model(sample)  # warm up
        for _ in range(rounds):
            for name, model in (("fp32", fp32), ("int8", int8)):
                rates[name].append(batch / time_per_call(lambda: model(sample), min_seconds))
    return Int8Report(Path(model_dir).name, len(labels), accuracy["fp32"], accuracy["int8"], batch, rounds, rates["fp32"], rates["int8"])
