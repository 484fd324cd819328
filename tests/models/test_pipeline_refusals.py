"""Every bad input to the Wan pipelines is refused at submit, with the fix in the message, before any
model work: no task is queued and no model is loaded."""
import numpy as np
import pytest
from PIL import Image

from wan_nb import Generator
from wan_nb.core.params import InvalidParameter
from wan_nb.models.pipelines import schedule_steps
from wan_nb.models.video_io import write_mp4

MODELS = ("tiny", "tiny-a14b", "tiny-i2v", "tiny-flf2v", "tiny-vace", "tiny-animate")


@pytest.fixture(scope="module")
def gens(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    made = {name: Generator(name, runs_dir=runs, previews=False) for name in MODELS}
    yield made
    for gen in made.values():
        assert gen.pipeline is None and not gen.tasks   # nothing was ever loaded or queued
        gen.close()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    clip = np.random.default_rng(0).integers(0, 256, size=(9, 32, 32, 3), dtype=np.uint8)
    broken = folder / "broken.mp4"
    broken.write_bytes(b"this is not a video" * 50)
    Image.fromarray(clip[0]).save(folder / "frame.png")
    return {"clip": clip, "mp4": write_mp4(clip, folder / "clip.mp4", fps=8),
            "ten": write_mp4(np.concatenate([clip, clip[:1]]), folder / "ten.mp4", fps=8),
            "broken": broken, "folder": folder, "picture": clip[0], "png": folder / "frame.png"}


def refused(gen, match, **kwargs):
    with pytest.raises((InvalidParameter, ValueError, TypeError), match=match):
        gen.submit("a fox", **kwargs)


# -- an input given to a model that cannot take it ----------------------------------------------
@pytest.mark.parametrize("model, name, value, fix", [
    ("tiny", "reference_images", "picture", "takes no reference_images; use a VACE model"),
    ("tiny", "last_image", "picture", "takes no last_image; use a first-last-frame model"),
    ("tiny", "pose_video", "mp4", "takes no pose_video; use Wan Animate"),
    ("tiny", "mode", "animate", "takes no mode"),
    ("tiny-i2v", "video", "mp4", "takes no video"),
    ("tiny-vace", "last_image", "picture", "takes no last_image"),
    ("tiny-flf2v", "mask", "picture", "takes no mask"),
    ("tiny-animate", "reference_images", "picture", "takes no reference_images"),
])
def test_an_input_the_model_cannot_take(gens, media, model, name, value, fix):
    extra = {"image": media["picture"], "last_image": media["picture"]} if model in ("tiny-i2v", "tiny-flf2v") else {}
    if model == "tiny-animate":
        extra = {"image": media["picture"], "pose_video": media["mp4"], "face_video": media["mp4"]}
    refused(gens[model], fix, **{**extra, name: media.get(value, value)})


def test_two_expert_models_do_not_do_video_to_video(gens, media):
    refused(gens["tiny-a14b"], "two experts.*one-transformer text-to-video model", video=media["mp4"])


def test_strength_needs_a_video_and_a_vace_mask_needs_one_too(gens, media):
    refused(gens["tiny"], "strength=0.5.*pass video= too", strength=0.5)
    refused(gens["tiny-vace"], "mask.*pass video= too", mask=media["picture"])
    refused(gens["tiny-vace"], "takes no strength", video=media["mp4"], strength=0.5)


@pytest.mark.parametrize("strength, nearest", [(0, "0.05"), (1.5, "1"), (-1, "0.05"), ("high", "0.8")])
def test_strength_out_of_range(gens, media, strength, nearest):
    refused(gens["tiny"], f"strength.*above 0 and at most 1.*nearest valid value: {nearest}",
            video=media["mp4"], strength=strength)


# -- a required input missing --------------------------------------------------------------------
def test_missing_required_inputs(gens, media):
    refused(gens["tiny-flf2v"], "needs last_image=", image=media["picture"])
    refused(gens["tiny-flf2v"], "image-to-video: pass image=", last_image=media["picture"])
    refused(gens["tiny-animate"], "needs pose_video=", image=media["picture"], face_video=media["mp4"])
    refused(gens["tiny-animate"], "needs face_video=", image=media["picture"], pose_video=media["mp4"])
    refused(gens["tiny-animate"], "pass image=", pose_video=media["mp4"], face_video=media["mp4"])
    animate = dict(image=media["picture"], pose_video=media["mp4"], face_video=media["mp4"])
    refused(gens["tiny-animate"], "mode='replace' needs background_video=", mode="replace", mask=media["mp4"], **animate)
    refused(gens["tiny-animate"], "mode='replace' needs mask=", mode="replace", background_video=media["mp4"], **animate)
    refused(gens["tiny-animate"], "only with mode='replace'", background_video=media["mp4"], **animate)
    refused(gens["tiny-animate"], "mode='dance'.*choose 'animate'.*or 'replace'", mode="dance", **animate)


# -- wrong frame counts and sizes ----------------------------------------------------------------
def test_a_frame_count_that_is_not_4k_plus_1_names_the_nearest(gens, media):
    refused(gens["tiny"], r"has 10 frames; Wan makes 4k\+1 frames, so pass num_frames=9", video=media["ten"])
    refused(gens["tiny-animate"], r"pose_video.*has 10 frames.*num_frames=9", image=media["picture"],
            pose_video=media["ten"], face_video=media["ten"])


def test_a_video_shorter_than_num_frames(gens, media):
    refused(gens["tiny"], r"video.*has 9 frames, fewer than num_frames=13; pass num_frames=9",
            video=media["mp4"], num_frames=13)
    refused(gens["tiny-vace"], r"mask.*has 5 frames, fewer than num_frames=9; pass num_frames=5",
            video=media["mp4"], mask=media["clip"][:5])
    refused(gens["tiny-animate"], r"face_video.*has 5 frames, fewer than num_frames=9",
            image=media["picture"], pose_video=media["mp4"], face_video=media["clip"][:5])
    refused(gens["tiny-animate"], "at least 5 frames", image=media["picture"], pose_video=media["mp4"],
            face_video=media["mp4"], num_frames=1)


def test_wrong_sizes(gens, media):
    refused(gens["tiny"], "height=44: must be a multiple of 16.*nearest valid value: 48", video=media["mp4"], height=44)
    odd = np.zeros((5, 31, 32, 3), np.uint8)
    refused(gens["tiny"], "32x31: an H.264 MP4 needs even sides", video=odd)
    mixed = [np.zeros((32, 32, 3), np.uint8), np.zeros((16, 32, 3), np.uint8)]
    refused(gens["tiny"], "frames differ in size", video=mixed)
    refused(gens["tiny"], r"shape \(9, 32\) is not a video", video=np.zeros((9, 32), np.uint8))
    refused(gens["tiny"], r"shape \(32, 32, 3\) is one picture; a video is \(frames", video=media["picture"])
    mask = gens["tiny-vace"].check("a fox", video=media["mp4"], mask=media["picture"])["mask"]
    assert mask.size == (32, 32)   # one RGB array as a mask: the same picture on every frame


def test_the_video_sets_size_and_length_when_none_is_given(gens, media):
    wide = write_mp4(np.zeros((5, 32, 64, 3), np.uint8), media["folder"] / "wide.mp4", fps=8)
    params = gens["tiny"].check("a fox", video=wide)
    assert params["num_frames"] == 5 and params["width"] > params["height"]   # landscape, as the video
    assert gens["tiny"].check("a fox", video=wide, height=32)["width"] == 64
    assert gens["tiny"].check("a fox", video=wide, num_frames=1)["num_frames"] == 1


# -- unreadable files ----------------------------------------------------------------------------
def test_unreadable_and_missing_files(gens, media):
    refused(gens["tiny"], "broken.mp4.*is not a readable video", video=media["broken"])
    refused(gens["tiny"], "nope.mp4.*no such file", video=media["folder"] / "nope.mp4")
    refused(gens["tiny"], "is a folder; pass the path of one video file", video=media["folder"])
    refused(gens["tiny-flf2v"], "last_image.*not a readable image", image=media["picture"], last_image=media["broken"])
    refused(gens["tiny-vace"], r"reference_images\[1\].*no such file", reference_images=[media["png"], "gone.png"])
    refused(gens["tiny"], "expected an MP4 path, a list of pictures", video=12)


def test_schedule_runs_exactly_the_steps_asked():
    for steps in (1, 2, 4, 7, 30, 50):
        for strength in (0.05, 0.3, 0.5, 0.6, 0.8, 0.99, 1.0):
            n = schedule_steps(steps, strength)
            assert min(int(n * strength), n) == steps                     # what diffusers then runs
            assert n == steps or min(int((n - 1) * strength), n - 1) < steps   # the smallest such n
