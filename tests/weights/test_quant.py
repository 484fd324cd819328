"""Quantized weights: every mode that runs on a CPU, end to end through Generator, and the refusals.

Closeness is judged on the transformer's noise prediction for fixed inputs (where the quantization
acts), relative to the same tiny model in bf16. Tolerances: fp8 (e4m3, 3 mantissa bits: each weight
within 6.25 %, about 2 % RMS) 5 %; int8 and GGUF Q8_0 (per channel / per 32-weight block scales,
rounding within 1/254 of the row's largest weight) 3 %. bf16 itself is off fp32 by about 0.4 %
here, and two different random tiny transformers are about 140 % apart, so a broken
quantization (wrong scales, swapped layers, a weight left at zero) cannot pass.
"""
from __future__ import annotations

import time

import re

import pytest
import torch

import wan_nb

from _weights_helpers import noise_prediction, relative_error, tiny_transformer, write_gguf
from wan_nb import Generator
from wan_nb.weights.quant import storage_kind, stored_dtypes

TOLERANCE = {"fp8": 0.05, "int8": 0.03, "gguf": 0.03}


@pytest.fixture(scope="module")
def bf16_prediction():
    return noise_prediction(tiny_transformer().to(torch.bfloat16))


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    return write_gguf(tiny_transformer(), tmp_path_factory.mktemp("gguf") / "tiny-Q8_0.gguf")


