"""benchmarks/gpu_check.py: the GPU checks run end to end on CPU at toy sizes (--smoke), the
real-size architectures have the released models' parameter counts, and the VAE decode works
under sequential offload (the weights then sit on "meta")."""
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
FAST_SECTIONS = ("monitor", "speed", "previews", "memory")


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    env = dict(os.environ, WAN_NB_CACHE=str(out / "cache"), WAN_NB_RUNS_DIR=str(out / "runs"))
    env.pop("OUT", None)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--section", ",".join(FAST_SECTIONS),
                           "--out", str(out)], capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = {s: json.loads((out / f"gpu_check_{s}.json").read_text()) for s in FAST_SECTIONS}
    return results, proc.stdout, elapsed, (out / "gpu_check_summary.md").read_text()


@pytest.mark.slow
def test_every_section_writes_rows_and_a_table(smoke_results):
    results, stdout, elapsed, summary = smoke_results
    assert elapsed < 120, f"smoke run took {elapsed:.0f} s"
    assert summary.startswith("Device: cpu (no GPU)") and "(smoke: numbers mean nothing)" in summary
    assert "| offload | vae_tiling |" in summary and "**speed: wan2.1-1.3b 64x64x9" in summary
    for section, payload in results.items():
        assert payload["section"] == section and payload["error"] is None and payload["smoke"] is True
        assert payload["rows"], section
        assert all(row["section"] == section for row in payload["rows"])
        assert payload["environment"]["device"] == "cpu (no GPU)"
        assert payload["command"].startswith("python benchmarks/gpu_check.py --smoke")
        assert f"## {section} done" in stdout


@pytest.mark.slow
def test_monitor_reports_no_gpu_rows_and_samples_during_a_run(smoke_results):
    rows = smoke_results[0]["monitor"]["rows"]
    fill = [r for r in rows if r.get("part") == "fill"]
    assert fill and fill[0]["status"] == "no GPU" and fill[0]["smi_used_mb"] is None
    samples = [r for r in rows if r.get("part") == "run"]
    assert samples and all(r["monitor_source"] == "ram" and _finite(r["monitor_used_mb"]) for r in samples)
    summary = next(r for r in rows if r.get("part") == "run-summary")
    assert summary["status"] == "completed" and summary["vram_events"] >= 1
    assert summary["samples"] == len(samples)


@pytest.mark.slow
def test_speed_row_has_step_decode_and_overhead_figures(smoke_results):
    (row,) = smoke_results[0]["speed"]["rows"]
    for key in ("s_per_step", "encode_s", "decode_s", "save_s", "bare_s", "generate_s", "ratio"):
        assert _finite(row[key]) and row[key] > 0, (key, row[key])
    assert row["target"] == 1.005 and row["runs"] == 1 and row["steps"] == 2
    assert len(row["step_s_all"]) == row["steps"] - 1  # intervals between synchronised step ends
    assert row["peak_vram_mb"] is None  # no GPU: no figure rather than a made-up one
    assert row["shape"] == "64x64x9" and row["status"] == "completed"


@pytest.mark.slow
def test_previews_row_shares_are_finite(smoke_results):
    rows = {r["case"]: r for r in smoke_results[0]["previews"]["rows"]}
    assert rows["no previews"]["previews"] == 0
    every = rows["preview_every=1"]
    assert every["previews"] == every["steps"] and _finite(every["preview_share"]) and every["preview_ms"] > 0
    assert all(r["status"] == "stopped after denoising" for c, r in rows.items() if c != "monitor.sample()")
    sampler = rows["monitor.sample()"]
    assert _finite(sampler["sample_ms"]) and sampler["sample_ms"] > 0 and _finite(sampler["sampler_share_at_1s"])


@pytest.mark.slow
def test_memory_covers_every_offload_mode_with_and_without_tiling(smoke_results):
    rows = smoke_results[0]["memory"]["rows"]
    seen = {(r["offload"], r["vae_tiling"]) for r in rows}
    assert seen == {(m, t) for m in ("none", "model", "group", "sequential") for t in (False, True)}
    for row in rows:
        assert not str(row["status"]).startswith("failed"), row
        assert _finite(row["decode_s"]) and row["preset_vram_gb"] > 0
    untiled = [r for r in rows if not r["vae_tiling"]]
    assert all(_finite(r["s_per_step"]) for r in untiled)
    assert all("no effect on CPU" in r["placement"] for r in untiled if r["offload"] != "none")


