"""A stopped run's panel and history card offer **Resume** (a finished one otherwise shows no
steering), which finishes it from its checkpoint as a new linked task and follows that task; what
cannot be resumed is said where the button is. A pause that gave the memory back says so.

Real tiny-model runs on the CPU; the widgets' state is checked in Python, as a browser is sent it.
"""
import html
import re
import threading

import wan_nb
from wan_nb.runs import checkpoint_file
from wan_nb.widgets.history import HistoryGallery
from wan_nb.widgets.panel import GeneratorPanel, ProgressPanel

SMALL = dict(height=32, width=32, num_frames=5, steps=4)


def _settle(gen, panel):
    gen.bus.drain()
    panel.throttle.flush()


def _chips(panel):
    return dict(re.findall(r"data-stage='(\w+)' data-ended='(\w+)'", panel.timeline.value))


def _started(gen, task_id):
    return next(e for e in gen.task(task_id).events if e.type == "generation_started")


def test_a_stop_after_panel_reads_stopped_at_k_of_n_and_resume_follows_the_linked_task(gen):
    task = gen.submit("a fox, previewed", seed=3, stop_after=2, **SMALL)
    panel = ProgressPanel(task)
    assert task.result(timeout=120).stopped_at == 2
    _settle(gen, panel)
    assert panel.state.status == "stopped" and task.status == "stopped"
    assert "stopped at step 2/4" in panel.title.value and "data-status='stopped'" in panel.title.value
    assert panel.message.value == "Stopped at step 2/4: resumable"
    assert panel.steps_text.value.startswith("2/4")
    assert _chips(panel)["generating"] == "stopped", panel.timeline.value
    assert panel.steering.layout.display == "none"         # no Pause / Cancel on a finished run...
    assert panel.resume.layout.display == ""               # ...but Resume on a stopped one
    assert panel.resume.button.description == "Resume" and "2/4" in panel.resume.button.tooltip

    panel.resume.button.click()                             # what the browser's click runs in the kernel
    resumed = panel.task
    assert resumed.id != task.id
    assert _started(gen, resumed.id).data["resumed_from"] == task.id
    result = resumed.result(timeout=120)
    _settle(gen, panel)
    assert result.video_path.name == "video.mp4" and result.stopped_at is None
    assert panel.state.task_id == resumed.id and panel.state.status == "completed"
    assert panel.resume.layout.display == "none" and panel.state.core.resumed_from == task.id


def test_cancel_keep_reads_stopped_and_a_generator_panel_switches_to_the_resumed_task(gen):
    at_step, go = threading.Event(), threading.Event()
    unhook = gen.add_step_hook(lambda task, step, *_: (at_step.set(), go.wait(30))
                               if step == 2 and task.prompt == "a kept fox" else None)
    panel = GeneratorPanel(gen)
    try:
        task = gen.submit("a kept fox", seed=4, **{**SMALL, "steps": 6})
        assert at_step.wait(60)
        task.cancel(keep=True)
        go.set()
        task.wait(60)
    finally:
        go.set()
        unhook()
    _settle(gen, panel)
    assert panel.state.task_id == task.id and panel.state.status == "stopped"
    # cancelled during step 2's hooks: the cancel is seen at the end of step 3, which is kept
    assert panel.message.value == "Stopped at step 3/6: resumable"
    assert panel.resume.layout.display == ""
    panel.resume.button.click()
    resumed = next(t for t in gen.tasks if t.id != task.id and t.prompt == "a kept fox")
    resumed.result(timeout=120)
    _settle(gen, panel)
    assert panel.state.task_id == resumed.id and panel.state.status == "completed"
    panel.close()


def test_a_run_that_cannot_resume_says_why_beside_the_button_and_stays_put(gen):
    task = gen.submit("a fox whose checkpoint is damaged", seed=5, stop_after=1, **SMALL)
    panel = ProgressPanel(task)
    task.result(timeout=120)
    _settle(gen, panel)
    (task.run_dir / checkpoint_file.STATE_NAME).write_bytes(b"not a checkpoint")
    before = set(t.id for t in gen.tasks)
    panel.resume.button.click()
    said = html.unescape(panel.resume.problem.value)
    assert "Cannot resume" in said and "damaged" in said and "gen.rerun" in said
    assert panel.task is task and set(t.id for t in gen.tasks) == before   # nothing started
    assert panel.resume.layout.display == ""               # the button stays for another try


def test_a_pause_that_releases_memory_says_so_until_it_resumes(gen):
    at_step, go = threading.Event(), threading.Event()
    unhook = gen.add_step_hook(lambda task, step, *_: (at_step.set(), go.wait(30))
                               if step == 1 and task.prompt == "a resting fox" else None)
    paused = threading.Event()
    off = gen.subscribe(lambda e: paused.set(), types=["generation_paused"])
    try:
        task = gen.submit("a resting fox", seed=6, **SMALL)
        panel = ProgressPanel(task)
        assert at_step.wait(60)
        assert task.pause(release_memory=True)
        go.set()
        assert paused.wait(60)
        _settle(gen, panel)
        event = next(e for e in task.events if e.type == "generation_paused")
        assert event.data["release_memory"] is True and event.data["current_step"] == 1
        assert "paused · memory released" in panel.title.value
        assert panel.message.value == "Paused during generating · memory released"
        assert panel.resume.layout.display == "none"     # paused is not stopped: Pause/Resume steer it
        task.resume()
        assert task.result(timeout=120).video_path.exists()
    finally:
        go.set()
        unhook()
        off()
    _settle(gen, panel)
    assert "memory released" not in panel.title.value and panel.state.status == "completed"


def test_history_cards_of_stopped_runs_offer_resume_and_errors_land_on_the_card(gen):
    done = gen.generate("a finished fox", seed=7, progress=False, **SMALL)
    stopped = gen.generate("a stopped fox", seed=8, stop_after=2, progress=False, **SMALL)
    broken = gen.generate("a broken fox", seed=9, stop_after=2, progress=False, **SMALL)
    (broken.run_dir / checkpoint_file.STATE_NAME).write_bytes(b"\0" * 16)
    gallery = HistoryGallery(wan_nb.runs.history(gen.runs_dir), generator=gen)
    cards = {c.run.task_id: c for c in gallery.cards}

    def resume_button(card):
        return next((b for box in card.children for b in getattr(box, "children", ())
                     if getattr(b, "description", "") == "Resume"), None)

    assert resume_button(cards[done.task_id]) is None
    assert "stopped at step 2/4" in cards[stopped.task_id].children[1].value
    resume_button(cards[broken.task_id]).click()
    said = html.unescape(cards[broken.task_id].problem.children[0].value)
    assert "Cannot resume" in said and "damaged" in said and not gallery.tasks
    assert not cards[stopped.task_id].problem.children            # only the clicked card speaks

    resume_button(cards[stopped.task_id]).click()
    assert len(gallery.tasks) == 1 and gallery.output.children[0].task is gallery.tasks[0]
    finished = gallery.tasks[0].result(timeout=120)
    run = next(r for r in wan_nb.runs.history(gen.runs_dir) if r.task_id == finished.task_id)
    assert run.status == "completed" and run.resumed_from == stopped.task_id
