"""Cache acceleration per run (cache=...): each mode really skips transformer work (counted here
with forward hooks on the tiny transformer's blocks), the step events say which steps reused it,
the time left stays honest, the hooks are gone after every run, and bad input is refused at submit."""
import pytest

import wan_nb
from wan_nb.fast import cache as cache_mod
from wan_nb.fast.cache import LOSSY_MODES
from wan_nb.core.eta import StepClock
from wan_nb.protocol.events import validate
from wan_nb.core.params import InvalidParameter

STEPS = 10
TERMINAL = ("generation_completed", "generation_failed", "generation_cancelled")


def run(gen, recorder, **kwargs):
    """Generate with a fresh per-step block count; returns (attention calls per step, step events, result)."""
    counts: list[int] = []
    state = {"n": 0}

    def counted(module, args, output):
        state["n"] += 1

    def install(pipe):
        return [b.attn1.to_q.register_forward_hook(counted) for b in pipe.transformer.blocks]

    if gen.pipeline is None:
        gen.generate("warm up", seed=0, steps=1, progress=False)
    handles = gen.run_on_worker(install)
    off = gen.add_step_hook(lambda task, step, *a: (counts.append(state["n"]), state.update(n=0)))
    try:
        result = gen.generate("a red fox running through snow", seed=3, steps=STEPS, progress=False, **kwargs)
    finally:
        off()
        gen.run_on_worker(lambda pipe: [h.remove() for h in handles])
    gen.bus.drain(timeout=5.0)
    events = recorder.of(result.task_id)
    steps = [e.data for e in events if e.type == "detailed_generation_progress"
             and e.data["stage"] == "generating" and e.data.get("current_step")
             and e.data["message"].startswith("Step")]
    assert [e.type for e in events if e.type in TERMINAL] == ["generation_completed"]
    for event in events:  # step_reused included: every event is what the schema says
        validate(event)
    return counts, steps, result


@pytest.fixture(scope="module", autouse=True)
def fresh_mag_curve():
    cache_mod.forget_ratios("tiny")  # the first mag run of this module must measure the curve


@pytest.mark.parametrize("mode", LOSSY_MODES)
def test_each_cache_mode_changes_how_many_blocks_run(gen, recorder, mode):
    baseline, plain_steps, _ = run(gen, recorder)
    full = len(gen.pipeline.transformer.blocks)
    assert baseline == [full] * STEPS and all("step_reused" not in s for s in plain_steps)
    if mode == "mag":  # no curve yet: this run measures it, computing every step
        calibration, steps, _ = run(gen, recorder, cache="mag")
        assert calibration == baseline and [s["step_reused"] for s in steps] == [False] * STEPS
    counts, steps, result = run(gen, recorder, cache=mode)
    assert sum(counts) < sum(baseline), f"{mode}: every block still ran ({counts})"
    # the events say exactly which steps reused work, as counted here
    assert [s["step_reused"] for s in steps] == [c < full for c in counts]
    assert all(s["estimated_time_remaining"] is not None for s in steps)
    assert result.params["cache"] == mode and wan_nb.recipe(result)["cache"] == mode
    # and nothing of the cache is left on the transformer for the next run
    assert gen.run_on_worker(lambda pipe: pipe.transformer.is_cache_enabled) is False
    again, _, _ = run(gen, recorder)
    assert again == baseline


def test_guided_runs_keep_each_pass_apart(gen, recorder):
    """With guidance two passes a step; PAB's reuse must not hand the conditional pass's attention
    to the unconditional one (each pass computes at the same steps)."""
    counts, steps, _ = run(gen, recorder, cache="pab", guidance_scale=3.0)
    full = 2 * len(gen.pipeline.transformer.blocks)
    assert counts[0] == full and any(c < full for c in counts)
    assert all(c % 2 == 0 for c in counts), counts  # both passes skip (or compute) together


def test_a_cancelled_cached_run_leaves_no_hooks(gen, recorder):
    gen.generate("warm up", seed=0, steps=1, progress=False)
    def cancel_at_3(task, step, *a):
        if step == 3:
            task.cancel()

    off = gen.add_step_hook(cancel_at_3)
    try:
        task = gen.submit("a fox", seed=1, steps=50, cache="first-block")
        task.wait(timeout=120)
    finally:
        off()
    assert task.status == "cancelled"
    gen.bus.drain(timeout=5.0)
    assert [e.type for e in recorder.of(task.id) if e.type in TERMINAL] == ["generation_cancelled"]
    left = gen.run_on_worker(lambda pipe: (pipe.transformer.is_cache_enabled,
                                           sum(len(b.attn1.to_q._forward_hooks) for b in pipe.transformer.blocks)))
    assert left == (False, 0)


