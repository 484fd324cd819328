"""Generation arguments refused or completed before any model work: caps, image size, flow shift."""
import tracemalloc

import numpy as np
import pytest

from wan_nb import Generator
from wan_nb.models import specs as models
from wan_nb.core.eta import StepClock
from wan_nb.core.params import InvalidParameter, build_params

T2V = models.resolve("wan2.1-t2v-1.3b")
T2V_720 = models.resolve("wan2.1-t2v-14b")
I2V = models.resolve("wan2.1-i2v-14b-480p")
A14B = models.resolve("wan2.2-t2v-a14b")


def params(spec, **kwargs):
    return build_params(spec, "a red fox", kwargs)


@pytest.mark.parametrize("name,value,message", [
    ("steps", 10**9, "at most 100000"),
    ("num_frames", 4 * 10**6 + 1, "at most 1025"),
    ("height", 16 * 10**4, "at most 4096"),
    ("width", 8192, "at most 4096"),
    ("fps", 1e-9, "from 1 to 120"),
    ("fps", 1e9, "from 1 to 120"),
    ("guidance_scale", 1e30, "at most 100"),
    ("flow_shift", 0.0, "above 0"),
    ("flow_shift", float("nan"), "above 0"),
])
def test_unbounded_arguments_are_capped_with_the_reason(name, value, message):
    with pytest.raises(InvalidParameter, match=message) as error:
        params(T2V, **{name: value})
    assert error.value.name == name


def test_prompt_length_is_capped_generously():
    params(T2V)  # an ordinary prompt is fine
    build_params(T2V, "fox " * 2000, {})  # 8,000 characters: still accepted
    with pytest.raises(InvalidParameter, match="10,000 are accepted.*512 tokens"):
        build_params(T2V, "x" * 10_001, {})
    with pytest.raises(InvalidParameter, match="negative_prompt"):
        params(T2V, negative_prompt="y" * 20_000)


def test_a_billion_steps_cost_no_memory_in_the_step_clock():
    tracemalloc.start()
    clock = StepClock(10**7, None)
    clock.record(1, 0.5)
    remaining = clock.remaining()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert remaining == pytest.approx((10**7 - 1) * 0.5 + 1.0)
    assert peak < 100_000, peak  # bytes: nothing per step


def test_image_to_video_without_an_image_is_refused_before_loading(runs_dir):
    with pytest.raises(InvalidParameter, match="image-to-video: pass image="):
        params(I2V)
    gen = Generator(model="tiny-i2v", runs_dir=runs_dir, previews=False)
    try:
        with pytest.raises(InvalidParameter, match="image"):
            gen.submit("a fox")
        assert gen.pipeline is None
    finally:
        gen.close()


def test_guidance_scale_2_only_on_two_expert_models():
    with pytest.raises(InvalidParameter, match="guidance_scale_2.*one transformer"):
        params(T2V, guidance_scale_2=3.0)
    assert params(A14B, guidance_scale_2=2.5)["guidance_scale_2"] == 2.5
    assert params(A14B)["guidance_scale_2"] == 3.0


def test_the_video_takes_the_images_aspect_ratio():
    portrait = np.zeros((900, 500, 3), dtype=np.uint8)
    p = params(I2V, image=portrait)
    assert p["height"] > p["width"]
    assert p["height"] % 16 == 0 and p["width"] % 16 == 0
    assert abs(p["height"] * p["width"] - 480 * 832) / (480 * 832) < 0.1
    # One side given: the other follows the image.
    p = params(I2V, image=portrait, width=480)
    assert (p["width"], p["height"]) == (480, 864)
    # Both given: as asked (the image is cropped to fit).
    p = params(I2V, image=portrait, height=480, width=832)
    assert (p["height"], p["width"]) == (480, 832)


def test_an_image_folder_gets_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="is a folder; pass the path of one image file"):
        params(I2V, image=tmp_path)


def test_flow_shift_follows_the_resolution():
    assert params(T2V_720)["flow_shift"] == 5.0                              # 720p preset at 720p
    assert params(T2V_720, height=480, width=832)["flow_shift"] == 3.0       # ... run at 480p
    assert params(T2V)["flow_shift"] == 3.0
    assert params(A14B)["flow_shift"] == 12.0                                # Wan 2.2 A14B T2V: fixed
    assert params(models.resolve("wan2.2-i2v-a14b"), image=np.zeros((8, 8, 3)))["flow_shift"] == 5.0
    assert params(T2V, flow_shift=4.0)["flow_shift"] == 4.0
    # A plain repo id (not a preset) follows the same rule.
    repo = models.resolve("someone/Wan2.1-T2V-14B-finetune-Diffusers")
    assert params(repo, height=720, width=1280)["flow_shift"] == 5.0
    assert params(repo)["flow_shift"] == 3.0


def test_i2v_presets_use_the_authors_40_steps():
    assert I2V.defaults["steps"] == 40 == models.resolve("wan2.1-i2v-14b-720p").defaults["steps"]
