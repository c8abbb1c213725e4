"""`vit_course.bench` and `vit-course bench`: a smoke run on a tiny config (never timed),
its guards, the arithmetic of its ratios and verdicts on made-up runs, and the README's
speed block, which must be the formatter's output for the saved run it names. The speeds
themselves are measured by `scripts/bench.py`, not tested."""

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from vit_course import bench
from vit_course.cli import main
from vit_course.fast_linear import FastLinear

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import bench as bench_script  # noqa: E402  scripts/bench.py

QUICK = ("hf_sdpa", "hf_eager", "vc_eager", "vc_fast", "vc_fast_int8")


@pytest.fixture(scope="module")
def tiny_result():
    return bench.run("tiny", rounds=2, min_seconds=0.01, candidates=QUICK)


def test_bench_runs_every_candidate_interleaved_and_tabulates(tiny_result):
    result = tiny_result
    names = [c.name for c in result.candidates]
    assert names == list(QUICK)
    assert all(len(c.eval_rates) == 2 and min(c.eval_rates) > 0 for c in result.candidates)
    assert all(len(c.train_rates) == (0 if c.name == "vc_fast_int8" else 2) for c in result.candidates)
    assert all(c.first_eval_s > 0 for c in result.candidates), "the untimed first call was not recorded"
    assert len(result.peak_gflops) == 2 and min(result.peak_gflops) > 0
    rows = {r["candidate"]: r for r in result.rows()}
    assert rows["hf_sdpa"]["eval_ratio"] == pytest.approx((1.0, 1.0, 1.0))
    assert rows["hf_sdpa"]["train_ratio"] == pytest.approx((1.0, 1.0, 1.0))
    table = result.table()
    assert table.count("\n| ") == len(QUICK) + 1, table  # header row + one row per candidate
    assert "| vc_fast_int8 |" in table and "| - |" in table  # int8 has no training step
    assert "| hf_sdpa | " in table and "1.00 [1.00, 1.00]" in table
    assert table.splitlines()[2].endswith("| max diff |"), "the last column is the logit difference from HF SDPA"


def test_bench_reports_each_rows_difference_from_hf_sdpa(tiny_result):
    diffs = {c.name: c.max_diff for c in tiny_result.candidates}
    assert diffs["hf_sdpa"] == 0.0
    for name in ("hf_eager", "vc_eager", "vc_fast"):
        assert diffs[name] <= 1e-5, f"{name}: the fp32 rows compute HF's function, off by {diffs[name]:.1e}"
    assert diffs["vc_fast_int8"] > 1e-5, "int8 rounds its weights: a difference of zero means it was not applied"
    row = next(line for line in tiny_result.table().splitlines() if line.startswith("| vc_fast_int8 |"))
    assert row.endswith(f"| {diffs['vc_fast_int8']:.1e} |"), row


def made_up(rates: dict[str, tuple[list[float], list[float]]], model: str = "vit_s16", batch: int = 8,
            peak: list[float] | None = None) -> bench.Result:
    """A Result with the given eval and train images/s per round, as if measured."""
    rounds = len(next(iter(rates.values()))[0])
    cands = [bench.Candidate(name, eval_rates=ev, train_rates=tr) for name, (ev, tr) in rates.items()]
    return bench.Result(model, batch, "cpu", 2, rounds, 10**9, peak or [100.0] * rounds, cands)


def test_ratios_are_taken_round_by_round():
    # the machine slows down 4x in round 3; the candidate is 1.3x HF in every round
    hf = [10.0, 10.0, 2.5, 10.0, 10.0]
    result = made_up({"hf_sdpa": (hf, hf), "vc_fast": ([1.3 * r for r in hf], [1.3 * r for r in hf])})
    assert result.ratio("vc_fast") == pytest.approx((1.3, 1.3, 1.3))
    # interleaving matters: HF slowed in round 1, the candidate in round 2; medians of rates would hide it
    result = made_up({"hf_sdpa": ([5.0, 10.0, 10.0], [5.0, 10.0, 10.0]), "vc_fast": ([10.0, 5.0, 11.0], [10.0, 5.0, 11.0])})
    q1, q2, q3 = result.ratio("vc_fast")
    assert (q1, q2, q3) == pytest.approx((0.8, 1.1, 1.55)), "the quartiles of the per-round ratios 2, 0.5, 1.1"


