"""Storyboards end to end on the built-in tiny models: frames, events, failure + resume, cancel,
continuity from the previous scene's last frame."""
import json
import os

import numpy as np
import pytest

from wan_nb import Generator, Scene, Storyboard
from wan_nb.protocol.events import validate
from wan_nb.runs.journal import read_events
from wan_nb.storyboard.stitch import stitch
from wan_nb.storyboard import StoryboardCancelled, StoryboardError, split_story
from wan_nb.models.video_io import frame_count, read_frames

from _storyboard_helpers import Recorder, assert_seed_order

FAST = dict(steps=2)  # 32x32 is the tiny model's default size


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    with Generator(model="tiny", runs_dir=tmp_path_factory.mktemp("runs"), previews=False,
                   monitor_interval=0.5) as generator:
        yield generator


def storyboard_events(recorder, board):
    return [e for e in recorder.of(board.id) if e.type == "storyboard_progress"]


def test_three_scenes_cut_keep_every_frame_and_report_each_scene(gen, recorder):
    board = Storyboard(gen, ["a fox wakes in the snow", Scene("the fox runs", num_frames=13),
                             Scene("the fox sleeps", seconds=0.6)], transition="cut", seed=7,
                       progress_interval=0, **FAST)
    assert board.scene_frames == [9, 13, 5]  # 0.6 s at 8 fps -> nearest 4k+1 frame count
    result = board.run(progress=False)

    # frame counts: each scene as asked, the cut is their sum
    assert [frame_count(p) for p in result.scene_videos] == [9, 13, 5]
    assert frame_count(result.final_video_path) == result.frames == 27 == board.frames
    assert result.scene_videos == [board.folder / "scenes" / f"scene_0{i}.mp4" for i in (1, 2, 3)]
    assert result.final_video_path == board.folder / "final.mp4"

    events = storyboard_events(recorder, board)
    for event in events:
        validate(event)
    assert_seed_order(events)
    assert [s for s in dict.fromkeys(e.data["step"] for e in events)] == \
        ["init", "story", "scenes", "video_params", "videos", "stitch", "complete"]
    assert [e for e in events if e.is_terminal] == [events[-1]]
    last = events[-1].data
    assert last["step"] == "complete" and last["status"] == "completed" and last["progress"] == 100
    assert last["data"]["final_video_path"] == str(result.final_video_path)
    assert list(last["data"]["scene_videos"]) == [str(p) for p in result.scene_videos]
    assert last["data"]["video_url"] == f"wan-nb/api/tasks/{board.id}/video"
    assert last["data"]["scene_urls"][1] == f"wan-nb/api/tasks/{board.id}/video/scenes/2"

    # each scene is announced, with its path, as soon as it is done - before the next starts
    announced = [e for e in events if "scene_video" in e.data["data"]]
    assert [e.data["data"]["scene_index"] for e in announced] == [1, 2, 3]
    for n, event in enumerate(announced, 1):
        assert event.data["data"]["scene_video"] == str(result.scene_videos[n - 1])
        assert list(event.data["data"]["scene_videos"]) == [str(p) for p in result.scene_videos[:n]]
        assert event.data["data"]["scene_url"] == f"wan-nb/api/tasks/{board.id}/video/scenes/{n}"
    started_2 = next(e for e in events if e.data["data"].get("scene_index") == 2)
    assert announced[0].seq < started_2.seq

    # scene tasks are ordinary tasks carrying the storyboard id, with their own valid events
    children = recorder.children(board.id)
    assert len(children) == 3
    for task_events in children.values():
        for event in task_events:
            validate(event)
        assert task_events[-1].type == "generation_completed"

    # the run folder: journal == what was published; task.json marks a storyboard
    folder = board.folder
    assert list(read_events(folder / "events.jsonl")) == gen.bus.history(board.id)
    info = json.loads((folder / "task.json").read_text())
    assert info["task_id"] == board.id and info["kind"] == "storyboard"
    state = json.loads((folder / "storyboard.json").read_text())
    assert state["status"] == "completed" and [s["status"] for s in state["scenes"]] == ["completed"] * 3


