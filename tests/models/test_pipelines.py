"""Every Wan pipeline through the Generator, end to end on the tiny models: video-to-video,
first-last-frame, VACE, Animate; inputs kept in the run folder, rerun, grids, storyboards, CLI."""
import json

import numpy as np
import pytest
from PIL import Image

from wan_nb import Generator, Scene, Storyboard
from wan_nb.protocol.events import validate
from wan_nb.models.user_inputs import pixels_sha256
from wan_nb.runs.recipe import RecipeError
from wan_nb.models.video_io import read_frames, write_mp4


def _clip(seed: int, frames: int = 9, side: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # smooth blobs rather than noise, so H.264 keeps them and the outputs differ visibly
    small = rng.integers(0, 256, size=(frames, 4, 4, 3), dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(f).resize((side, side), Image.Resampling.BILINEAR))
                     for f in small])


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return {"a": write_mp4(_clip(1), folder / "a.mp4", fps=8), "b": write_mp4(_clip(2), folder / "b.mp4", fps=8),
            "folder": folder}


def _run(gen, prompt="a fox", **kwargs):
    seen = []
    off = gen.subscribe(seen.append)
    try:
        result = gen.generate(prompt, progress=False, **kwargs)
        gen.bus.drain(timeout=5)
    finally:
        off()
    mine = [e for e in seen if e.task_id == result.task_id]
    return result, mine


def _kept(result) -> dict:
    return json.loads((result.run_dir / "task.json").read_text())["inputs"]


# -- video-to-video ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def t2v(tmp_path_factory):
    with Generator("tiny", runs_dir=tmp_path_factory.mktemp("runs"), previews=False) as gen:
        yield gen


def test_video_to_video_runs_the_steps_asked_and_keeps_the_video(t2v, clips):
    result, events = _run(t2v, video=clips["a"], strength=0.5, steps=4, seed=3)
    assert events[-1].type == "generation_completed"
    for event in events:
        if event.type != "preview":
            validate(event)
    assert json.loads(events[0].to_json())["data"]["params"]["video"] == str(clips["a"].resolve())
    steps = [e.data["current_step"] for e in events if e.type == "detailed_generation_progress"
             and e.data["stage"] == "generating" and e.data["current_step"]]
    assert steps[-1] == 4 and {e.data["total_steps"] for e in events if e.type == "detailed_generation_progress"} == {4}
    assert read_frames(result.video_path).shape == (9, 32, 32, 3)   # the video's length and size
    kept = _kept(result)["video"]
    assert kept["kind"] == "video" and kept["files"] == ["inputs/video.mp4"]
    copy = result.run_dir / "inputs" / "video.mp4"
    assert copy.read_bytes() == clips["a"].read_bytes()             # the user's MP4, copied as it is
    assert kept["sha256"] == pixels_sha256(read_frames(clips["a"]))
    assert result.inputs == {"video": [copy.resolve()]}
    assert result.params["strength"] == 0.5 and result.params["video"] == str(clips["a"].resolve())


def test_video_to_video_follows_the_video_and_the_strength(t2v, clips):
    frames = {}
    for label, kwargs in {"a.5": dict(video=clips["a"], strength=0.5), "b.5": dict(video=clips["b"], strength=0.5),
                          "a.9": dict(video=clips["a"], strength=0.9)}.items():
        frames[label] = read_frames(_run(t2v, steps=3, seed=5, **kwargs)[0].video_path).astype(int)
    assert np.abs(frames["a.5"] - frames["b.5"]).mean() > 1.0
    assert np.abs(frames["a.5"] - frames["a.9"]).mean() > 0.5


def test_an_in_memory_video_is_kept_as_the_mp4_whose_pixels_the_run_used(t2v):
    clip = _clip(7)
    result, _ = _run(t2v, video=clip, strength=0.6, steps=2, seed=1)
    kept = _kept(result)["video"]
    back = read_frames(result.run_dir / kept["files"][0])
    assert kept["sha256"] == pixels_sha256(back) and back.shape == clip.shape
    # H.264 yuv420p halves the colour resolution: close to the frames given (another clip is ~80 off)
    assert np.abs(back.astype(int) - clip).mean() < 12
    as_list, _ = _run(t2v, video=[Image.fromarray(f) for f in clip], strength=0.6, steps=2, seed=1)
    assert _kept(as_list)["video"]["sha256"] == kept["sha256"]   # same pixels, however given