def test_targets_say_met_and_not_met():
    hf = [10.0, 10.0, 10.0]
    good = made_up({"hf_sdpa": (hf, hf), "vc_fast": ([12.0] * 3, [10.5] * 3),
                    "vc_fast_compile": ([13.0] * 3, [11.5] * 3), "vc_fast_int8": ([19.0] * 3, []),
                    "vc_fast_compile_bf16": ([20.0] * 3, [12.0] * 3)})
    good.candidates[-1].max_diff = 0.0123
    lines = bench.targets([good])
    assert ("vit_s16 batch 8 eval: vc_fast_compile_bf16 2.00x HF SDPA [IQR 2.00, 2.00] (target 1.25x): met, "
            "bf16: logits off by up to 1.2e-02, not the fp32 fast path") in lines
    assert "vit_s16 batch 8 eval: vc_fast 1.20x HF SDPA [IQR 1.20, 1.20] (target 1.25x): NOT met" in lines
    assert "vit_s16 batch 8 eval: vc_fast_compile 1.30x HF SDPA [IQR 1.30, 1.30] (target 1.25x): met" in lines
    assert "vit_s16 batch 8 train: vc_fast 1.05x HF SDPA [IQR 1.05, 1.05] (target 1.10x): NOT met" in lines
    assert "vit_s16 batch 8 train: vc_fast_compile 1.15x HF SDPA [IQR 1.15, 1.15] (target 1.10x): met" in lines
    assert "vit_s16 eval: int8 1.58x the fp32 fast path [IQR 1.58, 1.58] (target 1.5x): met" in lines
    # ViT-B: 4 img/s x 35 GFLOP on a 210 GFLOP/s matmul is 67%; 3 img/s is 50%
    b16 = made_up({"hf_sdpa": ([4.0] * 3, []), "vc_fast": ([3.0] * 3, []), "vc_fast_compile": ([4.0] * 3, [])},
                  model="vit_b16", batch=4, peak=[210.0] * 3)
    b16.forward_flops = 35 * 10**9
    lines = bench.targets([b16])
    assert "vit_b16 eval: vc_fast at 50% of the same rounds' matmul GFLOP/s (target 65%): NOT met" in lines
    assert "vit_b16 eval: vc_fast_compile at 67% of the same rounds' matmul GFLOP/s (target 65%): met" in lines
    report = bench.Int8Report("m", 10000, 0.90, 0.894, 256, 3, [100.0] * 3, [160.0] * 3, 0.899, [150.0] * 3)
    assert bench.targets([], report) == ["m: int8 loses 0.60 points on 10000 test images (target at most 0.5): NOT met",
                                         "m batch 256: int8 1.60x the fp32 fast path (target 1.5x): met"]
    report.int8_accuracy, report.int8_rates = 0.898, [140.0] * 3
    assert bench.targets([], report) == ["m: int8 loses 0.20 points on 10000 test images (target at most 0.5): met",
                                         "m batch 256: int8 1.40x the fp32 fast path (target 1.5x): NOT met"]
    # 40% of the time in Linear layers: 4x faster ones give 1 / (0.6 + 0.1) = 1.43x, short of 1.5x
    report.linear_share = 0.4
    assert report.bound(4) == pytest.approx(1 / 0.7) and report.bound() == pytest.approx(1 / 0.6)
    assert bench.targets([], report)[-1].endswith(": NOT met; out of int8 Linear layers' reach: 1.43x at most "
                                                  "with 4x faster ones (40% of the time is in them)")
    report.linear_share = 0.8  # 1 / (0.2 + 0.2) = 2.5x within reach: no such remark
    assert bench.targets([], report)[-1].endswith(": NOT met")


def test_linear_share_counts_the_time_in_linear_layers():
    x = torch.randn(512, 256)
    linears = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Linear(256, 256))
    fast = torch.nn.Sequential(FastLinear(256, 256), FastLinear(256, 256))  # oneDNN's kernel counts too
    assert bench.linear_share(linears, x) > 0.7 and bench.linear_share(fast, x) > 0.7
    assert bench.linear_share(torch.nn.Sequential(torch.nn.GELU(), torch.nn.Softmax(-1)), x) == 0.0


