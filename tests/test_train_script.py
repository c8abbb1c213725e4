"""The pieces of `scripts/train_fashion.py` that shaped the shipped ViT: distillation and its data."""

import importlib.util
import sys

import pytest
import torch
from torch import nn

from vit_course.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, to_model_input
from vit_course.paths import DATA_DIR


@pytest.fixture(scope="module")
def script():
    path = DATA_DIR.parent / "scripts" / "train_fashion.py"
    spec = importlib.util.spec_from_file_location("train_fashion", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("train_fashion", None)


HP = {"distill_alpha": 0.5, "distill_temperature": 2.0, "label_smoothing": 0.1}


def test_distillation_loss_without_teacher_weight_is_the_smoothed_cross_entropy(script):
    logits, labels, teacher = torch.randn(6, 10), torch.arange(6), torch.randn(6, 10)
    loss = script.distillation_loss(logits, labels, teacher, {**HP, "distill_alpha": 0.0})
    expected = nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(loss, expected)


def test_distillation_loss_is_half_the_cross_entropy_when_student_equals_teacher(script):
    logits, labels = torch.randn(6, 10), torch.arange(6)
    loss = script.distillation_loss(logits, labels, logits.clone(), HP)
    expected = 0.5 * nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(loss, expected)


def test_distillation_loss_pulls_the_student_towards_the_teacher(script):
    labels = torch.zeros(4, dtype=torch.long)
    teacher = torch.tensor([[0.0, 5.0, 0.0]]).repeat(4, 1)  # the teacher says class 1
    student = torch.zeros(4, 3, requires_grad=True)
    hp = {**HP, "distill_alpha": 1.0}
    script.distillation_loss(student, labels, teacher, hp).backward()
    assert (student.grad[:, 1] < 0).all(), "a gradient step should raise the teacher's class"
    assert (student.grad[:, [0, 2]] > 0).all()


def test_teacher_targets_give_the_teacher_logits_of_the_view_the_student_sees(script):
    images = torch.randint(0, 256, (40, 28, 28), dtype=torch.uint8)
    labels = torch.arange(40) % 10
    # view 0 (as is) says 0, view 1 (mirrored) says 1, per image
    teacher = torch.stack([torch.zeros(40, 10), torch.ones(40, 10)])
    data = script.TeacherTargets(images, labels, teacher, flip_p=0.5, channels=3)
    torch.manual_seed(0)
    flips = 0
    for i in range(len(data)):
        x, y, t = data[i]
        assert x.shape == (3, 28, 28) and y == labels[i]
        plain = to_model_input(images[i], FASHION_MNIST_MEAN, FASHION_MNIST_STD, 3)
        mirrored = to_model_input(images[i].flip(-1), FASHION_MNIST_MEAN, FASHION_MNIST_STD, 3)
        if torch.equal(t, teacher[1, i]):
            torch.testing.assert_close(x, mirrored)
            flips += 1
        else:
            torch.testing.assert_close(x, plain)
            assert torch.equal(t, teacher[0, i])
    assert 5 < flips < 35, f"{flips} of 40 mirrored with p = 0.5"


def test_teacher_logits_cover_both_views(script):
    images = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    seen = []

    class Recorder(nn.Module):
        def forward(self, x):  # (B, 1, 28, 28) -> (B, 10): the top row's first pixels, which a mirror changes
            seen.append(x.shape)
            return x[:, 0, 0, :10]

    logits = script.teacher_logits(Recorder(), images, batch_size=3)
    assert logits.shape == (2, 7, 10)
    assert all(shape[1] == 1 for shape in seen), "the CNN teacher takes one channel"
    plain = to_model_input(images, FASHION_MNIST_MEAN, FASHION_MNIST_STD, 1)
    torch.testing.assert_close(logits[0], plain[:, 0, 0, :10])
    torch.testing.assert_close(logits[1], plain.flip(-1)[:, 0, 0, :10])


def test_recorded_command_leaves_out_the_output_folder(script, monkeypatch):
    argv = ["scripts/train_fashion.py", "--model", "vit", "--out-dir", "/tmp/x", "--threads", "2", "--out-dir=/y"]
    monkeypatch.setattr(sys, "argv", argv)
    assert script.command_args() == ["--model", "vit", "--threads", "2"]
