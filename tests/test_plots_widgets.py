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


def test_figure_image_shows_a_figure_at_its_natural_size_and_redraws_into_the_same_widget():
    pytest.importorskip("ipywidgets")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 2))
    fig.subplots().plot([0, 1])
    image = plots.figure_image(fig)
    width, height = plots.png_size(image.value)
    assert 300 < width < 500 and 150 < height < 250, (width, height)  # about 4 x 2 inches at 100 dpi
    assert (image.layout.width, image.layout.height, image.layout.max_width) == (f"{width}px", "auto", "100%")
    wider = Figure(figsize=(6, 2))
    wider.subplots().plot([1, 0])
    assert plots.figure_image(wider, image) is image, "a redraw should reuse the widget on the page"
    assert image.layout.width == f"{plots.png_size(image.value)[0]}px" != f"{width}px"


def test_control_row_wraps_instead_of_squeezing_and_keeps_descriptions_whole():
    widgets = pytest.importorskip("ipywidgets")
    sliders = [widgets.IntSlider(description=name) for name in ("image", "row", "column")]
    row = plots.control_row(*sliders)
    assert list(row.children) == sliders
    assert row.layout.flex_flow == "row wrap", "three default-width controls need ~900 px: let them wrap"
    assert all(s.style.description_width == "initial" for s in sliders)


def test_figure_widget_side_by_side_puts_the_controls_in_one_wrapping_row():
    widgets = pytest.importorskip("ipywidgets")

    def draw(fig, a, b):
        fig.subplots().plot([a, b])

    box = plots.figure_widget(draw, figsize=(2, 2), side_by_side=True,
                              a=widgets.IntSlider(value=1), b=widgets.IntSlider(value=2))
    row, image = box.children
    assert row.layout.flex_flow == "row wrap" and len(row.children) == 2
    assert image.layout.width == f"{plots.png_size(image.value)[0]}px"
