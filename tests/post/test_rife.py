"""RIFE 4.6 written in wan_nb: the published checkpoint layout (block0..3 . conv0 / convblock / lastconv,
``module.``-prefixed pickles as Practical-RIFE saves them) loads unchanged, other networks are refused,
and a run interpolates through it with progress per frame pair."""
import numpy as np
import pytest
import torch

from _taehv_helpers import write_taehv
from wan_nb.core.params import InvalidParameter
from wan_nb.post.interpolation import interpolate_pairs
from wan_nb.post.rife import RifeNet, load_rife
from wan_nb.protocol.errors import CheckpointError


def rife_state(seed=0, still=False):
    """Random RIFE 4.6 weights; ``still``: the last layers zeroed, so every flow and mask is zero and
    the middle frame is the plain average of the two (a result known in advance)."""
    torch.manual_seed(seed)
    state = {k: v.clone() for k, v in RifeNet().state_dict().items()}
    if still:
        for key in state:
            if ".lastconv." in key:
                state[key].zero_()
    return state


def write_rife(path, **kw):
    state = rife_state(**kw)
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:  # Practical-RIFE's train_log/flownet.pkl: a DataParallel state dict
        torch.save({f"module.{k}": v for k, v in state.items()}, str(path))
    return path


@pytest.mark.parametrize("name", ["flownet.pkl", "rife46.safetensors"])
def test_the_published_layout_loads_unchanged(tmp_path, name):
    model = load_rife(write_rife(tmp_path / name, seed=1))
    for key, tensor in rife_state(seed=1).items():
        assert torch.equal(model.state_dict()[key], tensor), key
    assert model.state_dict()["block0.conv0.0.0.weight"].shape == (96, 7, 3, 3)
    assert model.state_dict()["block3.lastconv.0.weight"].shape == (64, 24, 4, 4)
    assert model.state_dict()["block1.convblock.7.beta"].shape == (1, 128, 1, 1)


def test_with_zero_flow_the_middle_is_the_average_and_81_frames_make_161(tmp_path):
    model = load_rife(write_rife(tmp_path / "still.pkl", still=True))
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (81, 12, 20, 3), dtype=np.uint8)   # odd sizes: padded to 32, cropped back
    seen = []
    out = interpolate_pairs(frames, 2, model.middle, report=lambda done, total: seen.append((done, total)))
    assert out.shape == (161, 12, 20, 3)
    assert np.array_equal(out[::2], frames)
    average = (frames[:-1].astype(int) + frames[1:]) / 2
    assert np.abs(out[1::2] - average).max() <= 1
    assert seen[-1] == (80, 80) and len(seen) == 80


def test_a_real_network_moves_pixels_not_just_blends(tmp_path):
    model = load_rife(write_rife(tmp_path / "random.pkl", seed=2))
    a = np.zeros((32, 32, 3), np.uint8)
    a[8:24, 4:20] = 255
    b = np.roll(a, 8, axis=1)
    middle = model.middle(a, b, 0.5)
    assert middle.shape == a.shape and middle.dtype == np.uint8
    blended = ((a.astype(int) + b) / 2)
    assert np.abs(middle.astype(int) - blended).max() > 0   # random flows warp: not the plain average


def test_other_networks_are_refused_naming_the_file_to_use(tmp_path):
    newer = rife_state()
    newer["block0.conv0.0.0.weight"] = torch.zeros(96, 23, 3, 3)      # RIFE 4.15+: 16 feature channels more
    torch.save(newer, tmp_path / "rife415.pkl")
    with pytest.raises(CheckpointError, match="another RIFE version.*RIFE 4.6"):
        load_rife(tmp_path / "rife415.pkl")
    with pytest.raises(CheckpointError, match="not a RIFE 4.6 checkpoint.*interpolate='ffmpeg'"):
        load_rife(write_taehv(tmp_path / "taew2_1.safetensors"))


def test_a_run_interpolates_through_rife_and_bad_files_are_refused_first(gen, tmp_path):
    still = write_rife(tmp_path / "still.pkl", still=True)
    with pytest.raises(InvalidParameter, match="interpolator=.*is for interpolate=2 or 4"):
        gen.check("a fox", interpolator=str(still))
    with pytest.raises(InvalidParameter, match="interpolator=.*not a RIFE 4.6 checkpoint"):
        gen.check("a fox", interpolate=2, interpolator=str(write_taehv(tmp_path / "taew2_1.safetensors")))
    with pytest.raises(InvalidParameter, match="no such file"):
        gen.check("a fox", interpolate=2, interpolator=str(tmp_path / "missing.pkl"))
    events = []
    off = gen.subscribe(events.append)
    result = gen.generate("a fox", seed=2, steps=1, num_frames=5, progress=False, interpolate=4,
                          interpolator=str(still))
    off()
    from wan_nb import recipe
    from wan_nb.models.video_io import read_frames

    assert read_frames(result.video_path).shape[0] == 17
    assert recipe(result.video_path)["interpolator"] == str(still)
    pairs = [e.data["post_done"] for e in events if e.task_id == result.task_id and e.data.get("post_step")]
    assert pairs[0] == 0 and pairs[-1] == 4
