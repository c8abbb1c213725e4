"""Widgets that fit the window: slider tracks that stay, figures shown at their own size.

Measured in JupyterLab in headless Chromium (`browser_lab.layout_problems`): in a 1024 px
window with the file browser open every slider keeps a track a learner can drag, and in a
1920 px window no widget figure is stretched beyond its pixels (which blurs it) or drawn
taller than the window. First on small notebooks built here, a sound one and the two
mistakes the course once made (three controls squeezed into one row, an image widget
stretched to the output's width), then on the course notebooks with widgets that
`plots.figure_widget` draws.
"""

from __future__ import annotations

import pytest

import browser_lab
from browser_lab import REPO
from test_browser_detectors import build

IMPORTS = """import io

import ipywidgets as widgets
from matplotlib.figure import Figure

from vit_course import plots


def draw(fig, a=1, b=2, c=3):
    fig.subplots().plot([a, b, c])


def sliders():
    return [widgets.IntSlider(value=v, min=0, max=9, description=name) for v, name in ((1, "a"), (2, "b"), (3, "c"))]"""
SOUND = "plots.figure_widget(draw, figsize=(3, 2), side_by_side=True, **{s.description: s for s in sliders()})"
SQUEEZED = """fig = Figure(figsize=(3, 2))
draw(fig)
widgets.VBox([widgets.HBox(sliders()), plots.figure_image(fig)])"""
STRETCHED = """fig = Figure(figsize=(3, 2))
draw(fig)
buffer = io.BytesIO()
fig.savefig(buffer, format="png")
widgets.VBox([*sliders(), widgets.Image(value=buffer.getvalue(), format="png")])"""

NOTEBOOKS = [REPO / "notebooks" / f"{name}.ipynb" for name in ("05_pretrained_inference", "07_attention_visualization")]


def test_a_sound_widget_fits_both_windows(tmp_path, lab, browser):
    assert browser_lab.check_layout(browser, lab, build(tmp_path, "layout_sound", IMPORTS, SOUND), timeout=120) == []


@pytest.mark.parametrize("name, source, expected", [
    ("squeezed", SQUEEZED, "cell 1: at 1024 px with the file browser open, the slider 'a' has a"),
    ("stretched", STRETCHED, "cell 1: at 1920 px a widget image of 300 px is drawn"),
], ids=["squeezed_sliders", "stretched_image"])
def test_a_badly_laid_out_widget_is_reported(tmp_path, lab, browser, name, source, expected):
    found = browser_lab.check_layout(browser, lab, build(tmp_path, f"layout_{name}", IMPORTS, source), timeout=120)
    assert any(problem.startswith(expected) for problem in found), f"expected {expected!r}..., got {found}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_widgets_fit_a_1024_px_window_and_are_not_stretched(notebook, lab, browser):
    found = browser_lab.check_layout(browser, lab, notebook)
    assert not found, f"{notebook.name} ({len(found)} layout problems):\n  " + "\n  ".join(found)
