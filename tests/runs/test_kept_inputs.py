"""End to end from a real run with inputs: a video-to-video run of the tiny model keeps its source
video in the run folder, and everything that shows inputs shows that one (Result.inputs, the
history, the result view, the server's snapshot and route).

Needs the generator's new pipelines (``wan_nb.models.user_inputs``, which writes ``<run>/inputs/``); where a
checkout does not have them yet, the tests with recorded inputs (``test_inputs_display``,
``test_inputs_server``, ``test_lab_inputs``) cover the same display paths.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("wan_nb.models.user_inputs", reason="the video-to-video pipeline (wan_nb.models.user_inputs) is not in this checkout")

import wan_nb  # noqa: E402
from wan_nb import Generator  # noqa: E402
from wan_nb.server.inputs import servable_input, snapshot_inputs  # noqa: E402
from wan_nb.widgets.video import ResultView, VideoPlayer  # noqa: E402


def _clip(frames: int = 9, side: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (frames, side, side, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def v2v(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    with Generator(model="tiny", runs_dir=runs, previews=False) as gen:
        result = gen.generate("a fox", video=_clip(), strength=0.5, steps=2, height=32, width=32,
                              num_frames=9, seed=1, progress=False)
        yield runs, result


def test_a_video_to_video_run_shows_its_source_video_everywhere(v2v):
    runs, result = v2v
    kept = result.run_dir / "inputs" / "video.mp4"
    assert result.inputs == {"video": [kept]} and kept.is_file()
    (run,) = [r for r in wan_nb.history(runs) if r.task_id == result.task_id]
    assert run.inputs == result.inputs

    view = ResultView(result)
    assert view.children[0] is view.inputs and view.children[1] is view.player
    (tile,) = view.inputs.children
    player = tile.children[0].children[0]
    assert isinstance(player, VideoPlayer) and player.value == kept.read_bytes()
    assert "source video" in tile.children[1].value

    snap = snapshot_inputs(result.run_dir, "/", result.task_id)
    assert snap == {"video": {"kind": "video", "urls": [f"/wan-nb/api/tasks/{result.task_id}/inputs/video.mp4"]}}
    assert servable_input(result.run_dir, "video.mp4") == kept.resolve()
