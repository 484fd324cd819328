"""Steering a generator while it works: pause and resume a task, reorder and pause the queue,
and pick up a queue a killed process left behind."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from wan_nb import GenerationCancelled, Generator, TaskNotQueued
from wan_nb.protocol.events import validate
from wan_nb.models.video_io import read_frames

from _core_helpers import stages

SMALL = dict(height=32, width=32, num_frames=9, steps=4)


def _when(gen, type_):
    """An Event set once the generator publishes an event of ``type_``."""
    seen = threading.Event()
    off = gen.subscribe(lambda event: seen.set(), types=[type_])
    return seen, off


def _progress_events(events):
    """All but the memory samples, which go on while a task is paused (memory is still held)."""
    return [e for e in events if e.type != "vram_monitoring"]


def _steps(events):
    return [e.data["current_step"] for e in events
            if e.type == "detailed_generation_progress" and e.data["stage"] == "generating" and e.data["current_step"]]


def test_pause_holds_after_the_step_and_resume_goes_on_to_the_same_video(gen, recorder):
    reference = gen.generate("a heron", seed=3, progress=False, **SMALL)
    paused, off = _when(gen, "generation_paused")
    unhook = gen.add_step_hook(lambda task, step, *_: task.pause() if step == 2 else None)
    try:
        task = gen.submit("a heron", seed=3, **SMALL)
        assert paused.wait(60)
        assert task.status == "paused"
        gen.bus.drain()
        held = _progress_events(recorder.of(task.id))
        assert not task.wait(0.3)                   # it holds ...
        gen.bus.drain()
        assert _progress_events(recorder.of(task.id)) == held   # ... and reports no step meanwhile
        assert task.resume() is True
        result = task.result(timeout=60)
    finally:
        unhook()
        off()
    for event in recorder.of(task.id):
        validate(event)
    events = _progress_events(recorder.of(task.id))
    types = [e.type for e in events]
    pause_at, resume_at = types.index("generation_paused"), types.index("generation_resumed")
    assert events[pause_at].data == {"stage": "generating", "current_step": 2}
    assert events[resume_at].data == {"stage": "generating", "current_step": 2}
    assert resume_at == pause_at + 1                # nothing between the two
    assert _steps(events[:pause_at]) == [1, 2] and _steps(events[resume_at:]) == [3, 4]
    assert task.status == "completed"
    assert np.array_equal(read_frames(result.video_path), read_frames(reference.video_path))


def test_a_paused_task_can_be_cancelled(gen, recorder):
    paused, off = _when(gen, "generation_paused")
    unhook = gen.add_step_hook(lambda task, step, *_: task.pause() if step == 1 else None)
    try:
        task = gen.submit("a stalled river", seed=0, **SMALL)
        assert paused.wait(60)
        assert task.cancel() is True
        with pytest.raises(GenerationCancelled):
            task.result(timeout=60)
    finally:
        unhook()
        off()
    events = recorder.of(task.id)
    assert task.status == "cancelled" and _steps(events) == [1]
    assert events[-1].type == "generation_cancelled"
    assert events[-1].data == {"stage": "generating", "current_step": 1}
    assert "generation_resumed" not in [e.type for e in events]
    assert "post_processing" not in stages(events)
    assert task.resume() is False and task.pause() is False   # finished: nothing to steer


def test_pause_releasing_memory_works_on_the_cpu_too(gen):
    paused, off = _when(gen, "generation_paused")
    unhook = gen.add_step_hook(lambda task, step, *_: task.pause(release_memory=True) if step == 3 else None)
    try:
        task = gen.submit("a slow cloud", seed=1, **SMALL)
        assert paused.wait(60)
        assert gen.steer(task.id, "resume") is True
        assert task.result(timeout=60).video_path.exists()
    finally:
        unhook()
        off()


def test_a_paused_generator_takes_no_task_until_resumed_and_a_reorder_changes_the_run_order(gen):
    finished = []
    off = gen.subscribe(lambda e: finished.append(e.task_id), types=["generation_completed"])
    gen.pause()
    try:
        a, b, c = (gen.submit(f"shot {name}", seed=0, **SMALL) for name in "abc")
        assert gen.queue == [a, b, c]
        c.move(0)                    # c runs next
        a.move(-1)                   # a runs last
        assert gen.queue == [c, b, a]
        assert not c.wait(0.3) and c.status == "queued"
    finally:
        gen.resume()
    for task in (a, b, c):
        task.result(timeout=120)
    gen.bus.drain()
    off()
    assert finished == [c.id, b.id, a.id]
    assert gen.queue == []


def test_pausing_the_generator_lets_the_running_task_finish(gen):
    denoising, go = threading.Event(), threading.Event()

    def hold_the_first(task, step, *_):
        if task.prompt == "first":
            denoising.set()
            go.wait(30)

    unhook = gen.add_step_hook(hold_the_first)
    try:
        first = gen.submit("first", seed=0, **SMALL)
        second = gen.submit("second", seed=0, **SMALL)
        assert denoising.wait(60)
        gen.pause()
        go.set()
        assert first.result(timeout=60).video_path.exists()
        assert not second.wait(0.3) and second.status == "queued" and gen.queue == [second]
        gen.resume()
        assert second.result(timeout=60).video_path.exists()
    finally:
        gen.resume()
        go.set()
        unhook()


def test_only_a_queued_task_can_move(gen):
    done = gen.submit("done", seed=0, **SMALL)
    done.result(timeout=60)
    with pytest.raises(TaskNotQueued, match=r"task .* is completed, not queued: only a queued task can be moved"):
        done.move(0)
    gen.pause()
    try:
        waiting = gen.submit("waiting", seed=0, **SMALL)
        with pytest.raises(TypeError, match=r"move\(index='first'\): give an int"):
            waiting.move("first")
        assert gen.steer(waiting.id, "move", index=0) is True
        assert gen.steer(done.id, "move", index=0) is False
        assert gen.steer(waiting.id, "cancel") is True   # a queued task ends at once
        assert waiting.status == "cancelled" and gen.queue == []
    finally:
        gen.resume()
    with pytest.raises(GenerationCancelled):
        waiting.result(timeout=10)
    assert gen.steer("no-such-task", "pause") is False
    with pytest.raises(ValueError, match="unknown action 'stop'"):
        gen.steer(done.id, "stop")


KILLED_KERNEL = textwrap.dedent("""
    import sys, threading
    from wan_nb import Generator

    gen = Generator(model="tiny", runs_dir=sys.argv[1], previews=False)
    started = threading.Event()
    gen.add_step_hook(lambda task, step, *_: (print("RUNNING", flush=True), started.wait()))
    for i in range(3):
        gen.submit(f"take {i}", seed=10 + i, height=32, width=32, num_frames=9, steps=2)
    started.wait()   # blocks forever: the parent kills this process mid-queue
