"""A run's inputs shown beside its output: the history lists them, the result view, the progress
panel and the history gallery draw them (widget state checked in Python, as the browser gets it).

The runs are real tiny-model runs. Their inputs (first and last frame, a control video, reference
images) are recorded into the run folder by the test helper ``_inputs_helpers.InputsSink``, in the
run folder format the generator's pipelines write (``<run>/inputs/`` + ``task.json`` "inputs").
"""

from __future__ import annotations

import json

import pytest

import wan_nb
from wan_nb import Generator
from wan_nb.runs import kept_inputs as run_inputs
from wan_nb.runs.history import run_to_dict
from wan_nb.widgets.history import HistoryGallery
from wan_nb.widgets.inputs import InputsView, inputs_of
from wan_nb.widgets.panel import ProgressPanel
from wan_nb.widgets.video import ResultView, VideoPlayer

from _inputs_helpers import InputsSink, flf2v_and_control, record_inputs

SMALL = dict(height=32, width=32, num_frames=5, steps=2, progress=False)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    with Generator(model="tiny", runs_dir=runs, previews=False) as gen:
        gen.add_sink(InputsSink(gen, lambda task: flf2v_and_control(task) if "flf" in task.prompt else None))
        with_inputs = gen.generate("a flf fox between two frames", seed=1, **SMALL)
        plain = gen.generate("a plain owl", seed=2, **SMALL)
        yield runs, gen, with_inputs, plain


def _tiles(view: InputsView) -> dict[str, list]:
    return {tile.input_name: list(tile.children[0].children) for tile in view.children}


def test_the_run_folder_keeps_and_lists_the_inputs(made):
    runs, _, result, plain = made
    listed = json.loads((result.run_dir / "task.json").read_text())["inputs"]
    assert set(listed) == {"image", "last_image", "video", "reference_images"}
    assert listed["reference_images"]["kind"] == "images" and len(listed["reference_images"]["files"]) == 2
    found = run_inputs.paths(result.run_dir)
    assert list(found) == ["image", "last_image", "reference_images", "video"]   # shown in this order
    assert all(p.is_file() and p.parent == result.run_dir / "inputs" for files in found.values() for p in files)
    assert run_inputs.paths(plain.run_dir) == {}


def test_history_entries_name_their_inputs(made):
    runs, _, result, plain = made
    by_id = {run.task_id: run for run in wan_nb.history(runs)}
    assert by_id[result.task_id].inputs == run_inputs.paths(result.run_dir)
    assert by_id[plain.task_id].inputs == {}
    as_json = run_to_dict(by_id[result.task_id])["inputs"]
    assert as_json["video"] == [str(result.run_dir / "inputs" / "video.mp4")]
    json.dumps(as_json)   # what the CLI's --json prints


def test_the_result_view_shows_the_inputs_before_the_video(made):
    _, _, result, plain = made
    view = ResultView(result)
    assert view.children[0] is view.inputs and view.children[1] is view.player
    tiles = _tiles(view.inputs)
    assert list(tiles) == ["image", "last_image", "reference_images", "video"]
    assert tiles["image"][0].value == (result.run_dir / "inputs" / "image.png").read_bytes()
    assert len(tiles["reference_images"]) == 2
    control = tiles["video"][0]
    assert isinstance(control, VideoPlayer) and control.autoplay   # plays beside the result
    assert control.value == (result.run_dir / "inputs" / "video.mp4").read_bytes()
    labels = [tile.children[1].value for tile in view.inputs.children]
    assert "first frame" in labels[0] and "last frame" in labels[1] and "control video" in labels[3]
    # A run without inputs looks as before: the player, then its parameters.
    bare = ResultView(plain)
    assert bare.children[0] is bare.player and not bare.inputs.shown


def test_the_history_gallery_shows_each_runs_inputs(made):
    runs, gen, result, plain = made
    gallery = HistoryGallery(wan_nb.history(runs), generator=gen)
    cards = {card.run.task_id: card for card in gallery.cards}
    strip = cards[result.task_id].children[1]
    assert isinstance(strip, InputsView) and list(_tiles(strip)) == ["image", "last_image", "reference_images", "video"]
    assert not _tiles(strip)["video"][0].autoplay   # a page of cards does not play a dozen videos at once
    assert not any(isinstance(c, InputsView) for c in cards[plain.task_id].children)


def test_the_progress_panel_shows_a_tasks_inputs_once_its_folder_lists_them(made, tmp_path):
    _, gen, result, _ = made
    task = gen.submit("an owl, inputs recorded late", seed=3, **{k: v for k, v in SMALL.items() if k != "progress"})
    panel = ProgressPanel(task)
    task.result(timeout=120)
    panel.throttle.flush()
    assert panel.inputs.shown == {} and panel.inputs.layout.display == "none"
    record_inputs(task.run_dir, {"image": flf2v_and_control(task)["image"]})
    panel._render()
    assert list(panel.inputs.shown) == ["image"] and panel.inputs.layout.display == ""
    panel.close()


def test_inputs_of_prefers_the_objects_own_paths_and_ignores_raw_inputs(made):
    _, _, result, _ = made

    class WithPaths:
        inputs = {"image": [str(result.run_dir / "inputs" / "image.png")]}
        run_dir = result.run_dir

    class WithPictures:   # inputs as given (pictures), before the run stored them: the folder decides
        inputs = {"reference_images": [object()]}
        run_dir = result.run_dir

    assert inputs_of(WithPaths()) == {"image": [result.run_dir / "inputs" / "image.png"]}
    assert inputs_of(WithPictures()) == run_inputs.paths(result.run_dir)
    # Whatever order an object keeps them in (task.json's), they are shown in one order.
    kept = run_inputs.paths(result.run_dir)
    view = InputsView({name: kept[name] for name in ("video", "reference_images", "last_image", "image")})
    assert list(_tiles(view)) == ["image", "last_image", "reference_images", "video"]


def test_malformed_or_hostile_listings_are_dropped(tmp_path):
    good = {"kind": "image", "files": ["inputs/image.png"], "sha256": "ab"}
    info = {"inputs": {
        "image": good,
        "video": {"kind": "video", "files": ["inputs/../../etc/passwd.mp4"]},   # a path, not a name
        "mask": {"kind": "video", "files": ["/abs/mask.mp4"]},
        "last_image": {"kind": "picture", "files": ["inputs/last.png"]},         # unknown kind
        "pose_video": {"kind": "video", "files": ["inputs/pose.html"]},          # not served media
        "face_video": {"kind": "video", "files": "inputs/face.mp4"},             # not a list
        "reference_images": {"kind": "images", "files": ["inputs/a.png", "inputs/sub/b.png"]},
        "Bad Name": good}}
    assert run_inputs.listed(info) == {"image": {"kind": "image", "files": ["image.png"], "sha256": "ab"}}
    (tmp_path / "task.json").write_text("{not json")
    assert run_inputs.read(tmp_path) == {} and run_inputs.paths(tmp_path) == {}
