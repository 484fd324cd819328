"""Post-processing arguments are checked before any model work, each refusal naming the fix, and the
generator keeps working afterwards."""
import pytest

from wan_nb.core.params import InvalidParameter
from wan_nb.post import options


@pytest.mark.parametrize("kwargs, match", [
    ({"interpolate": 3, "fps": 16}, r"interpolate=3: give 1 \(off\), 2 or 4.*interpolate='ffmpeg', fps_out=48"),
    ({"interpolate": "rife9"}, "give 1 \\(off\\), 2 or 4"),
    ({"decode": "fast"}, "give 'vae'.*or 'taehv'"),
    ({"upscale": 5}, "from 1 \\(off\\) to 4"),
    ({"height": 720, "width": 1280, "upscale": 4}, r"would make 5120x2880, above the 3840-pixel output limit; use upscale=3"),
    ({"upscale": 2, "upscaler": "/nowhere/RealESRGAN_x2.pth"}, "no such file.*upscaler='lanczos'"),
    ({"upscale": 2, "upscaler": "lanczos2"}, "no such file"),
    ({"upscaler": "lanczos2"}, "is set but upscale=1; pass upscale=2"),
    ({"fps_out": 8}, "above the run's fps"),
    ({"interpolate": 2, "fps": 16, "fps_out": 48}, "interpolate=2 makes 32 fps"),
    ({"previews": "fancy"}, "'auto', 'taehv', 'latent2rgb' or False"),
])
def test_bad_post_arguments_are_refused_with_the_fix(gen, kwargs, match):
    with pytest.raises(InvalidParameter, match=match):
        gen.check("a fox", **kwargs)


def test_an_upscaler_file_is_checked_for_its_name_not_for_spandrel(tmp_path):
    """The options read no file: a missing one or a wrong suffix is refused, an existing one passes
    (its network is checked by wan_nb.post.checkpoints, which reads it)."""
    p = {"height": 32, "width": 32, "num_frames": 9, "fps": 16, "upscale": 2}
    with pytest.raises(InvalidParameter, match="no such file"):
        options.check_post(dict(p, upscaler=str(tmp_path / "missing.pth")), {})
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InvalidParameter, match=r"\.pth or \.safetensors"):
        options.check_post(dict(p, upscaler=str(tmp_path / "notes.txt")), {})
    weights = tmp_path / "RealESRGAN_x2plus.pth"
    weights.write_bytes(b"\0")
    options.check_post(dict(p, upscaler=str(weights)), {})


def test_defaults_fps_out_and_frame_counts(gen):
    p = gen.check("a fox")
    assert (p["decode"], p["interpolate"], p["upscale"], p["upscaler"]) == ("vae", 1, 1, None)
    assert options.post_steps(p) == [] and options.recipe_fields(p) == {}
    p = gen.check("a fox", num_frames=81, fps=16, fps_out=32)
    assert p["interpolate"] == 2 and options.interpolated_frames(p) == 161 and options.output_fps(p) == 32
    p = gen.check("a fox", num_frames=81, fps=16, fps_out=24)       # not a x2 / x4: ffmpeg
    assert p["interpolate"] == "ffmpeg" and options.interpolated_frames(p) == 121
    p = gen.check("a fox", upscale=2)
    assert p["upscaler"] == "lanczos" and options.output_size(p) == (2 * p["height"], 2 * p["width"])
    assert options.recipe_fields(p) == {"upscale": 2}


def test_the_generator_keeps_working_after_a_refusal(gen):
    with pytest.raises(InvalidParameter):
        gen.submit("a fox", interpolate=3)
    assert gen.queue == []
    result = gen.generate("a fox", seed=1, steps=1, num_frames=5, progress=False, interpolate=2)
    from wan_nb.models.video_io import frame_count

    assert frame_count(result.video_path) == 9
