"""A grid cell whose matching run stopped early (``stop_after``, ``cancel(keep=True)``) is not a done cell.

The run kept a checkpoint and a preview, not the video: a cell asking for the whole run continues it
from the checkpoint (the same video as an uninterrupted run), a cell that itself stops early renders anew.
"""
import json
import threading

import numpy as np

from wan_nb import Generator
from wan_nb.models.video_io import read_frames
from wan_nb.protocol.statuses import RESUMABLE

SMALL = dict(height=32, width=32, num_frames=5, steps=3)


def _task_info(task):
    return json.loads((task.run_dir / "task.json").read_text())


def test_a_stopped_cell_is_continued_from_its_checkpoint_not_reused_as_done(tmp_path):
    with Generator(model="tiny", runs_dir=tmp_path / "runs", previews=False) as gen:
        previews = gen.grid("a red fox", x=("seed", [0, 1]), stop_after=1, **SMALL)
        assert [r.video_path.name for r in previews.results()] == ["preview.mp4", "preview.mp4"]
        assert all(cell.task.status == "stopped" and cell.task.status in RESUMABLE for cell in previews.cells)

        full = gen.grid("a red fox", x=("seed", [0, 1]), **SMALL)
        assert full.reused == 0                          # a preview is not the cell's video
        done = full.results()
        assert [r.video_path.name for r in done] == ["video.mp4", "video.mp4"]
        assert [_task_info(c.task).get("resumed_from") for c in full.cells] == [c.task.id for c in previews.cells]
        # Continued, the video is the one an uninterrupted run makes.
        fresh = gen.generate("a red fox", seed=1, progress=False, **SMALL)
        assert np.array_equal(read_frames(done[1].video_path), read_frames(fresh.video_path))

        # Now the finished continuation stands in for the cell.
        again = gen.grid("a red fox", x=("seed", [0, 1]), **SMALL)
        assert again.reused == 2 and again.cell(0).task is full.cell(0).task


def test_a_stopped_cell_asked_to_stop_early_again_or_refreshed_renders_anew(tmp_path):
    with Generator(model="tiny", runs_dir=tmp_path / "runs", previews=False) as gen:
        task = gen.submit("a red fox", seed=0, stop_after=1, **SMALL)
        task.wait(timeout=120)
        assert task.status == "stopped"
        again = gen.grid("a red fox", x=("seed", [0]), stop_after=1, **SMALL)
        assert again.reused == 0 and again.cell(0).task is not task
        assert again.results()[0].video_path.name == "preview.mp4"
        assert "resumed_from" not in _task_info(again.cell(0).task)

        forced = gen.grid("a red fox", x=("seed", [0]), refresh=True, **SMALL)
        assert forced.results()[0].video_path.name == "video.mp4"
        assert "resumed_from" not in _task_info(forced.cell(0).task)


def test_a_run_cancelled_with_keep_is_continued_by_the_grid(tmp_path):
    with Generator(model="tiny", runs_dir=tmp_path / "runs", previews=False) as gen:
        held = threading.Event()
        off = gen.subscribe(lambda e: held.set() if e.type == "generation_paused" else None)
        task = gen.submit("an owl", seed=3, **SMALL)
        task.pause()
        assert held.wait(120)
        task.cancel(keep=True)                           # stopped with its checkpoint
        task.wait(60)
        off()
        assert task.status == "stopped", task.status
        grid = gen.grid("an owl", x=("seed", [3]), **SMALL)
        assert grid.reused == 0 and grid.cell(0).task is not task
        assert grid.results()[0].video_path.name == "video.mp4"
        assert _task_info(grid.cell(0).task)["resumed_from"] == task.id
