"""A GGUF UMT5 text encoder under float16 (what dtype="auto" picks on a T4 or V100) keeps ``wo`` in
float32, as transformers does for the same model (``_keep_in_fp32_modules``): T5-XXL's feed-forward
outputs exceed float16's largest number.

The real UMT5-XXL is not here; its mechanism is: the tiny encoder's feed-forward weights are scaled
up until its ``wo`` outputs pass 65504, which is where the real model's activations already are."""
from __future__ import annotations

import pytest
import torch

from _weights_helpers import prompt_embedding, relative_error, tiny_folder, tiny_text_encoder, write_text_encoder_gguf

FFN_GAIN = 100.0   # makes the tiny encoder's wo outputs reach T5-XXL's magnitudes (beyond fp16)


@pytest.fixture(scope="module")
def loud_encoder(tmp_path_factory):
    encoder = tiny_text_encoder()
    with torch.no_grad():
        for block in encoder.encoder.block:
            ffn = block.layer[1].DenseReluDense
            for layer in (ffn.wi_0, ffn.wi_1, ffn.wo):
                layer.weight.mul_(FFN_GAIN)
    folder = tmp_path_factory.mktemp("umt5-fp16")
    encoder.save_pretrained(folder / "transformers")
    return {"model": encoder, "gguf": write_text_encoder_gguf(encoder, folder / "umt5-tiny-Q8_0.gguf"),
            "folder": folder / "transformers"}


def _load(path, dtype):
    from transformers import UMT5EncoderModel

    from wan_nb.weights.gguf import load_text_encoder

    return load_text_encoder(path, UMT5EncoderModel, tiny_folder(), component="text_encoder", dtype=dtype)


def test_the_wo_outputs_are_beyond_float16(loud_encoder):
    seen = []
    ffn = loud_encoder["model"].encoder.block[0].layer[1].DenseReluDense
    hook = ffn.wo.register_forward_hook(lambda module, args, out: seen.append(float(out.abs().max())))
    try:
        prompt_embedding(loud_encoder["model"], dtype=torch.float32)
    finally:
        hook.remove()
    assert seen[0] > torch.finfo(torch.float16).max


def test_gguf_encoder_keeps_the_parameters_transformers_keeps_in_float32(loud_encoder):
    from diffusers.quantizers.gguf.utils import GGUFParameter
    from transformers import UMT5EncoderModel

    ours = _load(loud_encoder["gguf"], torch.float16)
    theirs = UMT5EncoderModel.from_pretrained(loud_encoder["folder"], torch_dtype=torch.float16)
    reference = {name: p.dtype for name, p in theirs.named_parameters()}
    compared = 0
    for name, parameter in ours.named_parameters():
        if isinstance(parameter, GGUFParameter):
            continue   # stored quantized, computed in float16 by GGUFLinear
        assert parameter.dtype == reference[name], name
        compared += 1
    assert compared and ours.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype == torch.float32
    assert ours.shared.weight.dtype == torch.float16   # the rest as asked


def test_gguf_encoder_under_float16_matches_float32(loud_encoder):
    reference = prompt_embedding(loud_encoder["model"], dtype=torch.float32)
    embedding = prompt_embedding(_load(loud_encoder["gguf"], torch.float16))
    assert torch.isfinite(embedding).all()
    # Q8_0 rounding is ~2 %; wo in float16 saturates and is ~100 % off.
    assert relative_error(embedding, reference) < 0.05


def test_bfloat16_is_left_as_asked(loud_encoder):
    ours = _load(loud_encoder["gguf"], torch.bfloat16)
    assert ours.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype == torch.bfloat16
