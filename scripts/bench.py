"""Print the speed table of the README: vit_course's paths, transformers and timm, side by side.

    python scripts/bench.py                      # ViT-S/16 batch 8 and ViT-B/16 batch 4, 5 rounds
    python scripts/bench.py --int8-accuracy      # also int8 and bf16 vs fp32 on the official test split
    python scripts/bench.py --models tiny --rounds 1 --min-seconds 0.05   # a quick check
    python scripts/bench.py ... --record scripts/bench_record.json        # also save the run
    python scripts/bench.py --readme scripts/bench_record.json            # put a saved run in README.md

The same as `vit-course bench` (all its options; see `vit_course.bench` for the columns),
plus `--readme`: it replaces the README's block between `<!-- bench-record -->` and
`<!-- /bench-record -->` with `vit_course.bench.render_record` of the saved run, so the
README's figures are the benchmark's own output (tests/test_bench.py checks they still are).
On a GPU when one is present, on the CPU otherwise.
"""

import json
import re
import sys
from pathlib import Path

from vit_course import bench
from vit_course.cli import main
from vit_course.paths import atomic_write_text

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- bench-record -->\n).*?(\n<!-- /bench-record -->)", re.S)


def readme_block(record_path: Path) -> str:
    """What goes between the README's markers for the run saved in `record_path`."""
    record_path = Path(record_path).resolve()
    record = json.loads(record_path.read_text(encoding="utf-8"))
    name = record_path.relative_to(README.parent) if record_path.is_relative_to(README.parent) else record_path
    return f"<!-- produced by: python scripts/bench.py --readme {name} -->\n" + bench.render_record(record)


def update_readme(record_path: Path, readme: Path = README) -> None:
    text = readme.read_text(encoding="utf-8")
    if not BLOCK.search(text):
        raise SystemExit(f"{readme} has no <!-- bench-record --> ... <!-- /bench-record --> block")
    block = readme_block(record_path)
    atomic_write_text(readme, BLOCK.sub(lambda m: m.group(1) + block + m.group(2), text))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--readme"]:
        if len(sys.argv) != 3:
            sys.exit("usage: python scripts/bench.py --readme RECORD.json")
        update_readme(Path(sys.argv[2]))
        print(f"README.md: speed block replaced by {sys.argv[2]}")
    else:
        sys.exit(main(["bench", *sys.argv[1:]]))
