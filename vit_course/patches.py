"""From an image to a sequence of patch tokens (Dosovitskiy et al., 2021, Sec. 3.1, Eq. 1).

An image (B, C, H, W) is cut into N = HW / P^2 non-overlapping P x P patches, each
flattened to a vector of C * P * P numbers and mapped to D dimensions by one shared
linear layer. `patchify` does the cutting with reshape/permute; `PatchEmbedding` is
what HF (`ViTPatchEmbeddings`) and timm (`PatchEmbed`) use: a Conv2d whose kernel and
stride are both P. `LinearPatchEmbedding` is the same map written as a Linear layer on
`patchify`'s output; the two are equal when each patch is flattened in (C, P, P) order,
the order of the conv kernel's own memory layout.

Used by notebooks 01, 02 and 04.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import to_2tuple


def check_images(images: torch.Tensor, patch_size: int, num_channels: int | None = None) -> None:
    """Raise a ValueError naming what was expected when `images` cannot be patchified."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor of shape (B, C, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"expected images of rank 4 (B, C, H, W), got rank {images.ndim} with shape {tuple(images.shape)}")
    _, channels, height, width = images.shape
    if num_channels is not None and channels != num_channels:
        raise ValueError(f"expected {num_channels} channels, got {channels} (images of shape {tuple(images.shape)})")
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"expected height and width divisible by the patch size {patch_size}, got {height}x{width}"
        )


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C*P*P): patches in row-major order, each flattened as (C, P, P)."""
    check_images(images, patch_size)
    B, C, H, W = images.shape
    P = patch_size
    rows, cols = H // P, W // P
    x = images.reshape(B, C, rows, P, cols, P)  # (B, C, rows, P, cols, P)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, rows, cols, C, P, P)
    return x.reshape(B, rows * cols, C * P * P)  # (B, N, C*P*P)


def unpatchify(patches: torch.Tensor, patch_size: int, image_size: int | tuple[int, int], num_channels: int = 3) -> torch.Tensor:
    """(B, N, C*P*P) -> (B, C, H, W), the inverse of `patchify`."""
    H, W = to_2tuple(image_size)
    P, C = patch_size, num_channels
    rows, cols = H // P, W // P
    if patches.ndim != 3 or patches.shape[1:] != (rows * cols, C * P * P):
        raise ValueError(
            f"expected patches of shape (B, {rows * cols}, {C * P * P}) for a {C}x{H}x{W} image "
            f"and patch size {P}, got {tuple(patches.shape)}"
        )
    B = patches.shape[0]
    x = patches.reshape(B, rows, cols, C, P, P)  # (B, rows, cols, C, P, P)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (B, C, rows, P, cols, P)
    return x.reshape(B, C, H, W)


def conv_to_linear_weight(conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A patch-embedding Conv2d's kernel (D, C, P, P) as a Linear weight (D, C*P*P), and its bias.

    The reshape keeps the kernel's own (C, P, P) order, the order `patchify` flattens in.
    """
    weight = conv.weight.detach().reshape(conv.out_channels, -1)  # (D, C*P*P)
    bias = None if conv.bias is None else conv.bias.detach()
    return weight, bias


class PatchEmbedding(nn.Module):
    """Patches to tokens with a strided Conv2d, as HF's `ViTPatchEmbeddings`.

    Args:
        patch_size: P, the side of a square patch.
        num_channels: C, channels of the input image.
        hidden_size: D, the width of each token.
    """

    def __init__(self, patch_size: int, num_channels: int, hidden_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.proj = nn.Conv2d(num_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, self.patch_size, self.num_channels)
        x = self.proj(images)  # (B, D, rows, cols)
        return x.flatten(2).transpose(1, 2)  # (B, N, D)


class LinearPatchEmbedding(nn.Module):
    """The same map as `PatchEmbedding`, written as a Linear layer on flattened patches."""

    def __init__(self, patch_size: int, num_channels: int, hidden_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.proj = nn.Linear(num_channels * patch_size * patch_size, hidden_size)

    @classmethod
    def from_conv(cls, conv_embedding: PatchEmbedding) -> "LinearPatchEmbedding":
        """Copy a conv embedding's kernel: (D, C, P, P) reshaped to (D, C*P*P)."""
        conv = conv_embedding.proj
        linear = cls(conv_embedding.patch_size, conv_embedding.num_channels, conv.out_channels)
        weight, bias = conv_to_linear_weight(conv)
        with torch.no_grad():
            linear.proj.weight.copy_(weight)  # (D, C*P*P)
            linear.proj.bias.copy_(bias)
        return linear

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, self.patch_size, self.num_channels)
        return self.proj(patchify(images, self.patch_size))  # (B, N, D)
