"""Sweep, gallery and history cards wrap to the window's width instead of a fixed 4 columns that
pushed the 4th behind a horizontal scrollbar at 1,400 px; nothing inside a card is wider than it."""
import re

import pytest

import wan_nb
from wan_nb.widgets.grid import Gallery, SweepView, card_columns
from wan_nb.widgets.history import HistoryGallery

SMALL = dict(height=32, width=32, num_frames=5, steps=2)


def _fixed_widths(widget):
    """Every fixed px width set on ``widget`` or inside it."""
    found = []
    layout = getattr(widget, "layout", None)
    for name in ("width", "min_width"):
        value = getattr(layout, name, None) or ""
        found += [int(v) for v in re.findall(r"^(\d+)px$", value)]
    for child in getattr(widget, "children", ()):
        found += _fixed_widths(child)
    return found


def _min_column(template):
    match = re.fullmatch(r"repeat\(auto-fill, minmax\((\d+)px, 1fr\)\)", template)
    assert match, template
    return int(match.group(1))


@pytest.fixture(scope="module")
def sweep(gen):
    made = gen.sweep(prompt="a fox", seed=[0, 1, 2, 3, 4], **SMALL)
    made.results(timeout=120)
    return made


def test_sweep_gallery_and_history_wrap(gen, sweep):
    views = [SweepView(sweep), Gallery(sweep.results()), HistoryGallery(wan_nb.runs.history(gen.runs_dir))]
    for view in views:
        grid = getattr(view, "grid", view)
        column = _min_column(grid.layout.grid_template_columns)
        for card in grid.children:
            assert max(_fixed_widths(card), default=0) <= column, (type(view).__name__, _fixed_widths(card))


def test_a_running_sweeps_compact_bars_shrink_with_their_card(gen):
    made = gen.sweep(prompt="an owl", seed=[5, 6], **SMALL)
    view = SweepView(made)
    column = _min_column(view.layout.grid_template_columns)
    for card in view.cards:
        assert max(_fixed_widths(card), default=0) <= column
    made.results(timeout=120)


def test_an_explicit_column_count_is_kept():
    assert card_columns(3, 192) == "repeat(3, max-content)"
