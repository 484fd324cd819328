"""A malformed producer file in the runtime directory (written by hand, by a buggy or hostile
process of the same user) must be refused with its reason and must never stop the periodic
scan that notices dead producers for everyone (issue 27, item 2)."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import pytest

from _server_helpers import start_producer, start_server, wait_producer_ready
from wan_nb.relay import protocol, stale_files

pytestmark = pytest.mark.timeout(120)

HUGE = "1" + "0" * 400      # 10**400 as JSON: Python reads an int that no float can hold


@pytest.mark.parametrize("field, raw", [
    ("create_time", HUGE), ("create_time", "1e400"), ("create_time", "-5"), ("pid", HUGE),
    ("pid", "4194305"),
])
def test_numbers_no_process_can_have_are_refused_with_the_field_named(field, raw):
    info = json.loads(f'{{"pid": 12, "pub": "ipc:///a", "{field}": {raw}}}')
    problem = protocol.check_producer_info(info)
    assert problem is not None and field in problem and len(problem) < 200, problem


def test_liveness_and_sweeping_survive_a_start_time_no_float_can_hold(tmp_path):
    assert stale_files.pid_alive(os.getpid(), 10**400) is False
    assert stale_files.pid_alive(10**400) is False
    path = tmp_path / "wan_nb-producer-999999.json"
    path.write_text(f'{{"pid": 999999, "create_time": {HUGE}}}')
    os.utime(path, (0, 0))
    assert stale_files.sweep(tmp_path) == [path]   # a dead pid's file still goes


def test_a_bad_producer_file_does_not_stop_lost_detection_or_unknown_task_lookups(tmp_path):
    runtime, runs = tmp_path / "runtime", tmp_path / "runs"
    runtime.mkdir(parents=True)
    # pid 1 sorts first and is alive: the bad file is met before the real producer on every scan
    bad = runtime / f"{protocol.PRODUCER_PREFIX}1.json"
    bad.write_text(f'{{"pid": 1, "pub": "ipc:///nowhere", "create_time": {HUGE}}}')
    server = start_server(runtime)
    task_id = "bad-" + uuid.uuid4().hex[:8]
    producer = start_producer(runtime, runs, task_id, steps=2000, interval=0.02)
    try:
        wait_producer_ready(producer)
        server.wait_task(task_id, lambda s: (s["current_step"] or 0) >= 2)
        assert server.get("tasks/no-such-task").status_code == 404
        os.kill(producer.pid, signal.SIGKILL)
        producer.wait()
        killed = time.monotonic()
        snap = server.wait_task(task_id, lambda s: s["status"] == "lost", timeout=10)
        assert snap["error_type"] == "ProducerLost", snap
        assert time.monotonic() - killed < 10
        assert server.get("tasks/no-such-task").status_code == 404
        log = server.log.read_text()
        assert log.count("ignoring producer file") == 1 and "create_time" in log   # once, with why
        assert "Traceback" not in log, log[-3000:]
    finally:
        producer.kill()
        producer.wait()
        server.stop()
