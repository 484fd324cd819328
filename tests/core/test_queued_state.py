"""Queued is a state every client sees (DESIGN.md): a task waiting behind another reads
``queued``, with its place, in the one reducer and so in every snapshot, the all-tasks list, the
widgets' state and the console, until the worker takes it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _server_helpers import isolated_env, start_server  # noqa: E402

from wan_nb.cli.console import TextProgress  # noqa: E402
from wan_nb.protocol.events import Event  # noqa: E402
from wan_nb.protocol.snapshot import TaskSnapshot  # noqa: E402
from wan_nb.widgets._state import TaskState as PanelState  # noqa: E402

PRODUCER = Path(__file__).resolve().parents[1] / "_queue_producer.py"


def _events(task_id: str = "t2") -> list[Event]:
    """What a generator publishes for a task submitted behind a running one that then moves up."""
    at = "2026-01-01T00:00:0{}.000Z"
    kinds = [("generation_started", {"model_type": "tiny", "params": {"prompt": "an owl", "steps": 4},
                                     "estimated_duration": None}),
             ("generation_queued", {"queue_position": 1, "ahead": 2}),
             ("vram_monitoring", {"allocated_mb": 1.0}),
             ("generation_queued", {"queue_position": 0, "ahead": 1}),
             ("generation_stage", {"stage": "initializing", "stage_progress": 0, "stage_message": "Starting"}),
             ("generation_completed", {"output_path": "v.mp4", "duration_s": 1.0, "params": {}, "seed": 0})]
    return [Event(kind, task_id, seq, at.format(seq), data) for seq, (kind, data) in enumerate(kinds, 1)]


def test_the_reducer_says_queued_with_the_position_until_the_worker_starts_it():
    state, seen = TaskSnapshot(), []
    for event in _events():
        state.apply(event)
        snap = state.to_dict()
        seen.append((snap["status"], snap["queue_position"], snap["message"]))
    assert seen == [("queued", None, ""),
                    ("queued", 1, "Queued (#2): 2 tasks ahead"),
                    ("queued", 1, "Queued (#2): 2 tasks ahead"),     # VRAM says nothing about it
                    ("queued", 0, "Queued (#1): 1 task ahead"),      # the one ahead of it moved
                    ("running", None, "Starting"),
                    ("completed", None, "Generation complete")]


def test_the_widgets_state_and_the_console_say_queued_too():
    panel, out = PanelState(), io.StringIO()
    console = TextProgress(out, live=False)
    events = _events()
    for event in events[:2]:
        panel.apply(event)
        console(event)
    assert (panel.status, panel.queue_position, panel.message) == ("queued", 1, "Queued (#2): 2 tasks ahead")
    assert "queued (#2)" in out.getvalue().splitlines()[-1]
    assert panel.started_at is None                     # queue time is not run time
    panel.apply(events[4])
    assert (panel.status, panel.queue_position) == ("running", None) and panel.started_at is not None


@pytest.fixture
def server_and_queue(tmp_path):
    server = start_server(tmp_path / "runtime")
    runs = tmp_path / "runs"
    runs.mkdir()
    producer = subprocess.Popen([sys.executable, str(PRODUCER), "--runs-dir", str(runs), "--prefix", "q",
                                 "--queued", "3"], env=isolated_env(tmp_path / "runtime"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert producer.stdout.readline().strip() == "ready", producer.stderr.read()
        yield server, runs
    finally:
        producer.kill()
        producer.wait()
        server.stop()


def _positions(server) -> dict[str, int]:
    listed = server.get("tasks", params={"status": "queued"}).json()["tasks"]
    return {snap["task_id"]: snap["queue_position"] for snap in listed}


def _wait(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"never true; last {value!r}")


def test_the_server_lists_waiting_tasks_as_queued_with_their_place(server_and_queue):
    server, runs = server_and_queue
    server.wait_task("q-0", lambda s: s["status"] == "running" and (s["current_step"] or 0) >= 1)
    _wait(lambda: _positions(server) == {"q-1": 0, "q-2": 1, "q-3": 2})
    snap = server.get("tasks/q-2").json()
    assert (snap["status"], snap["queue_position"], snap["message"]) == ("queued", 1, "Queued (#2): 2 tasks ahead")
    assert server.get("tasks/q-0").json()["queue_position"] is None
    every = {s["task_id"]: s["status"] for s in server.get("tasks").json()["tasks"]}
    assert every == {"q-0": "running", "q-1": "queued", "q-2": "queued", "q-3": "queued"}

    # A move through the server's route: the process re-announces the places that changed.
    assert server.post("tasks/q-3/move", json={"index": 0}).status_code == 202
    _wait(lambda: _positions(server) == {"q-3": 0, "q-1": 1, "q-2": 2})

    # The running one ends: the next one starts, and the others move up.
    (runs / "finish").touch()
    server.wait_task("q-3", lambda s: s["status"] == "running" and s["queue_position"] is None)
    _wait(lambda: _positions(server) == {"q-1": 0, "q-2": 1})
    steered = [json.loads(line) for line in (runs / "steered.jsonl").read_text().splitlines()]
    assert steered == [{"task_id": "q-3", "action": "move", "index": 0}]


def test_the_per_task_sse_stream_says_where_a_waiting_task_stands():
    from wan_nb.server.wire import seed_message

    frame = json.loads(_events()[1].to_json())
    message = seed_message(frame, 0, "initializing", "/")
    assert (message["type"], message["status"], message["message"]) == \
        ("generation_queued", "in_progress", "Queued (#2): 2 tasks ahead")
