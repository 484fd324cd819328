"""``Generator(notify=callable)``: a summary of each task's end, on its own thread."""
from __future__ import annotations

import threading
import time

import pytest

from wan_nb import Generator


def test_notify_hears_completed_and_stopped_runs_and_a_failing_callable_changes_nothing(tmp_path):
    heard: list[dict] = []
    arrived = threading.Event()

    def notify(summary: dict) -> None:
        heard.append(summary)
        arrived.set()
        if summary["status"] == "completed":
            time.sleep(1.0)                      # a slow receiver (a webhook call in a script)
            raise ConnectionError("the phone is off")  # and a failing one: logged, nothing else

    with Generator("tiny", device="cpu", runs_dir=tmp_path, previews=False, notify=notify) as gen:
        began = time.monotonic()
        done = gen.generate("a fox", progress=False, seed=1)
        stopped = gen.generate("a fox", progress=False, seed=1, stop_after=2)
        deadline = time.monotonic() + 30
        while len(heard) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    first, second = heard
    assert (first["task_id"], first["status"], first["event"]) == (done.task_id, "completed", "generation_completed")
    assert first["prompt"] == "a fox" and first["model"] == "tiny" and first["output_path"] == str(done.video_path)
    assert first["text"].startswith(f"wan_nb: generation {done.task_id} finished: a fox")
    assert (second["task_id"], second["status"], second["resumable"]) == (stopped.task_id, "stopped", True)
    assert "stopped after step 2" in second["text"]
    assert done.video_path.is_file() and began  # the slow, failing callable did not hold the runs up


def test_notify_must_be_callable(tmp_path):
    with pytest.raises(TypeError, match=r"notify='https://example.org'.*function that takes one dict"):
        Generator("tiny", runs_dir=tmp_path, notify="https://example.org")