def test_a_saved_run_renders_as_it_was_measured(tiny_result, tmp_path):
    report = bench.Int8Report("m", 100, 0.9, 0.89, 64, 2, [100.0, 90.0], [150.0, 160.0], 0.9, [200.0, 210.0])
    record = bench.write_record(tmp_path / "run.json", [tiny_result], report, command="python scripts/bench.py --x")
    text = bench.render_record(record)
    assert bench.render_record(json.loads((tmp_path / "run.json").read_text())) == text, "the file differs from the run"
    assert tiny_result.table() in text, "the saved run renders differently from the live one"
    assert report.table() in text
    assert "```bash\npython scripts/bench.py --x\n```" in text
    assert f"Measured {record['date']} on " in text and "torch " + torch.__version__ in text
    assert "| int8 fast | 89.00% | 155 | " in report.table() and "| bf16 autocast fast | 90.00% | 205 | " in report.table()


def test_readme_speed_block_is_the_bench_output_of_its_saved_run():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = bench_script.BLOCK.search(text)
    assert match, "README.md lacks the <!-- bench-record --> block"
    block = match.group(0).split("\n", 1)[1].rsplit("\n", 1)[0]
    named = re.match(r"<!-- produced by: python scripts/bench.py --readme (\S+) -->", block)
    assert named, "the block does not name its saved run"
    expected = bench_script.readme_block(ROOT / named.group(1))
    assert block == expected, "README's speed block differs from render_record of its saved run: " \
                              "rerun python scripts/bench.py --readme " + named.group(1)


def test_update_readme_replaces_only_the_block(tiny_result, tmp_path):
    record = tmp_path / "run.json"
    bench.write_record(record, [tiny_result], command="python scripts/bench.py --models tiny")
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- bench-record -->\nold table\n<!-- /bench-record -->\nafter\n")
    bench_script.update_readme(record, readme)
    new = readme.read_text()
    assert new.startswith("before\n<!-- bench-record -->\n<!-- produced by: ") and new.endswith("\n<!-- /bench-record -->\nafter\n")
    assert "old table" not in new and tiny_result.table() in new
    readme.write_text("no block here\n")
    with pytest.raises(SystemExit, match="no <!-- bench-record -->"):
        bench_script.update_readme(record, readme)


def test_rounds_rotate_the_order_under_a_fixed_allocator(monkeypatch):
    calls = []  # what ran, in order: candidate names and allocator settings

    def fake_candidates(config, x, labels, names):
        def call(name):
            calls.append(name)
            return torch.zeros(len(x), 10)
        return [bench.Candidate(n, eval_fn=lambda n=n: call(n)) for n in names]

    monkeypatch.setattr(bench, "build_candidates", fake_candidates)
    monkeypatch.setattr(bench, "matmul_gflops", lambda **kw: 100.0)
    monkeypatch.setattr(bench, "_keep_freed_memory", lambda: calls.append("keep"))
    bench.run("tiny", rounds=4, min_seconds=0, candidates=("hf_sdpa", "vc_eager", "vc_fast"), train=False)
    assert calls[0] == "keep", f"the allocator was set after the first call: {calls[:4]}"
    timed = calls[4:4 + 12]  # after the setting and the three untimed first calls
    rounds = [timed[i:i + 3] for i in range(0, 12, 3)]
    assert rounds == [["hf_sdpa", "vc_eager", "vc_fast"], ["vc_eager", "vc_fast", "hf_sdpa"],
                      ["vc_fast", "hf_sdpa", "vc_eager"], ["hf_sdpa", "vc_eager", "vc_fast"]], rounds


def test_bench_candidates_share_the_same_weights():
    config = bench.ViTConfig(**{**bench.MODELS["tiny"], "num_labels": 10})
    x = torch.randn(2, 3, 32, 32)
    cands = bench.build_candidates(config, x, torch.tensor([0, 1]), ("hf_sdpa", "vc_eager", "vc_sdpa", "vc_fast", "vc_fast_bf16"))
    outs = {c.name: c.eval_fn() for c in cands}
    for name in ("vc_eager", "vc_sdpa", "vc_fast"):
        torch.testing.assert_close(outs[name], outs["hf_sdpa"], atol=1e-5, rtol=0)
    assert outs["vc_fast_bf16"].dtype == torch.bfloat16, "vc_fast_bf16 did not run under bf16 autocast"
    torch.testing.assert_close(outs["vc_fast_bf16"].float(), outs["hf_sdpa"], atol=0.05, rtol=0)


