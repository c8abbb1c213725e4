"""Print the speed table of the README: vit_course's paths, transformers and timm, side by side.

    python scripts/bench.py                      # ViT-S/16 batch 8 and ViT-B/16 batch 4, 5 rounds
    python scripts/bench.py --int8-accuracy      # also int8 vs fp32 on the official test split
    python scripts/bench.py --models tiny --rounds 1 --min-seconds 0.05   # a quick check

The same as `vit-course bench` (all its options; see `vit_course.bench` for the columns).
On a GPU when one is present, on the CPU otherwise.
"""

import sys

from vit_course.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
