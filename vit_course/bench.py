"""How fast is each ViT implementation? Images per second, side by side, in one process.

    python scripts/bench.py                 # ViT-S/16 batch 8 and ViT-B/16 batch 4
    vit-course bench --models vit_s16 --rounds 5

Every candidate runs the same architecture on the same input, with the same weights:
vit_course's teaching path (`vc_eager`, `attn_implementation="eager"`), its fused-attention
path (`vc_sdpa`), its fast path (`vc_fast`: one qkv Linear, fused attention and oneDNN's
matrix products with the GELU fused in, from `vit_course.vit.fast_model`), the fast path
under `torch.compile` (`vc_fast_compile`, `fast_model(..., compile=True)`), with bf16 autocast (`vc_fast_bf16`), compiled and under
bf16 autocast (`vc_fast_compile_bf16`), and with its Linear layers dynamically quantized to
int8 (`vc_fast_int8`, `quantize_int8`, eval only);
transformers' `ViTForImageClassification` with SDPA (`hf_sdpa`, the baseline) and eager
(`hf_eager`) attention; timm's `VisionTransformer` when timm is installed.

Rounds are interleaved (every candidate once per round, in turn, each round starting one
candidate later than the last), so a machine shared with other work slows all of them alike
and no candidate always runs right after the matmul peak's measurement. Each ratio is the median over rounds of that round's
ratio to HF SDPA, with the interquartile range of those ratios in brackets: the spread
says how far to trust it. The first call of each candidate is not timed (for
the compiled rows it is the compilation, reported below the table). The bf16 and int8 rows
compute a different function: the table's last column is each row's largest logit
difference from HF SDPA's on the benchmark's input (the fp32 rows agree within 1e-5; timm
has its own random weights, so no difference is shown).

Columns: images/s for eval (no grad) and for a training step (forward, cross-entropy,
backward, AdamW step), their ratio to HF SDPA, GFLOP/s (forward FLOPs from
`vit_course.cost.vit_forward_flops`, three times that for a training step) as a fraction of
the same round's square-matmul GFLOP/s (`matmul_gflops`: on the CPU the faster of MKL's
and oneDNN's), and peak memory of one step: on a GPU `torch.cuda.max_memory_allocated`, on
the CPU the sampled rise of the process's resident memory, measured after the timed rounds
(the reading changes how glibc returns memory to the system). The timed rounds run with
glibc keeping freed blocks up to 32 MiB for reuse (`_keep_freed_memory`), the state its
defaults reach in a long-running program, so that no candidate's figures depend on how far
the allocator had warmed up. On a GPU when one is present, on the CPU otherwise.

`targets` checks the issue's targets on a run; `write_record` saves a run (every round's
figures, the machine, the command) as JSON and `render_record` turns it into the Markdown
that the README shows (`tests/test_bench.py` checks that the README's table is exactly
that). Notebook 08 uses `time_per_call`, `PeakMemory` and `quantize_int8`.

Used by notebook 08.
"""

from __future__ import annotations

import datetime
import json
import platform
import shlex
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from .config import ViTConfig
from .cost import vit_forward_flops
from .fast_linear import onednn_applies, onednn_linear, plain_linears
from .paths import atomic_write_text
from .vit import CompiledModel, VisionTransformer, fast_model

# the shapes of Dosovitskiy et al. (2021) Table 1 and DeiT's ViT-S (Touvron et al., 2021)
MODELS = {
    "vit_ti16": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768),
    "vit_s16": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "vit_b16": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    # a few-millisecond model for smoke tests
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8),
}
DEFAULT_BATCH = {"vit_ti16": 8, "vit_s16": 8, "vit_b16": 4, "tiny": 4}
CANDIDATES = ("hf_sdpa", "hf_eager", "timm", "vc_eager", "vc_sdpa", "vc_fast", "vc_fast_compile", "vc_fast_bf16",
              "vc_fast_compile_bf16", "vc_fast_int8")