def test_progress_moves_with_every_denoising_step_of_every_scene(gen, recorder):
    board = Storyboard(gen, ["a red car", "a blue car"], seed=1, progress_interval=0, steps=3, num_frames=5)
    board.run(progress=False)
    events = storyboard_events(recorder, board)
    for scene in (1, 2):
        steps = [e for e in events if e.data["data"].get("scene_index") == scene
                 and e.data["data"].get("current_step")]
        seen = sorted({e.data["data"]["current_step"] for e in steps})
        assert seen == [1, 2, 3]
        by_step = {e.data["data"]["current_step"]: e.data["progress"] for e in steps}
        assert by_step[1] < by_step[2] < by_step[3]  # each step moves the storyboard's bar
    videos = [e.data["progress"] for e in events if e.data["step"] == "videos"]
    assert len(set(videos)) >= 8 and 20 <= min(videos) and max(videos) <= 90


def test_progress_events_are_coalesced_to_the_interval(gen, recorder):
    board = Storyboard(gen, ["a bird", "a tree"], seed=2, progress_interval=60, steps=3, num_frames=5)
    board.run(progress=False)
    step_events = [e for e in storyboard_events(recorder, board) if "current_step" in e.data["data"]]
    assert len(step_events) == 1  # at most one a minute; scene boundaries are reported apart


def test_crossfade_shortens_the_total_by_the_overlaps(gen, tmp_path):
    board = Storyboard(gen, ["sea", "sky", "city"], transition="crossfade", crossfade=0.25, seed=3,
                       num_frames=9, **FAST)
    result = board.run(progress=False)
    # 3 x 9 frames at 8 fps = 3.375 s; two crossfades of 0.25 s (2 frames) -> 2.875 s, 23 frames
    assert frame_count(result.final_video_path) == 23 == result.frames == board.frames
    assert result.duration_s == pytest.approx(3 * 9 / 8 - 2 * 0.25)
    # the same scenes cut: the full 27 frames (stitching is frame-exact both ways)
    cut = stitch(result.scene_videos, tmp_path / "cut.mp4", fps=8, transition="cut")
    assert frame_count(cut) == 27
    frames = read_frames(result.final_video_path)
    scene_1, scene_2 = read_frames(result.scene_videos[0]), read_frames(result.scene_videos[1])
    # before the fade: scene 1 as is; inside it: a blend of the end of 1 and the start of 2
    assert np.abs(frames[0].astype(int) - scene_1[0]).mean() < 4
    mid = frames[8].astype(int)  # the second frame of the first fade (7 and 8 overlap)
    assert np.abs(mid - scene_1[8]).mean() > 1 and np.abs(mid - scene_2[1]).mean() > 1


def test_failure_in_scene_2_names_it_keeps_scene_1_and_resume_makes_only_the_rest(gen, recorder):
    board = Storyboard(gen, ["a calm river", "a storm over the river", "a rainbow"], seed=4, **FAST)
    transformer = gen.pipeline.transformer if gen.pipeline is not None else None
    if transformer is None:  # load the model first (a one-frame run), so the fault can be placed
        gen.generate("warm up", num_frames=1, steps=1, progress=False)
        transformer = gen.pipeline.transformer
    real_forward = transformer.forward

    def fails_in_the_storm(*args, **kwargs):
        # A real fault inside the real pipeline, only while scene 2's task denoises.
        current = gen.current_task
        if current is not None and current.prompt == "a storm over the river":
            raise RuntimeError("injected fault in scene 2")
        return real_forward(*args, **kwargs)

    transformer.forward = fails_in_the_storm
    try:
        handle = board.submit()
        with pytest.raises(StoryboardError) as info:
            handle.result(timeout=120)
    finally:
        del transformer.forward
    assert info.value.failed_scene == 2 and "Scene 2 of 3" in str(info.value)
    assert handle.status == "failed" and handle.scene_status == ["completed", "failed", "pending"]
    events = storyboard_events(recorder, board)
    for event in events:
        validate(event)
    last = events[-1]
    assert last.is_terminal and last.data["status"] == "failed" and last.data["step"] == "videos"
    assert "scene 2" in last.data["message"].lower()
    assert last.data["data"]["failed_scene"] == 2 and last.data["data"]["error"] == "injected fault in scene 2"
    assert list(last.data["data"]["scene_videos"]) == [str(board.scene_path(1))]
    assert board.scene_path(1).is_file() and not board.scene_path(2).exists()
    assert not board.final_path.exists()
    scene_1_inode = os.stat(board.scene_path(1)).st_ino
    before = set(recorder.children(board.id))

    result = board.resume(progress=False)
    made = [t for t in recorder.children(board.id) if t not in before]
    prompts = [gen.task(t).prompt for t in made]
    assert prompts == ["a storm over the river", "a rainbow"]  # scene 1 was not made again
    assert result.scene_results[0] is None and result.scene_results[1] is not None
    assert os.stat(board.scene_path(1)).st_ino == scene_1_inode
    assert frame_count(result.final_video_path) == 27
    resumed = storyboard_events(recorder, board)[len(events):]
    assert_seed_order(resumed)
    assert resumed[-1].data["step"] == "complete"
    reused = [e for e in resumed if e.data["data"].get("scene_reused")]
    assert [e.data["data"]["scene_index"] for e in reused] == [1]
    assert list(read_events(board.folder / "events.jsonl")) == gen.bus.history(board.id)


