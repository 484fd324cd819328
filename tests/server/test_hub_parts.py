"""The hub's parts driven directly (no server): validation, caps, replay bookkeeping, the
journal's whole-line guarantee, the state reducer's statuses."""

from __future__ import annotations

import asyncio
import json
import os
import threading


import pytest

from wan_nb.core.bus import EventBus
from wan_nb.protocol.events import Event
from wan_nb.runs.journal import Journal, repair_torn_tail
from wan_nb.relay import protocol
from wan_nb.server.hub import Hub, parse_seq
from wan_nb.server.store import valid_task_id
from wan_nb.protocol.state import PROMPT_CAP, TaskState


def frame(task_id: str, seq: int, type_: str, **data) -> bytes:
    return json.dumps({"type": type_, "seq": seq, "task_id": task_id,
                       "data": {**data, "task_id": task_id, "timestamp": "2026-01-01T00:00:00.000Z"}}).encode()


def event(seq: int, type_: str, **data) -> Event:
    return Event(type=type_, task_id="t1", seq=seq, timestamp="2026-01-01T00:00:00.000Z", data=data)


def publish_generation(bus: EventBus, task_id: str, steps: int) -> None:
    """A finished generation's events: started, ``steps`` progress events, completed."""
    bus.publish(task_id, "generation_started", model_type="tiny", params={"steps": steps}, estimated_duration=None)
    for step in range(1, steps + 1):
        bus.publish(task_id, "detailed_generation_progress", stage="generating", progress=step, message="s",
                    estimated_time_remaining=0, current_step=step, total_steps=steps)
    bus.publish(task_id, "generation_completed", output_path="v.mp4", duration_s=1.0, params={}, seed=0)


class FakeOutbox:
    """An outbox that hands pushed bytes to ``sink`` (a client reading at once), or never
    drains (``stuck``: a client that stopped reading with its queue full)."""

    def __init__(self, sink=lambda data: None, stuck: bool = False) -> None:
        self.sink, self.stuck = sink, stuck
        self.limit = 10 if stuck else 1000
        self.queue, self.pending, self.closed = [1] * self.limit if stuck else [], stuck, False

    def push(self, data, key=None):
        self.sink(data)

    def when_drained(self, callback):
        if not self.stuck:
            callback()

    def close(self, reason=""):
        self.closed = True


def test_task_ids_match_whole_strings_only():
    assert valid_task_id("abc-1.2_x")
    for bad in ("abc\n", "abc\n\n", "..", ".", "", "a/b", "a\x00b", "-a", 5, None):
        assert not valid_task_id(bad), repr(bad)


@pytest.mark.parametrize("raw, expected", [("0", 0), ("17", 17), (3, 3), ("+5", None), ("1_0", None),
                                           ("-1", None), (" 5", None), ("05", None), ("5\n", None),
                                           (-1, None), (True, None), ("1" * 30, None)])
def test_resume_positions_are_plain_decimals(raw, expected):
    assert parse_seq(raw) == expected


def test_states_say_queued_then_running_then_paused():
    state = TaskState()
    state.apply(event(1, "generation_started", model_type="tiny", params={"prompt": "fox", "steps": 4},
                      estimated_duration=None))
    assert state.status == "queued"          # what Python's task.status says before the worker takes it
    state.apply(event(2, "vram_monitoring", allocated_mb=1.0))
    assert state.status == "queued"
    state.apply(event(3, "generation_stage", stage="initializing", stage_progress=0, stage_message="go"))
    assert state.status == "running"
    state.apply(event(4, "generation_paused", stage="generating", current_step=2))
    assert (state.status, state.current_step) == ("paused", 2)
    state.apply(event(5, "generation_resumed", stage="generating", current_step=2))
    assert state.status == "running"
    assert not state.apply(event(5, "generation_cancelled", stage="generating", current_step=2))
    assert state.status == "running"          # an event already folded is ignored


def test_an_outsized_prompt_is_capped_in_what_the_server_stores(tmp_path):
    hub = Hub(runtime_dir=tmp_path)
    prompt = "fox " * 250_000   # 1 MB
    hub.ingest(frame("big", 1, "generation_started", model_type="tiny",
                     params={"prompt": prompt, "negative_prompt": prompt, "steps": 2}, estimated_duration=None))
    task = hub.tasks["big"]
    snapshot = hub.snapshot(task)
    assert len(snapshot["prompt"]) <= PROMPT_CAP + 1 and snapshot["prompt"].startswith("fox fox")
    assert len(snapshot["params"]["negative_prompt"]) <= PROMPT_CAP + 1
    assert len(task.events[0].raw) < 4 * PROMPT_CAP        # the stored frame too
    assert sum(len(r.raw) for r in hub.store.ring) < 4 * PROMPT_CAP


