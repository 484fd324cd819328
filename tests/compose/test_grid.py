"""Comparison grids on the tiny model: axes, labels, the tiled film, LoRA weights, reuse of finished runs."""
import json

import numpy as np
import pytest

from wan_nb import Generator
from wan_nb.compose import grid_film as grid_video
from wan_nb.models import tiny
from wan_nb.compose.grid import AxisError
from wan_nb.compose.grid_axes import parse_axis, parse_range
from wan_nb.core.params import InvalidParameter
from wan_nb.models.video_io import read_frames

SMALL = dict(height=32, width=32, num_frames=9, steps=2)
NO_STEPS = {k: v for k, v in SMALL.items() if k != "steps"}


@pytest.fixture(scope="module")
def seed_grid(gen):
    grid = gen.grid(prompt="a red fox in the snow", x=("seed", "0-2"), y=("prompt_sr", ["fox", "owl"]), **SMALL)
    grid.results()
    return grid


def test_a_seed_by_search_replace_grid_runs_every_prompt_with_every_seed(seed_grid):
    assert seed_grid.shape == (1, 2, 3) and len(seed_grid) == 6
    table = [[(c.task.prompt, c.task.seed) for c in row] for row in seed_grid.page(0)]
    assert table == [[("a red fox in the snow", s) for s in (0, 1, 2)],
                     [("a red owl in the snow", s) for s in (0, 1, 2)]]
    labels = [label for label, _ in seed_grid]            # a Grid is a Sweep: (label, task) pairs
    assert labels[4] == {"seed": 1, "prompt_sr": "owl"}
    assert all(r.video_path.is_file() for r in seed_grid.results())


def test_to_mp4_is_the_tiles_plus_the_label_margins(seed_grid, tmp_path):
    path = seed_grid.to_mp4(tmp_path / "grid.mp4")
    clip = grid_video.probe(seed_grid.results()[0].video_path)
    film = grid_video.probe(path)
    geometry = grid_video.layout(seed_grid, [clip] * 6)
    assert geometry.tile_width == geometry.tile_height == 128        # 32 px clips scaled x4 for the labels
    assert geometry.left > 0 and geometry.top > 0
    assert (film["width"], film["height"]) == (geometry.width, geometry.height)
    assert film["width"] == geometry.left + 3 * 128 + 2 * geometry.gap
    assert film["height"] == geometry.top + 2 * 128 + geometry.gap
    assert film["frames"] == clip["frames"] == 9
    frame = read_frames(path)[4].astype(int)
    x0, y0 = geometry.tile(1, 1)   # the tile of seed 1, "owl" holds that cell's clip, scaled
    tile = frame[y0:y0 + 128:4, x0:x0 + 128:4]
    cell = read_frames(seed_grid.cell(1, 1).task.result().video_path)[4].astype(int)
    assert np.abs(tile - cell).mean() < 12
    assert frame[:geometry.top, geometry.left:].max() > 200        # text in the top margin
    assert frame[geometry.top:, :geometry.left].max() > 200        # and in the left one
    recipe = grid_video.read_recipe(path)
    assert recipe["kind"] == "wan_nb.grid" and recipe["x"]["values"] == [0, 1, 2]
    assert [c["prompt"] for c in recipe["cells"]][3] == "a red owl in the snow"


def test_to_mp4_caps_the_resolution_and_says_when_it_cannot(seed_grid, tmp_path):
    film = grid_video.probe(seed_grid.to_mp4(tmp_path / "small.mp4", max_width=320))
    assert film["width"] <= 320 and film["width"] % 2 == 0 and film["height"] % 2 == 0
    with pytest.raises(ValueError, match="does not fit in 120x1080.*max_width"):
        seed_grid.to_mp4(tmp_path / "tiny.mp4", max_width=120)
    with pytest.raises(ValueError, match="max_width=0"):
        seed_grid.to_mp4(tmp_path / "bad.mp4", max_width=0)


