"""Faults: a server restarted mid-task, a producer killed mid-task, two servers at once, and a
server that starts after the task began."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import pytest

from _server_helpers import EventSourceClient, start_producer, start_server, wait_producer_ready

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def dirs(tmp_path):
    return tmp_path / "runtime", tmp_path / "runs"


def new_id() -> str:
    return "f-" + uuid.uuid4().hex[:8]


def read_sse(server, task_id, last_event_id=None, limit=None):
    source = EventSourceClient(server.api(f"progress/{task_id}"), server.headers)
    source.last_event_id = last_event_id
    response = source.connect()
    if response.status_code != 200:
        return response.status_code, [], source
    updates = []
    for event in source.events(max_events=limit):
        updates.append(json.loads(event["data"]))
    source.close()
    return 200, updates, source


def test_two_servers_see_the_same_task_and_either_can_cancel(dirs):
    runtime, runs = dirs
    first, second = start_server(runtime), start_server(runtime)
    task_id = new_id()
    producer = start_producer(runtime, runs, task_id, steps=500, interval=0.02)
    try:
        wait_producer_ready(producer)
        for server in (first, second):
            server.wait_task(task_id, lambda s: (s["current_step"] or 0) >= 2)
        assert second.post(f"tasks/{task_id}/cancel").status_code == 202
        for server in (first, second):
            snap = server.wait_task(task_id, lambda s: s["status"] == "cancelled")
            assert snap["current_step"] < 500
        _, a, _ = read_sse(first, task_id)
        _, b, _ = read_sse(second, task_id)
        assert [u["seq"] for u in a] == [u["seq"] for u in b]
        assert a[-1]["status"] == b[-1]["status"] == "cancelled"
    finally:
        producer.kill()
        producer.wait()
        first.stop()
        second.stop()


def test_server_started_after_the_task_began_shows_its_earlier_events(dirs):
    runtime, runs = dirs
    task_id = new_id()
    go = runtime.parent / "go"
    producer = start_producer(runtime, runs, task_id, steps=40, interval=0.01, hold_until=go)
    wait_producer_ready(producer)
    journal = runs / task_id / "events.jsonl"
    while journal.read_text().count("vram_monitoring") == 0:  # paused half way, before any server
        time.sleep(0.02)
    server = start_server(runtime)
    try:
        assert server.get(f"tasks/{task_id}").json()["current_step"] == 20
        go.touch()
        status, updates, _ = read_sse(server, task_id)
        assert status == 200
        seqs = [u["seq"] for u in updates]
        assert seqs[0] == 1 and updates[-1]["step"] == "complete"
        snap = server.get(f"tasks/{task_id}").json()
        assert len(seqs) == snap["last_seq"] - 1  # all but the vram event, none twice
    finally:
        producer.kill()
        producer.wait()
        server.stop()


def test_server_restarted_mid_task_resumes_without_loss(dirs):
    runtime, runs = dirs
    server = start_server(runtime)
    task_id = new_id()
    producer = start_producer(runtime, runs, task_id, steps=200, interval=0.03)
    try:
        wait_producer_ready(producer)
        status, before, source = read_sse(server, task_id, limit=8)
        assert status == 200 and len(before) == 8
        port = server.port
        server.stop()  # the producer keeps going with no server
        time.sleep(0.3)
        server = start_server(runtime, port=port)
        status, after, _ = read_sse(server, task_id, last_event_id=source.last_event_id)
        assert status == 200
        seqs = [u["seq"] for u in before + after]
        snap = server.get(f"tasks/{task_id}").json()
        assert snap["status"] == "completed"
        assert seqs == [s for s in range(1, snap["last_seq"] + 1) if s in set(seqs)]  # ordered, unique
        assert len(seqs) == snap["last_seq"] - 1  # every event but the (default-skipped) vram one
    finally:
        producer.kill()
        producer.wait()
        server.stop()


def test_producer_killed_mid_task_is_marked_lost_within_10_seconds(dirs):
    runtime, runs = dirs
    server = start_server(runtime)
    task_id = new_id()
    producer = start_producer(runtime, runs, task_id, steps=1000, interval=0.02)
    try:
        wait_producer_ready(producer)
        server.wait_task(task_id, lambda s: (s["current_step"] or 0) >= 2)
        source = EventSourceClient(server.api(f"progress/{task_id}"), server.headers)
        source.connect()
        os.kill(producer.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        producer.wait()
        updates = [json.loads(e["data"]) for e in source.events()]  # ends with the terminal event
        assert time.monotonic() - killed_at < 10
        last = updates[-1]
        assert last["type"] == "generation_failed" and last["status"] == "failed"
        assert last["data"]["error_type"] == "ProducerLost"
        snap = server.get(f"tasks/{task_id}").json()
        assert snap["status"] == "lost" and snap["error_type"] == "ProducerLost"
        assert server.post(f"tasks/{task_id}/cancel").status_code == 409
    finally:
        server.stop()