def test_bench_rejects_unknown_models_candidates_and_rounds():
    with pytest.raises(ValueError, match="model must be one of .*got 'vit_z'"):
        bench.run("vit_z")
    with pytest.raises(ValueError, match=r"unknown \['onnx'\]"):
        bench.run("tiny", candidates=("hf_sdpa", "onnx"))
    with pytest.raises(ValueError, match="rounds must be at least 1, got 0"):
        bench.run("tiny", rounds=0)


def test_cli_bench_prints_a_table_and_records_it(capsys, tmp_path):
    record = tmp_path / "run.json"
    assert main(["bench", "--models", "tiny", "--rounds", "1", "--min-seconds", "0.01",
                 "--candidates", "hf_sdpa", "vc_fast", "--no-train", "--record", str(record)]) == 0
    out = capsys.readouterr().out
    assert "tiny, batch 4" in out and "| hf_sdpa | " in out and "| vc_fast | " in out
    saved = json.loads(record.read_text())
    assert [c["name"] for c in saved["results"][0]["candidates"]] == ["hf_sdpa", "vc_fast"]
    assert saved["machine"]["versions"]["torch"] == torch.__version__


def test_invocation_names_the_script_or_the_command():
    assert bench.invocation(["/x/scripts/bench.py", "--rounds", "3"]) == "python scripts/bench.py --rounds 3"
    assert bench.invocation(["/venv/bin/vit-course", "bench", "--models", "a b"]) == "vit-course bench --models 'a b'"


def test_machine_reads_the_cpu_features():
    m = bench.machine()
    assert m["versions"]["torch"] == torch.__version__ and m["cpu_cores"] >= 1
    assert set(m["cpu_features"]) <= {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16"}
    assert bench.has_bf16_hardware() == bool({"avx512_bf16", "amx_bf16"} & set(m["cpu_features"]))


def test_peak_memory_sees_a_large_allocation():
    with bench.PeakMemory(torch.device("cpu")) as mem:
        big = torch.ones(64, 2**20)  # 256 MiB, touched
        del big
    assert mem.mib > 200, f"expected at least 200 MiB, measured {mem.mib:.0f}"
    with bench.PeakMemory(torch.device("cpu")) as small:
        torch.ones(10)
    assert small.mib < 50, f"expected almost nothing, measured {small.mib:.0f} MiB"


def test_cli_times_training_only_for_the_train_models(capsys):
    assert main(["bench", "--models", "tiny", "vit_ti16", "--batch", "1", "--rounds", "1", "--min-seconds", "0",
                 "--candidates", "hf_sdpa", "--train-models", "tiny"]) == 0
    tiny, ti16 = capsys.readouterr().out.split("\nvit_ti16, batch 1")
    train_column = [line.split(" | ")[3] for text in (tiny, ti16) for line in text.splitlines() if line.startswith("| hf_sdpa |")]
    assert train_column[0] != "-", "tiny's training step was not timed"
    assert train_column[1] == "-", "vit_ti16's training step was timed"


def test_compiled_bf16_row_runs_compiled_under_autocast():
    config = bench.ViTConfig(**{**bench.MODELS["tiny"], "num_labels": 10})
    x = torch.randn(2, 3, 32, 32)
    hf, compiled = bench.build_candidates(config, x, torch.tensor([0, 1]), ("hf_sdpa", "vc_fast_compile_bf16"))
    out = compiled.eval_fn()
    assert isinstance(compiled.model, bench.CompiledModel) and compiled.model.fallback is None, compiled.model.fallback
    assert out.dtype == torch.bfloat16, "vc_fast_compile_bf16 did not run under bf16 autocast"
    torch.testing.assert_close(out.float(), hf.eval_fn(), atol=0.05, rtol=0)
    torch._dynamo.reset()
