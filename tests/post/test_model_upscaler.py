"""The model upscaler: Real-ESRGAN files (RRDBNet, SRVGGNetCompact) with random weights in the
published key layout, loaded, run in tiles of bounded size, and run end to end by ``generate(...,
upscale=2, upscaler=<file>)`` on the tiny model with per-frame progress; a file of another network
or a missing one is refused before the run and the generator keeps working.

(Against spandrel 0.4.2, the same files give spandrel's ESRGAN / Compact with the same outputs to
the last bit; spandrel itself cannot be imported on this CPU-only torch: see docs/postprocessing.md.)
"""
import numpy as np
import pytest
import torch

from _sr_helpers import compact_state, rrdbnet_state, write_sr
from _taehv_helpers import write_taehv
from wan_nb import Generator
from wan_nb.models.video_io import read_frames
from wan_nb.post.upscaling import load_upscaler, upscale_with_model
from wan_nb.protocol.errors import CheckpointError, InvalidParameter


@pytest.mark.parametrize("name,state,scale,arch", [
    ("RealESRGAN_x4plus.pth", rrdbnet_state(4), 4, "RRDBNet x4"),
    ("RealESRGAN_x2plus.safetensors", rrdbnet_state(2), 2, "RRDBNet x2"),
    ("realesr-general-x4v3.pth", compact_state(4), 4, "SRVGGNetCompact x4"),
])
def test_published_layouts_load_and_make_frames_scale_times_bigger(tmp_path, name, state, scale, arch):
    model = load_upscaler(str(write_sr(tmp_path / name, state, "params" if "general" in name else "params_ema")))
    assert model.scale == scale and model.architecture.startswith(arch)
    frames = np.random.default_rng(0).integers(0, 255, (3, 24, 40, 3), dtype=np.uint8)
    seen = []
    out = upscale_with_model(frames, model, (24 * scale, 40 * scale), report=lambda d, t: seen.append((d, t)))
    assert out.shape == (3, 24 * scale, 40 * scale, 3) and out.dtype == np.uint8
    assert seen == [(1, 3), (2, 3), (3, 3)]
    # the weights were used: the network's picture is not a resize of the input
    assert np.abs(out.astype(int)[:, ::scale, ::scale] - frames).mean() > 1


def test_a_model_of_another_factor_is_resized_to_the_size_asked(tmp_path):
    model = load_upscaler(str(write_sr(tmp_path / "x4.pth", rrdbnet_state(4))))
    out = upscale_with_model(np.zeros((1, 16, 16, 3), np.uint8), model, (32, 32))
    assert out.shape == (1, 32, 32, 3)


def test_tiles_bound_what_the_network_sees(tmp_path):
    """Memory is bounded by the tile, not the frame: no input to the network is larger than the tile."""
    model = load_upscaler(str(write_sr(tmp_path / "x2.pth", rrdbnet_state(2))))
    sizes = []
    model.model.register_forward_hook(lambda module, args, out: sizes.append(tuple(args[0].shape[-2:])))
    frames = np.random.default_rng(1).integers(0, 255, (2, 48, 80, 3), dtype=np.uint8)
    out = upscale_with_model(frames, model, (96, 160), tile=32)
    assert out.shape == (2, 96, 160, 3)
    assert len(sizes) > 2 and max(max(s) for s in sizes) <= 32
    whole = upscale_with_model(frames, model, (96, 160), tile=512)    # one pass: the same picture
    assert np.abs(out.astype(int) - whole).mean() < 8


def test_other_networks_and_broken_files_are_refused_naming_the_fix(tmp_path):
    taehv = write_taehv(tmp_path / "taew2_1.safetensors")
    with pytest.raises(CheckpointError, match="Real-ESRGAN"):
        load_upscaler(str(taehv))
    bad = rrdbnet_state(4)
    bad["conv_hr.weight"] = torch.zeros(16, 8, 3, 3)
    with pytest.raises(CheckpointError, match="conv_hr.weight"):
        load_upscaler(str(write_sr(tmp_path / "broken.pth", bad)))
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_upscaler(str(tmp_path / "garbage.pth"))


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    with Generator(model="tiny", runs_dir=tmp_path_factory.mktemp("runs"), monitor_interval=0.05) as generator:
        yield generator


def test_generate_upscales_with_a_model_file_reporting_each_frame(gen, tmp_path):
    weights = write_sr(tmp_path / "RealESRGAN_x2plus.pth", rrdbnet_state(2))
    events = []
    off = gen.subscribe(events.append)
    result = gen.generate("a fox", seed=1, steps=1, num_frames=5, progress=False, upscale=2, upscaler=str(weights))
    off()
    mine = [e for e in events if e.task_id == result.task_id]
    assert read_frames(result.video_path).shape == (5, 64, 64, 3)
    assert read_frames(result.run_dir / "original.mp4").shape == (5, 32, 32, 3)
    done = [(e.data["post_done"], e.data["post_total"]) for e in mine
            if e.type == "detailed_generation_progress" and e.data.get("post_step") == "upscale"]
    assert done[0] == (0, 5) and done[-1] == (5, 5) and len(done) >= 2
    terminal = ("generation_completed", "generation_failed", "generation_cancelled")
    assert [e.type for e in mine if e.type in terminal] == ["generation_completed"]


def test_another_network_or_a_missing_file_is_refused_before_the_run(gen, tmp_path):
    before = len(gen.tasks)
    taehv = write_taehv(tmp_path / "taew2_1.pth")
    with pytest.raises(InvalidParameter, match="not a Real-ESRGAN network"):
        gen.generate("a fox", steps=1, num_frames=5, progress=False, upscale=2, upscaler=str(taehv))
    with pytest.raises(InvalidParameter, match="no such file"):
        gen.generate("a fox", steps=1, num_frames=5, progress=False, upscale=2, upscaler=str(tmp_path / "nope.pth"))
    assert len(gen.tasks) == before          # nothing was queued
    result = gen.generate("a fox", seed=2, steps=1, num_frames=5, progress=False)   # still working
    assert read_frames(result.video_path).shape == (5, 32, 32, 3)
