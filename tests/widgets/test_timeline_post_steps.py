"""The panel's stage timeline shows a run's post-processing steps (interpolate, upscale) after the
decode, each with its count done, as a real run's events reach it."""
import re

import pytest

import wan_nb
from wan_nb.widgets.panel import ProgressPanel


def _post_chips(panel):
    return re.findall(r"data-post-step='(\w+)' data-ended='(\w+)'>\S+ \w+ (\d+)/(\d+)", panel.timeline.value)


def test_interpolate_and_upscale_appear_after_the_decode_with_their_counts(gen):
    task = gen.submit("a fox", seed=0, steps=1, num_frames=9, interpolate=2, upscale=2)
    panel = ProgressPanel(task)
    task.result(timeout=300)
    gen.bus.drain()
    panel.throttle.flush()
    html = panel.timeline.value
    assert _post_chips(panel) == [("interpolate", "done", "8", "8"), ("upscale", "done", "17", "17")]
    order = [html.index(key) for key in ("data-stage='post_processing'", "data-post-step='interpolate'",
                                         "data-post-step='upscale'", "data-stage='saving'")]
    assert order == sorted(order)


def test_a_run_without_post_steps_shows_none(gen):
    task = gen.submit("a fox", seed=0, steps=1, num_frames=5)
    panel = ProgressPanel(task)
    task.result(timeout=300)
    gen.bus.drain()
    panel.throttle.flush()
    assert "data-stage='post_processing'" in panel.timeline.value and _post_chips(panel) == []


def test_a_run_cancelled_while_interpolating_marks_that_step(gen):
    task = gen.submit("a fox", seed=0, steps=1, num_frames=33, interpolate=4)
    panel = ProgressPanel(task)
    seen = []

    def on_event(event):
        if event.task_id == task.id and event.data.get("post_step") == "interpolate" and not seen:
            seen.append(event)
            task.cancel()

    off = gen.subscribe(on_event)
    try:
        with pytest.raises(wan_nb.GenerationCancelled):
            task.result(timeout=300)
    finally:
        off()
    gen.bus.drain()
    panel.throttle.flush()
    chips = _post_chips(panel)
    assert chips and chips[0][0] == "interpolate" and chips[0][1] == "cancelled"
