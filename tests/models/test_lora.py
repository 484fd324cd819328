"""LoRA adapters on the tiny models: formats, weights, several at once, failures that change nothing."""
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from wan_nb.models import lora_files as lora
from wan_nb.models import tiny
from _models_helpers import latents, load


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Random LoRAs for the tiny transformer: one in two key formats, a second one, broken ones."""
    folder = tmp_path_factory.mktemp("loras")
    transformer = load("tiny").transformer
    paths = {
        "ink": tiny.make_lora(transformer, folder / "ink.safetensors", seed=1),
        "ink_comfy": tiny.make_lora(transformer, folder / "ink_comfy.safetensors", seed=1, style="comfyui"),
        "rain": tiny.make_lora(transformer, folder / "rain.safetensors", seed=2),
    }
    good = load_file(str(paths["ink"]))
    wrong_shape = dict(good)
    last = sorted(wrong_shape)[-2]   # a late layer: the load fails half way through
    wrong_shape[last] = torch.randn(wrong_shape[last].shape[0], wrong_shape[last].shape[1] + 3)
    save_file(wrong_shape, str(folder / "wrong_shape.safetensors"))
    save_file({"unet.down_blocks.0.attn.to_q.lora_A.weight": torch.randn(4, 8),
               "unet.down_blocks.0.attn.to_q.lora_B.weight": torch.randn(8, 4)},
              str(folder / "other_model.safetensors"))
    partial = dict(good)
    partial["transformer.blocks.7.attn1.to_q.lora_A.weight"] = torch.randn(4, 32)
    partial["transformer.blocks.7.attn1.to_q.lora_B.weight"] = torch.randn(32, 4)
    save_file(partial, str(folder / "partial.safetensors"))
    (folder / "corrupt.safetensors").write_bytes(b"\x00garbage" * 10)
    paths.update({k: folder / f"{k}.safetensors" for k in ("wrong_shape", "other_model", "partial", "corrupt")})
    return paths


def test_weight_zero_is_no_lora_and_a_weight_changes_the_result(files):
    pipe = load("tiny")
    base = latents(pipe)
    lora.attach(pipe, "ink", lora.read_lora(files["ink"]))
    assert torch.equal(latents(pipe), base)          # attached but not active: unchanged
    lora.activate(pipe, {"ink": 0.0})
    assert torch.equal(latents(pipe), base)
    lora.activate(pipe, {"ink": 1.0})
    full = latents(pipe)
    assert not torch.allclose(full, base)
    lora.activate(pipe, {"ink": 0.5})
    half = latents(pipe)
    assert not torch.allclose(half, full) and not torch.allclose(half, base)
    lora.activate(pipe, {})
    assert torch.equal(latents(pipe), base)
    lora.activate(pipe, {"ink": 1.0})
    assert torch.equal(latents(pipe), full)          # off and on again: same result


def test_comfyui_and_original_wan_keys_load_like_diffusers_keys(files):
    state = lora.read_lora(files["ink_comfy"])
    assert state.format == "original" and next(iter(state.state_dict)).startswith("diffusion_model.")
    pipe = load("tiny")
    lora.attach(pipe, "ink", lora.read_lora(files["ink"]))
    lora.attach(pipe, "ink_comfy", state)
    lora.activate(pipe, {"ink": 1.0})
    from_diffusers = latents(pipe)
    lora.activate(pipe, {"ink_comfy": 1.0})
    assert torch.allclose(latents(pipe), from_diffusers, atol=1e-5)


def test_several_adapters_at_once(files):
    pipe = load("tiny")
    lora.attach(pipe, "ink", lora.read_lora(files["ink"]))
    lora.attach(pipe, "rain", lora.read_lora(files["rain"]))
    assert lora.loaded(pipe) == ["ink", "rain"]
    lora.activate(pipe, {"ink": 1.0})
    ink = latents(pipe)
    lora.activate(pipe, {"ink": 1.0, "rain": 0.7})
    both = latents(pipe)
    assert not torch.allclose(ink, both)
    lora.detach(pipe, "rain")
    assert lora.loaded(pipe) == ["ink"]
    assert torch.equal(latents(pipe), ink)           # the remaining adapter keeps its weight


@pytest.mark.parametrize("bad,message", [
    ("wrong_shape", "could not be loaded.*size mismatch"),
    ("other_model", "does not fit this model"),
    ("partial", "only partly fits"),
])
@pytest.mark.parametrize("already", [[], ["rain"]], ids=["first", "second"])
def test_a_failed_load_leaves_the_pipeline_exactly_as_before(files, bad, message, already):
    pipe = load("tiny")
    for name in already:
        lora.attach(pipe, name, lora.read_lora(files[name]))
    lora.activate(pipe, {name: 0.8 for name in already})
    before = latents(pipe)
    modules_before = {n: type(m) for n, m in pipe.transformer.named_modules()}
    with pytest.raises(lora.LoraError, match=message) as info:
        lora.attach(pipe, "bad", lora.read_lora(files[bad]))
    assert str(files[bad]) in str(info.value)
    assert lora.loaded(pipe) == already
    assert {n: type(m) for n, m in pipe.transformer.named_modules()} == modules_before
    assert torch.equal(latents(pipe), before)
    lora.attach(pipe, "ink", lora.read_lora(files["ink"]))  # and the next LoRA still loads
    assert lora.loaded(pipe) == [*already, "ink"]


def test_unreadable_files_are_refused_before_touching_the_pipeline(files, tmp_path):
    with pytest.raises(lora.LoraError, match="corrupt.safetensors.*could not be read"):
        lora.read_lora(files["corrupt"])
    with pytest.raises(lora.LoraError, match="does not exist"):
        lora.read_lora(tmp_path / "missing.safetensors")
    with pytest.raises(lora.LoraError, match="not a LoRA"):
        lora.read_lora(tiny.build("tiny", tmp_path / "m") / "transformer" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(lora.LoraError, match="no such file or folder"):
        lora.read_lora("just-a-word")


def test_folders_holding_one_lora_and_default_names(files, tmp_path):
    folder = tmp_path / "my-style"
    folder.mkdir()
    (folder / "pytorch_lora_weights.safetensors").write_bytes(files["ink"].read_bytes())
    state = lora.read_lora(folder)
    assert state.name == "my-style" == lora.default_name(folder)
    assert lora.default_name("styles/ink.v2.safetensors") == "ink_v2"
    assert lora.default_name("someone/rain-lora") == "rain-lora"
    (folder / "other.safetensors").write_bytes(files["rain"].read_bytes())
    assert lora.read_lora(folder).path.name == "pytorch_lora_weights.safetensors"
    (folder / "pytorch_lora_weights.safetensors").unlink()
    (folder / "third.safetensors").write_bytes(files["rain"].read_bytes())
    with pytest.raises(lora.LoraError, match="several weight files"):
        lora.read_lora(folder)


def test_names_and_weights_are_checked(files):
    pipe = load("tiny")
    state = lora.read_lora(files["ink"])
    lora.attach(pipe, "ink", state)
    with pytest.raises(lora.LoraError, match="already loaded"):
        lora.attach(pipe, "ink", state)
    with pytest.raises(lora.LoraError, match="'nope' is not loaded.*ink"):
        lora.activate(pipe, {"nope": 1.0})
    with pytest.raises(lora.LoraError, match="must be a finite number"):
        lora.activate(pipe, {"ink": "strong"})
    with pytest.raises(lora.LoraError, match="not loaded"):
        lora.detach(pipe, "nope")
    with pytest.raises(lora.LoraError, match="without dots"):
        lora.attach(pipe, "a.b", state)


def test_detach_all_restores_the_original_modules(files):
    pipe = load("tiny")
    base = latents(pipe)
    modules = {n: type(m) for n, m in pipe.transformer.named_modules()}
    lora.attach(pipe, "ink", lora.read_lora(files["ink"]))
    lora.attach(pipe, "rain", lora.read_lora(files["rain"]))
    lora.activate(pipe, {"ink": 1.0, "rain": 1.0})
    lora.detach(pipe)
    assert lora.loaded(pipe) == []
    assert {n: type(m) for n, m in pipe.transformer.named_modules()} == modules
    assert torch.equal(latents(pipe), base)


def test_two_expert_models_take_a_lora_per_expert(files):
    pipe = load("tiny-a14b")
    base = latents(pipe, steps=4)
    lora.attach(pipe, "low", lora.read_lora(files["ink"]), target="transformer_2")
    adapters = pipe.get_list_adapters()
    assert adapters.get("transformer_2") == ["low"] and not adapters.get("transformer")
    lora.activate(pipe, {"low": 1.0})
    assert not torch.allclose(latents(pipe, steps=4), base)
    with pytest.raises(lora.LoraError, match="two-expert"):
        lora.attach(load("tiny"), "x", lora.read_lora(files["ink"]), target="transformer_2")


# ---------------------------------------------------------------------------------------------
# Two experts (Wan 2.2 A14B): one adapter on both, on one, or a high/low pair
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def a14b_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("a14b-loras")
    pipe = load("tiny-a14b")
    return {"high": tiny.make_lora(pipe.transformer, folder / "style_high.safetensors", seed=3),
            "low": tiny.make_lora(pipe.transformer_2, folder / "style_low.safetensors", seed=4)}


def _generator(runs_dir, model="tiny-a14b"):
    from wan_nb import Generator

    return Generator(model=model, device="cpu", runs_dir=runs_dir, previews=False)


def _run(gen, **kwargs):
    return gen.generate("a fox", seed=0, steps=4, num_frames=5, progress=False, **kwargs)


def test_an_a14b_lora_reaches_both_experts_by_default(a14b_files, runs_dir):
    gen = _generator(runs_dir)
    try:
        _run(gen)  # loads the model
        name = gen.load_lora(a14b_files["high"], name="style")
        assert lora.per_component(gen.pipeline) == {"transformer": ["style"], "transformer_2": ["style"]}
        _run(gen)
        for expert in (gen.pipeline.transformer, gen.pipeline.transformer_2):
            assert expert.active_adapters() == ["style"]
        gen.unload_lora(name)
        assert lora.loaded(gen.pipeline) == []
    finally:
        gen.close()


def test_a14b_lora_on_one_expert_or_as_a_pair(a14b_files, runs_dir):
    gen = _generator(runs_dir)
    try:
        gen.load_lora(a14b_files["low"], name="late", experts="low")       # attached at the next run
        gen.load_lora(a14b_files["high"], name="early", experts="high")
        gen.load_lora((a14b_files["high"], a14b_files["low"]), name="pair")
        plain = _run(gen, loras={})
        both = _run(gen, loras={"late": 1.0, "early": 1.0})
        assert lora.per_component(gen.pipeline) == {"transformer": ["early", "pair"],
                                                    "transformer_2": ["late", "pair"]}
        assert gen.pipeline.transformer.active_adapters() == ["early"]
        assert gen.pipeline.transformer_2.active_adapters() == ["late"]
        from wan_nb.models.video_io import read_frames

        assert not np.array_equal(read_frames(plain.video_path), read_frames(both.video_path))
        # The pair holds the same two files as early + late: the same video.
        pair = _run(gen, loras={"pair": 1.0})
        assert np.array_equal(read_frames(pair.video_path), read_frames(both.video_path))
    finally:
        gen.close()


def test_expert_choices_are_checked_before_anything_is_attached(a14b_files, files, runs_dir):
    gen = _generator(runs_dir)
    try:
        with pytest.raises(lora.LoraError, match="experts='middle'"):
            gen.load_lora(a14b_files["high"], experts="middle")
        with pytest.raises(lora.LoraError, match="pair of files fills both"):
            gen.load_lora((a14b_files["high"], a14b_files["low"]), experts="high")
        with pytest.raises(lora.LoraError, match=r"\(high_noise_file, low_noise_file\)"):
            gen.load_lora([a14b_files["high"]])
        assert gen.loras == {}
    finally:
        gen.close()
    gen = _generator(runs_dir, model="tiny")
    try:
        with pytest.raises(lora.LoraError, match="two-expert models"):
            gen.load_lora(files["ink"], experts="both")
        with pytest.raises(lora.LoraError, match="two-expert models"):
            gen.load_lora((files["ink"], files["rain"]))
    finally:
        gen.close()


def test_non_finite_lora_files_and_weights_are_refused(files, tmp_path, runs_dir):
    state = load_file(str(files["ink"]))
    key = sorted(state)[3]
    state[key] = state[key].clone()
    state[key][0, 0] = float("nan")
    broken = tmp_path / "diverged.safetensors"
    save_file(state, str(broken))
    with pytest.raises(lora.LoraError, match=r"diverged\.safetensors.*NaN or infinite.*1 of"):
        lora.read_lora(broken)
    gen = _generator(runs_dir, model="tiny")
    try:
        with pytest.raises(lora.LoraError, match="diverged"):
            gen.load_lora(broken)
        for weight in (float("inf"), float("nan")):
            with pytest.raises(ValueError, match="finite number"):
                gen.load_lora(files["ink"], weight=weight)
        assert gen.loras == {}
    finally:
        gen.close()


def test_empty_paths_and_names_are_refused(files, runs_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(files["ink"].parent)   # a folder full of LoRAs: '' must not pick one
    gen = _generator(runs_dir, model="tiny")
    try:
        with pytest.raises(lora.LoraError, match="LoRA path ''"):
            gen.load_lora("")
        with pytest.raises(ValueError, match="name='': give a non-empty adapter name"):
            gen.load_lora(files["ink"], name="")
        with pytest.raises(ValueError, match="name='  '"):
            gen.load_lora(files["ink"], name="  ")
        assert gen.loras == {}
    finally:
        gen.close()