def test_the_lost_message_names_the_pid_once(tmp_path):
    from wan_nb.server.discovery import Producer

    hub = Hub(runtime_dir=tmp_path)
    producer = Producer(tmp_path / "wan_nb-producer-4242.json", {"pid": 4242, "pub": "ipc:///x"})
    hub.ingest(frame("t", 1, "generation_stage", stage="generating", stage_progress=0, stage_message="x"), producer)
    hub.store.lose_tasks(producer, "ended")
    error = hub.snapshot(hub.tasks["t"])["error"]
    assert error.count("4242") == 1 and "ended" in error, error


@pytest.mark.parametrize("info, problem", [
    ({"pid": "12", "pub": "ipc:///a"}, "pid"),
    ({"pid": 12.5, "pub": "ipc:///a"}, "pid"),
    ({"pid": True, "pub": "ipc:///a"}, "pid"),
    ({"pid": 12, "pub": 5}, "pub"),
    ({"pid": 12, "pub": "ipc:///a", "tasks": {"a": 1}}, "tasks"),
    ({"pid": 12, "pub": "ipc:///a", "tasks": [{"task_id": 3}]}, "tasks"),
    ({"pid": 12, "pub": "ipc:///a", "runs_dirs": "/tmp"}, "runs_dirs"),
    ({"pid": 12, "pub": "ipc:///a", "runs_dirs": [1]}, "runs_dirs"),
    ({"pid": 12, "pub": "ipc:///a", "create_time": "yesterday"}, "create_time"),
])
def test_producer_files_of_the_wrong_shape_are_refused_with_the_reason(info, problem):
    assert problem in protocol.check_producer_info(info)


def test_a_valid_producer_file_passes():
    assert protocol.check_producer_info({"pid": 12, "pub": "tcp://127.0.0.1:5", "control": "tcp://x",
                                         "key": "k", "create_time": 1.5, "runs_dirs": ["/r"],
                                         "tasks": [{"task_id": "a", "runs_dir": "/r", "active": True}]}) is None


def test_journals_are_read_off_the_loop_and_a_second_subscribe_replays_nothing(tmp_path):
    runs = tmp_path / "runs"
    bus, journal = EventBus(), Journal()
    bus.add_sink(journal)
    journal.open("j1", runs / "j1")
    publish_generation(bus, "j1", 50)
    journal.close("j1")
    hub = Hub(runtime_dir=tmp_path / "rt", runs_dirs=[runs])
    threads = []
    import wan_nb.server.hub as hub_module
    real = hub_module.read_journal
    hub_module.read_journal = lambda *a: threads.append(threading.current_thread().name) or real(*a)
    sent: list[bytes] = []

    async def subscribe_twice():
        sub = hub.subscriber("ws", FakeOutbox(sent.append))
        await hub.subscribe_task(sub, "j1", 0)
        first = len(sent)
        assert hub.is_subscribed(sub, "j1")
        hub.fanout.remove(sub)
        await hub.subscribe_task(sub, "j1", 0)  # the same subscriber again: nothing new to send
        return first

    try:
        first = asyncio.run(subscribe_twice())
    finally:
        hub_module.read_journal = real
        hub.stop()
    assert first == 52 and len(sent) == 52
    assert threads and all(name.startswith("wan_nb-journal") for name in threads)


def test_a_client_that_leaves_with_a_backlog_counts_toward_the_next_trim(tmp_path):
    hub = Hub(runtime_dir=tmp_path)
    before = hub.trimmer.pending

    sub = hub.subscriber("ws", FakeOutbox(stuck=True))
    for seq in range(1, 101):
        hub.ingest(frame("t", seq, "generation_stage", stage="generating", stage_progress=0, stage_message="x" * 100))
    hub.fanout.replay_to(sub, hub.replay(hub.tasks["t"]))
    assert sub.backlog_size > 10_000
    hub.disconnect(sub.outbox, sub)
    assert hub.trimmer.pending > before + 10_000


