"""The notebook widgets against real tiny-model tasks (no browser: widget state is checked in Python).

Outside a kernel ipywidgets still builds real widget models (with a comm that goes nowhere), so
the traits checked here are exactly what a browser would be sent.
"""

import io
import threading
import time
from pathlib import Path

import pytest

import wan_nb
import wan_nb.previews
from wan_nb.core.bus import EventBus
from wan_nb.protocol.events import EventType
from wan_nb.widgets import gallery, show_result, show_task, widgets_available
from wan_nb.widgets._throttle import Throttle
from wan_nb.widgets.grid import Gallery, SweepView, differing_labels, format_label
from wan_nb.widgets.panel import GeneratorPanel, ProgressPanel
from wan_nb.widgets.video import ResultView

SMALL = dict(height=32, width=32, num_frames=9, steps=4)


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    generator = wan_nb.Generator(model="tiny", runs_dir=tmp_path_factory.mktemp("runs"), monitor_interval=0.2)
    yield generator


@pytest.fixture(scope="module")
def finished(gen):
    """One completed task, watched from before it started by a panel and a generator panel."""
    follower = GeneratorPanel(gen)
    task = gen.submit("a red fox running through snow", seed=0, **SMALL)
    panel = ProgressPanel(task)
    result = task.result(timeout=120)
    return task, panel, follower, result


def test_panel_shows_a_completed_task(finished):
    task, panel, _, result = finished
    assert panel.overall.value == 100.0
    assert panel.overall.bar_style == "success"
    assert (panel.steps.value, panel.steps.max) == (4, 4)
    assert panel.steps_text.value.startswith("4/4")
    assert "Done" in panel.message.value and f"{result.task_id}/video.mp4" in panel.message.value
    assert f"title='{result.video_path}'" in panel.message.value
    assert "data-status='completed'" in panel.title.value
    assert panel.cancel_button.disabled
    for stage in ("init", "encode prompt", "denoise", "decode", "save", "done"):
        assert stage in panel.timeline.value
    assert "left" not in panel.timing.value and "elapsed" in panel.timing.value
    previews = [e for e in task.events if e.type == "preview"]
    if previews:  # the live preview shows the newest clip preview
        assert panel.preview.value == wan_nb.previews.preview_bytes(previews[-1])
        assert panel.preview.layout.display == ""
    else:  # the previewer skipped every step (its time budget): nothing to show, nothing shown
        assert panel.preview.layout.display == "none"


def test_memory_chart_gets_readings_and_stage_bands(finished):
    _, panel, _, _ = finished
    chart = panel.memory
    assert len(chart.samples) >= 2
    assert all(s["total"] > 0 and 0 < s["used"] <= s["total"] for s in chart.samples)
    assert chart.kind == "ram" and chart.label.startswith("RAM (no GPU)")  # this machine has no GPU
    stages = [band["stage"] for band in chart.bands]
    assert stages[0] == "initializing" and "generating" in stages and stages[-1] == "saving"
    assert all(band["end"] is not None and band["end"] >= band["start"] for band in chart.bands)


def test_generator_panel_follows_the_running_task(finished, gen):
    task, _, follower, _ = finished
    deadline = time.monotonic() + 3
    while follower.state.status != "completed" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert follower.state.task_id == task.id
    assert follower.overall.value == 100.0 and follower.overall.bar_style == "success"
    late = GeneratorPanel(gen)  # displayed after the fact: shows the last task
    assert late.state.task_id == gen.tasks[-1].id


def test_cancel_button_cancels_a_running_task(gen):
    task = gen.submit("a slow one", seed=1, height=32, width=32, num_frames=9, steps=500)
    panel = ProgressPanel(task)
    deadline = time.monotonic() + 120
    while task.current_step < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert task.status == "running" and not panel.cancel_button.disabled
    panel.cancel_button.click()  # what the browser's click runs in the kernel
    with pytest.raises(wan_nb.GenerationCancelled):
        task.result(timeout=60)
    assert task.status == "cancelled" and task.current_step < 500
    assert panel.overall.bar_style == "warning" and panel.steps.bar_style == "warning"
    assert panel.cancel_button.disabled and panel.cancel_button.description == "Cancelled"
    assert "Cancelled during generating" in panel.message.value


def test_failed_task_turns_the_panel_red(gen):
    task = gen.submit("cannot be saved", seed=2, **SMALL)
    # The final file name is taken by a non-empty folder: saving fails for real.
    (task.run_dir / "video.mp4" / "occupied").mkdir(parents=True)
    panel = ProgressPanel(task)
    with pytest.raises(wan_nb.GenerationError):
        task.result(timeout=120)
    assert panel.overall.bar_style == "danger"
    assert panel.state.status == "failed"
    assert "Failed during saving" in panel.message.value and "#c62828" in panel.message.value
    assert "✗ failed" in panel.timeline.value