""")


def test_resume_queue_after_the_process_was_killed(tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    kernel = subprocess.Popen([sys.executable, "-c", KILLED_KERNEL, str(runs)], stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert kernel.stdout.readline().strip() == "RUNNING"
    finally:
        kernel.send_signal(signal.SIGKILL)
        kernel.wait(timeout=30)
    left = json.loads((runs / "queue.json").read_text())["tasks"]
    assert sorted(entry["prompt"] for entry in left.values()) == ["take 0", "take 1", "take 2"]

    with Generator(model="tiny", runs_dir=runs, previews=False) as gen:
        tasks = gen.resume_queue()
        assert [(t.prompt, t.seed) for t in tasks] == [("take 0", 10), ("take 1", 11), ("take 2", 12)]
        for task in tasks:
            assert task.result(timeout=120).video_path.exists()
        assert gen.resume_queue() == []          # taken over once
    assert not (runs / "queue.json").exists()     # every task finished: nothing left to resume


class _ManualClock:
    """``time`` for the step clock, advanced by hand: step times become exact numbers."""

    def __init__(self) -> None:
        import time

        self._time, self.now = time, 1000.0

    def perf_counter(self) -> float:
        return self.now

    def __getattr__(self, name):
        return getattr(self._time, name)


def test_the_time_remaining_leaves_the_paused_time_out(gen, recorder, monkeypatch):
    import wan_nb.core.run
    import wan_nb.core.eta

    clock = _ManualClock()
    monkeypatch.setattr(wan_nb.core.eta, "time", clock)
    monkeypatch.setattr(wan_nb.core.run, "time", clock)

    def one_second_a_step(task, step, *_):
        clock.now += 1.0
        if step == 2:
            task.pause()

    paused, off = _when(gen, "generation_paused")
    unhook = gen.add_step_hook(one_second_a_step)
    try:
        task = gen.submit("a long wait", seed=0, height=32, width=32, num_frames=13, steps=4)
        assert paused.wait(60)
        clock.now += 3600.0          # an hour on pause
        task.resume()
        task.result(timeout=60)
    finally:
        unhook()
        off()
    after_resume = [e.data["estimated_time_remaining"] for e in recorder.of(task.id)
                    if e.type == "detailed_generation_progress" and e.data["current_step"] == 3
                    and e.data["stage"] == "generating"]
    # One step of about a second left, plus the decode: nowhere near the hour spent paused.
    assert after_resume and after_resume[0] < 60


def test_text_progress_says_when_a_task_holds():
    import io

    from wan_nb.cli.console import TextProgress
    from wan_nb.protocol.events import Event, utc_now

    out = io.StringIO()
    progress = TextProgress(out, live=False)
    for seq, (type_, data) in enumerate([("generation_paused", {"stage": "generating", "current_step": 2}),
                                         ("generation_resumed", {"stage": "generating", "current_step": 2})], 1):
        progress(Event(type_, "t", seq, utc_now(), data))
    paused_line, resumed_line = out.getvalue().splitlines()
    assert "paused" in paused_line and "generating" in resumed_line


def test_a_storyboard_is_steered_by_its_own_id(gen, recorder):
    from wan_nb import Storyboard

    board = Storyboard(gen, ["a fox wakes", "the fox runs"], seed=1, steps=2)
    denoising, go = threading.Event(), threading.Event()

    def first_scene_waits(task, step, *_):
        if task.parent_id == board.id and step == 1 and not go.is_set():
            denoising.set()
            go.wait(30)

    paused, off = _when(gen, "generation_paused")
    unhook = gen.add_step_hook(first_scene_waits)
    try:
        run = board.submit()
        assert denoising.wait(60)
        assert gen.steer(board.id, "pause") is True       # what a Jupyter server's pause does
        go.set()
        assert paused.wait(60)
        scene = gen.task(run.scene_task_ids[0])
        assert scene.status == "paused"
        assert gen.steer(board.id, "move", index=0) is False   # a storyboard has no queue place
        assert gen.steer(board.id, "resume") is True
        result = run.result(timeout=120)
    finally:
        go.set()
        unhook()
        off()
    assert len(result.scene_videos) == 2
    assert gen.steer(board.id, "cancel") is False          # finished, and no longer steered here


def test_resume_queue_leaves_the_tasks_of_a_live_process_alone(tmp_path):
    with Generator(model="tiny", runs_dir=tmp_path, previews=False) as owner:
        owner.pause()
        waiting = owner.submit("still mine", seed=0, **SMALL)
        with Generator(model="tiny", runs_dir=tmp_path, previews=False) as other:
            assert other.resume_queue() == []      # its owner is alive: not an orphan
        assert waiting.status == "queued"
        waiting.cancel()
    assert not (tmp_path / "queue.json").exists()
