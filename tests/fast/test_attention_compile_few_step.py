"""Attention backend, regional compile and the few-step (distilled LoRA) preset variants."""
import json

import numpy as np

import pytest

import wan_nb
from wan_nb.models import few_step as fast_presets
from wan_nb.models.few_step import FAST_PRESETS, LORA_NAME


# -- attention ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, fix", [
    ("flashy", "is not a diffusers attention backend; choose one of"),
    ("flash", "runs only on a CUDA GPU"),
    ("sage", "runs only on a CUDA GPU"),
    ("_native_xla", "its kernel is not available"),
    ("", "give a backend name"),
])
def test_a_backend_that_cannot_run_is_refused_before_loading(tmp_path, name, fix):
    with pytest.raises(ValueError, match=fix):
        wan_nb.Generator("tiny", runs_dir=tmp_path, attention=name)


def test_native_attention_is_set_on_every_block(tmp_path):
    from diffusers.models.attention_dispatch import AttentionBackendName

    with wan_nb.Generator("tiny-a14b", runs_dir=tmp_path, attention="native", previews=False) as gen:
        result = gen.generate("a fox", seed=0, progress=False)
        backends = gen.run_on_worker(lambda pipe: {b.attn1.processor._attention_backend
                                                   for t in (pipe.transformer, pipe.transformer_2) for b in t.blocks})
    assert backends == {AttentionBackendName.NATIVE}
    assert wan_nb.recipe(result)["attention"] == "native"


@pytest.mark.slow
def test_compile_compiles_the_repeated_blocks(tmp_path):
    with wan_nb.Generator("tiny", runs_dir=tmp_path, compile=True, previews=False) as gen:
        result = gen.generate("a fox", seed=0, steps=2, progress=False)
        compiled = gen.run_on_worker(lambda pipe: [b._compiled_call_impl is not None for b in pipe.transformer.blocks])
    assert compiled == [True, True] and result.video_path.is_file()
    assert wan_nb.recipe(result)["compile"] is True


def test_compile_must_be_a_bool(tmp_path):
    with pytest.raises(ValueError, match="compile='yes'"):
        wan_nb.Generator("tiny", runs_dir=tmp_path, compile="yes")


# -- few-step presets ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in FAST_PRESETS if not n.startswith("tiny")])
def test_real_few_step_variants_resolve_without_a_download(tmp_path, name):
    fast = FAST_PRESETS[name]
    with wan_nb.Generator(name, device="cpu", runs_dir=tmp_path, previews=False) as gen:
        image = {"image": np.zeros((480, 832, 3), np.uint8)} if gen.spec.requires_image else {}
        params = gen.check("a fox", **image)
        base = wan_nb.Generator(fast.base, device="cpu", runs_dir=tmp_path, previews=False)
        assert gen.spec.source == base.spec.source and gen.spec.experts == base.spec.experts
        base.close()
    assert (params["steps"], params["guidance_scale"], params["flow_shift"]) == (4, 1.0, fast.flow_shift)
    source = fast_presets.lora_source(name)
    if gen.spec.experts:  # one distilled LoRA per expert
        assert params["guidance_scale_2"] == 1.0
        assert isinstance(source, tuple) and [s.rsplit("/", 1)[1] for s in source] == [
            "high_noise_model.safetensors", "low_noise_model.safetensors"]
    else:
        assert isinstance(source, str) and source.endswith(".safetensors") and source.count("/") >= 2


def test_tiny_few_step_variant_loads_its_lora_and_its_settings(tmp_path):
    with wan_nb.Generator("tiny-4step", runs_dir=tmp_path, previews=False) as fast, \
            wan_nb.Generator("tiny", runs_dir=tmp_path, previews=False) as plain:
        result = fast.generate("a red fox", seed=7, progress=False)
        assert (result.params["steps"], result.params["guidance_scale"], result.params["flow_shift"]) == (2, 1.0, 5.0)
        assert fast.loras == {LORA_NAME: 1.0}
        recipe = wan_nb.recipe(result)
        assert recipe["model"]["name"] == "tiny-4step" and recipe["loras"] == []  # the name implies it
        same = plain.generate("a red fox", seed=7, steps=2, flow_shift=5.0, progress=False)
        assert _frames(same) != _frames(result)  # the distilled LoRA changes the video
        # a run that asks for its own LoRA keeps the distilled one on
        from wan_nb.models import tiny

        style = tiny.make_lora(plain.pipeline.transformer, tmp_path / "style.safetensors", seed=9)
        fast.load_lora(style, name="style", weight=0.5)
        styled = fast.generate("a red fox", seed=7, loras={"style": 0.5}, progress=False)
        assert [l["name"] for l in wan_nb.recipe(styled)["loras"]] == ["style"]
        assert _frames(fast.rerun(styled, progress=False)) == _frames(styled)  # distilled LoRA still on


def _frames(result):
    import imageio.v3 as iio

    return iio.imread(result.video_path).tobytes()


# -- command line --------------------------------------------------------------------------------
def test_cli_cache_flags(tmp_path, capsys):
    from wan_nb.cli.commands import main

    code = main(["generate", "a fox", "--steps", "8", "--cache", "first-block", "--cache-threshold", "0.3",
                 "--attention", "native", "--json", "--runs-dir", str(tmp_path)])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    steps = [l["data"] for l in lines if l["type"] == "detailed_generation_progress"
             and l["data"]["stage"] == "generating" and "step_reused" in l["data"]]
    assert len(steps) == 8 and any(s["step_reused"] for s in steps)
    assert main(["generate", "a fox", "--cache", "first-block", "--attention", "flash",
                 "--runs-dir", str(tmp_path)]) == 2
    assert "CUDA GPU" in capsys.readouterr().err


def test_a_rerun_computes_with_the_recorded_attention_backend(tmp_path):
    from diffusers.models.attention_dispatch import AttentionBackendName

    with wan_nb.Generator("tiny", runs_dir=tmp_path, attention="_native_math", previews=False) as made, \
            wan_nb.Generator("tiny", runs_dir=tmp_path, previews=False) as other:
        first = made.generate("a fox", seed=1, progress=False)
        assert wan_nb.recipe(first)["attention"] == "_native_math"
        with pytest.raises(ValueError, match=r"Use Generator\('tiny', attention='_native_math'\)"):
            other.rerun(first, progress=False)
        again = made.rerun(first, progress=False)
        backend = made.run_on_worker(lambda pipe: pipe.transformer.blocks[0].attn1.processor._attention_backend)
    assert backend == AttentionBackendName._NATIVE_MATH and _frames(again) == _frames(first)
