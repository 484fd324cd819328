"""The panel's Pause/Resume button and a generator panel's queue, driven as a browser would
(widget state checked in Python: outside a kernel ipywidgets still builds the real models)."""
import threading

from wan_nb.widgets.panel import GeneratorPanel, ProgressPanel

SMALL = dict(height=32, width=32, num_frames=9, steps=4)


def _on(gen, type_):
    seen = threading.Event()
    return seen, gen.subscribe(lambda event: seen.set(), types=[type_])


def test_pause_button_holds_the_task_and_turns_into_resume(gen):
    at_step, go = threading.Event(), threading.Event()
    unhook = gen.add_step_hook(lambda task, step, *_: (at_step.set(), go.wait(30)) if step == 1 else None)
    paused, off = _on(gen, "generation_paused")
    try:
        task = gen.submit("a paused fox", seed=0, **SMALL)
        panel = ProgressPanel(task)
        assert at_step.wait(60)
        assert panel.pause_button.action == "pause" and not panel.pause_button.disabled
        panel.pause_button.click()          # what the browser's click runs in the kernel
        go.set()
        assert paused.wait(60)
        gen.bus.drain()                     # the panel's own subscriber has seen it too
        panel.throttle.flush()
        assert task.status == "paused"
        assert (panel.pause_button.description, panel.pause_button.action) == ("Resume", "resume")
        assert "data-status='paused'" in panel.title.value
        panel.pause_button.click()
        assert task.result(timeout=60).video_path.exists()
    finally:
        go.set()
        unhook()
        off()
    gen.bus.drain()
    panel.throttle.flush()
    assert panel.pause_button.disabled and panel.pause_button.description == "Pause"


def test_queue_view_moves_and_removes_tasks_and_pauses_the_queue(gen):
    panel = GeneratorPanel(gen)
    view = panel.queue_view
    view.pause_button.click()
    assert gen.paused and view.pause_button.description == "Resume queue"
    try:
        a, b, c = (gen.submit(f"shot {name}", seed=0, **SMALL) for name in "abc")
        view.refresh()
        assert len(view.rows.children) == 3 and "1. shot a" in view.rows.children[0].children[3].value
        up, down, remove = view.rows.children[2].children[:3]   # c's row
        assert down.disabled and not up.disabled
        up.click()
        assert gen.queue == [a, c, b]
        view.rows.children[0].children[2].click()               # remove a
        assert gen.queue == [c, b] and a.status == "cancelled"
        assert [row.children[3].value.split(" <")[0] for row in view.rows.children] == ["1. shot c", "2. shot b"]
    finally:
        view.pause_button.click()
    assert not gen.paused
    for task in (c, b):
        task.result(timeout=120)
    view.refresh()
    assert view.rows.children == () and "queue empty" in view.header.value