def test_resume_makes_a_scene_again_when_its_parameters_changed(gen, recorder):
    board = Storyboard(gen, ["a dog", "a cat"], seed=5, num_frames=1, steps=1)
    board.run(progress=False)
    changed = Storyboard(gen, ["a dog", Scene("a cat", steps=2), "a bird"], seed=5, id=board.id, num_frames=1,
                         steps=1)
    before = set(recorder.children(board.id))
    result = changed.resume(progress=False)
    made = [gen.task(t).prompt for t in recorder.children(board.id) if t not in before]
    assert made == ["a cat", "a bird"]  # the dog is unchanged; the cat has other steps; the bird is new
    assert frame_count(result.final_video_path) == 3


def test_cancel_in_the_middle_stops_the_scene_and_skips_the_rest(gen, recorder):
    board = Storyboard(gen, ["one", "two", "three"], seed=6, steps=6)
    handle = None

    def cancel_in_scene_2(task, step, *_):
        if task.parent_id == board.id and task.prompt == "two" and step == 2:
            handle.cancel()

    off = gen.add_step_hook(cancel_in_scene_2)
    try:
        handle = board.submit()
        with pytest.raises(StoryboardCancelled) as info:
            handle.result(timeout=120)
    finally:
        off()
    assert info.value.scene == 2 and handle.status == "cancelled"
    assert handle.scene_status == ["completed", "cancelled", "pending"]
    children = recorder.children(board.id)
    assert len(children) == 2  # scene 3 never started
    scene_2 = list(children.values())[1]
    assert scene_2[-1].type == "generation_cancelled" and scene_2[-1].data["current_step"] == 2
    events = storyboard_events(recorder, board)
    last = events[-1]
    validate(last)
    assert last.is_terminal and last.data["status"] == "cancelled"
    assert last.data["data"]["cancelled_scene"] == 2 and "scene 2" in last.data["message"]
    assert board.scene_path(1).is_file() and not board.final_path.exists()
    assert not handle.cancel()  # already over


def test_continuity_starts_each_scene_from_the_last_frame_of_the_one_before(tmp_path):
    start = np.zeros((32, 32, 3), np.uint8)
    start[:, :16] = (220, 40, 40)
    with Generator(model="tiny-i2v", runs_dir=tmp_path, previews=False) as gen_i2v:
        rec = Recorder()
        gen_i2v.subscribe(rec)
        board = Storyboard(gen_i2v, [Scene("a red door", image=start), "the door opens", "a hallway"],
                           continuity="last_frame", seed=0, num_frames=5, **FAST)
        result = board.run(progress=False)
        tasks = [gen_i2v.task(t) for t in rec.children(board.id)]
        assert [t.prompt for t in tasks] == ["a red door", "the door opens", "a hallway"]
        assert np.array_equal(np.asarray(tasks[0].params["image"]), start)
        for before, task in zip(result.scene_videos, tasks[1:]):
            # the conditioning image of scene n+1 is exactly the decoded last frame of scene n
            assert np.array_equal(np.asarray(task.params["image"]), read_frames(before)[-1])
        assert frame_count(result.final_video_path) == 15
        started = [e for e in rec.events if e.type == "generation_started" and e.task_id == tasks[1].id]
        assert started[0].data["params"]["image"].startswith("<Image")


