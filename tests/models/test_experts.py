"""Wan 2.2 A14B: two transformers, switched at boundary_ratio; which one runs each step."""
import pytest

from wan_nb.models import specs as models
from _models_helpers import latents, load


def test_schedule_matches_the_transformer_that_actually_ran():
    pipe = load("tiny-a14b")
    ran = []
    hooks = [pipe.transformer.register_forward_hook(lambda *a: ran.append("high_noise")),
             pipe.transformer_2.register_forward_hook(lambda *a: ran.append("low_noise"))]
    seen = []

    def on_step(pipeline, index, t, kwargs):
        seen.append(models.expert_for_step(pipeline, t))
        return kwargs

    try:
        steps = 8
        schedule = models.expert_schedule(pipe, steps)
        latents(pipe, steps=steps, callback_on_step_end=on_step)
    finally:
        for hook in hooks:
            hook.remove()
    assert ran == schedule == seen       # one forward per step (guidance 1.0: no uncond pass)
    assert schedule[0] == "high_noise" and schedule[-1] == "low_noise"
    switch = schedule.index("low_noise")
    assert set(schedule[:switch]) == {"high_noise"} and set(schedule[switch:]) == {"low_noise"}
    assert models.experts(pipe) == ("high_noise", "low_noise")


def test_schedule_leaves_the_pipeline_scheduler_alone():
    pipe = load("tiny-a14b")
    before = latents(pipe, steps=5)
    models.expert_schedule(pipe, 17)
    assert (latents(pipe, steps=5) == before).all()


@pytest.mark.parametrize("steps", [1, 2, 6, 40])
def test_schedule_length_follows_steps(steps):
    assert len(models.expert_schedule(load("tiny-a14b"), steps)) == steps


def test_single_transformer_models_have_no_experts():
    pipe = load("tiny")
    # Nothing per step for one transformer, however many steps (a step count is no memory cost).
    assert models.expert_schedule(pipe, 4) == [] == models.expert_schedule(pipe, 10**9)
    assert models.expert_for_step(pipe, 999) is None
    assert models.experts(pipe) == ()
