"""A tiny training run for the checkpoint tests, in this process (`run`) or as a subprocess
that is stopped on purpose: `python tests/_tiny_run.py CKPT HOW STEP`, HOW one of

- `kill`: SIGKILL (no clean-up runs) in the callback of step STEP; checkpoints every 3 steps,
- `sigterm-in-update`: SIGTERM from an optimizer hook, between `optimizer.step()` and
  `scheduler.step()` of step STEP,
- `sigint-in-forward`: SIGINT from a forward hook, in the forward pass of step STEP,
- `wait`: prints `step N` after every step and sleeps in every forward pass, for another
  process to signal it at a moment of its choosing.
"""

import os
import signal
import sys
import time

import torch
from torch import nn

from vit_course.data import make_loader
from vit_course.train import fit


def tiny_run():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (48, 8, 8), dtype=torch.uint8)
    labels = torch.arange(48) % 4
    loader = make_loader(images, labels, batch_size=8, train=True, seed=1)  # shuffled and augmented
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    return model, loader, optimizer, scheduler


def run(checkpoint, kill_at=None, resume=False, progress=False, interrupt_at=None, checkpoint_every=None, how=None):
    model, loader, optimizer, scheduler = tiny_run()
    steps = {"forward": 0, "update": 0}

    def die(step, loss):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if step == interrupt_at:
            raise KeyboardInterrupt
        if how == "wait":
            print(f"step {step}", flush=True)

    def forward_hook(module, args):
        if module.training:
            steps["forward"] += 1
            if how == "sigint-in-forward" and steps["forward"] == kill_at:
                os.kill(os.getpid(), signal.SIGINT)
            if how == "wait":
                time.sleep(0.05)

    def update_hook(optimizer, args, kwargs):
        steps["update"] += 1
        if how == "sigterm-in-update" and steps["update"] == kill_at:
            os.kill(os.getpid(), signal.SIGTERM)

    model.register_forward_pre_hook(forward_hook)
    optimizer.register_step_post_hook(update_hook)
    history = fit(model, loader, optimizer=optimizer, scheduler=scheduler, epochs=3, val_loader=loader,
                  checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume, callback=die,
                  progress=progress)
    return model, history


if __name__ == "__main__":
    checkpoint, how, step = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if how == "kill":
        run(checkpoint, kill_at=step, checkpoint_every=3)
    else:
        run(checkpoint, kill_at=step, how=how)
