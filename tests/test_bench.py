"""`vit_course.bench` and `vit-course bench`: a smoke run on a tiny config (never timed),
and its guards. The speeds themselves are measured by `scripts/bench.py`, not tested."""

import pytest
import torch

from vit_course import bench
from vit_course.cli import main

QUICK = ("hf_sdpa", "hf_eager", "vc_eager", "vc_fast", "vc_fast_int8")


def test_bench_runs_every_candidate_interleaved_and_tabulates():
    result = bench.run("tiny", rounds=2, min_seconds=0.01, candidates=QUICK)
    names = [c.name for c in result.candidates]
    assert names == list(QUICK)
    assert all(len(c.eval_rates) == 2 and min(c.eval_rates) > 0 for c in result.candidates)
    assert all(len(c.train_rates) == (0 if c.name == "vc_fast_int8" else 2) for c in result.candidates)
    assert len(result.peak_gflops) == 2 and min(result.peak_gflops) > 0
    rows = {r["candidate"]: r for r in result.rows()}
    assert rows["hf_sdpa"]["eval_ratio"] == pytest.approx(1.0) and rows["hf_sdpa"]["train_ratio"] == pytest.approx(1.0)
    table = result.table()
    assert table.count("\n| ") == len(QUICK) + 1, table  # header row + one row per candidate
    assert "| vc_fast_int8 |" in table and "| - |" in table  # int8 has no training step


def test_bench_candidates_share_the_same_weights():
    config = bench.ViTConfig(**{**bench.MODELS["tiny"], "num_labels": 10})
    x = torch.randn(2, 3, 32, 32)
    cands = bench.build_candidates(config, x, torch.tensor([0, 1]), ("hf_sdpa", "vc_eager", "vc_fast"))
    outs = [c.eval_fn() for c in cands]
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(outs[2], outs[0], atol=1e-5, rtol=0)


def test_bench_rejects_unknown_models_candidates_and_rounds():
    with pytest.raises(ValueError, match="model must be one of .*got 'vit_z'"):
        bench.run("vit_z")
    with pytest.raises(ValueError, match=r"unknown \['onnx'\]"):
        bench.run("tiny", candidates=("hf_sdpa", "onnx"))
    with pytest.raises(ValueError, match="rounds must be at least 1, got 0"):
        bench.run("tiny", rounds=0)


def test_cli_bench_prints_a_table(capsys):
    assert main(["bench", "--models", "tiny", "--rounds", "1", "--min-seconds", "0.01",
                 "--candidates", "hf_sdpa", "vc_fast", "--no-train"]) == 0
    out = capsys.readouterr().out
    assert "tiny, batch 4" in out and "| hf_sdpa | " in out and "| vc_fast | " in out


def test_peak_memory_sees_a_large_allocation():
    with bench.PeakMemory(torch.device("cpu")) as mem:
        big = torch.ones(64, 2**20)  # 256 MiB, touched
        del big
    assert mem.mib > 200, f"expected at least 200 MiB, measured {mem.mib:.0f}"
    with bench.PeakMemory(torch.device("cpu")) as small:
        torch.ones(10)
    assert small.mib < 50, f"expected almost nothing, measured {small.mib:.0f} MiB"