def _progress_events(bus, task_id, steps, rate):
    """Publish ``steps`` step events at ``rate`` a second, then the end of the task."""
    bus.publish(task_id, EventType.GENERATION_STARTED, model_type="tiny",
                params={"prompt": "fast", "steps": steps}, estimated_duration=None)
    bus.publish(task_id, EventType.GENERATION_STAGE, stage="generating", stage_progress=0.0,
                stage_message="Denoising")
    start = time.perf_counter()
    for step in range(1, steps + 1):
        bus.publish(task_id, EventType.DETAILED_GENERATION_PROGRESS, stage="generating",
                    progress=90.0 * step / steps, message=f"Step {step}/{steps}",
                    estimated_time_remaining=(steps - step) / rate, current_step=step, total_steps=steps)
        delay = start + step / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    bus.publish(task_id, EventType.GENERATION_STAGE, stage="completed", stage_progress=100.0, stage_message="Done")
    bus.publish(task_id, EventType.GENERATION_COMPLETED, output_path="/tmp/x.mp4", duration_s=1.5,
                params={"prompt": "fast", "steps": steps}, seed=0)


def test_updates_are_coalesced_to_ten_a_second_and_the_end_is_drawn():
    bus = EventBus()
    panel = ProgressPanel(memory=False)
    sent = []
    panel.overall.observe(lambda change: sent.append(time.monotonic()), names="value")
    bus.subscribe(panel.handle_event, task_id="t-fast")
    _progress_events(bus, "t-fast", steps=150, rate=150.0)  # ~1 s of 150 steps/s
    assert bus.drain(timeout=5)
    assert panel.throttle.max_per_second() <= 10
    assert 3 <= len(panel.throttle.renders) <= 20
    assert len(sent) <= len(panel.throttle.renders)  # one bar update per render at most
    assert panel.overall.value == 100.0 and panel.overall.bar_style == "success"
    assert panel.steps_text.value.startswith("150/150")


def test_throttle_trailing_render_draws_the_newest_state():
    drawn = []
    state = {"n": 0}
    throttle = Throttle(lambda: drawn.append(state["n"]), rate=10)
    for n in range(1, 6):
        state["n"] = n
        throttle.request()
    time.sleep(0.25)
    assert drawn == [1, 5]  # the first at once, the newest after one interval, none between
    with pytest.raises(ValueError, match="rate"):
        Throttle(lambda: None, rate=0)


def test_gallery_labels_show_only_what_differs(gen, finished):
    _, _, _, first = finished
    second = gen.generate("a red fox running through snow", seed=5, progress=False, **SMALL)
    third = gen.generate("a blue whale", seed=5, progress=False, **SMALL)
    assert differing_labels([first, second]) == [{"seed": 0}, {"seed": 5}]
    assert differing_labels([second, third]) == [{"prompt": "a red fox running through snow"},
                                                 {"prompt": "a blue whale"}]
    view = Gallery([first, second, third])
    assert view.label_texts == ["“a red fox running through snow” · seed=0",
                                "“a red fox running through snow” · seed=5", "“a blue whale” · seed=5"]
    players = [card.children[1].player for card in view.children]
    assert [len(p.value) for p in players] == [r.video_path.stat().st_size for r in (first, second, third)]
    assert players[0].value[4:8] == b"ftyp"  # an MP4 travels to the browser


def test_lora_weight_labels():
    class R:  # the label logic reads only params/seed/model
        def __init__(self, loras):
            self.params, self.seed, self.model = {"prompt": "p", "loras": loras}, 0, "tiny"
    labels = differing_labels([R({}), R({"style": 0.5}), R({"style": 1.0})])
    assert labels == [{"lora style": 0}, {"lora style": 0.5}, {"lora style": 1.0}]
    assert format_label(labels[1], 1) == "lora style=0.5"
    assert format_label({}, 2) == "#3"


def test_result_view_has_player_and_params(finished):
    _, _, _, result = finished
    view = ResultView(result)
    assert view.player.filename == f"{result.task_id}.mp4"
    assert view.player.value == result.video_path.read_bytes()
    table = view.children[1].value
    for text in ("a red fox running through snow", "32×32, 9 frames", "tiny", str(result.video_path)):
        assert text in table


def test_sweep_view_turns_each_card_into_its_video(gen):
    sweep = gen.sweep(prompt="a fox", seed=[7, 8], **SMALL)
    view = SweepView(sweep)
    assert view.label_texts == ["seed=7", "seed=8"]
    results = sweep.results(timeout=240)
    deadline = time.monotonic() + 5
    while any(not isinstance(card.children[1], ResultView) for card in view.cards) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [card.children[1].result.task_id for card in view.cards] == [r.task_id for r in results]


def test_text_fallback_outside_jupyter(gen, finished):
    _, _, _, result = finished
    assert not widgets_available()  # pytest is no kernel
    out = io.StringIO()
    task = gen.submit("plain text please", seed=3, **SMALL)
    show_task(task, stream=out)
    task.result(timeout=120)
    text = out.getvalue()
    assert "generating" in text and f"-> {task.run_dir / 'video.mp4'}" in text and "done in" in text
    out = io.StringIO()
    show_result(result, stream=out)
    assert f"video: {result.video_path}" in out.getvalue()
    out = io.StringIO()
    gallery([result, task.result()], stream=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("“a red fox running through snow” · seed=0") and len(lines) == 2
