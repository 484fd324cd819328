"""Guidance methods as a grid axis, in recipes, redone by rerun, and in the gallery's labels."""
import numpy as np
import pytest

import wan_nb
from wan_nb.compose.grid_axes import AxisError, parse_axis
from wan_nb.core.params import InvalidParameter
from wan_nb.models.video_io import read_frames
from wan_nb.runs.recipe import recipe_key
from wan_nb.widgets.grid import differing_labels

SMALL = dict(height=32, width=32, num_frames=1, steps=2, guidance_scale=5.0, seed=3)


@pytest.fixture(scope="module")
def guidance_grid(gen):
    grid = gen.grid(prompt="a red fox in the snow", x=("guidance", "none, cfg-zero-star"), **SMALL)
    grid.results()
    return grid


@pytest.fixture(scope="module")
def options_grid(gen, guidance_grid):
    grid = gen.grid(prompt="a red fox in the snow", x=("guidance_options", [{}, {"zero_init_steps": 0}]),
                    guidance="cfg-zero-star", **SMALL)
    grid.results()
    return grid


def test_guidance_is_an_axis_with_readable_labels(guidance_grid, options_grid):
    assert guidance_grid.x.labels == ("classic CFG", "cfg-zero-star")
    assert options_grid.x.labels == ("default options", "zero_init_steps=0")
    classic, zero_star = guidance_grid.results()
    assert classic.params["guidance"] is None and zero_star.params["guidance"] == "cfg-zero-star"
    assert options_grid.results()[1].params["guidance_options"] == {"zero_init_steps": 0}
    # the grid of options reused the cell the grid of methods made (same recipe)
    assert options_grid.results()[0].video_path == zero_star.video_path
    # the methods really differ: CFG-Zero* zeroes its first step, its zero_init_steps=0 cell does not
    videos = [read_frames(r.video_path) for r in (classic, zero_star, options_grid.results()[1])]
    assert not np.array_equal(videos[0], videos[1]) and not np.array_equal(videos[1], videos[2])
    labels = differing_labels([classic, zero_star])
    assert [l["guidance"] for l in labels] == ["classic CFG", "cfg-zero-star"]


def test_options_without_a_method_and_bad_axis_values_are_refused_before_queueing(gen):
    with pytest.raises(AxisError, match=r"takes a list, e\.g\. \[\{\}, \{'eta': 0\.5\}\]"):
        parse_axis(("guidance_options", "eta=0.5"), "y")
    with pytest.raises(InvalidParameter, match="choose one of"):
        gen.grid(prompt="a fox", x=("guidance", ["cfg", "no-such-method"]), **SMALL)
    with pytest.raises(InvalidParameter, match="applies to a guidance method"):   # the classic cell takes none
        gen.grid(prompt="a fox", x=("guidance", [None, "apg"]), y=("guidance_options", [{}, {"eta": 0.5}]), **SMALL)
    assert not [t for t in gen.tasks if t.prompt == "a fox"]   # nothing was queued


def test_the_recipe_records_the_method_and_rerun_makes_the_same_video(gen, guidance_grid, options_grid):
    result = options_grid.results()[1]   # cfg-zero-star with zero_init_steps=0
    made = wan_nb.recipe(result.video_path)
    assert made["guidance"] == "cfg-zero-star" and made["guidance_options"] == {"zero_init_steps": 0}
    assert "guidance" not in wan_nb.recipe(guidance_grid.results()[0].video_path)   # classic: as before
    again = gen.rerun(result.video_path, progress=False)
    assert again.params["guidance"] == "cfg-zero-star"
    assert np.array_equal(read_frames(again.video_path), read_frames(result.video_path))
    other = wan_nb.recipe(guidance_grid.results()[1].video_path)
    assert recipe_key(other) != recipe_key(made)   # options decide the pixels, so the key
