"""A tiny training run for the checkpoint tests: `python tests/_tiny_run.py CKPT KILL_AT` runs
`fit` with a checkpoint every 3 steps and kills itself (SIGKILL, no clean-up) at step KILL_AT."""

import os
import signal
import sys

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


def run(checkpoint, kill_at=None, resume=False, progress=False, interrupt_at=None):
    model, loader, optimizer, scheduler = tiny_run()

    def die(step, loss):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if step == interrupt_at:
            raise KeyboardInterrupt

    history = fit(model, loader, optimizer=optimizer, scheduler=scheduler, epochs=3, val_loader=loader,
                  checkpoint=checkpoint, checkpoint_every=3 if checkpoint else None, resume=resume, callback=die,
                  progress=progress)
    return model, history


if __name__ == "__main__":
    run(sys.argv[1], kill_at=int(sys.argv[2]))