def test_real_architectures_have_the_released_parameter_counts():
    """Built on "meta" (no memory): 1.3B and 5B transformers, 5.7B UMT5-XXL encoder."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    gpu_check = _load_script()
    counts = {}
    for name in ("wan2.1-1.3b", "wan2.2-5b"):
        a = gpu_check.arch(name)
        with init_empty_weights():
            counts[name] = sum(p.numel() for p in WanTransformer3DModel(**a.transformer).parameters())
            vae = AutoencoderKLWan(**a.vae)
        assert vae.config.z_dim == a.transformer["in_channels"]
    assert 1.2e9 < counts["wan2.1-1.3b"] < 1.5e9, counts
    assert 4.8e9 < counts["wan2.2-5b"] < 5.2e9, counts
    with init_empty_weights():
        encoder = UMT5EncoderModel(UMT5Config(**gpu_check.arch("wan2.1-1.3b").text_encoder))
    encoder.tie_weights()  # as build_pipeline does: one embedding table, as in the released model
    assert 5.6e9 < sum(p.numel() for p in encoder.parameters()) < 5.8e9
    with pytest.raises(ValueError, match="unknown architecture"):
        gpu_check.arch("wan9")


def test_materialize_keeps_tied_embeddings_tied():
    import torch
    from accelerate import init_empty_weights
    from transformers import UMT5Config, UMT5EncoderModel

    gpu_check = _load_script()
    with init_empty_weights():
        encoder = UMT5EncoderModel(UMT5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                              num_heads=4))
    encoder.tie_weights()
    count = gpu_check.materialize(encoder, "cpu", torch.float32)
    assert encoder.shared.weight is encoder.encoder.embed_tokens.weight
    assert count == sum(p.numel() for p in encoder.parameters())


def test_materialize_fills_meta_parameters_and_keeps_fp32_modules():
    import torch
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    gpu_check = _load_script()
    with init_empty_weights():
        model = WanTransformer3DModel(**gpu_check.arch("wan2.1-1.3b", smoke=True).transformer)
    count = gpu_check.materialize(model, "cpu", torch.bfloat16)
    assert count == sum(p.numel() for p in model.parameters())
    for name, p in model.named_parameters():
        assert p.device.type == "cpu" and torch.isfinite(p.float()).all(), name
        fp32 = any(k in name.split(".") for k in model._keep_in_fp32_modules)
        assert p.dtype == (torch.float32 if fp32 else torch.bfloat16), name
    assert model.blocks[0].attn1.to_q.weight.float().std() > 0  # random, not zeros
    assert model.rope.freqs_cos.device.type == "cpu"  # real buffers kept


def test_decode_latents_under_sequential_offload():
    """Sequential offload leaves the VAE's weights on "meta": the decode must not send the latents there."""
    import torch
    from accelerate import cpu_offload

    from wan_nb.models import tiny
    from wan_nb.models.video_io import decode_latents

    pipe = tiny.pipeline("tiny")
    cpu_offload(pipe.vae, execution_device=torch.device("cpu"))
    assert pipe.vae.device.type == "meta"
    frames = decode_latents(pipe, torch.randn(1, 16, 3, 4, 4))
    assert frames.shape == (9, 32, 32, 3) and frames.dtype.name == "uint8"


def test_bad_arguments_fail_before_any_work():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--section", "speed,warp"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "--section" in proc.stderr and "warp" in proc.stderr
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--steps", "0"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "--steps 0" in proc.stderr


def test_14b_architectures_have_the_released_parameter_counts():
    """Wan 2.1 14B (each Wan 2.2 A14B expert has its shape), its I2V variant and CLIP ViT-H/14."""
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel
    from transformers import CLIPVisionConfig, CLIPVisionModel

    gpu_check = _load_script()
    with init_empty_weights():
        t2v = sum(p.numel() for p in WanTransformer3DModel(**gpu_check.arch("wan2.1-14b").transformer).parameters())
        i2v_arch = gpu_check.arch("wan2.1-i2v-14b")
        i2v = sum(p.numel() for p in WanTransformer3DModel(**i2v_arch.transformer).parameters())
        clip = sum(p.numel() for p in CLIPVisionModel(CLIPVisionConfig(**i2v_arch.image_encoder)).parameters())
    assert 14.0e9 < t2v < 14.5e9 and 16.2e9 < i2v < 16.6e9 and 0.62e9 < clip < 0.64e9
    a14b = gpu_check.arch("wan2.2-a14b")
    assert a14b.two_experts and a14b.transformer == gpu_check.arch("wan2.1-14b").transformer
    assert a14b.pipeline == {"boundary_ratio": 0.875}


@pytest.mark.slow
def test_real_section_runs_every_architecture_through_the_generator(tmp_path):
    """--smoke of the one prepared GPU call's main section: each preset architecture, the loader,
    every offload mode and tiling, I2V both ways, the A14B switch, a LoRA on both experts, a cancel."""
    env = dict(os.environ, WAN_NB_CACHE=str(tmp_path / "cache"), WAN_NB_RUNS_DIR=str(tmp_path / "runs"))
    env.pop("OUT", None)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--section", "real", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=420, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    payload = json.loads((tmp_path / "gpu_check_real.json").read_text())
    rows = payload["rows"]
    assert payload["error"] is None and {r["arch"] for r in rows} == set(gpu_check_archs())
    failed = [r for r in rows if str(r.get("status", "")).startswith("failed")]
    assert not failed, failed
    cases = {(r["arch"], r["case"]) for r in rows}
    for case in ("loader", "cancel", "after cancel", "sequential", "group", "none + tiling"):
        assert ("wan2.1-1.3b", case) in cases
    assert {r["offload"] for r in rows if r["arch"] == "wan2.1-1.3b" and "offload" in r} == \
        {"none", "model", "sequential", "group"}
    assert ("wan2.2-5b", "image") in cases and ("wan2.1-i2v-14b", "image") in cases
    cancel = next(r for r in rows if r["case"] == "cancel")
    assert cancel["status"] == "cancelled after step 1"
    lora_row = next(r for r in rows if r["case"] == "LoRA on both experts")
    assert "'transformer': ['style'], 'transformer_2': ['style']" in lora_row["note"]
    assert "Switched to the low-noise expert" in lora_row["note"]
    assert "**real: every preset architecture through Generator" in (tmp_path / "gpu_check_summary.md").read_text()


def gpu_check_archs():
    return _load_script().ARCHITECTURES