def test_clips_of_different_lengths_hold_their_last_frame_and_pages_follow_each_other(gen, tmp_path):
    grid = gen.grid(prompt="a lighthouse", x=("num_frames", [5, 9]), z=("seed", [3, 4]),
                    **{k: v for k, v in SMALL.items() if k != "num_frames"})
    assert grid.shape == (2, 1, 2)
    path = grid.to_mp4(tmp_path / "pages.mp4")
    assert grid_video.probe(path)["frames"] == 9 + 9                  # two pages of the longest clip
    frames = read_frames(path).astype(int)
    geometry = grid_video.layout(grid, [grid_video.probe(r.video_path) for r in grid.results()])
    x0, y0 = geometry.tile(0, 0)
    short = frames[:, y0:y0 + geometry.tile_height, x0:x0 + geometry.tile_width]
    assert np.abs(short[8] - short[4]).mean() < 2          # frames 5..9 of the 5-frame clip: its last, held
    assert np.abs(short[4] - short[2]).mean() > 0.5        # while it played it moved
    assert frames[:geometry.top].max() > 200               # the page title


def test_a_lora_weight_axis_weight_zero_is_no_lora_and_one_differs(tmp_path):
    with Generator(model="tiny", runs_dir=tmp_path / "runs", previews=False) as gen:
        before = gen.generate("a red fox in the snow", seed=5, progress=False, **SMALL)
        path = tiny.make_lora(gen.pipeline.transformer, tmp_path / "ink.safetensors", seed=1)
        gen.load_lora(path, name="ink")
        grid = gen.grid(prompt="a red fox in the snow", x=("lora:ink", "0.0-1.0 [2]"), seed=5,
                        refresh=True, **SMALL)   # render weight 0 (it may count as "no LoRA" and be reused)
        assert [c.kwargs["loras"] for c in grid.cells] == [{"ink": 0.0}, {"ink": 1.0}]
        zero, one = (read_frames(r.video_path).astype(int) for r in grid.results())
        without = read_frames(before.video_path).astype(int)
        assert grid.reused == 0
        assert np.abs(zero - without).max() == 0
        assert np.abs(one - without).mean() > 1


def test_cells_sharing_a_lora_set_run_together(tmp_path):
    with Generator(model="tiny", runs_dir=tmp_path / "runs", previews=False) as gen:
        gen.load_lora(tiny.make_lora(tiny_transformer(), tmp_path / "a.safetensors", seed=1), name="a")
        grid = gen.grid(prompt="a fox", x=("seed", [0, 1, 2]), y=("lora:a", [0.0, 1.0]), steps=1,
                        height=16, width=16, num_frames=1)
        queued = [t.params["loras"]["a"] for t in gen.tasks]
        assert queued == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
        order = [grid.cells.index(next(c for c in grid.cells if c.task is t)) for t in gen.tasks]
        assert order == [0, 1, 2, 3, 4, 5]
        grid = gen.grid(prompt="a fox", y=("seed", [7, 8]), x=("lora:a", [0.0, 1.0]), steps=1,
                        height=16, width=16, num_frames=1)
        new = [t for t in gen.tasks[6:]]
        assert [t.params["loras"]["a"] for t in new] == [0.0, 0.0, 1.0, 1.0]   # by LoRA set, not by row
        assert [t.seed for t in new] == [7, 8, 7, 8]
        grid.results()


def test_a_loras_axis_is_the_set_that_is_on_and_a_weight_axis_applies_on_top(tmp_path):
    with Generator(model="tiny", runs_dir=tmp_path / "runs", previews=False) as gen:
        transformer = tiny_transformer()
        gen.load_lora(tiny.make_lora(transformer, tmp_path / "a.safetensors", seed=1), name="a")
        gen.load_lora(tiny.make_lora(transformer, tmp_path / "b.safetensors", seed=2), name="b", weight=0.7)
        grid = gen.grid(prompt="a fox", x=("lora:b", [0.2]), y=("loras", [{}, {"a": 0.5}]), seed=0, steps=1,
                        height=16, width=16, num_frames=1)
        assert [c.kwargs["loras"] for c in grid.cells] == [{"a": 0.0, "b": 0.2}, {"a": 0.5, "b": 0.2}]
        assert [label for label, _ in grid][0] == {"lora:b": 0.2, "loras": {}}
        assert grid.y.labels == ("no LoRA", "a 0.5")
        grid.results()