COMPILED = ("vc_fast_compile", "vc_fast_compile_bf16")
BF16 = ("vc_fast_bf16", "vc_fast_compile_bf16")
BASELINE = "hf_sdpa"
FP32_FAST = ("vc_fast", "vc_fast_compile")  # the fast path, without and with torch.compile
# the issue's targets (issue 13), checked by `targets`
TARGET_EVAL, TARGET_TRAIN, TARGET_B16_PEAK = 1.25, 1.10, 0.65
TARGET_INT8_SPEEDUP, TARGET_INT8_POINTS = 1.5, 0.5
INT8_PEAK_GAIN = 4  # int8 products per instruction over fp32 ones (AVX-512 VNNI: 64 vs 16 per 512 bits)
LINEAR_KERNELS = ("mkldnn::_linear_pointwise", "aten::addmm", "aten::mm", "aten::linear")  # a Linear's matrix product


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` whose `nn.Linear` layers run in int8 (weights quantized once, each
    input per batch: PyTorch's dynamic quantization, CPU only). The rest stays fp32."""
    import copy
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        from torch.ao.quantization import quantize_dynamic

        plain = plain_linears(copy.deepcopy(model).eval())  # FastLinear -> nn.Linear, which quantize_dynamic finds
        return quantize_dynamic(plain, {nn.Linear}, dtype=torch.qint8, inplace=True)


def has_bf16_hardware(device: torch.device | str = "cpu") -> bool:
    """Whether the device computes in bf16 natively: a GPU that says so, or a CPU with
    AVX512-BF16 or AMX (elsewhere autocast to bf16 still works, emulated and slow)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty off Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def machine(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What a run ran on: the processor, its bf16/int8 instructions, the library versions."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            text = Path("/proc/cpuinfo").read_text()
            name = next(line.partition(":")[2].strip() for line in text.splitlines() if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
    flags = cpu_flags()
    versions = {"torch": torch.__version__}
    for package in ("transformers", "timm"):
        try:
            versions[package] = __import__(package).__version__
        except ImportError:
            pass
    import os

    return {
        "device": name, "cpu_cores": os.cpu_count(),
        "cpu_features": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags],
        "versions": versions,
    }


def round_order(items: list, r: int) -> list:
    """The order of round `r` (from 0): `items` started `r` places later, wrapping around."""
    return items[r % len(items):] + items[:r % len(items)]


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
    """GFLOP/s of an (n, n) @ (n, n) product: the machine's practical peak for this dtype.
    On the CPU in float32, the faster of MKL's (`a @ b`) and oneDNN's (the kernel of
    `vit_course.fast_linear`), so that no path can look faster than the peak it is measured by."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    products = [lambda: a @ b]
    if onednn_applies(a, b):
        products.append(lambda: onednn_linear(a, b, None, "none"))
    best = float("inf")
    for product in products:
        product()  # warm up
        best = min(best, time_per_call(product, min_seconds / len(products), device))
    return 2 * n**3 / best / 1e9


def _set_mmap_threshold(mmap_bytes: int, trim: bool) -> None:
    """glibc's M_MMAP_THRESHOLD (blocks this large are mapped alone and unmapped when freed)
    and M_TRIM_THRESHOLD (twice that), fixed from now on. No-op off glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, mmap_bytes)  # M_MMAP_THRESHOLD, fixed: no more dynamic raising
        libc.mallopt(-1, 2 * mmap_bytes)  # M_TRIM_THRESHOLD
        if trim:
            libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _return_freed_memory_at_once() -> None:
    """Make glibc give every block of 256 KiB or more back to the system when it is freed
    (its default raises that threshold as a program runs, and freed tensors then stay in
    the resident set, hiding the next step's peak)."""
    _set_mmap_threshold(256 * 1024, trim=True)


def _keep_freed_memory() -> None:
    """Fix glibc where its own thresholds end up in a long-running program: blocks up to
    32 MiB (its largest dynamic threshold on 64-bit) stay in the heap when freed instead of
    being unmapped and faulted in again on the next allocation. Under the default, rising
    thresholds, which candidate paid for those page faults depended on the order of
    candidates and rounds (ViT-S/16's fast path ran 17.6, then 23.7, then 28.6 img/s in its
    first three rounds); `run` sets this before its first call, and after each memory
    reading, which undoes it."""
    _set_mmap_threshold(32 * 2**20, trim=False)


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

    def __exit__(self, *exc: object) -> None:
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
            _keep_freed_memory()


@dataclass
class Candidate:
    """One implementation in a run: how to call it, and what was measured."""

    name: str
    model: nn.Module | None = field(default=None, repr=False)  # None in a run read back from JSON
    eval_fn: Callable[[], object] | None = field(default=None, repr=False)
    train_fn: Callable[[], object] | None = field(default=None, repr=False)  # None: eval only (int8)
    eval_rates: list[float] = field(default_factory=list)  # images/s, one per round
    train_rates: list[float] = field(default_factory=list)
    eval_mib: float = float("nan")
    train_mib: float = float("nan")
    first_eval_s: float = float("nan")  # the untimed first call: compilation for the compiled rows
    first_train_s: float = float("nan")
    note: str = ""  # e.g. why torch.compile fell back to eager
    max_diff: float = float("nan")  # largest |logit - HF SDPA's logit| on the benchmark input

    _SAVED = ("name", "eval_rates", "train_rates", "eval_mib", "train_mib", "first_eval_s", "first_train_s", "note",
              "max_diff")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._SAVED}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Candidate":
        return cls(**{k: d[k] for k in cls._SAVED if k in d})


def _hf_model(config: ViTConfig, attn: str) -> nn.Module:
    import transformers

    model = transformers.ViTForImageClassification(config.to_hf())
    model.set_attn_implementation(attn)
    return model


def _timm_model(config: ViTConfig) -> nn.Module:
    import timm.models.vision_transformer as tv

    return tv.VisionTransformer(
        img_size=config.image_size, patch_size=config.patch_size, in_chans=config.num_channels,
        num_classes=config.num_labels, embed_dim=config.hidden_size, depth=config.num_hidden_layers,
        num_heads=config.num_attention_heads, mlp_ratio=config.intermediate_size / config.hidden_size,
        qkv_bias=config.qkv_bias,
    )


def build_candidates(config: ViTConfig, x: torch.Tensor, labels: torch.Tensor,
                     names: Iterable[str] = CANDIDATES) -> list[Candidate]:
    """Every candidate in `names` that this machine can run, sharing HF's random weights
    (timm's own random weights: its ViT differs in LayerNorm eps and layout, not in cost)."""
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
        elif name == "vc_sdpa":
            model = VisionTransformer(replace(config, attn_implementation="sdpa"))
            model.load_state_dict(teaching.state_dict())
        elif name == "vc_fast_int8":
            if device.type != "cpu":
                continue  # dynamic quantization runs on the CPU only
            model = quantize_int8(fast_model(teaching, compile=False))
        else:  # vc_fast, vc_fast_compile, vc_fast_bf16, vc_fast_compile_bf16
            model = fast_model(teaching, compile=name in COMPILED)
        model = model.to(device)
        is_hf = name.startswith("hf_")
        autocast = name in BF16

        def forward(model: nn.Module = model, is_hf: bool = is_hf, autocast: bool = autocast) -> torch.Tensor:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                return model(x).logits if is_hf else model(x)

        def eval_fn(forward: Callable[[], torch.Tensor] = forward) -> torch.Tensor:
            with torch.no_grad():
                return forward()

        train_fn = None
        if name != "vc_fast_int8":
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

            def train_fn(forward: Callable[[], torch.Tensor] = forward, model: nn.Module = model,
                         optimizer: torch.optim.Optimizer = optimizer) -> None:
                model.train()
                loss = F.cross_entropy(forward().float(), labels)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                model.eval()
        model.eval()
        out.append(Candidate(name, model, eval_fn, train_fn))
    return out


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile); all three the value itself for one value."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


@dataclass
class Result:
    """One model shape's run: every candidate's figures, round by round."""

    model: str
    batch: int
    device: str
    threads: int
    rounds: int
    forward_flops: int  # per image
    peak_gflops: list[float]  # the square matmul's GFLOP/s, one per round
    candidates: list[Candidate]

    def _base(self) -> Candidate | None:
        return {c.name: c for c in self.candidates}.get(BASELINE)

    def ratio(self, name: str, kind: str = "eval", to: str = BASELINE) -> tuple[float, float, float]:
        """Quartiles over rounds of candidate `name`'s images/s over `to`'s in the same round
        (`kind` "eval" or "train"); NaNs where either was not run."""
        by_name = {c.name: c for c in self.candidates}
        if name not in by_name or to not in by_name:
            return (float("nan"),) * 3
        mine, theirs = (getattr(by_name[n], f"{kind}_rates") for n in (name, to))
        if not mine or not theirs:
            return (float("nan"),) * 3
        return _quartiles([a / b for a, b in zip(mine, theirs)])

    def peak_fraction(self, name: str, kind: str = "eval") -> float:
        """Median over rounds of the candidate's GFLOP/s over the same round's matmul GFLOP/s."""
        c = {c.name: c for c in self.candidates}[name]
        rates = c.eval_rates if kind == "eval" else c.train_rates
        if not rates:
            return float("nan")
        flops = self.forward_flops * (1 if kind == "eval" else 3)
        return statistics.median(r * flops / 1e9 / p for r, p in zip(rates, self.peak_gflops))

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for c in self.candidates:
            ev = statistics.median(c.eval_rates)
            tr = statistics.median(c.train_rates) if c.train_rates else float("nan")
            rows.append(dict(
                candidate=c.name, eval_img_s=ev, eval_ratio=self.ratio(c.name, "eval"),
                train_img_s=tr, train_ratio=self.ratio(c.name, "train"),
                eval_gflops=ev * self.forward_flops / 1e9, eval_peak_fraction=self.peak_fraction(c.name, "eval"),
                train_gflops=3 * tr * self.forward_flops / 1e9, train_peak_fraction=self.peak_fraction(c.name, "train"),
                eval_mib=c.eval_mib, train_mib=c.train_mib, max_diff=c.max_diff,
            ))
        return rows

    def table(self) -> str:
        """The result as a Markdown table, with a header line saying what was run and, below
        it, what torch.compile cost."""
        peak = statistics.median(self.peak_gflops)
        head = (f"{self.model}, batch {self.batch}, {self.device}, {self.threads} threads, "
                f"{self.rounds} interleaved rounds; {self.forward_flops / 1e9:.2f} GFLOP per image "
                f"forward; 2048x2048 matmul {peak:.0f} GFLOP/s (median)")
        lines = [head, "",
                 "| candidate | eval img/s | x HF SDPA [IQR] | train img/s | x HF SDPA [IQR] | "
                 "eval GFLOP/s | eval % of matmul | train % of matmul | eval MiB | train MiB | max diff |",
                 "|---|---|---|---|---|---|---|---|---|---|---|"]

        def f(v: float, fmt: str) -> str:
            return "-" if v != v else format(v, fmt)

        def ratio(q: tuple[float, float, float]) -> str:
            return "-" if q[1] != q[1] else f"{q[1]:.2f} [{q[0]:.2f}, {q[2]:.2f}]"

        for r in self.rows():
            lines.append(
                f"| {r['candidate']} | {f(r['eval_img_s'], '.1f')} | {ratio(r['eval_ratio'])} | "
                f"{f(r['train_img_s'], '.1f')} | {ratio(r['train_ratio'])} | {f(r['eval_gflops'], '.0f')} | "
                f"{f(100 * r['eval_peak_fraction'], '.0f')} | {f(100 * r['train_peak_fraction'], '.0f')} | "
                f"{f(r['eval_mib'], '.0f')} | {f(r['train_mib'], '.0f')} | {f(r['max_diff'], '.1e')} |")
        for c in self.candidates:
            if c.name in COMPILED:
                if c.note:
                    lines += ["", f"{c.name} ran eagerly: {c.note}"]
                else:
                    train = f", first training step {c.first_train_s:.1f} s" if c.first_train_s == c.first_train_s else ""
                    lines += ["", f"{c.name}: torch.compile, not in the img/s above: first eval call "
                                  f"{c.first_eval_s:.1f} s{train}"]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "candidates"}
        return {**d, "candidates": [c.to_dict() for c in self.candidates]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Result":
        return cls(**{**d, "candidates": [Candidate.from_dict(c) for c in d["candidates"]]})


def run(model: str = "vit_s16", batch: int | None = None, rounds: int = 5, min_seconds: float = 1.0,
        candidates: Iterable[str] = CANDIDATES, train: bool = True, device: str | None = None, seed: int = 0,
        log: Callable[[str], None] | None = None) -> Result:
    """Benchmark every candidate on `model` (a key of MODELS), interleaved over `rounds`.
    `min_seconds=0` times one call per candidate per round: the finest interleaving."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
    candidates = tuple(candidates)
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
    _keep_freed_memory()  # every round and every candidate under the same allocator state
    log(f"{model}: warming up {', '.join(c.name for c in cands)}")
    outputs = {}
    for c in cands:  # the untimed first calls (torch.compile compiles here)
        start = time.perf_counter()
        outputs[c.name] = c.eval_fn().float()
        c.first_eval_s = time.perf_counter() - start
        if train and c.train_fn is not None:
            start = time.perf_counter()
            c.train_fn()
            c.first_train_s = time.perf_counter() - start
        if isinstance(c.model, CompiledModel) and c.model.fallback:
            c.note = c.model.fallback
        log(f"{model}: {c.name} first call {c.first_eval_s:.1f} s")
    if BASELINE in outputs:
        for c in cands:
            if c.name != "timm":  # timm has its own random weights
                c.max_diff = (outputs[c.name] - outputs[BASELINE]).abs().max().item()
    peaks = []
    for r in range(rounds):
        peaks.append(matmul_gflops(device=dev, min_seconds=min_seconds / 4))
        for c in round_order(cands, r):
            c.eval_rates.append(batch / time_per_call(c.eval_fn, min_seconds, dev))
            if train and c.train_fn is not None:
                c.train_rates.append(batch / time_per_call(c.train_fn, min_seconds, dev))
        log(f"{model}: round {r + 1}/{rounds} done")
    # memory last: PeakMemory makes glibc unmap what is freed while it reads
    for c in cands:
        with PeakMemory(dev) as mem:
            c.eval_fn()
        c.eval_mib = mem.mib
        if train and c.train_fn is not None:
            with PeakMemory(dev) as mem:
                c.train_fn()
            c.train_mib = mem.mib
    return Result(model, batch, str(dev), torch.get_num_threads(), rounds, vit_forward_flops(config), peaks, cands)


@dataclass
class Int8Report:
    """What int8 and bf16 cost and buy on a trained model: accuracy on a test split, speed."""

    model: str
    images: int
    fp32_accuracy: float
    int8_accuracy: float
    batch: int
    rounds: int
    fp32_rates: list[float]  # images/s of the fp32 fast path, one per round
    int8_rates: list[float]
    bf16_accuracy: float = float("nan")  # the fast path under bf16 autocast
    bf16_rates: list[float] = field(default_factory=list)
    linear_share: float = float("nan")  # fraction of the fp32 fast path's time in its Linear layers

    def bound(self, linear_speedup: float = float("inf")) -> float:
        """What int8 Linear layers `linear_speedup` times faster can give at most (`amdahl`)."""
        return amdahl(self.linear_share, linear_speedup)

    @property
    def points_lost(self) -> float:
        return 100 * (self.fp32_accuracy - self.int8_accuracy)

    @property
    def bf16_points_lost(self) -> float:
        return 100 * (self.fp32_accuracy - self.bf16_accuracy)

    def _speedup(self, rates: list[float]) -> tuple[float, float, float]:
        return _quartiles([a / b for a, b in zip(rates, self.fp32_rates)]) if rates else (float("nan"),) * 3

    @property
    def speedup(self) -> float:
        """Median over rounds of int8's images/s over fp32's in the same round."""
        return self._speedup(self.int8_rates)[1]

    def table(self) -> str:
        def row(name: str, accuracy: float, rates: list[float]) -> str:
            q1, q2, q3 = self._speedup(rates)
            return f"| {name} | {100 * accuracy:.2f}% | {statistics.median(rates):.0f} | {q2:.2f} [{q1:.2f}, {q3:.2f}] |"

        lines = [
            f"{self.model}: {self.images} test images; speed at batch {self.batch}, {self.rounds} interleaved rounds",
            "",
            "| path | test accuracy | img/s | x fp32 fast [IQR] |",
            "|---|---|---|---|",
            row("fp32 fast", self.fp32_accuracy, self.fp32_rates),
            row("int8 fast", self.int8_accuracy, self.int8_rates),
        ]
        if self.bf16_rates:
            lines.append(row("bf16 autocast fast", self.bf16_accuracy, self.bf16_rates))
        lines += ["", f"int8 loses {self.points_lost:.2f} points and runs {self.speedup:.2f}x the fp32 fast path"]
        if self.linear_share == self.linear_share:
            lines[-1:-1] = [f"The fp32 fast path spends {100 * self.linear_share:.0f}% of its time in Linear layers "
                            f"(torch.profiler), the only part int8 changes: Linear layers {INT8_PEAK_GAIN:.0f}x faster "
                            f"would make the model {self.bound(INT8_PEAK_GAIN):.2f}x faster, infinitely fast ones "
                            f"{self.bound():.2f}x", ""]
        if self.bf16_rates:
            lines[-1] += f"; bf16 loses {self.bf16_points_lost:.2f} points and runs {self._speedup(self.bf16_rates)[1]:.2f}x"
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Int8Report":
        return cls(**d)


def amdahl(share: float, part_speedup: float = float("inf")) -> float:
    """Amdahl's law: the whole's speed-up when a part taking `share` of the time runs
    `part_speedup` times faster and the rest as before."""
    return 1 / (1 - share + share / part_speedup)


def linear_share(model: nn.Module, x: torch.Tensor, calls: int = 3) -> float:
    """The fraction of `model(x)`'s CPU time spent in Linear layers' matrix products
    (`LINEAR_KERNELS`), from torch.profiler's self times over `calls` calls without grad."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            model(x)
    times = {event.key: event.self_cpu_time_total for event in prof.key_averages()}
    return sum(times.get(name, 0.0) for name in LINEAR_KERNELS) / sum(times.values())


def int8_report(model_dir: str | Path | None = None, source: str = "full", batch: int = 256,
                rounds: int = 5, min_seconds: float = 1.0) -> Int8Report:
    """Accuracy of the fp32 fast path, its int8 copy and its bf16 autocast on Fashion-MNIST's
    test split (`source="full"`: the official 10k; "subset": the shipped 2000), and their
    speed on the CPU, interleaved over `rounds`."""
    from .data import load_fashion_mnist, to_model_input
    from .paths import DATA_DIR

    model_dir = model_dir or DATA_DIR / "models" / "vit-tiny-fashion"  # the course ViT
    fp32 = VisionTransformer.from_hf(model_dir, attn_implementation="fast")
    int8 = quantize_int8(fp32)

    def bf16(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fp32(x).float()

    paths = {"fp32": fp32, "int8": int8, "bf16": bf16}
    images, labels = load_fashion_mnist("test", source=source)
    x = to_model_input(images, channels=fp32.config.num_channels, size=max(*(fp32.config.grid_size)) * fp32.config.patch_size)
    accuracy = {}
    with torch.no_grad():
        for name, model in paths.items():
            preds = torch.cat([model(chunk).argmax(-1) for chunk in x.split(1000)])
            accuracy[name] = (preds == labels).float().mean().item()
    sample = x[:batch]
    rates = {name: [] for name in paths}
    _keep_freed_memory()  # as in `run`
    with torch.no_grad():
        for model in paths.values():
            model(sample)  # warm up
        for r in range(rounds):
            for name in round_order(list(paths), r):
                rates[name].append(batch / time_per_call(lambda: paths[name](sample), min_seconds))
    return Int8Report(Path(model_dir).name, len(labels), accuracy["fp32"], accuracy["int8"], batch, rounds,
                      rates["fp32"], rates["int8"], accuracy["bf16"], rates["bf16"], linear_share(fp32, sample))


def targets(results: list[Result], report: Int8Report | None = None) -> list[str]:
    """One line per target of issue 13 that this run measured: the figure, and met or not."""
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lines = []
    for result in results:
        by_name = {c.name: c for c in result.candidates}

        def caveat(name: str) -> str:  # the bf16 rows compute another function: say so on their line
            if name not in BF16:
                return ""
            return f", bf16: logits off by up to {by_name[name].max_diff:.1e}, not the fp32 fast path"

        if result.model == "vit_s16" and result.batch == 8:
            for kind, target in (("eval", TARGET_EVAL), ("train", TARGET_TRAIN)):
                for name in FP32_FAST + BF16:
                    q1, q2, q3 = result.ratio(name, kind)
                    if q2 == q2:
                        lines.append(f"vit_s16 batch 8 {kind}: {name} {q2:.2f}x HF SDPA [IQR {q1:.2f}, {q3:.2f}] "
                                     f"(target {target:.2f}x): {verdict(q2 >= target)}{caveat(name)}")
        if result.model == "vit_b16":
            for name in FP32_FAST:
                if name in by_name:
                    fraction = result.peak_fraction(name)
                    lines.append(f"vit_b16 eval: {name} at {100 * fraction:.0f}% of the same rounds' matmul GFLOP/s "
                                 f"(target {100 * TARGET_B16_PEAK:.0f}%): {verdict(fraction >= TARGET_B16_PEAK)}")
        q1, q2, q3 = result.ratio("vc_fast_int8", "eval", to="vc_fast")
        if q2 == q2:
            lines.append(f"{result.model} eval: int8 {q2:.2f}x the fp32 fast path [IQR {q1:.2f}, {q3:.2f}] "
                         f"(target {TARGET_INT8_SPEEDUP:.1f}x): {verdict(q2 >= TARGET_INT8_SPEEDUP)}")
    if report is not None:
        lines.append(f"{report.model}: int8 loses {report.points_lost:.2f} points on {report.images} test images "
                     f"(target at most {TARGET_INT8_POINTS:.1f}): {verdict(report.points_lost <= TARGET_INT8_POINTS)}")
        ok = report.speedup >= TARGET_INT8_SPEEDUP
        lines.append(f"{report.model} batch {report.batch}: int8 {report.speedup:.2f}x the fp32 fast path "
                     f"(target {TARGET_INT8_SPEEDUP:.1f}x): {verdict(ok)}")
        if not ok and report.bound(INT8_PEAK_GAIN) < TARGET_INT8_SPEEDUP:
            lines[-1] += (f"; out of int8 Linear layers' reach: {report.bound(INT8_PEAK_GAIN):.2f}x at most with "
                          f"{INT8_PEAK_GAIN}x faster ones ({100 * report.linear_share:.0f}% of the time is in them)")
    return lines


def invocation(argv: list[str] | None = None) -> str:
    """The command line that started this process, as a reader would type it."""
    argv = list(sys.argv if argv is None else argv)
    program = Path(argv[0]).name if argv else ""
    head = ["python", "scripts/bench.py"] if program == "bench.py" else ["vit-course"] if program == "vit-course" else [program]
    return shlex.join(head + argv[1:])


def write_record(path: str | Path, results: list[Result], report: Int8Report | None = None,
                 command: str | None = None, device: str = "cpu") -> dict[str, Any]:
    """Save a run as JSON (every round's figures, the machine, the date, the command);
    `render_record` turns it into the README's Markdown."""
    record = {
        "date": datetime.date.today().isoformat(),
        "command": command or invocation(),
        "machine": machine(device),
        "results": [r.to_dict() for r in results],
        "int8": report.to_dict() if report is not None else None,
    }
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return record


def render_record(record: dict[str, Any]) -> str:
    """A saved run as Markdown: what ran where, every table, and the targets' verdicts."""
    m = record["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    results = [Result.from_dict(r) for r in record["results"]]
    report = Int8Report.from_dict(record["int8"]) if record.get("int8") else None
    parts = [f"Measured {record['date']} on {m['device']} ({m['cpu_cores']} cores; "
             f"{', '.join(m['cpu_features']) or 'no AVX-512'}), {versions}:", "",
             "```bash", record["command"], "```"]
    for result in results:
        parts += ["", result.table()]
    if report is not None:
        parts += ["", report.table()]
    parts += ["", "Against the targets of issue 13:", ""] + [f"- {line}" for line in targets(results, report)]
    return "\n".join(parts)
