"""LoRA schedules: weights per step, per expert, as ramps or functions -- read back from the real
LoRA layers (a forward pre-hook on peft's layers reads the scale each transformer call runs with)."""
import math

import numpy as np
import pytest

import wan_nb
from wan_nb.core import lora_schedule
from wan_nb.models import tiny
from wan_nb.models.video_io import read_frames
from wan_nb.protocol.errors import InvalidParameter

ARGS = dict(seed=0, num_frames=5, height=32, width=32, guidance_scale=1.0, progress=False)


def _scale_probe(pipe, component="transformer", adapter="ink"):
    """A hook on the first LoRA layer of ``component``: the weight (scale / alpha * r) of every call."""
    from peft.tuners.lora import LoraLayer

    layer = next(m for m in getattr(pipe, component).modules() if isinstance(m, LoraLayer) and adapter in m.scaling)
    seen: list[float] = []
    unit = layer.lora_alpha[adapter] / layer.r[adapter]

    def hook(module, args):
        if adapter in module.active_adapters and not module.disable_adapters:
            seen.append(round(float(module.scaling[adapter]) / unit, 6))
        else:
            seen.append(0.0)

    return seen, layer.register_forward_pre_hook(hook)


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    from _models_helpers import load

    return tiny.make_lora(load("tiny").transformer, tmp_path_factory.mktemp("loras") / "ink.safetensors", seed=1)


@pytest.fixture(scope="module")
def gen(tmp_path_factory, lora_file):
    with wan_nb.Generator("tiny", device="cpu", runs_dir=tmp_path_factory.mktemp("runs"), previews=False) as generator:
        generator.run_on_worker(lambda pipe: None)  # loaded first: the LoRA is attached at once, probes can sit on it
        generator.load_lora(lora_file, name="ink")
        yield generator


def _run(gen, probe_component="transformer", **kwargs):
    """One run; the weights its LoRA layer saw at each transformer call, and its step events."""
    events = []
    off = gen.subscribe(lambda e: events.append(e) if e.type == "detailed_generation_progress"
                        and e.data.get("stage") == "generating" and e.data.get("current_step") else None)
    seen, handle = gen.run_on_worker(lambda pipe: _scale_probe(pipe, probe_component))
    try:
        result = gen.generate("a fox in the snow", **{**ARGS, **kwargs})
    finally:
        handle.remove()
        off()
    return result, seen, [e for e in events if e.task_id == result.task_id]


# -- the steps -----------------------------------------------------------------------------------
def test_a_ramp_changes_the_layer_scale_at_every_step(gen):
    result, seen, events = _run(gen, steps=4, loras={"ink": "1.0-0.4"})
    assert seen == [1.0, 0.8, 0.6, 0.4]                      # one transformer call a step (no CFG)
    assert [dict(e.data["lora_weights"]) for e in events] == [{"ink": w} for w in (1.0, 0.8, 0.6, 0.4)]
    assert events[1].data["message"] == "Step 2/4 · LoRA ink 0.8"
    assert result.params["loras"] == {"ink": "1-0.4"}


def test_a_list_sets_exactly_the_steps_it_names_and_cfg_calls_share_them(gen):
    _, seen, _ = _run(gen, steps=4, guidance_scale=3.0, loras={"ink": [0.0, 1.0, 1.0, 0.25]})
    assert seen == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.25, 0.25]  # conditional + unconditional call each step


def test_a_schedule_holding_one_value_makes_the_constant_weights_video(gen):
    constant, seen_constant, events = _run(gen, steps=3, loras={"ink": 0.7})
    scheduled, seen, _ = _run(gen, steps=3, loras={"ink": [0.7, 0.7, 0.7]})
    assert seen == seen_constant == [0.7] * 3
    assert not any("lora_weights" in e.data for e in events)  # constant weights: events as before
    assert np.array_equal(read_frames(constant.video_path), read_frames(scheduled.video_path))
    faded, _, _ = _run(gen, steps=3, loras={"ink": "0.7-0"})
    assert not np.array_equal(read_frames(faded.video_path), read_frames(constant.video_path))


def test_the_next_run_takes_its_own_weights_again(gen):
    _run(gen, steps=2, loras={"ink": "0-1"})
    _, seen, _ = _run(gen, steps=2, loras={"ink": 0.5})
    assert seen == [0.5, 0.5]


