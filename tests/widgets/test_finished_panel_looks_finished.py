"""A finished panel looks finished: no steering buttons, and a timeline that says how each
stage ended (a cancelled run's denoise stage is not ticked as done)."""
import re
import threading

import pytest

import wan_nb
from wan_nb.widgets.panel import ProgressPanel

SMALL = dict(height=32, width=32, num_frames=9, steps=4)


def _chips(panel):
    """{stage: how it ended} as the timeline draws it."""
    return dict(re.findall(r"data-stage='(\w+)' data-ended='(\w+)'", panel.timeline.value))


def test_a_completed_panel_hides_pause_and_cancel(gen):
    task = gen.submit("a fox", seed=0, **SMALL)
    panel = ProgressPanel(task)
    task.result(timeout=120)
    gen.bus.drain()
    panel.throttle.flush()
    assert panel.steering.layout.display == "none"
    assert [b.description for b in panel.steering.children] == ["Pause", "Cancel"]
    chips = _chips(panel)
    assert chips["generating"] == "done" and chips["completed"] == "done"


def test_a_running_panel_shows_pause_then_cancel_and_a_cancelled_one_marks_where_it_stopped(gen):
    at_step, go = threading.Event(), threading.Event()
    unhook = gen.add_step_hook(lambda task, step, *_: (at_step.set(), go.wait(30)) if step == 2 else None)
    try:
        task = gen.submit("a fox stopped half-way", seed=1, **SMALL)
        panel = ProgressPanel(task)
        assert at_step.wait(60)
        gen.bus.drain()
        panel.throttle.flush()
        assert panel.steering.layout.display == ""
        assert [b.description for b in panel.steering.children] == ["Pause", "Cancel"]
        assert _chips(panel)["generating"] == "running"
        task.cancel()
        go.set()
        with pytest.raises(wan_nb.GenerationCancelled):
            task.result(timeout=60)
    finally:
        go.set()
        unhook()
    gen.bus.drain()
    panel.throttle.flush()
    assert panel.steering.layout.display == "none"
    chips = _chips(panel)
    assert chips["generating"] == "cancelled", panel.timeline.value
    assert "✓ denoise" not in panel.timeline.value and "■ denoise" in panel.timeline.value
    assert chips["preparing_inputs"] == "done"
    assert "post_processing" not in chips  # never reached: drawn as ○, not as an ending
