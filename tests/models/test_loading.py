"""Loading tiny pipelines component by component, placing them, and the memory switches."""
import shutil
from dataclasses import replace

import pytest
import torch

from wan_nb.models import specs as models
from wan_nb.models import tiny
from _models_helpers import Reports, latents, load


@pytest.mark.parametrize("name,heavy", [
    ("tiny", ["text_encoder", "transformer", "vae"]),
    ("tiny-i2v", ["text_encoder", "image_encoder", "transformer", "vae"]),
    ("tiny-a14b", ["text_encoder", "transformer", "transformer_2", "vae"])])
def test_every_component_is_reported_by_name(name, heavy):
    reports = Reports()
    pipe = load(name, report=reports)
    assert reports.stages() == ["loading_model"]  # built in, so no download stage
    events = reports.loading()
    named = [e["component"] for e in events if e.get("component")]
    for component in heavy:
        assert f"Loading {component}" in " ".join(e["status"] for e in events)
        assert component in named
    assert [n for n in dict.fromkeys(named) if n in heavy] == heavy  # used order: encoders, denoiser(s), VAE
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert "Model ready" in events[-1]["status"]
    assert type(pipe).__name__ == tiny.VARIANTS[name]["pipeline_class"]


def test_same_seed_same_video_other_seed_other_video():
    pipe = load("tiny")
    first, again, other = latents(pipe, seed=3), latents(pipe, seed=3), latents(pipe, seed=4)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize("offload", ["model", "sequential", "group"])
def test_offload_on_cpu_is_a_noted_no_op(offload):
    reports = Reports()
    offloaded = load("tiny", report=reports, offload=offload)
    assert f"offload={offload!r} has no effect on CPU" in reports.loading()[-1]["status"]
    assert torch.equal(latents(offloaded), latents(load("tiny")))


def test_unknown_offload_mode_fails_before_loading():
    reports = Reports()
    with pytest.raises(ValueError, match="offload='disk'.*none, model, sequential, group"):
        load("tiny", report=reports, offload="disk")
    assert reports.calls == []


def test_vae_tiling_and_slicing_switches():
    pipe = load("tiny", vae_tiling=True, vae_slicing=True)
    assert pipe.vae.use_tiling and pipe.vae.use_slicing
    plain = load("tiny")
    assert not plain.vae.use_tiling and not plain.vae.use_slicing


def test_half_precision_keeps_vae_in_float32():
    pipe = models.load_pipeline(models.resolve("tiny"), device="cpu", dtype="bf16")
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.text_encoder.dtype == torch.bfloat16
    assert pipe.vae.dtype == torch.float32


def test_preset_flow_shift_reaches_the_scheduler():
    spec = models.resolve("tiny")
    pipe = models.load_pipeline(replace(spec, defaults={**spec.defaults, "flow_shift": 5.0}), device="cpu")
    assert pipe.scheduler.config.shift == 5.0
    assert load("tiny").scheduler.config.shift == 3.0


def test_damaged_component_names_itself(tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(tiny.build("tiny", tmp_path / "tiny"), folder)
    (folder / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights")
    with pytest.raises(ValueError, match="component 'transformer'"):
        models.load_pipeline(models.resolve(str(folder)), device="cpu")


def test_local_folder_loads_like_a_preset(tmp_path):
    folder = tiny.build("tiny-a14b", tmp_path / "a14b")
    pipe = models.load_pipeline(models.resolve(str(folder)), device="cpu")
    assert pipe.transformer_2 is not None and pipe.config.boundary_ratio == 0.875
