"""Two ways to disturb an image, to probe what a model relies on (notebook 08, ViT vs CNN).

- `shift_images`: move the content `dx` pixels right and `dy` pixels down, filling the
  uncovered border with `fill` (0, the black background of Fashion-MNIST; no wrap-around).
  A CNN's convolutions are translation-equivariant by construction; a ViT's patch grid
  is only equivariant to shifts by whole patches, and its position embeddings are not at
  all (Dosovitskiy et al., 2021, Sec. 3.1 "Inductive bias").
- `shuffle_patches`: cut the image into a grid of `patch_size` x `patch_size` patches
  and put them back in a random order. A ViT without position information sees a set of
  patches and cannot tell; one with position embeddings and a CNN can.

Both work on the last two dimensions, so (H, W), (B, H, W) and (B, C, H, W) all work,
on uint8 or float images alike.
"""

from __future__ import annotations

import torch


def shift_images(images: torch.Tensor, dx: int, dy: int, fill: float = 0) -> torch.Tensor:
    """Move the content `dx` pixels right (left if negative) and `dy` pixels down (up if negative).

    out[..., y, x] = images[..., y - dy, x - dx] where that pixel exists, else `fill`.
    """
    H, W = images.shape[-2:]
    out = torch.full_like(images, fill)
    if abs(dx) >= W or abs(dy) >= H:
        return out
    src_y = slice(max(0, -dy), H - max(0, dy))  # rows of the input that stay in view
    src_x = slice(max(0, -dx), W - max(0, dx))
    dst_y = slice(max(0, dy), H - max(0, -dy))  # where they land
    dst_x = slice(max(0, dx), W - max(0, -dx))
    out[..., dst_y, dst_x] = images[..., src_y, src_x]
    return out


def shuffle_patches(images: torch.Tensor, patch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Cut (..., H, W) images into P x P patches and put them back in a random order.

    One permutation, `perm = torch.randperm(N, generator=generator)` with N = (H/P)(W/P),
    is drawn and applied to every image: output patch k (row-major) is input patch perm[k].
    """
    H, W = images.shape[-2:]
    P = patch_size
    if H % P or W % P:
        raise ValueError(f"image size {H}x{W} is not divisible by patch_size={P}")
    rows, cols = H // P, W // P
    lead = images.shape[:-2]
    x = images.reshape(*lead, rows, P, cols, P)  # (..., rows, P, cols, P)
    x = x.transpose(-3, -2)  # (..., rows, cols, P, P)
    x = x.reshape(*lead, rows * cols, P, P)  # (..., N, P, P), patches row-major
    perm = torch.randperm(rows * cols, generator=generator)
    x = x[..., perm, :, :]  # output patch k = input patch perm[k]
    x = x.reshape(*lead, rows, cols, P, P).transpose(-3, -2)  # (..., rows, P, cols, P)
    return x.reshape(*lead, H, W)
