"""Real tiny runs with the post steps: a TAEHV draft decode, interpolation and upscaling inside
post_processing with their own progress, the original kept beside the result, the recipe saying so,
rerun making the full-quality video, the grid axis and the CLI flags."""
import json
import os
import subprocess
import sys

import pytest

from pathlib import Path

from _taehv_helpers import write_taehv
from wan_nb import Generator, recipe
from wan_nb.models.video_io import read_frames

WAN_NB = str(Path(sys.executable).parent / "wan-nb")


@pytest.fixture(scope="module")
def taehv_file(tmp_path_factory):
    return write_taehv(tmp_path_factory.mktemp("taehv") / "taew2_1.safetensors", seed=4)


@pytest.fixture(scope="module")
def gen(tmp_path_factory, taehv_file):
    with Generator(model="tiny", runs_dir=tmp_path_factory.mktemp("runs"), monitor_interval=0.05,
                   previews=str(taehv_file), preview_every=1) as generator:
        yield generator


@pytest.fixture(scope="module")
def draft(gen):
    events = []
    off = gen.subscribe(events.append)
    result = gen.generate("a fox in the snow", seed=3, steps=2, num_frames=9, progress=False,
                          decode="taehv", interpolate=2, upscale=2)
    off()
    return result, [e for e in events if e.task_id == result.task_id]


def test_the_processed_video_and_the_original_side_by_side(draft):
    result, _ = draft
    video, original = read_frames(result.video_path), read_frames(result.run_dir / "original.mp4")
    assert original.shape == (9, 32, 32, 3)             # the draft decode: 9 frames at the model's size
    assert video.shape == (17, 64, 64, 3)               # x2 frames (8 pairs -> 17), x2 size
    from wan_nb.models.video_io import frame_count
    import imageio_ffmpeg

    assert frame_count(result.video_path) == 17
    assert imageio_ffmpeg.count_frames_and_secs(str(result.video_path))[1] == pytest.approx(
        imageio_ffmpeg.count_frames_and_secs(str(result.run_dir / "original.mp4"))[1], abs=0.15)  # same length


def test_post_steps_report_their_own_progress_and_one_terminal_event(draft):
    result, events = draft
    post = [e.data for e in events if e.type == "detailed_generation_progress" and e.data.get("post_step")]
    interpolation = [(d["post_done"], d["post_total"]) for d in post if d["post_step"] == "interpolate"]
    upscaling = [(d["post_done"], d["post_total"]) for d in post if d["post_step"] == "upscale"]
    assert interpolation[0] == (0, 8) and interpolation[-1] == (8, 8)
    assert upscaling[0] == (0, 17) and upscaling[-1] == (17, 17)
    assert all(d["stage"] == "post_processing" for d in post)
    assert any("TAEHV" in e.data.get("message", "") for e in events if e.type == "detailed_generation_progress")
    progress = [e.data["progress"] for e in events if e.type == "detailed_generation_progress"]
    assert progress == sorted(progress)
    terminal = [e.type for e in events if e.type in ("generation_completed", "generation_failed", "generation_cancelled")]
    assert terminal == ["generation_completed"]
    previews = [e.data for e in events if e.type == "preview"]
    assert previews and all(p["projection"] == "taehv:taew2_1" for p in previews)
    assert previews[-1]["frames"] == 9                  # TAEHV shows every video frame, not the latent frames


def test_the_recipe_records_it_and_rerun_makes_the_full_quality_video(gen, draft):
    result, _ = draft
    made = recipe(result.video_path)
    assert (made["decode"], made["interpolate"], made["upscale"]) == ("taehv", 2, 2)
    full = gen.rerun(result, decode="vae", interpolate=1, upscale=1, progress=False)
    again = recipe(full.video_path)
    assert "decode" not in again and again["seed"] == made["seed"] == 3
    assert read_frames(full.video_path).shape == (9, 32, 32, 3)
    assert not (full.run_dir / "original.mp4").exists()   # nothing processed: one video


def test_previews_taehv_and_latent2rgb_are_a_grid_axis(gen):
    grid = gen.grid("a fox", x=("previews", "latent2rgb, taehv"), seed=5, steps=1, num_frames=5)
    results = grid.results()
    assert len(results) == 2
    kinds = []
    for task in grid.tasks:
        kinds.append([e.data["projection"] for e in task.events if e.type == "preview"][-1])
    assert kinds == ["wan2.1", "taehv:taew2_1"]
    assert [label["previews"] for label, _ in grid] == ["latent2rgb", "taehv"]


def test_the_cli_flags(tmp_path, taehv_file):
    env = dict(os.environ, WAN_NB_RUNS_DIR=str(tmp_path))
    out = tmp_path / "out.mp4"
    proc = subprocess.run([WAN_NB, "generate", "a fox", "--steps", "1", "--frames", "5",
                           "--seed", "2", "--interpolate", "ffmpeg", "--fps-out", "16", "--upscale", "2",
                           "--upscaler", "lanczos", "--decode", "taehv", "--previews", str(taehv_file),
                           "--out", str(out), "--json"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[-1]["type"] == "generation_completed"
    assert any(e["data"].get("post_step") == "interpolate" for e in events)
    assert read_frames(out).shape == (9, 64, 64, 3)     # tiny: 8 fps -> 16 fps, 5 -> 9 frames
    bad = subprocess.run([WAN_NB, "generate", "a fox", "--interpolate", "3"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "interpolate=3" in bad.stderr and "give 1 (off), 2 or 4" in bad.stderr