def test_an_image_axis_on_an_image_to_video_model(tmp_path):
    from PIL import Image

    red, blue = Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 255))
    with Generator(model="tiny-i2v", runs_dir=tmp_path / "runs", previews=False) as gen:
        args = dict(prompt="a ball", seed=0, steps=1, height=16, width=16, num_frames=5)
        grid = gen.grid(x=("image", [red, blue]), **args)
        assert grid.x.labels == ("image 1", "image 2")
        first = [read_frames(r.video_path)[0].astype(int) for r in grid.results()]
        assert np.abs(first[0] - first[1]).mean() > 1      # random weights: the image shows only as a change
        again = gen.grid(x=("image", [red, blue, red.copy()]), **args)
        assert again.reused == 3 and again.cell(2).task is grid.cell(0).task   # same pixels: same run


def tiny_transformer():
    from wan_nb.models import specs as models

    return models.load_pipeline(models.resolve("tiny"), device="cpu", dtype="fp32").transformer


def test_widening_an_axis_renders_only_the_new_cells(tmp_path):
    runs = tmp_path / "runs"
    with Generator(model="tiny", runs_dir=runs, previews=False) as gen:
        first = gen.grid(prompt="a fox", x=("seed", [0, 1]), y=("steps", [1, 2]), **NO_STEPS)
        first.results()
        assert len(gen.tasks) == 4 and first.reused == 0
        wider = gen.grid(prompt="a fox", x=("seed", "0-2"), y=("steps", [1, 2]), **NO_STEPS)
        assert len(gen.tasks) == 6 and wider.reused == 4
        assert [c.reused for c in wider.cells] == [True, True, False, True, True, False]
        assert wider.cell(0, 1).task is first.cell(0, 1).task
        wider.results()
    # A later process finds the finished runs on disk.
    with Generator(model="tiny", runs_dir=runs, previews=False) as gen:
        again = gen.grid(prompt="a fox", x=("seed", "0-2"), y=("steps", [1, 2]), **NO_STEPS)
        assert gen.tasks == [] and again.reused == 6
        assert again.cell(2, 0).task.result().video_path == wider.cell(2, 0).task.result().video_path
        assert [r.seed for r in again.results()] == [0, 1, 2, 0, 1, 2]
        one_more = gen.grid(prompt="a fox", x=("seed", "0-2"), y=("steps", [1, 2]), guidance_scale=2.0,
                            **NO_STEPS)
        assert one_more.reused == 0                          # another guidance: another recipe
        forced = gen.grid(prompt="a fox", x=("seed", [0]), steps=1, refresh=True, **NO_STEPS)
        assert forced.reused == 0 and forced.results()[0].task_id != again.cell(0, 0).task.id
        one_more.results()


@pytest.mark.parametrize("text,integer,expected", [
    ("1-5", True, [1, 2, 3, 4, 5]),
    ("1-5 (+2)", True, [1, 3, 5]),
    ("10-1 (-3)", True, [10, 7, 4, 1]),
    ("1-10 [5]", True, [1, 3, 6, 8, 10]),
    ("0.0-1.0 [5]", False, [0.0, 0.25, 0.5, 0.75, 1.0]),
    ("0-1 (+0.25)", False, [0.0, 0.25, 0.5, 0.75, 1.0]),
    ("0, 2, 5-7", True, [0, 2, 5, 6, 7]),
    ("-2-2 (+2)", True, [-2, 0, 2]),
    ("7", True, [7]),
    ("3-3", True, [3]),
])
def test_range_strings(text, integer, expected):
    assert parse_range(text, integer) == expected


@pytest.mark.parametrize("spec,message", [
    (("seed", "1.5-3"), "not a whole number"),
    (("steps", "1-5 (-1)"), r"moves away from 5; use \(\+1\)"),
    (("steps", "1-5 (+0)"), "step .* is 0"),
    (("seed", "1-3 [10]"), "only 3 exist"),
    (("guidance_scale", "1-2 [0]"), "whole count >= 1"),
    (("guidance_scale", "one-two"), "cannot read 'one-two'"),
    (("seed", "0-5000"), "more than 1000"),
    (("seed", ""), "empty"),
    (("seed", []), "no values"),
    (("sampler", [1, 2]), "not something a grid can vary.*seed"),
    (("lora:ink", [0, 1]), "no LoRA named 'ink' is loaded"),
    (("loras", "ink"), "takes a list"),
    (("loras", [{"ink": 1}]), "no LoRA named 'ink'"),
    (("seed", [0, "1"]), "'1' is not a number"),
    (("prompt", ["a fox", 3]), "takes text"),
    ("seed", r"give an axis as \(name, values\)"),
])
def test_bad_axes_are_refused_with_what_to_write(spec, message):
    with pytest.raises(AxisError, match=message):
        parse_axis(spec, "x")


