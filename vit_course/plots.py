"""Small matplotlib helpers the notebooks share: images, patch grids, similarity maps.

Each function draws on an `ax` (made for you when left out) and returns it, so a
notebook cell can place several plots side by side. Images may be a `PIL.Image`, a
numpy array (H, W) or (H, W, C), or a torch tensor (C, H, W) or (H, W); see `as_array`.

Interactive figures (notebooks 01-03, 05-07): `figure_widget` redraws a figure when its
controls change; `figure_image` shows a figure as an image widget at its natural pixel
size and `control_row` puts controls side by side without squeezing their sliders.

Used by notebooks 01, 02, 03, 05, 06, 07, 08 and 10.
"""

from __future__ import annotations

import io

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def as_array(image: Any) -> np.ndarray:
    """Any image -> numpy (H, W) or (H, W, C), floats rescaled to [0, 1] for display."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[-1] not in (1, 3, 4):
            image = image.permute(1, 2, 0)  # (C, H, W) -> (H, W, C)
        image = image.numpy()
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == np.uint8:
        return array
    lo, hi = float(array.min()), float(array.max())
    return (array - lo) / (hi - lo) if hi > lo else np.zeros_like(array, dtype=float)


def _axes(ax, figsize=(4, 4)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def show_image(image: Any, ax: Axes | None = None, title: str | None = None, cmap: str = "gray") -> Axes:
    """Show one image without ticks."""
    ax = _axes(ax)
    array = as_array(image)
    ax.imshow(array, cmap=cmap if array.ndim == 2 else None)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def show_patch_grid(image: Any, patch_size: int, ax: Axes | None = None, title: str | None = None,
                    color: str = "white", numbers: bool = False) -> Axes:
    """Show an image with lines between its P x P patches; `numbers` labels each patch's index."""
    ax = show_image(image, ax, title)
    height, width = as_array(image).shape[:2]
    for y in range(0, height + 1, patch_size):
        ax.axhline(y - 0.5, color=color, linewidth=0.8)
    for x in range(0, width + 1, patch_size):
        ax.axvline(x - 0.5, color=color, linewidth=0.8)
    if numbers:
        cols = width // patch_size
        for i in range((height // patch_size) * cols):
            row, col = divmod(i, cols)
            ax.text((col + 0.5) * patch_size, (row + 0.5) * patch_size, str(i), color=color,
                    ha="center", va="center", fontsize=8)
    return ax


def show_patches(image: Any, patch_size: int, ax: Axes | None = None, title: str | None = None,
                 gap: int = 2) -> Axes:
    """Show an image cut into its patches, pulled apart by `gap` pixels of white."""
    array = as_array(image)
    array = array / 255.0 if array.dtype == np.uint8 else array
    height, width = array.shape[:2]
    rows, cols = height // patch_size, width // patch_size
    step = patch_size + gap
    canvas = np.ones((rows * step - gap, cols * step - gap, *array.shape[2:]))
    for r in range(rows):
        for c in range(cols):
            canvas[r * step: r * step + patch_size, c * step: c * step + patch_size] = \
                array[r * patch_size: (r + 1) * patch_size, c * patch_size: (c + 1) * patch_size]
    ax = _axes(ax)
    ax.imshow(canvas, cmap="gray" if canvas.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def image_grid(images: Sequence[Any], titles: Sequence[str] | None = None, ncols: int | None = None,
               size: float = 2.0, cmap: str = "gray") -> Any:
    """Show several images in a grid of `ncols` columns (one row by default); returns the figure."""
    import matplotlib.pyplot as plt

    images = list(images)
    ncols = ncols or len(images)
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3 * bool(titles)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < len(images):
            show_image(images[i], ax, titles[i] if titles else None, cmap)
        else:
            ax.axis("off")
    fig.tight_layout()
    return fig


def cosine_similarity_matrix(embeddings: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, N): cosine similarity of every row with every other."""
    unit = torch.nn.functional.normalize(embeddings.detach().float(), dim=-1)
    return unit @ unit.T


def similarity_grid(embeddings: torch.Tensor, rows: int, cols: int, ax: Axes | None = None, step: int = 1,
                    title: str | None = None, cmap: str = "viridis", gap: int = 1,
                    vmin: float | None = -1.0, vmax: float | None = 1.0) -> Any:
    """The ViT paper's Fig. 7 (centre): for each grid position, its embedding's cosine
    similarity with every position, drawn as a small rows x cols map at that position.

    `embeddings` is (rows*cols, D), without the CLS row. `step > 1` shows every
    `step`-th row and column of positions only (for big grids). `vmin=vmax=None` scales
    the colours to the data instead of [-1, 1]. Returns the image, for a colorbar.
    """
    sims = cosine_similarity_matrix(embeddings).reshape(rows, cols, rows, cols).numpy()
    shown_rows, shown_cols = range(0, rows, step), range(0, cols, step)
    tile_h, tile_w = rows + gap, cols + gap
    canvas = np.full((len(shown_rows) * tile_h - gap, len(shown_cols) * tile_w - gap), np.nan)
    for i, r in enumerate(shown_rows):
        for j, c in enumerate(shown_cols):
            canvas[i * tile_h: i * tile_h + rows, j * tile_w: j * tile_w + cols] = sims[r, c]
    ax = _axes(ax, figsize=(5, 5))
    image = ax.imshow(np.ma.masked_invalid(canvas), cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks([j * tile_w + cols / 2 - 0.5 for j in range(len(shown_cols))], [str(c) for c in shown_cols])
    ax.set_yticks([i * tile_h + rows / 2 - 0.5 for i in range(len(shown_rows))], [str(r) for r in shown_rows])
    ax.tick_params(length=0, labelsize=7)
    ax.set_xlabel("input patch column")
    ax.set_ylabel("input patch row")
    if title:
        ax.set_title(title)
    return image


def similarity_map(embeddings: torch.Tensor, rows: int, cols: int, index: int, ax: Axes | None = None,
                   title: str | None = None, cmap: str = "viridis",
                   vmin: float | None = -1.0, vmax: float | None = 1.0) -> Any:
    """One position's cosine similarity with every position, as a rows x cols map; its cell is marked."""
    sims = cosine_similarity_matrix(embeddings)[index].reshape(rows, cols).numpy()
    ax = _axes(ax)
    image = ax.imshow(sims, cmap=cmap, vmin=vmin, vmax=vmax)
    row, col = divmod(index, cols)
    ax.scatter([col], [row], marker="x", color="red", s=30)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return image


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels, read from a PNG's header."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        raise ValueError(f"expected PNG bytes, got {png[:8]!r}")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def show_at_natural_size(image: Any) -> None:
    """Give a PNG `widgets.Image` its own pixel width, so a wide output area does not stretch
    (and blur) it; it still shrinks to fit a narrow window."""
    width, _ = png_size(image.value)
    image.layout.width = f"{width}px"
    image.layout.height = "auto"
    image.layout.max_width = "100%"


def figure_image(fig: Any, image: Any = None) -> Any:
    """A matplotlib figure as a PNG `widgets.Image` shown at its natural pixel size.

    Never stretched by a wide output area (a stretched PNG is blurred, and can be taller
    than the screen); shrunk to fit a narrow one. Pass `image` to redraw into a widget
    already on the page (what a control's callback does); returns the widget.
    """
    import ipywidgets as widgets

    image = widgets.Image(format="png") if image is None else image
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    image.value = buffer.getvalue()
    show_at_natural_size(image)
    return image


def control_row(*controls: Any) -> Any:
    """Controls side by side in a `widgets.HBox` that wraps to a new line when the window
    is too narrow for them, instead of squeezing their slider tracks to nothing (a row of
    three default-width controls needs about 900 px). Each description keeps its own width.
    """
    import ipywidgets as widgets

    for control in controls:
        control.style.description_width = "initial"
    return widgets.HBox(list(controls), layout=widgets.Layout(flex_flow="row wrap"))


def figure_widget(draw: Callable[..., Any], figsize: tuple[float, float] = (4, 4), side_by_side: bool = False,
                  **controls: Any) -> Any:
    """Controls (name -> ipywidget) above a figure that `draw(fig, **values)` redraws on change.

    The figure is a bare `matplotlib.figure.Figure` rendered to PNG into a
    `widgets.Image` at its natural size (`figure_image`): no pyplot, no Output widget
    (whose output capture can stall nbclient/nbval when a notebook runs headless). The
    controls stand one per line, or with `side_by_side` in a `control_row`. Returns the
    `widgets.VBox`.
    """
    import ipywidgets as widgets
    from matplotlib.figure import Figure

    image = widgets.Image(format="png")

    def update(_=None):
        fig = Figure(figsize=figsize)
        draw(fig, **{name: control.value for name, control in controls.items()})
        figure_image(fig, image)

    for control in controls.values():
        control.observe(update, names="value")
    update()
    shown = [control_row(*controls.values())] if side_by_side else list(controls.values())
    return widgets.VBox([*shown, image])


def show_attention(image: Any, heatmap: Any, ax: Axes | None = None, title: str | None = None,
                   alpha: float = 0.6, cmap: str = "inferno", image_cmap: str = "gray") -> Axes:
    """Draw a (rows, cols) map (attention, rollout, norms) over `image`, stretched to cover it.

    Each grid cell is drawn as one flat square over its patch (no smoothing), so what
    you see is what the model computed, one value per patch.
    """
    array = as_array(image)
    height, width = array.shape[:2]
    heat = heatmap.detach().float().cpu().numpy() if isinstance(heatmap, torch.Tensor) else np.asarray(heatmap)
    ax = show_image(array, ax, title, image_cmap)
    ax.imshow(heat, cmap=cmap, alpha=alpha, extent=(-0.5, width - 0.5, height - 0.5, -0.5),
              interpolation="nearest")
    return ax


def mark_patches(ax: Axes, indices: Sequence[int], cols: int, patch_size: int, color: str = "cyan",
                 linewidth: float = 1.5) -> Axes:
    """Outline the patches with these row-major `indices` on an image drawn in `ax`."""
    from matplotlib.patches import Rectangle

    for index in [int(i) for i in indices]:
        row, col = divmod(index, cols)
        ax.add_patch(Rectangle((col * patch_size - 0.5, row * patch_size - 0.5), patch_size, patch_size,
                               fill=False, edgecolor=color, linewidth=linewidth))
    return ax


def heatmap(matrix: Any, labels: Sequence[str], ax: Axes | None = None, title: str | None = None,
            cmap: str = "viridis", fmt: str = "{:.2f}", vmin: float | None = None,
            vmax: float | None = None) -> Any:
    """A labelled square matrix (e.g. cosine similarities) with each value written in its cell.

    `labels` name the rows and the columns. Returns the image (for a colorbar).
    """
    m = matrix.detach().cpu().double().numpy() if isinstance(matrix, torch.Tensor) else np.asarray(matrix, dtype=float)
    size = 0.55 * len(labels) + 2
    ax = _axes(ax, figsize=(size, size))
    image = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    lo, hi = image.get_clim()
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            light = (m[i, j] - lo) / (hi - lo) > 0.6 if hi > lo else False
            ax.text(j, i, fmt.format(m[i, j]), ha="center", va="center", fontsize=6,
                    color="black" if light else "white")
    if title:
        ax.set_title(title)
    return image


def patch_pca_rgb(patch_tokens: torch.Tensor, rows: int, cols: int,
                  foreground: float | None = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Patch tokens `(rows*cols, D)` -> `(rgb (rows, cols, 3) in [0, 1], mask (rows, cols) bool)`.

    The DINOv2 paper's Fig. 1 (Oquab et al., 2023): the first three principal components
    of the patch tokens shown as red, green and blue. With `foreground` set, a first PCA
    separates object from background: a patch whose first component (divided by its
    std, its sign chosen so that the border patches score low) is at most `foreground`
    becomes black, and the colours come from a second PCA over the remaining patches.
    `foreground=None` colours every patch from one PCA. The PCA is an exact SVD.
    """

    def components(x: torch.Tensor, k: int) -> torch.Tensor:
        x = x - x.mean(dim=0)
        _, _, vh = torch.linalg.svd(x, full_matrices=False)  # rows of vh: principal directions
        return x @ vh[:k].T  # (n, k)

    x = patch_tokens.detach().cpu().double().reshape(rows * cols, -1)
    mask = torch.ones(rows, cols, dtype=torch.bool)
    if foreground is not None:
        first = components(x, 1)[:, 0].reshape(rows, cols)
        border = torch.cat([first[0], first[-1], first[1:-1, 0], first[1:-1, -1]])
        if border.mean() > first.mean():  # the background (border) should score low
            first = -first
        mask = first / first.std() > foreground
        if int(mask.sum()) < 3:  # nothing stands out: colour everything
            mask = torch.ones(rows, cols, dtype=torch.bool)
    rgb = torch.zeros(rows * cols, 3, dtype=torch.float64)
    chosen = mask.reshape(-1)
    pcs = components(x[chosen], 3)
    lo, hi = pcs.min(dim=0).values, pcs.max(dim=0).values
    rgb[chosen] = (pcs - lo) / (hi - lo).clamp_min(1e-12)  # each component to [0, 1]
    return rgb.reshape(rows, cols, 3).numpy(), mask.numpy()
