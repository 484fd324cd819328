"""The memory planner: exact parameter counts from the real configs on the meta device (no
download), bytes per format, a peak per offload x quantization, the fastest plan that fits, and
Generator(plan="auto") applying it."""
import pytest

import wan_nb
from wan_nb.fast import options as fast_path
from wan_nb.models import tiny
from wan_nb.fast.planner import GB, OFFLOADS, PLANNED_QUANTS, component_bytes, plan
from wan_nb.fast.planner_counts import count_components, tiny_components


SMALL = dict(height=64, width=64, num_frames=5)  # parameter counts do not depend on the shape; traces do


def counts(model):
    return {c.name: c for c in plan(model, **SMALL).components}


def test_counts_match_the_released_model_sizes():
    """Published sizes: Wan 2.1 1.3B / 14B, Wan 2.2 5B, umT5-XXL encoder 5.7 B, Wan 2.1 VAE 127 M."""
    small, big, five, a14b = (counts(m) for m in ("wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.2-ti2v-5b",
                                                  "wan2.2-t2v-a14b"))
    assert 1.40e9 < small["transformer"].params < 1.45e9
    assert 14.0e9 < big["transformer"].params < 14.5e9
    assert 4.9e9 < five["transformer"].params < 5.1e9
    assert 5.6e9 < small["text_encoder"].params < 5.75e9  # the embedding once, not twice
    assert 0.12e9 < small["vae"].params < 0.13e9
    assert a14b["transformer"].params == a14b["transformer_2"].params == big["transformer"].params
    assert "image_encoder" in counts("wan2.1-i2v-14b-480p") and "image_encoder" not in big


def test_meta_counts_are_exact():
    """The meta-device count of a tiny model equals the parameters of the real one built in memory."""
    real = tiny.components("tiny")
    for c in count_components(tiny_components("tiny")):
        assert c.params == sum(p.numel() for p in real[c.name].parameters()), c.name
        assert (0 < c.quantizable <= c.params) if c.kind != "vae" else c.quantizable == 0  # convolutions


def test_bytes_per_format():
    c = counts("wan2.1-t2v-14b")
    transformer, vae = c["transformer"], c["vae"]
    assert component_bytes(transformer, None) == 2 * transformer.params
    sizes = [component_bytes(transformer, q) for q in (None, "gguf:Q8_0", "fp8", "nf4")]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0] / 3
    assert {component_bytes(vae, q) for q in PLANNED_QUANTS} == {4 * vae.params}  # the VAE stays fp32


def test_the_plan_is_the_fastest_that_fits():
    roomy = plan("wan2.1-t2v-1.3b", gpu_gb=80, ram_gb=128)
    assert (roomy.best.offload, roomy.best.quant) == ("none", None)
    for gpu in (8, 12, 16, 24, 48):
        found = plan("wan2.1-t2v-14b", gpu_gb=gpu, ram_gb=64, height=480, width=832)
        assert len(found.rows) == len(OFFLOADS) * len(PLANNED_QUANTS)
        best = found.best
        assert best is not None and best.fits and best.vram_gb * GB <= (gpu - 1) * 0.95 * GB
        faster = [r for r in found.rows if r.fits and r.applicable and r.speed < best.speed]
        assert not faster, (gpu, best, faster)
    # less memory never gives a faster plan
    speeds = [plan("wan2.2-t2v-a14b", gpu_gb=g, ram_gb=128, height=480, width=832).best.speed
              for g in (12, 24, 48, 80, 141)]
    assert speeds == sorted(speeds, reverse=True)


def test_the_printed_plan_states_its_basis():
    found = plan("wan2.1-t2v-14b", gpu_gb=24, ram_gb=64, height=480, width=832)
    text = str(found)
    assert "832x480" in text and "Basis:" in text and "meta device" in text
    assert all(o in text for o in OFFLOADS) and "needs a .gguf file" in text
    assert f"offload={found.best.offload!r}" in text


def test_nothing_fits_is_said():
    found = plan("wan2.1-t2v-14b", gpu_gb=2, ram_gb=8, **SMALL)
    assert found.best is None and "Nothing fits" in str(found)


@pytest.mark.parametrize("call, fix", [
    (lambda: plan("wan2.1-t2v-14b", gpu_gb=-1), "gpu_gb=-1"),
    (lambda: plan("wan2.1-t2v-14b", ram_gb="lots"), "positive number"),
    (lambda: plan("no-such-model"), "is not a known model"),
    (lambda: plan("wan2.1-t2v-14b", gpu="GTX 9999"), "unknown GPU 'GTX 9999'.*--gpu-gb"),
    (lambda: plan("wan2.1-t2v-14b", height=500, width=832), "height=500: .* multiple of 16; try height=496"),
    (lambda: plan("wan2.1-t2v-14b", num_frames=80), "num_frames=80: .* 4 x k \\+ 1 frames; try num_frames=81"),
])
def test_bad_plan_input(call, fix):
    with pytest.raises(ValueError, match=fix):
        call()


def test_generator_plan_auto_applies_the_best_plan(tmp_path, monkeypatch):
    monkeypatch.setattr(fast_path, "machine_memory_gb", lambda device="auto": (16.0, 64.0))
    # device="cuda": the test pretends a 16 GB GPU; with device="auto" this CPU-only machine refuses a
    # real model when the Generator is made (issue 28).
    with wan_nb.Generator("wan2.1-t2v-14b", device="cuda", runs_dir=tmp_path, plan="auto", previews=False) as gen:
        found = gen.memory_plan
        quantized = hasattr(gen.load_options, "weights")  # once this build loads quantized weights
        expected = min((r for r in found.rows if r.fits and r.applicable and (r.quant is None or quantized)),
                       key=lambda r: r.speed)
        assert gen.offload == expected.offload and gen.offload != "none"
        assert gen.pipeline is None  # planned, nothing loaded


def test_plan_auto_refusals(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="plan='auto'"):
        wan_nb.Generator("tiny", runs_dir=tmp_path, plan="fast")
    with pytest.raises(ValueError, match="drop offload='model'"):
        wan_nb.Generator("tiny", runs_dir=tmp_path, plan="auto", offload="model")
    monkeypatch.setattr(fast_path, "machine_memory_gb", lambda device="auto": (2.0, 8.0))
    with pytest.raises(ValueError, match="fits"):
        wan_nb.Generator("wan2.1-t2v-14b", runs_dir=tmp_path, plan="auto")


def test_plan_auto_without_a_gpu_changes_nothing(tmp_path):
    with wan_nb.Generator("tiny", runs_dir=tmp_path, plan="auto", previews=False) as gen:
        assert gen.offload == "none" and gen.memory_plan is None
        assert gen.generate("a fox", seed=0, progress=False).video_path.is_file()


def test_cli_plan(capsys):
    from wan_nb.cli.commands import main

    assert main(["plan", "wan2.1-t2v-1.3b", "--gpu-gb", "12", "--ram-gb", "32"]) == 0
    out = capsys.readouterr().out
    assert "Memory plan for wan2.1-t2v-1.3b" in out and "on a 12 GB GPU with 32 GB RAM" in out
    assert main(["plan", "nope", "--gpu-gb", "12", "--ram-gb", "32"]) == 2


def test_a_presets_repo_id_and_its_few_step_variant_plan_as_the_preset():
    preset = [c.params for c in plan("wan2.1-t2v-1.3b", **SMALL).components]
    assert [c.params for c in plan("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", **SMALL).components] == preset
    assert [c.params for c in plan("wan2.1-t2v-1.3b-4step", **SMALL).components] == preset
