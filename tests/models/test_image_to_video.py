"""Image-to-video inputs: Wan 2.1 style (CLIP image encoder) and Wan 2.2 style (TI2V, none)."""
import numpy as np
import pytest
import torch
from PIL import Image

from wan_nb.models import specs as models
from _models_helpers import latents, load


@pytest.fixture(scope="module")
def picture():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)


def test_image_as_pil_path_or_array_is_the_same_first_frame(picture, tmp_path):
    path = tmp_path / "first.png"
    Image.fromarray(picture).save(path)
    prepared = [np.asarray(models.prepare_image(image, 32, 32))
                for image in (Image.fromarray(picture), path, str(path), picture, picture / 255.0,
                              torch.from_numpy(picture).permute(2, 0, 1))]
    for other in prepared[1:]:
        assert np.array_equal(prepared[0], other)


def test_wan21_i2v_video_follows_the_image(picture):
    pipe = load("tiny-i2v")
    one = latents(pipe, num_frames=5, image=models.prepare_image(picture, 32, 32))
    again = latents(pipe, num_frames=5, image=models.prepare_image(picture, 32, 32))
    other = latents(pipe, num_frames=5, image=models.prepare_image(255 - picture, 32, 32))
    assert torch.equal(one, again) and not torch.allclose(one, other)


def test_prepare_image_crops_to_the_aspect_then_resizes():
    wide = np.zeros((20, 60, 3), dtype=np.uint8)
    wide[:, 20:40] = 255   # a white middle third: what a center crop to a square keeps
    prepared = models.prepare_image(wide, 16, 16)
    assert prepared.size == (16, 16) and prepared.mode == "RGB"
    assert np.asarray(prepared).min() > 200
    assert models.prepare_image(np.zeros((10, 10)), 32, 48).size == (48, 32)       # gray
    assert models.prepare_image(np.zeros((4, 10, 10)), 8, 8).size == (8, 8)        # RGBA channels-first


@pytest.mark.parametrize("bad,message", [
    ("/no/such/picture.png", "no such file"),
    (np.zeros((2, 2, 2, 2)), "not a picture"),
    (np.zeros((8, 8, 5)), "not a picture"),
    (12345, "PIL image, a file path or a numpy array")])
def test_bad_images_get_clear_errors_before_any_work(bad, message):
    with pytest.raises(ValueError, match=message):
        models.check_image(bad)
    with pytest.raises(ValueError, match=message):
        models.prepare_image(bad, 32, 32)


def test_unreadable_image_file(tmp_path):
    path = tmp_path / "fake.png"
    path.write_bytes(b"no picture here")
    with pytest.raises(ValueError, match="not a readable image"):
        models.prepare_image(path, 32, 32)


def test_wan22_ti2v_makes_video_from_text_or_from_an_image(picture):
    pipe = load("tiny-ti2v")
    assert models.pipeline_for_inputs(pipe, None) is pipe
    from_text = latents(pipe, num_frames=5)
    i2v = models.pipeline_for_inputs(pipe, picture)
    assert type(i2v).__name__ == "WanImageToVideoPipeline" and i2v.transformer is pipe.transformer
    assert models.pipeline_for_inputs(pipe, picture) is i2v   # built once, reused
    from_image = latents(i2v, num_frames=5, image=models.prepare_image(picture, 32, 32))
    assert from_text.shape == from_image.shape == (1, 48, 2, 2, 2)
    assert not torch.allclose(from_text, from_image)


def test_text_only_models_refuse_an_image(picture):
    with pytest.raises(ValueError, match="text only"):
        models.pipeline_for_inputs(load("tiny"), picture)


def test_size_for_image_keeps_aspect_and_area():
    spec = models.resolve("wan2.1-i2v-14b-480p")
    height, width = models.size_for_image(np.zeros((600, 800, 3), dtype=np.uint8), spec)
    assert height % 16 == 0 and width % 16 == 0
    assert abs(width / height - 800 / 600) < 0.1
    assert abs(height * width - 480 * 832) / (480 * 832) < 0.1
