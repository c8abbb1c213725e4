"""Append section 7 ("Making the ViT fast, and seeing where the time goes") to notebook 08.

    python tools/add_speed_section.py     # then tools/make_learner.py and tools/execute_notebooks.py

Appends new cells at the end of notebooks/solutions/08_vit_vs_cnn.ipynb and touches no
existing cell. Idempotent: a notebook that already has the section (cell id `speed-intro`)
is left as it is. The cells are kept here so the section can be re-applied after someone
else edits the notebook.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from vit_course.paths import write_notebook

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "solutions" / "08_vit_vs_cnn.ipynb"

CELLS = [
    ("speed-intro", "markdown", r"""## 7. Making the ViT fast, and seeing where the time goes

Section 2 timed the two models as they are. The ViT in `vit_course` is written to be read:
three separate projections for queries, keys and values, and attention computed as the
formula says, weights and all. A deployed model does the same arithmetic in fewer, larger
steps. `VisionTransformer.from_hf(path, attn_implementation="fast")` builds the *fast path*:

- **one `qkv` Linear** of width $3D$ instead of three of width $D$: one larger matrix
  product instead of three (the three weight matrices are stacked when the checkpoint is
  loaded, `vit_course.attention.fuse_qkv_state_dict`);
- **PyTorch's fused attention**, `F.scaled_dot_product_attention`, which never stores the
  $N \times N$ weights;
- and, on the CPU, **int8**: `vit_course.bench.quantize_int8` swaps every Linear layer for
  PyTorch's dynamically quantized one (weights stored once as 8-bit integers with a scale,
  each input quantized on the fly, the products done in integers).

A fast path is only worth having if it computes the same function. The first two steps
change no number beyond rounding; int8 does, so we measure what it costs in accuracy."""),
    ("speed-parity", "code", r"""import statistics

from torch.profiler import ProfilerActivity, profile

from vit_course.bench import PeakMemory, quantize_int8, time_per_call

vit_fast = VisionTransformer.from_hf(vit_dir, attn_implementation="fast")
vit_int8 = quantize_int8(vit_fast)
print("block 0 of the fast path:", [k for k in vit_fast.state_dict() if k.startswith("blocks.0.attn")])
x = to_model_input(test_images[:200], channels=3)
with torch.no_grad():
    gap = (vit_fast(x) - vit(x)).abs().max().item()
print(f"fast vs teaching path, largest logit difference below 1e-4: {gap < 1e-4}")"""),
    ("speed-int8-accuracy", "code", r"""# NBVAL_IGNORE_OUTPUT
# int8 kernels differ between CPUs (AVX2, AVX-512, VNNI): a few images may change from machine to machine
acc_fast = accuracy(vit_fast, test_images, test_labels, channels=3)
acc_int8 = accuracy(vit_int8, test_images, test_labels, channels=3)
print(f"test subset ({len(test_labels):,} images): fp32 fast path {100 * acc_fast:.2f}%, "
      f"int8 {100 * acc_int8:.2f}%, {100 * (acc_fast - acc_int8):.2f} points lost")"""),
    ("speed-timing-intro", "markdown", r"""### Timing them side by side

On a machine that does other work, one timing says little. Each round below runs every
variant once, in turn, so whatever slows the machine slows them all alike; the median over
rounds is what we keep. Your numbers are your machine's (and are not compared when the
notebook is tested)."""),
    ("speed-timing", "code", r"""# NBVAL_IGNORE_OUTPUT
variants = {
    "teaching (eager)": vit,
    "teaching + fused attention": VisionTransformer.from_hf(vit_dir, attn_implementation="sdpa"),
    "fast": vit_fast,
    "fast, int8": vit_int8,
}
x = to_model_input(test_images[:256], channels=3)
rates = {name: [] for name in variants}
with torch.inference_mode():
    for model in variants.values():
        model(x)  # warm-up
    for _ in range(5):
        for name, model in variants.items():
            rates[name].append(len(x) / time_per_call(lambda: model(x), min_seconds=0.1))
base = statistics.median(rates["teaching (eager)"])
for name, r in rates.items():
    print(f"{name:27s} {statistics.median(r):7,.0f} images/s  x {statistics.median(r) / base:.2f} "
          f"(batch {len(x)}, {torch.get_num_threads()} thread)")"""),
    ("speed-memory-intro", "markdown", r"""### The memory of attention weights grows with $N^2$