def _linear_kinds(module, keep=()) -> set[str]:
    """How the weights of every linear layer under ``module`` are stored (``keep``: names left out)."""
    return {storage_kind(layer.weight)[0] for name, layer in module.named_modules()
            if isinstance(layer, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in keep}


def _run(quant, runs_dir, **options):
    gen = Generator(model="tiny", quant=quant, dtype="bf16", runs_dir=runs_dir, previews=False, **options)
    result = gen.generate("a red fox running through snow", seed=0, progress=False)
    return gen, result


def test_a_random_tiny_transformer_is_far_from_the_reference(bf16_prediction):
    # What the tolerances above are measured against: an unrelated model is nowhere near them.
    from diffusers import WanTransformer3DModel
    from wan_nb.models.tiny import transformer_config

    torch.manual_seed(1)
    other = WanTransformer3DModel(**transformer_config("tiny")).to(torch.bfloat16).eval()
    assert relative_error(noise_prediction(other), bf16_prediction) > 10 * max(TOLERANCE.values())


@pytest.mark.parametrize("mode, stored", [("fp8", "float8_e4m3fn"), ("int8", "int8")])
def test_cpu_modes_store_quantized_weights_and_stay_close_to_bf16(mode, stored, runs_dir, bf16_prediction):
    gen, result = _run(mode, runs_dir)
    try:
        assert result.video_path.is_file()
        pipe = gen.pipeline
        # A plain string quantizes the transformer and the text encoder; the VAE stays in fp32.
        assert _linear_kinds(pipe.transformer.blocks) == {stored}
        assert _linear_kinds(pipe.text_encoder.encoder.block, keep=("wo",)) == {stored}
        assert set(stored_dtypes(pipe.vae)) == {"float32"}
        # Activations stay in the compute dtype (what the pipeline casts embeddings and latents to).
        assert pipe.transformer.dtype == torch.bfloat16 and pipe.text_encoder.dtype == torch.bfloat16
        error = relative_error(noise_prediction(pipe.transformer), bf16_prediction)
        assert error < TOLERANCE[mode], f"{mode}: {error:.4f}"
        recorded = wan_nb.recipe(result)
        assert recorded["quant"] == {"transformer": mode, "text_encoder": mode}
    finally:
        gen.close()


def test_per_component_dict_quantizes_only_what_it_names(runs_dir):
    gen, _ = _run({"transformer": "fp8"}, runs_dir)
    try:
        assert "float8_e4m3fn" in stored_dtypes(gen.pipeline.transformer)
        assert set(stored_dtypes(gen.pipeline.text_encoder)) == {"bfloat16"}
    finally:
        gen.close()


def test_gguf_file_loads_through_generator_end_to_end(gguf_file, runs_dir, bf16_prediction):
    from wan_nb.runs.recipe import file_sha256

    gen, result = _run(f"gguf:{gguf_file}", runs_dir)
    try:
        weight = gen.pipeline.transformer.blocks[0].attn1.to_q.weight
        assert type(weight).__name__ == "GGUFParameter" and weight.quant_type.name == "Q8_0"
        assert weight.dtype == torch.uint8  # the raw Q8_0 blocks, dequantized only inside the layer
        assert relative_error(noise_prediction(gen.pipeline.transformer), bf16_prediction) < TOLERANCE["gguf"]
        recorded = wan_nb.recipe(result)
        assert recorded["quant"] == {"transformer": "gguf"}
        assert recorded["files"]["transformer"] == {"path": str(gguf_file), "sha256": file_sha256(gguf_file)}
        again = gen.rerun(result, progress=False)   # the recipe reproduces the run
        assert wan_nb.recipe(again)["files"] == recorded["files"]
    finally:
        gen.close()
    with Generator(model="tiny", runs_dir=runs_dir, previews=False) as plain:
        with pytest.raises(ValueError, match=r"other weights.*quant=\{'transformer': 'gguf:"):
            plain.rerun(result, progress=False)


def test_two_experts_take_a_mode_each_and_a_gguf_pair(tmp_path, runs_dir):
    high = write_gguf(tiny_transformer("tiny-a14b", "transformer"), tmp_path / "high.gguf")
    low = write_gguf(tiny_transformer("tiny-a14b", "transformer_2"), tmp_path / "low.gguf", qtype="Q4_0")
    gen = Generator(model="tiny-a14b", quant={"transformer": f"gguf:{high}", "transformer_2": f"gguf:{low}",
                                              "text_encoder": "fp8"}, runs_dir=runs_dir, previews=False)
    try:
        gen.generate("a fox", seed=0, progress=False)
        pipe = gen.pipeline
        assert pipe.transformer.blocks[0].attn1.to_q.weight.quant_type.name == "Q8_0"
        assert pipe.transformer_2.blocks[0].attn1.to_q.weight.quant_type.name == "Q4_0"
        assert "float8_e4m3fn" in stored_dtypes(pipe.text_encoder)
    finally:
        gen.close()
    # A plain mode covers both experts (and the text encoder).
    with Generator(model="tiny-a14b", quant="fp8", runs_dir=runs_dir, previews=False) as both:
        assert both.weights.modes == {"text_encoder": "fp8", "transformer": "fp8", "transformer_2": "fp8"}


@pytest.mark.parametrize("quant, message", [
    ("q4", "is not a mode"),
    ("Q8_0", "come from a file: 'gguf:<file>'"),
    ("model.gguf", "quant='gguf:model.gguf'"),
    ("gguf:weights.bin", "names no .gguf file"),
    ({"vae": "fp8"}, "the VAE stays in fp32"),
    ({"transformer_2": "fp8"}, "this model has one transformer"),
    (8, "is not a mode"),
])
def test_bad_quant_is_refused_naming_the_fix(quant, message, runs_dir):
    with pytest.raises(ValueError, match=re.escape(message)):
        Generator(model="tiny", quant=quant, runs_dir=runs_dir, previews=False)


def test_nf4_is_refused_on_a_machine_without_cuda_before_loading(runs_dir):
    if torch.cuda.is_available():
        pytest.skip("nf4 runs here; the GPU check's quant section measures it")
    started = time.perf_counter()
    with pytest.raises(ValueError, match="nf4' needs a CUDA GPU.*int8' or 'fp8'"):
        Generator(model="tiny", quant="nf4", runs_dir=runs_dir, previews=False)
    assert time.perf_counter() - started < 2.0  # refused from the arguments, nothing loaded


def test_a_gguf_string_on_two_experts_asks_for_the_pair(gguf_file, runs_dir):
    with pytest.raises(ValueError, match=r"transformer=\('high_noise.gguf', 'low_noise.gguf'\)"):
        Generator(model="tiny-a14b", quant=f"gguf:{gguf_file}", runs_dir=runs_dir, previews=False)
    with pytest.raises(ValueError, match=r"add quant\['transformer_2'\]"):
        Generator(model="tiny-a14b", quant={"transformer": f"gguf:{gguf_file}"}, runs_dir=runs_dir, previews=False)


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    from wan_nb.models import tiny

    return tiny.make_lora(tiny_transformer(), tmp_path_factory.mktemp("lora") / "style.safetensors", seed=3,
                          scale=1.0)


@pytest.fixture(scope="module")
def bf16_lora_prediction(lora_file, tmp_path_factory):
    with Generator(model="tiny", dtype="bf16", runs_dir=tmp_path_factory.mktemp("runs"), previews=False) as gen:
        gen.load_lora(lora_file, name="style")
        gen.generate("a fox", seed=0, progress=False)
        return noise_prediction(gen.pipeline.transformer)


@pytest.mark.parametrize("mode", ["fp8", "int8", "gguf"])
def test_a_lora_on_a_quantized_transformer_acts_as_on_bf16(mode, lora_file, gguf_file, bf16_prediction,
                                                           bf16_lora_prediction, runs_dir):
    quant = f"gguf:{gguf_file}" if mode == "gguf" else {"transformer": mode}
    with Generator(model="tiny", quant=quant, dtype="bf16", runs_dir=runs_dir, previews=False) as gen:
        gen.load_lora(lora_file, name="style")
        result = gen.generate("a fox", seed=0, progress=False)   # fp8: the adapters are made in bf16, not fp8
        assert result.video_path.is_file()
        with_lora = noise_prediction(gen.pipeline.transformer)
    # The LoRA moves the prediction far more than the quantization does, and the same way as on bf16.
    effect = relative_error(bf16_lora_prediction, bf16_prediction)
    assert effect > 4 * TOLERANCE[mode]
    assert relative_error(with_lora, bf16_lora_prediction) < TOLERANCE[mode]


def test_a_umt5_gguf_loads_as_the_text_encoder(tmp_path, runs_dir, gguf_file):
    from _weights_helpers import prompt_embedding, tiny_text_encoder, write_text_encoder_gguf
    from wan_nb.weights.single_file import CheckpointError

    reference = tiny_text_encoder()
    encoder_file = write_text_encoder_gguf(reference, tmp_path / "umt5-tiny-Q8_0.gguf")
    with Generator(model="tiny", quant={"text_encoder": f"gguf:{encoder_file}"}, dtype="bf16", runs_dir=runs_dir,
                   previews=False) as gen:
        result = gen.generate("a red fox", seed=0, progress=False)
        assert wan_nb.recipe(result)["quant"] == {"text_encoder": "gguf"}
        encoder = gen.pipeline.text_encoder
        q = encoder.encoder.block[0].layer[0].SelfAttention.q.weight
        assert type(q).__name__ == "GGUFParameter" and q.quant_type.name == "Q8_0"
        # wo is dequantized: T5's feed-forward casts its input to wo's dtype before calling it.
        assert encoder.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype == torch.bfloat16
        error = relative_error(prompt_embedding(encoder), prompt_embedding(reference.to(torch.bfloat16)))
        assert error < TOLERANCE["gguf"], error
    # A transformer file is not a text encoder, and the other way round: refused before loading.
    with pytest.raises(CheckpointError, match="a Wan transformer; pass it as transformer="):
        Generator(model="tiny", quant={"text_encoder": f"gguf:{gguf_file}"}, runs_dir=runs_dir, previews=False)
    with pytest.raises(CheckpointError, match="a text encoder"):
        Generator(model="tiny", transformer=encoder_file, runs_dir=runs_dir, previews=False)


@pytest.mark.parametrize("model, quant", [
    ("tiny-a14b", {"transformer": "fp8", "transformer_2": None, "text_encoder": "int8"}),
    ("tiny-a14b", "int8"),
    ("tiny", {"text_encoder": "fp8"}),
])
def test_options_rebuild_themselves(model, quant, gguf_file):
    # What a Ray worker's Generator and a rerun from a recipe are made with.
    from wan_nb.weights import options as weights

    _, options = weights.resolve(model, quant=quant)
    _, again = weights.resolve(model, **options.as_arguments())
    assert (again.modes, again.files) == (options.modes, options.files)
    _, pair = weights.resolve("tiny-a14b", transformer=(gguf_file, None), quant="fp8")
    assert pair.modes == {"transformer": "gguf", "transformer_2": "fp8", "text_encoder": "fp8"}
    _, rebuilt = weights.resolve("tiny-a14b", **pair.as_arguments())
    assert (rebuilt.modes, rebuilt.files) == (pair.modes, pair.files)


def test_load_options_carry_the_weights_to_another_process(gguf_file, runs_dir):
    # A Ray worker builds its holder from LoadOptions(**as_kwargs()); it must load the same weights.
    from wan_nb.models import specs as models
    from wan_nb.core.engine import LoadOptions
    from wan_nb.weights.options import for_options

    with Generator(model="tiny", quant={"transformer": f"gguf:{gguf_file}", "text_encoder": "fp8"},
                   runs_dir=runs_dir, previews=False) as gen:
        sent = LoadOptions(**gen.load_options.as_kwargs())
        there = for_options(models.resolve("tiny"), sent)
        assert (there.modes, there.files) == (gen.weights.modes, gen.weights.files)
    with Generator(model="tiny", runs_dir=runs_dir, previews=False) as plain:
        assert for_options(models.resolve("tiny"), plain.load_options) is None


def test_a_ray_worker_loads_the_drivers_quantized_weights(runs_dir):
    # The actor class itself, in this process (no Ray): what a cluster's workers are built with.
    from wan_nb.cluster.worker import PipelineWorker

    with Generator(model="tiny", quant="fp8", device="cpu", runs_dir=runs_dir, previews=False) as driver:
        options = {"load": driver.load_options.as_kwargs(), "previews": False}
    worker = PipelineWorker("w1", "tiny", options)
    spec = {"task_id": "driver-task", "prompt": "a fox", "parent_id": None, "loras": {}, "batch_interval": 0.05,
            "kwargs": {"seed": 0, "steps": 2, "height": 16, "width": 16, "num_frames": 1}, "seq_after": 2}
    frames = [frame for batch in worker.run(spec) for frame in batch["events"]]
    assert frames[-1]["type"] == "generation_completed"
    pipe = worker.host.holder.pipe
    assert pipe.transformer.blocks[0].attn1.to_q.weight.dtype == torch.float8_e4m3fn
    assert "float8_e4m3fn" in stored_dtypes(pipe.text_encoder)
