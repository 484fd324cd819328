"""GGUF weights with offload="sequential" are refused when the Generator is made, naming the modes
that work, instead of failing in placement after every weight was read (diffusers #14691)."""
from __future__ import annotations

import time

import pytest
import torch

from _weights_helpers import (noise_prediction, tiny_folder, tiny_text_encoder, tiny_transformer, write_gguf,
                              write_text_encoder_gguf)
from wan_nb import Generator


@pytest.fixture(scope="module")
def gguf_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf-offload")
    return {"transformer": write_gguf(tiny_transformer(), folder / "tiny-Q8_0.gguf"),
            "text_encoder": write_text_encoder_gguf(tiny_text_encoder(), folder / "umt5-tiny-Q8_0.gguf")}


def test_accelerates_layer_by_layer_offload_cannot_carry_a_gguf_parameter(gguf_files):
    """The mechanism. On a GPU, enable_sequential_cpu_offload's hooks rebuild each parameter as
    type(param)(data, requires_grad=...) when they move it: the GGUFParameter loses its quant type
    and the first forward fails with KeyError: None. On this CPU build the same rebuild already
    fails while the hooks are attached (GGUFParameter's constructor takes no requires_grad): the
    same call, the same cause, an earlier symptom."""
    from accelerate import cpu_offload
    from diffusers import WanTransformer3DModel
    from diffusers.quantizers.gguf.utils import GGUFParameter

    from wan_nb.weights.gguf import load_transformer

    model = load_transformer(gguf_files["transformer"], WanTransformer3DModel, tiny_folder(),
                             component="transformer", dtype=torch.bfloat16)
    assert isinstance(model.blocks[0].attn1.to_q.weight, GGUFParameter)
    noise_prediction(model)   # as loaded it runs
    with pytest.raises((TypeError, KeyError)):
        cpu_offload(model, execution_device=torch.device("cpu"))
        noise_prediction(model)


@pytest.mark.parametrize("arguments", [
    lambda files: {"transformer": files["transformer"]},
    lambda files: {"quant": f"gguf:{files['transformer']}"},
    lambda files: {"quant": {"text_encoder": f"gguf:{files['text_encoder']}"}},
], ids=["transformer=", "quant=gguf:", "text-encoder"])
def test_gguf_with_sequential_offload_is_refused_before_loading(arguments, gguf_files, runs_dir):
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"offload='sequential' cannot place GGUF.*offload='group'.*offload='model'"):
        Generator(model="tiny", offload="sequential", runs_dir=runs_dir, previews=False, **arguments(gguf_files))
    assert time.perf_counter() - started < 5.0   # headers only: nothing was built or loaded


def test_the_modes_that_move_whole_modules_are_accepted(gguf_files, runs_dir):
    for offload in ("group", "model", "none"):
        with Generator(model="tiny", offload=offload, transformer=gguf_files["transformer"], runs_dir=runs_dir,
                       previews=False) as gen:
            assert gen.load_options.offload == offload


def test_a_workers_load_options_are_checked_too(gguf_files):
    """A Ray worker rebuilds its weights from LoadOptions (for_options), never through Generator()."""
    from wan_nb.core.engine import LoadOptions
    from wan_nb.models import specs
    from wan_nb.weights.options import for_model, for_options

    # The options travel typed (LoadOptions.weights, resolved once by the driver); the worker
    # checks the placement again in its own process.
    gguf = for_model(specs.resolve("tiny"), transformer=str(gguf_files["transformer"]), device="cpu")
    options = LoadOptions(offload="sequential", weights=gguf)
    with pytest.raises(ValueError, match="offload='group'"):
        for_options(specs.resolve("tiny"), options)
    assert for_options(specs.resolve("tiny"), LoadOptions(offload="model", weights=gguf)).modes == {"transformer": "gguf"}