The teaching path materialises $\mathrm{softmax}(QK^\top/\sqrt{d})$ for every head: $B \cdot h
\cdot N^2$ numbers per layer, 4 bytes each in fp32, and the scores before the softmax as
well. The fused kernel walks through the keys in blocks keeping running sums, so what it
needs beyond its inputs and output grows like $N$, not $N^2$. The formula first, for one
layer of the shipped ViT's width and one image:"""),
    ("speed-memory-formula", "code", r"""heads, width = vit.config.num_attention_heads, vit.config.hidden_size
SEQ = (256, 512, 1024, 2048)
weight_mib = {n: heads * n * n * 4 / 2**20 for n in SEQ}
for n in SEQ:
    print(f"N = {n:5,}: attention weights {weight_mib[n]:6.1f} MiB ({heads} heads, fp32)")"""),
    ("speed-memory-measure", "markdown", r"""Now measured: the peak memory of one attention layer's forward pass on $N$ random tokens,
teaching path against fast path. `PeakMemory` reads the process's resident memory every
half millisecond while the layer runs (on a GPU it would ask the CUDA allocator)."""),
    ("speed-memory", "code", r"""# NBVAL_IGNORE_OUTPUT
measured = {"teaching": [], "fast": []}
with torch.inference_mode():
    for n in SEQ:
        tokens = torch.randn(1, n, width)
        for name, layer in (("teaching", vit.blocks[0].attn), ("fast", vit_fast.blocks[0].attn)):
            with PeakMemory(tokens.device) as mem:
                layer(tokens, need_weights=False)
            measured[name].append(mem.mib)
for n, teaching_mib, fast_mib in zip(SEQ, measured["teaching"], measured["fast"]):
    print(f"N = {n:5,}: teaching {teaching_mib:6.1f} MiB, fast {fast_mib:5.1f} MiB")
fig, ax = plt.subplots(figsize=(5.5, 3.4))
ax.plot(SEQ, [weight_mib[n] for n in SEQ], "k--", label=r"$h N^2 \times 4$ bytes")
ax.plot(SEQ, measured["teaching"], marker="o", label="teaching path, measured peak")
ax.plot(SEQ, [max(m, 0.1) for m in measured["fast"]], marker="s", label="fast path, measured peak")
ax.set(xscale="log", yscale="log", xlabel="tokens N", ylabel="MiB", title="One attention layer, one image")
ax.set_xticks(SEQ, [f"{n:,}" for n in SEQ])
ax.minorticks_off()
ax.legend()
plt.show()"""),
    ("speed-profile-intro", "markdown", r"""### Where the time goes: `torch.profiler`

The profiler records every operator PyTorch runs, how often and for how long. `self` time is
the time spent in the operator itself, not in the operators it calls. Sorted by it, the top
rows say where a forward pass of 256 images spends its time: look for the matrix products
(`aten::addmm` in Linear layers, `aten::bmm` for $QK^\top$ and the weighted sum of values in
the teaching path), the softmax, the GELU and the LayerNorms."""),
    ("speed-profile", "code", r"""# NBVAL_IGNORE_OUTPUT
MATRIX_PRODUCTS = {"aten::addmm", "aten::mm", "aten::bmm", "quantized::linear_dynamic",
                   "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::convolution"}
for name in ("teaching (eager)", "fast"):
    model = variants[name]
    with torch.inference_mode():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    products = sum(e.self_cpu_time_total for e in events if e.key in MATRIX_PRODUCTS)
    print(f"{name}: {100 * products / total:.0f}% of the time in matrix products and fused attention")
    print(events.table(sort_by="self_cpu_time_total", row_limit=6, max_name_column_width=40))"""),
    ("speed-summary", "markdown", r"""What the cells above show on your machine: the fast path gives the same logits as the
teaching path; it spends a larger share of its time in matrix products (the printed
percentage), because it has fewer small operators around them; the memory the teaching path
needs for attention follows the $hN^2$ line, the fused kernel's stays far below it; int8
changes the accuracy by the points printed, and its speed-up is the last line of the timing
table.

For bigger models, `python scripts/bench.py` (or `vit-course bench`) runs the same
side-by-side comparison for ViT-S/16 and ViT-B/16 against transformers (eager and SDPA
attention) and timm, for eval and for a training step, with GFLOP/s as a fraction of the
machine's matrix-product peak and peak memory; the README shows one run.

**Try next:** profile with `profile(..., record_shapes=True)` and
`events = prof.key_averages(group_by_input_shape=True)` to see which Linear layers (which
shapes) cost most; time batch 1 against batch 256 (small batches leave the matrix products
too small to keep the cores busy); add `torch.set_num_threads(2)` and see what a second
core buys each variant."""),
]


def add_speed_section(path: Path = NOTEBOOK) -> bool:
    """Append the section's cells to `path`; False (and nothing written) if already there."""
    nb = nbformat.read(path, as_version=4)
    if any(cell.get("id") == CELLS[0][0] for cell in nb.cells):
        return False
    for cell_id, kind, source in CELLS:
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        cell["id"] = cell_id
        nb.cells.append(cell)
    nbformat.validate(nb)
    write_notebook(path, nb)
    return True


if __name__ == "__main__":
    print("section appended" if add_speed_section() else "section already there; nothing changed")
