"""ComfyUI's current quantized layout (comfy/quant_ops.py): ``<layer>.weight`` in fp8 with a scalar
``<layer>.weight_scale`` (and ``input_scale``), the layers and their formats listed in the
``_quantization_metadata`` entry of the file's metadata. Each weight is read times its scale; the
formats that are not fp8 times one scale are refused by name before anything loads.

Files are written here in that layout from the tiny transformer (original-Wan names, ComfyUI's
``model.diffusion_model.`` prefix), as ComfyUI's converters write the released models."""
from __future__ import annotations

import json
import time

import pytest
import torch

from _weights_helpers import noise_prediction, relative_error, tiny_transformer
from wan_nb import Generator
from wan_nb.weights.single_file import CheckpointError, original_state_dict

PREFIX = "model.diffusion_model."


def write_comfy_quant(transformer, path, *, container=torch.float8_e4m3fn, layer_format="float8_e4m3fn",
                      extra=None):
    """Every 2-D weight as fp8 over a per-tensor absmax scale (ComfyUI's recipe), the rest as is."""
    from safetensors.torch import save_file

    tensors, layers = {}, {}
    for name, tensor in original_state_dict(transformer, prefix=PREFIX).items():
        if tensor.ndim == 2 and name.endswith(".weight"):
            layer = name[: -len(".weight")]
            scale = tensor.abs().max().float() / torch.finfo(torch.float8_e4m3fn).max
            quantized = (tensor.float() / scale).to(torch.float8_e4m3fn)
            tensors[name] = quantized.view(torch.uint8) if container == torch.uint8 else quantized
            tensors[layer + ".weight_scale"] = scale.reshape(())    # a 0-dim scalar, as ComfyUI stores it
            tensors[layer + ".input_scale"] = torch.tensor(1.0)
            layers[layer] = {"format": layer_format}
        else:
            tensors[name] = tensor
    tensors.update(extra or {})
    metadata = {"_quantization_metadata": json.dumps({"format_version": "1.0", "layers": layers})}
    save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.fixture(scope="module")
def reference():
    return tiny_transformer()


@pytest.mark.parametrize("container", [torch.float8_e4m3fn, torch.uint8], ids=["fp8", "uint8-container"])
def test_each_weight_is_multiplied_by_its_weight_scale(container, reference, tmp_path, runs_dir):
    path = write_comfy_quant(reference, tmp_path / "wan2.1_t2v_tiny_fp8_e4m3fn_scaled.safetensors",
                             container=container)
    with Generator(model="tiny", transformer=path, dtype="bf16", runs_dir=runs_dir, previews=False) as gen:
        result = gen.generate("a fox", seed=0, progress=False)
        assert result.video_path.is_file()
        loaded = gen.pipeline.transformer
        assert loaded.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
        # fp8 with a per-tensor scale: within fp8's rounding (~2 %); unscaled, it is ~135 % off.
        error = relative_error(noise_prediction(loaded), noise_prediction(tiny_transformer().to(torch.bfloat16)))
        assert error < 0.05, error


def test_read_unscaled_the_same_file_is_far_off(reference, tmp_path):
    """What the scales are for (and what diffusers alone does with this file): the fp8 numbers
    without their scales are a different model."""
    from diffusers import WanTransformer3DModel
    from safetensors.torch import load_file

    from _weights_helpers import tiny_folder

    path = write_comfy_quant(reference, tmp_path / "scaled.safetensors")
    model = WanTransformer3DModel.from_single_file(str(path), config=str(tiny_folder()), subfolder="transformer",
                                                   torch_dtype=torch.float32, local_files_only=True).eval()
    assert load_file(str(path))[PREFIX + "blocks.0.self_attn.q.weight"].dtype == torch.float8_e4m3fn
    error = relative_error(noise_prediction(model, torch.float32), noise_prediction(reference, torch.float32))
    assert not error < 0.5, error   # far off, or NaN (fp8 numbers up to 448 where weights are ~0.1)


@pytest.mark.parametrize("layer_format, extra, named", [
    ("nvfp4", None, "nvfp4"),
    ("int8_blockwise", None, "int8_blockwise"),
    ("float8_e4m3fn", {PREFIX + "blocks.0.ffn.0.weight_scale_2": torch.tensor(1.0)}, "double-scaled"),
])
def test_a_format_that_is_not_fp8_times_a_scale_is_refused_by_name(layer_format, extra, named, reference, tmp_path,
                                                                   runs_dir):
    path = write_comfy_quant(reference, tmp_path / f"tiny_{layer_format}.safetensors", layer_format=layer_format,
                             extra=extra)
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match=f"ComfyUI's quantized layout with {named}.*bf16/fp16"):
        Generator(model="tiny", transformer=path, runs_dir=runs_dir, previews=False)
    assert time.perf_counter() - started < 5.0   # the header decides: nothing was loaded


def test_unreadable_quantization_metadata_is_a_checkpoint_error(reference, tmp_path, runs_dir):
    from safetensors.torch import save_file

    path = tmp_path / "broken_meta.safetensors"
    save_file(original_state_dict(reference, prefix=PREFIX), str(path), metadata={"_quantization_metadata": "{["})
    with pytest.raises(CheckpointError, match="broken_meta.safetensors: its _quantization_metadata is not readable"):
        Generator(model="tiny", transformer=path, runs_dir=runs_dir, previews=False)
