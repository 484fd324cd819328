"""``wan-nb plan MODEL --gpu NAME --json`` as scripts read it, every preset planned, modes this
machine cannot run marked "needs ...", and a first run's estimate from the applied plan."""
import json

import pytest

import wan_nb
from wan_nb.cli.commands import main
from wan_nb.fast import options as fast_path
from wan_nb.fast.cards import CARDS
from wan_nb.fast.planner import plan
from wan_nb.models.few_step import FAST_PRESETS
from wan_nb.models.presets import PRESETS

PLAN_KEYS = {"offload", "quant", "vae_tiling", "fits", "peak_vram_gb", "host_ram_gb", "seconds_per_step",
             "minutes_per_clip", "basis", "parts"}
PARTS = {"transformer", "transformer_2", "text_encoder", "image_encoder", "vae_encode", "vae_decode"}


def plan_json(capsys, *args):
    assert main(["plan", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_json_object(capsys):
    out = plan_json(capsys, "tiny-i2v", "--gpu", "RTX 4090", "--ram-gb", "32", "--height", "64", "--width", "64",
                    "--frames", "9")
    assert set(out) == {"model", "shape", "gpu", "plans", "best"}
    assert out["model"] == "tiny-i2v" and out["shape"] == {"height": 64, "width": 64, "num_frames": 9}
    assert out["gpu"] == {"name": "RTX 4090", "memory_gb": 24.0}
    for row in out["plans"]:
        assert set(row) == PLAN_KEYS and row["quant"] in (None, "fp8", "int8", "nf4", "gguf:Q8_0", "gguf:Q4_K_M")
        assert set(row["parts"]) == {"transformer", "text_encoder", "image_encoder", "vae_encode", "vae_decode"}
        for part in row["parts"].values():
            assert set(part) == {"weights_gb", "activations_gb"} and part["activations_gb"] > 0
        assert row["seconds_per_step"] > 0 and row["minutes_per_clip"] > 0 and "FakeTensorMode" in row["basis"]
    best = out["plans"][out["best"]]
    assert best["fits"] and min(r["seconds_per_step"] for r in out["plans"] if r["fits"] and not
                                (r["quant"] or "").startswith(("gguf", "nf4"))) == best["seconds_per_step"]


def test_a_card_by_size_and_unknown_cards(capsys):
    out = plan_json(capsys, "tiny", "--gpu-gb", "12", "--ram-gb", "16")
    assert out["gpu"]["memory_gb"] == 12.0 and "12 GB GPU" in out["gpu"]["name"]
    assert main(["plan", "tiny", "--gpu", "GTX 9999", "--json"]) == 2
    assert "unknown GPU 'GTX 9999'" in capsys.readouterr().err


def test_faster_cards_plan_faster_steps():
    steps = {c.name: plan("wan2.1-t2v-1.3b", gpu=c.name, height=64, width=64, num_frames=5).best.seconds_per_step
             for c in CARDS if c.name in ("Tesla T4", "RTX 3060", "RTX 4090", "H100")}
    assert steps["RTX 3060"] > steps["RTX 4090"] > steps["H100"] > 0 and steps["Tesla T4"] > steps["RTX 4090"]


@pytest.mark.parametrize("model", [*PRESETS, *(m for m, f in FAST_PRESETS.items() if f.base in PRESETS)])
def test_every_preset_plans(model):
    """Every preset and few-step variant, VACE, FLF2V and Animate (per segment) included, at a small
    shape (the parts and their inputs are the point here; the traces are cached)."""
    found = plan(model, gpu="A100 80GB", ram_gb=256, height=64, width=64, num_frames=5)
    parts = set(found.rows[0].parts)
    assert {"transformer", "text_encoder", "vae_decode"} <= parts <= PARTS
    assert ("transformer_2" in parts) == ("a14b" in model)
    kind = PRESETS[model.removesuffix("-4step")].kind
    assert ("image_encoder" in parts) == (kind in ("flf2v", "animate") or model.startswith("wan2.1-i2v"))
    assert ("vae_encode" in parts) == (kind in ("i2v", "flf2v", "vace", "animate", "ti2v"))
    assert found.best is not None and found.best.minutes_per_clip > 0
    if kind == "animate":
        assert found.per_segment and "one segment" in str(found)


def test_few_step_variants_plan_one_pass_a_step():
    full, fast = (plan(m, gpu="H100", height=64, width=64, num_frames=5) for m in ("wan2.1-t2v-14b", "wan2.1-t2v-14b-4step"))
    assert fast.steps == 4 and full.steps == 50
    assert fast.best.seconds_per_step == pytest.approx(full.best.seconds_per_step / 2, rel=1e-3)  # guidance 1


def test_modes_this_machine_cannot_run_are_marked_and_never_picked():
    """This machine has no CUDA: nf4 (bitsandbytes' kernels) is marked, whatever card is planned."""
    found = plan("wan2.1-t2v-14b", gpu="RTX 3060", height=64, width=64, num_frames=5)
    nf4 = [r for r in found.rows if r.quant == "nf4"]
    assert nf4 and all("a CUDA GPU here" in r.needs and not r.applicable for r in nf4)
    assert found.best.quant != "nf4"
    assert all("Needs:" in p["basis"] for p in found.to_json()["plans"] if p["quant"] == "nf4")


def test_the_fp8_text_encoder_is_priced_as_wan_nb_stores_it():
    """wan_nb's fp8 casting keeps UMT5's embedding, norms, position bias and ``wo`` in bf16: 7.74 GB."""
    found = plan("wan2.1-t2v-14b", height=64, width=64, num_frames=5)
    row = next(r for r in found.rows if r.quant == "fp8" and r.offload == "model")
    assert row.parts["text_encoder"]["weights_gb"] == pytest.approx(7.74, abs=0.01)


def test_a_first_run_is_estimated_from_the_plan(tmp_path, monkeypatch):
    """No timed runs yet (a fresh cache): generation_started carries the applied plan's estimate."""
    monkeypatch.setenv("WAN_NB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fast_path, "machine_memory_gb", lambda device="auto": (16.0, 64.0))
    with wan_nb.Generator("tiny", runs_dir=tmp_path / "runs", plan="auto", previews=False) as gen:
        found = gen.memory_plan
        assert found is not None and found.best is not None
        events = []
        off = gen.subscribe(events.append)
        gen.generate("a fox", seed=0, progress=False)
        off()
        started = next(e for e in events if e.type == "generation_started")
        assert started.data["estimated_duration"] == found.estimated_seconds(gen_steps(found)) > 0
        denoising = next(e for e in events if e.type == "detailed_generation_progress"
                         and e.data["stage"] == "generating")
        assert denoising.data["estimated_time_remaining"] == pytest.approx(started.data["estimated_duration"], abs=1e-3)
        second = []
        off = gen.subscribe(second.append)
        gen.generate("a fox", seed=1, progress=False)
        off()
        timed = next(e for e in second if e.type == "generation_started").data["estimated_duration"]
        assert timed != started.data["estimated_duration"]  # now from this machine's timed run


def gen_steps(found):
    return found.steps


def test_the_efficiency_is_fitted_from_this_machines_timed_runs(tmp_path, monkeypatch):
    """With timed steps of the model on this machine's card (the ETA's timings file), the plan for
    that card is timed at the efficiency they show: at the timed shape it predicts the timed step."""
    import shutil

    from wan_nb.models.specs import cache_dir

    traces = cache_dir() / "planner_traces"
    if traces.is_dir():  # the traces made by the other tests: only the timings differ here
        shutil.copytree(traces, tmp_path / "planner_traces")
    monkeypatch.setenv("WAN_NB_CACHE", str(tmp_path))
    shape = dict(height=64, width=64, num_frames=5)
    before = plan("wan2.1-t2v-1.3b", gpu="RTX 4090", this_gpu="NVIDIA GeForce RTX 4090", **shape)
    assert "default: no timed runs" in before.basis
    timed_step = before.rows[0].seconds_per_step * 3  # this card ran a third as fast as planned
    (tmp_path / "timings.json").write_text(json.dumps({"wan2.1-t2v-1.3b|64x64x5": {"step": timed_step}}))
    fitted = plan("wan2.1-t2v-1.3b", gpu="RTX 4090", this_gpu="NVIDIA GeForce RTX 4090", **shape)
    assert "fitted from 1 timed run shape(s) of wan2.1-t2v-1.3b on this RTX 4090" in fitted.basis
    none_bf16 = next(r for r in fitted.rows if r.offload == "none" and r.quant is None)
    assert none_bf16.seconds_per_step == pytest.approx(timed_step, rel=1e-3)
    # another card is not this machine's: its plan keeps the default
    assert "default" in plan("wan2.1-t2v-1.3b", gpu="H100", this_gpu="NVIDIA GeForce RTX 4090", **shape).basis