# -- recipes, reruns, the registry ------------------------------------------------------------------
def test_a_callable_is_recorded_as_its_values_and_rerun_makes_the_same_video(gen):
    def fade(step, total, expert):
        assert expert is None  # one transformer
        return 1.0 - step / total

    result, seen, _ = _run(gen, steps=4, loras={"ink": fade})
    assert seen == [1.0, 0.75, 0.5, 0.25]
    entry = wan_nb.recipe(result)["loras"][0]
    assert entry["schedule"] == {"values": [1.0, 0.75, 0.5, 0.25], "from": "callable " + fade.__qualname__}
    assert entry["weight"] == 1.0  # the highest it reaches, for readers that take one number
    again = gen.rerun(result, progress=False)
    assert wan_nb.recipe(again)["loras"][0]["schedule"] == entry["schedule"]
    assert wan_nb.recipe.recipe_key(wan_nb.recipe(again)) == wan_nb.recipe.recipe_key(wan_nb.recipe(result))
    assert np.array_equal(read_frames(again.video_path), read_frames(result.video_path))


def test_a_schedule_is_part_of_the_recipe_key(gen):
    keys = {wan_nb.recipe.recipe_key(wan_nb.recipe.plan(gen, "a fox", seed=0, steps=4, loras={"ink": w}))
            for w in (1.0, "1.0-0.2", [1.0, 1.0, 0.5, 0.5], "1-0.2")}
    assert len(keys) == 3  # "1.0-0.2" and "1-0.2" are one ramp


def test_load_lora_takes_a_schedule_checked_per_run(tmp_path, lora_file):
    with wan_nb.Generator("tiny", device="cpu", runs_dir=tmp_path, previews=False) as gen:
        gen.load_lora(lora_file, name="ink", weight=[1.0, 0.5])
        assert gen.check("a fox", steps=2)["loras"] == {"ink": [1.0, 0.5]}
        with pytest.raises(InvalidParameter, match="has 2 values for a run of 4 steps; give exactly 4"):
            gen.check("a fox", steps=4)
        assert gen.pipeline is None  # refused before any model work
        with pytest.raises(ValueError, match="is a \\(high, low\\) pair, but this model has one transformer"):
            gen.load_lora(lora_file, name="other", weight=(1.0, 0.3))


# -- refusals --------------------------------------------------------------------------------------
@pytest.mark.parametrize("weight, fix", [
    ([1.0, 0.5], "has 2 values for a run of 3 steps; give exactly 3"),
    ((1.0, 0.3), "is a \\(high, low\\) pair, but this model has one transformer"),
    ("1.0--0.2", "is not a ramp; write 'start-end'"),
    ("fade", "is not a ramp; write 'start-end'"),
    ([1.0, -0.5, 0.0], "is -0.5; the weights of a schedule are >= 0"),
    (float("nan"), "not a finite number"),
    ([1.0, math.inf, 0.0], "not a finite number"),
    (lambda step, total, expert: 1 / (1 - step), "the weight function raised at step 1 of 3"),
    (lambda step, total, expert: -1.0, "the weights of a schedule are >= 0"),
    ((1.0, 0.3, 0.1), "a tuple of 3; a tuple is a \\(high, low\\) pair"),
    ({"early": 1.0}, "a per-expert weight is \\{'high': ..., 'low': ...\\}"),
    ([], "an empty list"),
])
def test_bad_schedules_are_refused_before_any_model_work(tmp_path, lora_file, weight, fix):
    with wan_nb.Generator("tiny", device="cpu", runs_dir=tmp_path, previews=False) as fresh:
        fresh.load_lora(lora_file, name="ink")
        with pytest.raises(InvalidParameter, match=fix):
            fresh.submit("a fox", steps=3, loras={"ink": weight})
        assert fresh.pipeline is None and fresh.queue == []


def test_the_json_form_reads_back_unchanged():
    for weight, steps, experts in [(0.5, 3, 0), ("1.0-0.2", 3, 0), ([1, 0.5, 0], 3, 0), ((1.0, "1-0"), 3, 2),
                                   (lambda s, t, e: s / t, 3, 2), ({"values": [1, 1, 0]}, 3, 0)]:
        form = lora_schedule.check(weight, steps=steps, experts=experts)
        assert lora_schedule.check(form, steps=steps, experts=experts) == form
    assert lora_schedule.parse_text("1.0;0.3") == (1.0, 0.3)
    assert lora_schedule.parse_text("1,0.5,0") == [1.0, 0.5, 0.0]
    assert lora_schedule.parse_text("1.0-0.2") == "1-0.2"


