"""Presets, resolve() and device/dtype choice: cheap, no download, mostly no torch."""
import json
import subprocess
import sys

import pytest

from wan_nb.models.presets import presets as list_presets
from wan_nb.models import specs as models
from wan_nb.models import tiny
from wan_nb.models.presets import get as get_preset

REQUIRED = ["wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.1-i2v-14b-480p", "wan2.1-i2v-14b-720p",
            "wan2.2-ti2v-5b", "wan2.2-t2v-a14b", "wan2.2-i2v-a14b",
            # the other pipelines (wan_nb.models.pipelines)
            "wan2.1-vace-1.3b", "wan2.1-vace-14b", "wan2.1-flf2v-14b-720p", "wan2.2-animate-14b"]


def test_presets_lists_every_wan_model_with_size_and_vram_guidance():
    listed = list_presets()
    assert [p.name for p in listed] == REQUIRED
    table = str(listed)
    for p in listed:
        assert p.name in table and p.repo_id.startswith("Wan-AI/") and p.repo_id.lower().endswith("-diffusers")
        assert p.download_gb > 1
        assert set(p.vram_gb) == {"none", "model", "sequential", "group"}
        assert p.vram_gb["sequential"] < p.vram_gb["model"] < p.vram_gb["none"]
        json.dumps(p.as_dict())  # plain data, ready for JSON
    assert "<table>" in listed._repr_html_()


def test_preset_settings_match_the_released_models():
    ti2v = models.resolve("wan2.2-ti2v-5b")
    assert (ti2v.kind, ti2v.spatial_factor, ti2v.temporal_factor) == ("ti2v", 32, 4)
    assert (ti2v.defaults["height"], ti2v.defaults["width"]) == (704, 1280)
    assert (ti2v.defaults["num_frames"], ti2v.defaults["fps"]) == (121, 24)
    assert ti2v.accepts_image and not ti2v.requires_image
    a14b = models.resolve("wan2.2-t2v-a14b")
    assert a14b.experts == ("high_noise", "low_noise") and a14b.boundary_ratio == 0.875
    assert a14b.defaults["guidance_scale_2"] == 3.0
    i2v = models.resolve("Wan2.1-I2V-14B-480P")  # case-insensitive
    assert i2v.kind == "i2v" and i2v.requires_image and i2v.pipeline_class == "WanImageToVideoPipeline"
    small = models.resolve("wan2.1-t2v-1.3b")
    assert small.source == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" and not small.accepts_image
    for key in ("height", "width", "num_frames", "steps", "guidance_scale", "fps", "negative_prompt"):
        assert key in small.defaults


@pytest.mark.parametrize("name,kind,factor,experts", [
    ("tiny", "t2v", 16, ()), ("tiny-i2v", "i2v", 16, ()), ("tiny-ti2v", "ti2v", 32, ()),
    ("tiny-a14b", "t2v", 16, ("high_noise", "low_noise"))])
def test_tiny_variants_resolve_without_loading(name, kind, factor, experts):
    spec = models.resolve(name)
    assert (spec.kind, spec.spatial_factor, spec.experts, spec.builder) == (kind, factor, experts, name)
    assert spec.is_local and spec.defaults["steps"] >= 1


def test_unknown_names_get_an_error_that_says_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match="tiny") as info:
        models.resolve("wan-9000")
    assert "wan2.1-t2v-1.3b" in str(info.value)
    with pytest.raises(ValueError, match="no such folder"):
        models.resolve(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="model_index.json"):
        models.resolve(str(tmp_path))
    with pytest.raises(ValueError):
        models.resolve("")


def test_local_folders_are_described_from_their_own_config(tmp_path):
    for name, kind, factor in [("tiny-ti2v", "ti2v", 32), ("tiny-i2v", "i2v", 16), ("tiny-a14b", "t2v", 16)]:
        folder = tiny.build(name, tmp_path / name)
        spec = models.resolve(str(folder))
        assert (spec.kind, spec.spatial_factor) == (kind, factor), name
        assert spec.defaults["height"] == tiny.VARIANTS[name]["defaults"]["height"]  # from wan_nb.json
    assert models.resolve(str(tmp_path / "tiny-a14b")).experts == ("high_noise", "low_noise")


def test_uncached_repo_ids_are_guessed_from_the_name(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    spec = models.resolve("someone/Wan2.2-I2V-A14B-finetune")
    assert spec.inferred and spec.kind == "i2v" and spec.experts
    assert models.resolve("someone/my-wan-t2v").kind == "t2v"


def test_resolving_and_listing_does_not_import_torch():
    code = ("import sys, wan_nb, wan_nb.models.specs as m, wan_nb.compose.sweep, wan_nb.models.lora_files, wan_nb.models.download\n"
            "m.resolve('tiny'); m.resolve('wan2.2-ti2v-5b'); str(wan_nb.presets())\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_device_and_dtype_auto_and_explicit():
    import torch

    device, dtype = models.resolve_device_dtype("auto", "auto")
    if not torch.cuda.is_available():
        assert (device, dtype) == ("cpu", torch.float32)
        with pytest.raises(ValueError, match="CUDA"):
            models.resolve_device_dtype("cuda", "auto")
    assert models.resolve_device_dtype("cpu", "bf16") == ("cpu", torch.bfloat16)
    assert models.resolve_device_dtype("cpu", torch.float16) == ("cpu", torch.float16)
    with pytest.raises(ValueError, match="dtype"):
        models.resolve_device_dtype("cpu", "int8")
    with pytest.raises(ValueError, match="device"):
        models.resolve_device_dtype("gpu please", "auto")


def test_get_is_case_insensitive_and_none_for_unknown():
    assert get_preset("WAN2.2-TI2V-5B").name == "wan2.2-ti2v-5b"
    assert get_preset("nope") is None


def test_sizes_follow_the_stored_dtypes_and_ram_is_stated():
    """A14B repos hold two fp32 14B experts (~57 GB each): far more than one 14B model."""
    from wan_nb.models.presets import PRESETS

    a14b, t2v14 = PRESETS["wan2.2-t2v-a14b"], PRESETS["wan2.1-t2v-14b"]
    assert 120 <= a14b.download_gb <= 130 and a14b.download_gb > t2v14.download_gb + 40
    assert PRESETS["wan2.1-i2v-14b-480p"].download_gb > t2v14.download_gb   # image cross-attention + CLIP
    for preset in PRESETS.values():
        assert set(preset.ram_gb) == {"none", "offload"}, preset.name
        assert 0 < preset.ram_gb["none"] <= preset.ram_gb["offload"], preset.name
        assert preset.as_dict()["ram_gb"] == preset.ram_gb
    assert a14b.ram_gb["offload"] >= 65   # both experts + text encoder in bf16
    assert "ram (none/offload)" in str(list_presets())