def test_cache_is_a_grid_axis(gen):
    grid = gen.grid("a fox in the snow", x=("cache", [None, "first-block"]), seed=2, steps=6)
    results = grid.results()
    assert [r.params["cache"] for r in results] == [None, "first-block"]
    keys = {wan_nb.recipe(r)["cache"] for r in results}
    assert keys == {None, "first-block"}


def test_rerun_reproduces_the_cache_mode(gen):
    first = gen.generate("a fox", seed=5, steps=6, cache="first-block", cache_threshold=0.2, progress=False)
    recipe = wan_nb.recipe(first)
    assert (recipe["cache"], recipe["cache_threshold"]) == ("first-block", 0.2)
    from wan_nb.runs.recipe import recipe_key

    plain = wan_nb.recipe(gen.generate("a fox", seed=5, steps=6, progress=False))
    assert recipe_key(plain) != recipe_key(recipe)
    again = gen.rerun(first, progress=False)
    assert (again.params["cache"], again.params["cache_threshold"]) == ("first-block", 0.2)


@pytest.mark.parametrize("kwargs, fix", [
    ({"cache": "teacache"}, "choose one of 'first-block'"),
    ({"cache": "taylorseer", "cache_threshold": 0.1}, "takes no threshold"),
    ({"cache": "first-block", "cache_threshold": 5}, "from 0.0001 to 1"),
    ({"cache": "first-block", "cache_threshold": True}, "from 0.0001 to 1"),
    ({"cache_threshold": 0.1}, "pass cache='first-block'"),
])
def test_bad_cache_arguments_are_refused_at_submit(gen, kwargs, fix):
    with pytest.raises(InvalidParameter, match=fix):
        gen.submit("a fox", **kwargs)


def test_a_mode_the_model_cannot_take_is_refused_before_loading(tmp_path):
    with wan_nb.Generator("tiny-a14b", runs_dir=tmp_path, previews=False) as two_experts:
        with pytest.raises(InvalidParameter, match="use cache='first-block' or 'taylorseer'"):
            two_experts.submit("a fox", cache="mag")
        assert two_experts.pipeline is None


def test_time_left_stays_honest_when_steps_are_reused():
    """Warm-up steps compute (1 s), then two of every three reuse (0.1 s): the estimate follows the
    mix, where a clock blind to reuse keeps pricing every step as the average so far."""
    durations = [1.0] * 3 + [0.1, 0.1, 1.0] * 9
    reused = [False] * 3 + [True, True, False] * 9
    aware, blind = StepClock(len(durations), 0.0), StepClock(len(durations), 0.0)
    for step, (d, r) in enumerate(zip(durations, reused), start=1):
        aware.record(step, d, r)
        blind.record(step, d)
        if step == 9:
            actual = sum(durations[step:])
            assert abs(aware.remaining() - actual) / actual < 0.15
            assert abs(blind.remaining() - actual) / actual > abs(aware.remaining() - actual) / actual


@pytest.mark.parametrize("model, runs", [("tiny-i2v", "WanImageToVideoPipeline"), ("tiny-ti2v", "WanImageToVideoPipeline"),
                                         ("tiny-vace", "WanVACEPipeline")])
def test_sea_is_refused_where_the_loop_does_not_tell_it_the_step_and_sigma(tmp_path, model, runs):
    """SeaCache reads the scheduler step and sigma from cache_context, which only WanPipeline's
    loop passes: elsewhere it would silently compute every step, so it is refused at submit."""
    import numpy as np

    image = (np.random.RandomState(0).rand(32, 32, 3) * 255).astype("uint8")
    with wan_nb.Generator(model, runs_dir=tmp_path, previews=False) as other:
        inputs = {} if model == "tiny-vace" else {"image": image}
        with pytest.raises(InvalidParameter, match=f"this run goes through {runs}. Use cache='first-block'"):
            other.submit("a fox", cache="sea+text-kv", **inputs)
        assert other.pipeline is None
        if model == "tiny-ti2v":  # text-only, the same model runs WanPipeline: SeaCache applies
            done = other.generate("a fox", cache="sea", cache_threshold=0.5, steps=4, seed=1, progress=False)
            assert done.params["cache"] == "sea" and done.params["cache_threshold"] == 0.5