def test_text_axes_split_like_csv():
    assert parse_axis(("prompt_sr", 'fox, owl, "cat, black"'), "x").values == ("fox", "owl", "cat, black")


def test_a_bad_cell_queues_nothing(gen):
    before = len(gen.tasks)
    with pytest.raises(InvalidParameter, match="num_frames=10"):
        gen.grid(prompt="a fox", x=("num_frames", [9, 10]), seed=0, **{k: v for k, v in SMALL.items() if k != "num_frames"})
    with pytest.raises(AxisError, match="searches for 'wolf'.*not in the prompt"):
        gen.grid(prompt="a fox", x=("prompt_sr", ["wolf", "owl"]), seed=0, **SMALL)
    with pytest.raises(AxisError, match="'seed' is both an axis and a fixed argument"):
        gen.grid(prompt="a fox", x=("seed", [0, 1]), seed=3, **SMALL)
    with pytest.raises(AxisError, match="given twice"):
        gen.grid(prompt="a fox", x=("seed", [0, 1]), y=("seed", [2]), **SMALL)
    with pytest.raises(AxisError, match="x axis"):
        gen.grid(prompt="a fox", x=None, **SMALL)
    assert len(gen.tasks) == before


def test_without_a_seed_every_cell_shares_one(gen):
    grid = gen.grid(prompt="a fox", x=("guidance_scale", [1.0, 2.0]), **SMALL)
    assert len({c.task.seed for c in grid.cells}) == 1
    grid.results()


def test_to_html_holds_the_player_and_its_videos(seed_grid, tmp_path):
    page = seed_grid.to_html(tmp_path / "grid.html")
    text = page.read_text()
    state = json.loads(text.split('id="wan-nb-grid-state">', 1)[1].split("</script>", 1)[0])
    assert state["columns"] == ["0", "1", "2"] and state["rows"] == ["fox", "owl"]
    assert all((tmp_path / url).is_file() for url in state["videos"])
    assert "requestAnimationFrame" in text
    inline = seed_grid.to_html(tmp_path / "one.html", inline=True).read_text()
    assert inline.count("data:video/mp4;base64,") == 6


def test_the_widget_shows_every_video_and_reruns_a_cell(seed_grid):
    from wan_nb.widgets.lockstep import LockstepGrid

    view = LockstepGrid(seed_grid)
    view._throttle.flush()
    assert view.columns == ["0", "1", "2"] and view.rows == ["fox", "owl"] and view.pages == []
    assert all(isinstance(v, bytes) and v for v in view.videos)
    assert [c["status"] for c in view.cells] == ["completed"] * 6
    assert view.cells[4]["recipe"]["prompt"] == "a red owl in the snow" and view.cells[4]["recipe"]["seed"] == 1
    old = seed_grid.cell(2, 1).task
    task = view.rerun(5)
    assert task is not old and seed_grid.tasks[5] is task and view.videos[5] is None
    task.result()
    view._throttle.flush()
    assert view.cells[5]["status"] == "completed" and view.videos[5]
    view.close()


def test_the_widget_follows_cells_while_they_render(gen):
    from wan_nb.widgets.lockstep import LockstepGrid

    grid = gen.grid(prompt="a heron", x=("seed", [10, 11]), y=("steps", [1, 3]), height=32, width=32, num_frames=9)
    view = LockstepGrid(grid)                                   # built while the cells are queued
    assert [c["status"] for c in view.cells][-1] in ("queued", "running")
    assert view.cells[3]["recipe"]["steps"] == 3 and view.cells[3]["title"] == "seed=11 · steps=3"
    grid.results()
    gen.bus.drain(timeout=5)
    view._throttle.flush()
    assert [c["status"] for c in view.cells] == ["completed"] * 4
    assert [c["progress"] for c in view.cells] == [100.0] * 4
    assert all(view.videos) and view.videos[0] != view.videos[1]
    view.close()