# -- grids -----------------------------------------------------------------------------------------
def test_a_grid_axis_of_schedules(gen):
    grid = gen.grid("a fox", x=("lora:ink", ["1.0", "1.0-0.2", [0.0, 1.0]]), steps=2, **{
        k: v for k, v in ARGS.items() if k != "progress"})
    results = grid.results()
    assert [r.params["loras"]["ink"] for r in results] == [1.0, "1-0.2", [0.0, 1.0]]
    assert list(grid.x.labels) == ["1", "1→0.2", "[0, 1]"]
    frames = [read_frames(r.video_path) for r in results]
    assert not np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[1], frames[2])
    with pytest.raises(InvalidParameter, match="pair, but this model has one transformer"):
        gen.grid("a fox", x=("lora:ink", [1.0, (1.0, 0.0)]), steps=2)


# -- two experts, quantized weights -----------------------------------------------------------------
def test_a_per_expert_pair_reaches_each_expert_only(tmp_path):
    from _models_helpers import load

    pipe = load("tiny-a14b")
    path = tiny.make_lora(pipe.transformer, tmp_path / "ink.safetensors", seed=3)
    with wan_nb.Generator("tiny-a14b", device="cpu", runs_dir=tmp_path / "runs", previews=False) as two:
        two.run_on_worker(lambda pipe: None)
        two.load_lora(path, name="ink")  # into both experts
        seen_low, low_hook = two.run_on_worker(lambda pipe: _scale_probe(pipe, "transformer_2"))
        try:
            result, seen_high, events = _run(two, steps=4, loras={"ink": (1.0, 0.0)})
        finally:
            low_hook.remove()
        experts = [e.data["expert"] for e in events]
        assert experts.count("high_noise") == len(seen_high) and experts.count("low_noise") == len(seen_low)
        assert set(seen_high) == {1.0} and set(seen_low) == {0.0}
        assert [dict(e.data["lora_weights"])["ink"] for e in events] == [1.0 if x == "high_noise" else 0.0
                                                                         for x in experts]
        assert wan_nb.recipe(result)["loras"][0]["schedule"] == {"high": 1.0, "low": 0.0}

        def by_expert(step, total, expert):
            return {"high": 0.5, "low": 0.25}[expert]

        _, seen_high, _ = _run(two, steps=4, loras={"ink": by_expert})
        assert set(seen_high) == {0.5}


def test_schedules_on_a_quantized_transformer(tmp_path, lora_file):
    with wan_nb.Generator("tiny", quant="fp8", device="cpu", runs_dir=tmp_path, previews=False) as quantized:
        quantized.run_on_worker(lambda pipe: None)
        quantized.load_lora(lora_file, name="ink")
        _, seen, _ = _run(quantized, steps=3, loras={"ink": "0-1"})
    assert seen == [0.0, 0.5, 1.0]


@pytest.mark.slow
def test_a_compiled_transformer_is_not_recompiled_for_each_step(tmp_path, lora_file):
    from torch._dynamo.utils import counters

    with wan_nb.Generator("tiny", compile=True, device="cpu", runs_dir=tmp_path, previews=False) as compiled:
        compiled.run_on_worker(lambda pipe: None)
        compiled.load_lora(lora_file, name="ink")
        seen, _ = compiled.run_on_worker(lambda pipe: _scale_probe(pipe))  # before compiling: a hook is guarded on
        compiled.generate("a fox", steps=2, loras={"ink": [1.0, 0.5]}, **ARGS)  # the scales become tensors: compiled
        graphs = counters["stats"]["unique_graphs"]
        compiled.generate("a fox", steps=6, loras={"ink": "1.0-0.0"}, **ARGS)
        compiled.generate("a fox", steps=6, loras={"ink": [0.3, 0.9, 0.1, 0.4, 0.8, 0.2]}, **ARGS)
        assert counters["stats"]["unique_graphs"] == graphs  # 12 new weights, no new graph
    assert seen[2:] == [1.0, 0.8, 0.6, 0.4, 0.2, 0.0, 0.3, 0.9, 0.1, 0.4, 0.8, 0.2]