def test_rerun_remakes_a_video_to_video_run_and_refuses_a_changed_video(t2v, clips, tmp_path):
    source = tmp_path / "mine.mp4"
    source.write_bytes(clips["a"].read_bytes())
    first, _ = _run(t2v, video=source, strength=0.5, steps=2, seed=9)
    again = t2v.rerun(first, progress=False)
    assert np.array_equal(read_frames(again.video_path), read_frames(first.video_path))
    assert _kept(again)["video"]["sha256"] == _kept(first)["video"]["sha256"]

    source.write_bytes(clips["b"].read_bytes())   # the user's file changed
    before = len(t2v.tasks)
    with pytest.raises(RecipeError, match=r"video input .*mine.mp4 has changed.*pass video="):
        t2v.rerun(first, progress=False)
    assert len(t2v.tasks) == before                # refused before anything was queued
    source.unlink()                                 # gone: the run folder's copy is used
    assert np.array_equal(read_frames(t2v.rerun(first, progress=False).video_path), read_frames(first.video_path))
    (first.run_dir / "inputs" / "video.mp4").write_bytes(clips["b"].read_bytes())   # the copy changed too
    with pytest.raises(RecipeError, match="has changed since the recipe was made"):
        t2v.rerun(first, progress=False)


def test_grid_with_strength_as_an_axis(t2v, clips):
    grid = t2v.grid("a fox", x=("strength", [0.3, 0.6, 0.9]), video=clips["a"], steps=2, seed=4)
    results = grid.results(timeout=300)
    assert [r.params["strength"] for r in results] == [0.3, 0.6, 0.9]
    videos = [read_frames(r.video_path).astype(int) for r in results]
    assert np.abs(videos[0] - videos[2]).mean() > 0.5
    again = t2v.grid("a fox", x=("strength", [0.3, 0.6, 0.9]), video=clips["a"], steps=2, seed=4)
    assert [r.video_path for r in again.results(timeout=300)] == [r.video_path for r in results]   # reused
    by_video = t2v.grid("a fox", x=("video", [clips["a"], clips["b"]]), strength=0.5, steps=1, seed=4)
    assert [r.params["video"] for r in by_video.results(timeout=300)] == [str(clips[k].resolve()) for k in "ab"]
    assert list(by_video.x.labels) == ["a.mp4", "b.mp4"]
    json.dumps(by_video.recipe())   # the videos described, not embedded


def test_resume_queue_gets_the_kept_copies(t2v, clips):
    from wan_nb.core.queue import queue_entry

    task = t2v.submit("a fox", video=_clip(3), strength=0.5, steps=1, seed=0)
    entry = queue_entry(t2v.model, task, None)
    task.result(timeout=120)
    assert entry["kwargs"]["video"] == str(task.run_dir / "inputs" / "video.mp4")
    assert entry["kwargs"]["strength"] == 0.5


