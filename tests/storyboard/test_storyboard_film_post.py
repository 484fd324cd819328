"""A storyboard interpolates and upscales its stitched film once, not each scene: the scenes stay
as the model made them, the film is processed after the stitch with progress events of its own
(the ``stitch`` step, ``post_step`` / ``post_done`` / ``post_total``), and the unprocessed film
stays beside it as ``original.mp4``. Bad post arguments are refused before any scene renders."""
import pytest

from wan_nb import Generator, Scene, Storyboard
from wan_nb.models.video_io import frame_count, read_frames
from wan_nb.protocol.errors import InvalidParameter
from wan_nb.protocol.events import validate

from _storyboard_helpers import assert_seed_order


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    with Generator(model="tiny", runs_dir=tmp_path_factory.mktemp("runs"), previews=False,
                   monitor_interval=0.5) as generator:
        yield generator


def test_the_stitched_film_is_interpolated_and_upscaled_once(gen):
    events = []
    off = gen.subscribe(events.append)
    board = Storyboard(gen, ["a fox wakes", "the fox runs"], seed=3, steps=1, num_frames=5,
                       progress_interval=0, interpolate=2, upscale=2)
    assert (board.frames, board.output_fps) == (19, 2 * board.fps)    # 10 stitched frames, 9 pairs -> 19
    result = board.run(progress=False)
    off()
    # each scene as the model made it: not interpolated, not upscaled
    assert [read_frames(p).shape for p in result.scene_videos] == [(5, 32, 32, 3)] * 2
    assert read_frames(board.folder / "original.mp4").shape == (10, 32, 32, 3)
    assert read_frames(result.final_video_path).shape == (19, 64, 64, 3)
    assert result.frames == frame_count(result.final_video_path) == 19 and result.fps == 2 * board.fps

    mine = [e for e in events if e.task_id == board.id and e.type == "storyboard_progress"]
    for event in mine:
        validate(event)
    assert_seed_order(mine)
    post = [e.data for e in mine if e.data["data"].get("post_step")]
    assert all(d["step"] == "stitch" and d["status"] == "in_progress" for d in post)
    pairs = [(d["data"]["post_done"], d["data"]["post_total"]) for d in post if d["data"]["post_step"] == "interpolate"]
    frames = [(d["data"]["post_done"], d["data"]["post_total"]) for d in post if d["data"]["post_step"] == "upscale"]
    assert pairs[0] == (0, 9) and pairs[-1] == (9, 9)       # the film's pairs, once: not 4 + 4 per scene
    assert frames[0] == (0, 19) and frames[-1] == (19, 19)
    assert mine[-1].data["data"]["fps"] == 2 * board.fps and mine[-1].data["data"]["frames"] == 19
    # the scenes' own tasks did no post step at all
    scene_ids = {e.task_id for e in events if e.type == "generation_started"
                 and e.data["params"].get("storyboard_id") == board.id}
    assert len(scene_ids) == 2
    assert not [e for e in events if e.task_id in scene_ids and e.data.get("post_step")]


def test_post_arguments_are_checked_against_the_film_before_any_scene(gen):
    before = len(gen.tasks)
    with pytest.raises(InvalidParameter, match="give 1 \\(off\\), 2 or 4"):
        Storyboard(gen, ["a", "b"], steps=1, num_frames=5, interpolate=3)
    with pytest.raises(InvalidParameter, match="output limit"):
        Storyboard(gen, ["a", "b"], steps=1, num_frames=5, height=1024, width=1024, upscale=4)
    with pytest.raises(TypeError, match="set on the Storyboard"):
        Scene("a fox", interpolate=2)
    assert len(gen.tasks) == before
