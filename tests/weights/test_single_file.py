"""Single-file transformer checkpoints (original-Wan and ComfyUI layouts) loaded with the preset's config,
and files that do not fit refused before anything loads."""
from __future__ import annotations

import time

import pytest
import torch

import wan_nb
from _weights_helpers import tiny_transformer, write_gguf, write_safetensors
from wan_nb import Generator
from wan_nb.weights.single_file import CheckpointError, detect, inspect


@pytest.fixture(scope="module")
def reference():
    return tiny_transformer()


@pytest.fixture(scope="module")
def files(tmp_path_factory, reference):
    from diffusers import WanTransformer3DModel
    from wan_nb.models.tiny import transformer_config

    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(3)
    i2v = WanTransformer3DModel(**transformer_config("tiny-i2v")).eval()
    return {
        "original": write_safetensors(reference, folder / "wan2.1_t2v_tiny.safetensors"),
        "comfyui": write_safetensors(reference, folder / "wan2.1_t2v_tiny_comfy.safetensors",
                                     prefix="model.diffusion_model."),
        "i2v_gguf": write_gguf(i2v, folder / "wan2.1-i2v-tiny-Q8_0.gguf"),
        "folder": folder,
    }


def _same_weights(a, b) -> bool:
    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("layout", ["original", "comfyui"])
def test_a_transformer_file_replaces_the_folders_weights(layout, files, reference, runs_dir):
    with Generator(model="tiny", transformer=files[layout], runs_dir=runs_dir, previews=False) as gen:
        result = gen.generate("a red fox running through snow", seed=0, progress=False)
        assert result.video_path.is_file()
        assert _same_weights(gen.pipeline.transformer, reference)  # every tensor renamed back exactly
        recorded = wan_nb.recipe(result)
        assert recorded["files"]["transformer"]["path"] == str(files[layout])
        assert "quant" not in recorded or recorded["quant"] is None


def test_model_may_name_the_file_alone(files, runs_dir):
    assert detect(files["comfyui"]) == "tiny"
    with Generator(model=str(files["comfyui"]), quant="fp8", runs_dir=runs_dir, previews=False) as gen:
        assert gen.model == "tiny" and gen.weights.files == {"transformer": files["comfyui"]}
        gen.generate("a fox", seed=0, progress=False)
        assert gen.pipeline.transformer.blocks[0].attn1.to_q.weight.dtype == torch.float8_e4m3fn


def test_a_gguf_of_the_wrong_architecture_is_refused_before_loading(files, runs_dir):
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match="does not fit tiny transformer.*image-to-video.*text-to-video"):
        Generator(model="tiny", transformer=files["i2v_gguf"], runs_dir=runs_dir, previews=False)
    with pytest.raises(CheckpointError, match="does not fit"):
        Generator(model="tiny", quant=f"gguf:{files['i2v_gguf']}", runs_dir=runs_dir, previews=False)
    assert time.perf_counter() - started < 5.0   # the header only: no model was built or loaded
    assert inspect(files["i2v_gguf"]).in_channels == 36 and inspect(files["i2v_gguf"]).image_embedding


def test_a_file_that_is_no_wan_transformer_says_what_it_is(files, runs_dir):
    from safetensors.torch import save_file

    encoder = files["folder"] / "umt5.safetensors"
    save_file({"encoder.block.0.layer.0.SelfAttention.q.weight": torch.zeros(4, 4),
               "shared.weight": torch.zeros(8, 4)}, str(encoder))
    with pytest.raises(CheckpointError, match="a text encoder"):
        Generator(model="tiny", transformer=encoder, runs_dir=runs_dir, previews=False)
    broken = files["folder"] / "broken.safetensors"
    broken.write_bytes(b"\x10\x00")
    with pytest.raises(CheckpointError, match="not a readable .safetensors"):
        Generator(model="tiny", transformer=broken, runs_dir=runs_dir, previews=False)
    with pytest.raises(CheckpointError, match="no such file"):
        Generator(model="tiny", transformer=files["folder"] / "missing.safetensors", runs_dir=runs_dir,
                  previews=False)


def test_preset_architectures_refuse_a_file_before_any_download(files, runs_dir):
    # The 1.3B preset is not downloaded here: its known architecture decides, from the header alone.
    with pytest.raises(CheckpointError, match="does not fit wan2.1-t2v-1.3b transformer.*width 32"):
        Generator(model="wan2.1-t2v-1.3b", device="cpu", transformer=files["original"], runs_dir=runs_dir,
                  previews=False)


def test_transformer_argument_shapes(files, runs_dir):
    with pytest.raises(ValueError, match=r"transformer=\(HIGH_NOISE_FILE, LOW_NOISE_FILE\)"):
        Generator(model="tiny-a14b", transformer=files["original"], runs_dir=runs_dir, previews=False)
    with pytest.raises(ValueError, match="this model has one transformer"):
        Generator(model="tiny", transformer=(files["original"], files["original"]), runs_dir=runs_dir,
                  previews=False)
    with pytest.raises(ValueError, match="a diffusers folder goes in model="):
        Generator(model="tiny", transformer=files["folder"], runs_dir=runs_dir, previews=False)
    with Generator(model="tiny-a14b", transformer=(None, files["original"]), runs_dir=runs_dir,
                   previews=False) as gen:
        assert list(gen.weights.files) == ["transformer_2"]


def test_int8_of_a_single_file_is_quantized(files, runs_dir):
    from wan_nb.weights.quant import storage_kind

    with Generator(model="tiny", transformer=files["original"], quant={"transformer": "int8"}, dtype="bf16",
                   runs_dir=runs_dir, previews=False) as gen:
        gen.generate("a fox", seed=0, progress=False)
        assert storage_kind(gen.pipeline.transformer.blocks[0].attn1.to_q.weight)[0] == "int8"


def test_a_repo_with_a_transformer_file_downloads_everything_but_its_transformer(files, tmp_path, monkeypatch):
    import huggingface_hub.constants
    from _hub_server import HubServer
    from _weights_helpers import tiny_folder

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with HubServer({"wan-nb/tiny-wan": tiny_folder()}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with Generator(model="wan-nb/tiny-wan", device="cpu", transformer=files["comfyui"], runs_dir=tmp_path / "runs",
                       previews=False) as gen:
            gen.generate("a fox", seed=0, progress=False, height=32, width=32, num_frames=9, steps=2)
            fetched = [path.split("/", 5)[-1] for path in hub.downloads()]   # /repo/resolve/<rev>/<file>
    assert "transformer/config.json" in fetched and "vae/diffusion_pytorch_model.safetensors" in fetched
    assert not any(name.startswith("transformer/") and name.endswith(".safetensors") for name in fetched)


def test_a_scaled_fp8_file_is_multiplied_by_its_scales(files, reference, runs_dir):
    from _weights_helpers import noise_prediction, relative_error, write_scaled_fp8

    scaled = write_scaled_fp8(reference, files["folder"] / "wan2.1_t2v_tiny_fp8_scaled.safetensors")
    with Generator(model="tiny", transformer=scaled, dtype="bf16", runs_dir=runs_dir, previews=False) as gen:
        gen.generate("a fox", seed=0, progress=False)
        loaded = gen.pipeline.transformer
        assert loaded.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
        # fp8 with a per-layer scale: within fp8's rounding of the reference (unscaled it is far off).
        error = relative_error(noise_prediction(loaded), noise_prediction(reference.to(torch.bfloat16)))
        assert error < 0.05, error