def test_the_journal_never_keeps_a_torn_line_and_repairs_one_left_by_a_crash(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    path = folder / "events.jsonl"
    path.write_bytes(b'{"seq":1}\n{"seq":2}\n{"se')
    assert repair_torn_tail(path) and path.read_bytes() == b'{"seq":1}\n{"seq":2}\n'
    assert not repair_torn_tail(path)
    path.write_bytes(b'{"se')
    journal = Journal()
    journal.open("t", folder)     # opening repairs too
    journal.close("t")
    assert path.read_bytes() == b""


def test_cancels_to_frozen_producers_do_not_starve_the_vram_route(tmp_path, monkeypatch):
    from wan_nb.server.discovery import Producer

    release = threading.Event()
    monkeypatch.setattr(protocol, "send_control", lambda *a, **k: release.wait(20) and {"ok": True})
    hub = Hub(runtime_dir=tmp_path, sample_vram=lambda: {"allocated_mb": 1.0})
    producer = Producer(tmp_path / "wan_nb-producer-1.json", {"pid": os.getpid(), "pub": "ipc:///x",
                                                             "control": "ipc:///y", "key": "k"})
    hub.ingest(frame("t", 1, "generation_stage", stage="generating", stage_progress=0, stage_message="x"), producer)

    async def main():
        cancels = [asyncio.ensure_future(hub.cancel(hub.tasks["t"])) for _ in range(30)]
        await asyncio.sleep(0.1)
        reading = await asyncio.wait_for(hub.sample_vram(), 15)  # not queued behind the cancels
        release.set()
        answers = await asyncio.gather(*cancels)
        return reading, answers

    try:
        reading, answers = asyncio.run(main())
    finally:
        release.set()
        hub.stop()
    assert reading["allocated_mb"] == 1.0 and all(a == {"ok": True} for a in answers)


def test_a_deleted_run_folder_replays_its_summary_marked_incomplete(tmp_path):
    import shutil

    from wan_nb.server.discovery import Producer

    runs = tmp_path / "runs"
    bus, journal = EventBus(), Journal()
    bus.add_sink(journal)
    journal.open("gone", runs / "gone")
    hub = Hub(runtime_dir=tmp_path / "rt")
    producer = Producer(tmp_path / "rt" / "wan_nb-producer-1.json",
                        {"pid": os.getpid(), "pub": "ipc:///x", "runs_dirs": [str(runs)]})
    bus.add_sink(lambda event: hub.ingest(event.to_json().encode(), producer))
    publish_generation(bus, "gone", 30)
    journal.close("gone")
    task = hub.tasks["gone"]
    assert [r.seq for r in hub.replay(task)] == list(range(1, 33)) and not task.missing
    shutil.rmtree(runs / "gone")
    summary = hub.replay(task)
    assert len(summary) < 32                      # the compacted summary only ...
    snapshot = hub.snapshot(task)
    assert snapshot["incomplete"] is True         # ... and it says so
    assert snapshot["missing_seqs"] == [[2, 30]]


def test_finished_runs_on_disk_are_read_from_task_json_and_the_journal_tail(tmp_path):
    from wan_nb.server import runs

    for name, ending in (("one-line", "generation_completed"), ("failed-1", "generation_failed")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "task.json").write_text(json.dumps({"task_id": name, "prompt": "fox", "params": {"steps": 2},
                                                      "model": "tiny", "created_at": "2026-01-01T00:00:00Z"}))
        (folder / "events.jsonl").write_bytes(frame(name, 7, ending, output_path=str(folder / "v.mp4"),
                                                    error_type="X", error="boom") + b"\n")
    (tmp_path / "half-written").mkdir()
    (tmp_path / "half-written" / "task.json").write_text("{not json")
    (tmp_path / "half-written" / "events.jsonl").write_text("")
    found = {run["task_id"]: run for run in runs.finished_runs([tmp_path])}
    assert set(found) == {"one-line", "failed-1"}             # the corrupt folder is skipped
    assert found["one-line"]["status"] == "completed" and found["one-line"]["model_type"] == "tiny"
    assert found["failed-1"]["status"] == "failed" and found["failed-1"]["error"] == "boom"
    assert runs.summary(found["one-line"], "/")["video_url"] == "/wan-nb/api/tasks/one-line/video"
