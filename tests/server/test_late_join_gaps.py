"""A server whose socket joined a task late (zmq drops what a subscriber sent before the
connection was up) still replays every event, from the task's journal.

The hub is driven the way the server drives it — ``ingest`` for each socket message, the
producer file as the producer writes it — with a real journal written by the real sink, so the
order of "socket message" and "producer file rewritten" can be chosen: the races a loaded
machine produces now and then (``test_two_servers_see_the_same_task_and_either_can_cancel``
once replayed only seq 9..11 of a cancelled task).
"""

from __future__ import annotations

import os
from pathlib import Path

from wan_nb.core.bus import EventBus
from wan_nb.runs.journal import Journal
from wan_nb.server.hub import Hub, Producer

TASK = "late-1"


def run_task(runs: Path, steps: int = 6) -> list[bytes]:
    """Publish a cancelled generation through a bus with the run journal; its wire frames."""
    bus, journal, frames = EventBus(), Journal(), []
    bus.add_sink(journal)
    bus.add_sink(lambda event: frames.append(event.to_json().encode()))
    journal.open(TASK, runs / TASK)
    bus.publish(TASK, "generation_started", model_type="tiny", params={"prompt": "fox", "steps": steps},
                estimated_duration=None)
    for stage in ("initializing", "loading_model", "generating"):
        bus.publish(TASK, "generation_stage", stage=stage, stage_progress=0, stage_message=stage)
    for step in range(1, steps + 1):
        bus.publish(TASK, "detailed_generation_progress", stage="generating", progress=10 * step,
                    message=f"Step {step}/{steps}", estimated_time_remaining=1.0, current_step=step,
                    total_steps=steps)
    bus.publish(TASK, "generation_stage", stage="cancelled", stage_progress=0, stage_message="Cancelled")
    bus.publish(TASK, "generation_cancelled", stage="generating", current_step=steps)
    journal.close(TASK)
    return frames


def producer_as_first_seen(tmp_path: Path) -> Producer:
    """The producer file as a server may first read it: written before the generator attached,
    so it names no runs folder and no task yet."""
    return Producer(tmp_path / "runtime" / f"wan_nb-producer-{os.getpid()}.json",
                    {"pid": os.getpid(), "pub": "ipc:///nowhere", "runs_dirs": [], "tasks": []})


def seqs(recs) -> list[int]:
    return [rec.seq for rec in recs]


def test_a_late_socket_whose_journal_is_found_mid_task_still_replays_every_event(tmp_path):
    runs = tmp_path / "runs"
    frames = run_task(runs)
    journal = runs / TASK / "events.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:8]))  # the task is at seq 8 so far
    hub, producer = Hub(runtime_dir=tmp_path / "runtime"), producer_as_first_seen(tmp_path)
    for raw in frames[5:8]:  # seq 1..5 went out before the subscription was up
        hub.ingest(raw, producer)
    task = hub.tasks[TASK]
    assert task.snapshot.current_step == 4
    # The rewritten producer file names the runs folder: the scan reads the journal now.
    producer.info = {**producer.info, "runs_dirs": [str(runs)], "tasks": [{"task_id": TASK, "runs_dir": str(runs)}]}
    hub.store.load_journal(TASK, producer, runs)
    assert seqs(hub.replay(task)) == list(range(1, 9))  # a client that connects now
    with open(journal, "ab") as handle:  # the journal sink runs before the relay sink
        handle.write(b"".join(lines[8:]))
    for raw in frames[8:]:
        hub.ingest(raw, producer)
    assert task.snapshot.status == "cancelled"
    assert seqs(hub.replay(task)) == list(range(1, len(frames) + 1))
    assert seqs(hub.replay(task, after=4)) == list(range(5, len(frames) + 1))


def test_a_late_socket_of_a_task_that_ends_before_any_rescan_replays_from_the_journal(tmp_path):
    runs = tmp_path / "runs"
    frames = run_task(runs)
    hub, producer = Hub(runtime_dir=tmp_path / "runtime"), producer_as_first_seen(tmp_path)
    for raw in frames[6:]:
        hub.ingest(raw, producer)
    task = hub.tasks[TASK]
    assert task.finished and task.journal_path is None
    # Only now does the server learn where this producer writes its runs.
    producer.info = {**producer.info, "runs_dirs": [str(runs)]}
    hub.producers[producer.path] = producer
    assert seqs(hub.replay(task)) == list(range(1, len(frames) + 1))


def test_a_gap_is_filled_from_the_journal_once_the_rewritten_producer_file_names_it(tmp_path):
    runs = tmp_path / "runs"
    frames = run_task(runs)
    hub, producer = Hub(runtime_dir=tmp_path / "runtime"), producer_as_first_seen(tmp_path)
    hub.ingest(frames[0], producer)  # seq 1 arrived; the task's folder is not known yet
    producer.path.parent.mkdir(parents=True)
    producer.path.write_text(
        '{"pid": %d, "pub": "ipc:///nowhere", "runs_dirs": ["%s"], "tasks": []}' % (os.getpid(), runs))
    hub.ingest(frames[4], producer)  # seq 2..4 lost on the socket: read from the journal at once
    task = hub.tasks[TASK]
    assert task.journal_path == runs / TASK / "events.jsonl"
    assert task.last_seq == len(frames)  # the journal (finished here) was read to its end
    for raw in frames[5:]:
        hub.ingest(raw, producer)
    assert seqs(hub.replay(task)) == list(range(1, len(frames) + 1))
