"""Widget figures keep their natural size: a wide output area must not stretch them."""

import pytest

from vit_course import plots


def test_figure_widget_sets_the_png_pixel_width():
    widgets = pytest.importorskip("ipywidgets")

    def draw(fig, n):
        fig.subplots().plot(range(n))

    box = plots.figure_widget(draw, figsize=(3, 2), n=widgets.IntSlider(value=3, min=2, max=5))
    image = box.children[-1]
    width, height = plots.png_size(image.value)
    assert 150 < width < 400 and 100 < height < 300, (width, height)  # about 3 x 2 inches at 100 dpi
    assert image.layout.width == f"{width}px" and image.layout.max_width == "100%"
    box.children[0].value = 5  # a redraw keeps it
    assert image.layout.width == f"{plots.png_size(image.value)[0]}px"


def test_png_size_refuses_other_bytes():
    with pytest.raises(ValueError, match="expected PNG bytes"):
        plots.png_size(b"GIF89a" + bytes(30))
