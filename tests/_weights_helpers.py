"""Checkpoint files of the kinds users download, made from the tiny models (shared by the weight tests)."""
from __future__ import annotations

from pathlib import Path

import torch


def tiny_folder(name: str = "tiny") -> Path:
    """The built-in tiny model's diffusers folder (built once per test run)."""
    from wan_nb.models import specs as models
    from wan_nb.models import tiny

    return tiny.build(name, Path(models.resolve(name).source))


def tiny_transformer(name: str = "tiny", component: str = "transformer"):
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel.from_pretrained(tiny_folder(name), subfolder=component).eval()


def write_safetensors(transformer, path: Path, prefix: str = "") -> Path:
    """An original-Wan layout file (``prefix="model.diffusion_model."``: ComfyUI's)."""
    from safetensors.torch import save_file

    from wan_nb.weights.single_file import original_state_dict

    save_file(original_state_dict(transformer, prefix=prefix), str(path))
    return path


def write_gguf(transformer, path: Path, qtype: str = "Q8_0") -> Path:
    """A city96-layout GGUF: original names, ``qtype`` matrices, F32 vectors, 5-D patch embedding
    flattened with its shape in ``comfy.gguf.orig_shape``."""
    from wan_nb.weights import gguf as gguf_files
    from wan_nb.weights.single_file import original_state_dict

    return gguf_files.write(original_state_dict(transformer), path, qtype=qtype)


def noise_prediction(transformer, dtype=torch.bfloat16) -> torch.Tensor:
    """The transformer's output on fixed random inputs (the tiny model's latent and text sizes)."""
    gen = torch.Generator().manual_seed(1)
    latents = torch.randn(1, transformer.config.in_channels, 3, 4, 4, generator=gen).to(dtype)
    text = torch.randn(1, 8, transformer.config.text_dim, generator=gen).to(dtype)
    with torch.no_grad():
        return transformer(latents, torch.tensor([700]), text, return_dict=False)[0].float()


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value - reference).norm() / reference.norm())


def tiny_text_encoder():
    from transformers import UMT5EncoderModel

    return UMT5EncoderModel.from_pretrained(tiny_folder(), subfolder="text_encoder").eval()


def write_text_encoder_gguf(encoder, path: Path, qtype: str = "Q8_0") -> Path:
    """A city96-layout UMT5 encoder GGUF (llama.cpp ``t5encoder`` names)."""
    from wan_nb.weights import gguf as gguf_files

    return gguf_files.write(gguf_files.text_encoder_state_dict(encoder), path, qtype=qtype, architecture="t5encoder")


def prompt_embedding(encoder, dtype=torch.bfloat16) -> torch.Tensor:
    ids = torch.tensor([[5, 9, 3, 12, 7, 1]])
    with torch.no_grad():
        return encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state.float()


def write_scaled_fp8(transformer, path: Path) -> Path:
    """ComfyUI's "fp8_scaled" layout: each 2-D weight as float8_e4m3fn over its own scale_weight."""
    from safetensors.torch import save_file

    from wan_nb.weights.single_file import original_state_dict

    out = {"scaled_fp8": torch.zeros(2, dtype=torch.float8_e4m3fn)}
    for name, tensor in original_state_dict(transformer, prefix="model.diffusion_model.").items():
        if tensor.ndim == 2 and name.endswith(".weight"):
            scale = tensor.abs().max().float() / 448.0
            out[name] = (tensor.float() / scale).to(torch.float8_e4m3fn)
            out[name[: -len(".weight")] + ".scale_weight"] = scale.reshape(1)
        else:
            out[name] = tensor
    save_file(out, str(path))
    return path