def test_bad_storyboards_fail_before_any_work(gen, tmp_path):
    with pytest.raises(ValueError, match="transition='wipe'"):
        Storyboard(gen, ["a"], transition="wipe")
    with pytest.raises(ValueError, match="shortest scene has only 5 frames"):
        Storyboard(gen, ["a", "b"], transition="crossfade", crossfade=1.0, num_frames=5)
    with pytest.raises(ValueError, match="image-to-video model"):
        Storyboard(gen, ["a", "b"], continuity="last_frame")
    with pytest.raises(ValueError, match=r"scene 2 .*num_frames=10"):
        Storyboard(gen, ["a", Scene("b", num_frames=10)])
    with pytest.raises(ValueError, match="scene 2: image="):
        Storyboard(gen, ["a", Scene("b", image=tmp_path / "missing.png")])
    with pytest.raises(ValueError, match="same height and width"):
        Storyboard(gen, ["a", Scene("b", height=64)])
    with pytest.raises(TypeError, match="fps is set on the Storyboard"):
        Scene("a", fps=16)
    with pytest.raises(TypeError, match="unknown argument"):
        Storyboard(gen, ["a"], num_step=3)
    with pytest.raises(ValueError, match="at least one scene"):
        Storyboard(gen, [])
    assert not any(gen.runs_dir.glob("*/final.mp4.part.mp4"))


def test_i2v_storyboard_needs_a_first_image(tmp_path):
    with Generator(model="tiny-i2v", runs_dir=tmp_path) as gen_i2v:
        with pytest.raises(ValueError, match="scene 1: .*image"):
            Storyboard(gen_i2v, ["a", "b"], continuity="last_frame")


def test_a_scene_whose_image_cannot_be_read_fails_the_storyboard_at_that_scene(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    good = np.full((32, 32, 3), 128, np.uint8)
    with Generator(model="tiny-i2v", runs_dir=tmp_path / "runs", previews=False) as gen_i2v:
        rec = Recorder()
        gen_i2v.subscribe(rec)
        board = Storyboard(gen_i2v, [Scene("a", image=good), Scene("b", image=broken)], seed=0,
                           num_frames=5, steps=1)
        with pytest.raises(StoryboardError) as info:
            board.run(progress=False)
        gen_i2v.bus.drain()
        assert info.value.failed_scene == 2 and "broken.png" in str(info.value)
        last = [e for e in rec.of(board.id)][-1]
        assert last.data["status"] == "failed" and last.data["data"]["failed_scene"] == 2
        assert board.scene_path(1).is_file()


def test_from_story_splits_by_paragraph_or_sentence_and_adds_the_style(gen):
    story = "A fox wakes up.\nIt is cold.\n\nThe fox runs to the river!\n\n\nIt drinks."
    assert split_story(story) == ["A fox wakes up. It is cold.", "The fox runs to the river!", "It drinks."]
    assert split_story("One. Two? Three!  Four") == ["One.", "Two?", "Three!", "Four"]
    board = Storyboard.from_story("A fox wakes. It runs.", style="watercolor", gen=gen, seed=0)
    assert [s.prompt for s in board.scenes] == ["A fox wakes, watercolor", "It runs, watercolor"]
    assert board.story == "A fox wakes. It runs."
    board = Storyboard.from_story("anything", writer=lambda text: ["shot one", " ", "shot two"], gen=gen)
    assert [s.prompt for s in board.scenes] == ["shot one", "shot two"]
    with pytest.raises(TypeError, match="list of scene prompt"):
        Storyboard.from_story("x", writer=lambda text: "one string", gen=gen)
    with pytest.raises(ValueError, match="no scene prompts"):
        Storyboard.from_story("x", writer=lambda text: [], gen=gen)
    with pytest.raises(ValueError, match="empty"):
        Storyboard.from_story("  ", gen=gen)


def test_resume_from_another_process_by_id_keeps_one_journal_numbering(gen, tmp_path):
    board = Storyboard(gen, ["a fox", "a cat"], seed=8, num_frames=1, steps=1)
    board.run(progress=False)
    board.scene_path(2).unlink()  # as if the kernel died before scene 2 was kept
    # a new kernel: a new generator (new bus), the same runs folder, the storyboard rebuilt by id
    with Generator(model="tiny", runs_dir=gen.runs_dir, previews=False) as fresh:
        again = Storyboard(fresh, ["a fox", "a cat"], seed=8, id=board.id, num_frames=1, steps=1)
        result = again.resume(progress=False)
    assert result.scene_results[0] is None and result.scene_results[1] is not None
    seqs = [e.seq for e in read_events(board.folder / "events.jsonl")]
    assert seqs == list(range(1, len(seqs) + 1))  # no seq twice: servers resume by it