def test_cli_takes_the_video_flags(clips, tmp_path, capsys):
    from wan_nb.cli.commands import main

    out = tmp_path / "out.mp4"
    code = main(["generate", "a fox", "--model", "tiny", "--video", str(clips["a"]), "--strength", "0.5",
                 "--steps", "2", "--seed", "1", "--out", str(out), "--runs-dir", str(tmp_path / "runs")])
    assert code == 0 and read_frames(out).shape[0] == 9
    assert main(["generate", "a fox", "--model", "tiny", "--reference-image", str(clips["a"]),
                 "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "takes no reference_images" in capsys.readouterr().err


# -- first-last-frame ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def flf2v(tmp_path_factory):
    with Generator("tiny-flf2v", runs_dir=tmp_path_factory.mktemp("runs"), previews=False) as gen:
        yield gen


def test_first_last_frame_follows_both_frames_and_keeps_them(flf2v):
    first, last, other = _clip(1, 1)[0], _clip(2, 1)[0], _clip(3, 1)[0]
    result, events = _run(flf2v, image=first, last_image=last, seed=0)
    assert events[-1].type == "generation_completed"
    assert read_frames(result.video_path).shape == (9, 32, 32, 3)
    kept = _kept(result)
    assert {n: e["kind"] for n, e in kept.items()} == {"image": "image", "last_image": "image"}
    assert np.array_equal(np.asarray(Image.open(result.inputs["last_image"][0])), last)
    changed, _ = _run(flf2v, image=first, last_image=other, seed=0)
    assert np.abs(read_frames(result.video_path).astype(int) - read_frames(changed.video_path)).mean() > 0.5
    again = flf2v.rerun(result, progress=False)
    assert np.array_equal(read_frames(again.video_path), read_frames(result.video_path))


def test_storyboard_joins_scenes_with_first_last_frame_transitions(flf2v, tmp_path):
    keys = [Image.fromarray(_clip(s, 1)[0]) for s in (11, 12, 13, 14)]
    scenes = [Scene("a fox wakes", image=keys[0]), Scene("the fox runs", image=keys[1], last_image=keys[2]),
              Scene("the fox sleeps", last_image=keys[3])]
    board = Storyboard(flf2v, scenes, continuity="flf2v", seed=0)
    # scene 1 ends on scene 2's key frame; scene 3 starts from scene 2's last frame as made
    assert np.array_equal(np.asarray(board._params[0]["last_image"]), np.asarray(keys[1]))
    with pytest.raises(ValueError, match="scene 1: .* give scene 1 last_image= or scene 2 image="):
        Storyboard(flf2v, [Scene("a", image=keys[0]), Scene("b", last_image=keys[1])], continuity="flf2v")
    result = board.run(progress=False)
    assert len(result.scene_videos) == 3 and read_frames(result.final_video_path).shape[0] == 27
    scene3 = result.scene_results[2]
    assert set(scene3.inputs) == {"image", "last_image"}
    start = np.asarray(Image.open(scene3.inputs["image"][0])).astype(int)
    assert np.abs(start - read_frames(result.scene_videos[1])[-1]).mean() < 1.0
    with Generator("tiny", runs_dir=tmp_path, previews=False) as text_only:
        with pytest.raises(ValueError, match="needs a first-last-frame model"):
            Storyboard(text_only, ["a", "b"], continuity="flf2v")


# -- VACE --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vace(tmp_path_factory):
    with Generator("tiny-vace", runs_dir=tmp_path_factory.mktemp("runs"), previews=False) as gen:
        yield gen


def test_vace_with_control_video_mask_and_reference_images(vace, clips):
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (8, 8, 24, 24))   # repaint the middle, keep the rest of the control video
    refs = [Image.fromarray(_clip(4, 1)[0]), Image.fromarray(_clip(5, 1)[0])]
    result, events = _run(vace, video=clips["a"], mask=mask, reference_images=refs, seed=0)
    assert events[-1].type == "generation_completed"
    assert read_frames(result.video_path).shape == (9, 32, 32, 3)   # the reference frames are dropped
    kept = _kept(result)
    assert {n: (e["kind"], e["files"]) for n, e in kept.items()} == {
        "video": ("video", ["inputs/video.mp4"]), "mask": ("image", ["inputs/mask.png"]),
        "reference_images": ("images", ["inputs/reference_images_0.png", "inputs/reference_images_1.png"])}
    assert [p.name for p in result.inputs["reference_images"]] == ["reference_images_0.png", "reference_images_1.png"]
    only_refs, _ = _run(vace, reference_images=refs[:1], seed=0)
    assert read_frames(only_refs.video_path).shape == (9, 32, 32, 3)
    other, _ = _run(vace, video=clips["b"], mask=mask, reference_images=refs, seed=0)
    assert np.abs(read_frames(result.video_path).astype(int) - read_frames(other.video_path)).mean() > 0.5


# -- Animate -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def animate(tmp_path_factory):
    with Generator("tiny-animate", runs_dir=tmp_path_factory.mktemp("runs"), previews=False) as gen:
        yield gen


def test_animate_and_replace(animate, clips):
    character = _clip(6, 1)[0]
    face = _clip(8, side=16)
    result, events = _run(animate, image=character, pose_video=clips["a"], face_video=face, seed=0)
    assert events[-1].type == "generation_completed" and result.params["mode"] == "animate"
    assert read_frames(result.video_path).shape == (9, 32, 32, 3)
    assert set(_kept(result)) == {"image", "pose_video", "face_video"}
    replaced, _ = _run(animate, image=character, pose_video=clips["a"], face_video=face, mode="replace",
                       background_video=clips["b"], mask=np.full((9, 32, 32), 255, np.uint8), seed=0)
    assert set(_kept(replaced)) == {"image", "pose_video", "face_video", "background_video", "mask"}
    assert read_frames(replaced.video_path).shape == (9, 32, 32, 3)
    short, _ = _run(animate, image=character, pose_video=clips["a"], face_video=face, num_frames=5, seed=0)
    assert read_frames(short.video_path).shape[0] == 5   # the first 5 frames of each video
