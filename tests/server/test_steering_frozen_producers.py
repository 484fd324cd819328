"""Steering requests to a frozen producer (SIGSTOP) hold up neither the other producers'
steering nor each other (issue 27, item 3): before, 40 cancels of one frozen producer's task
filled the server's 4 shared control threads for 29 s and 64 made every steering request 503."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid

import pytest
import requests

from _server_helpers import start_producer, stop_producers, start_server, wait_producer_ready

pytestmark = pytest.mark.timeout(180)


def _post(server, path: str, results: list, body: dict | None = None) -> None:
    response = requests.post(server.api(path), headers=server.headers, timeout=120,
                             data=json.dumps(body) if body is not None else None)
    results.append((time.monotonic(), response.status_code, response.text))


def test_a_frozen_producer_delays_no_other_producers_steering(tmp_path):
    runtime, runs = tmp_path / "runtime", tmp_path / "runs"
    server = start_server(runtime)
    frozen_id, healthy_id = "frozen-" + uuid.uuid4().hex[:6], "healthy-" + uuid.uuid4().hex[:6]
    frozen = start_producer(runtime, runs, frozen_id, steps=100_000, interval=0.02, steer=True)
    healthy = start_producer(runtime, runs, healthy_id, steps=100_000, interval=0.02, steer=True)
    try:
        for proc, task_id in ((frozen, frozen_id), (healthy, healthy_id)):
            wait_producer_ready(proc)
            server.wait_task(task_id, lambda s: (s["current_step"] or 0) >= 1, timeout=30)
        os.kill(frozen.pid, signal.SIGSTOP)
        to_frozen: list = []
        threads = [threading.Thread(target=_post, args=(server, f"tasks/{frozen_id}/cancel", to_frozen))
                   for _ in range(64)]
        threads += [threading.Thread(target=_post, args=(server, f"tasks/{frozen_id}/pause", to_frozen))
                    for _ in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)              # the frozen producer's requests are all waiting now
        to_healthy: list = []
        _post(server, f"tasks/{healthy_id}/pause", to_healthy)
        _post(server, f"tasks/{healthy_id}/move", to_healthy, {"index": 0})
        for thread in threads:
            thread.join(120)
        assert [status for _, status, _ in to_healthy] == [202, 202], to_healthy
        # answered while every request to the frozen producer was still waiting for it
        assert max(done for done, _, _ in to_healthy) < min(done for done, _, _ in to_frozen)
        assert len(to_frozen) == 72 and {status for _, status, _ in to_frozen} == {504}, \
            sorted({(s, t[:120]) for _, s, t in to_frozen})
        steered = (runs / healthy_id / "steered.jsonl").read_text().splitlines()
        assert [json.loads(line)["action"] for line in steered] == ["pause", "move"]

        os.kill(frozen.pid, signal.SIGCONT)      # it answers again: so does the server, soon
        deadline, status = time.monotonic() + 30, None
        while time.monotonic() < deadline and status != 202:
            status = server.post(f"tasks/{frozen_id}/cancel").status_code
            time.sleep(0.2)
        assert status == 202
        assert server.wait_task(frozen_id, lambda s: s["status"] == "cancelled")["status"] == "cancelled"
        sent = (runs / frozen_id / "steered.jsonl").read_text().splitlines()
        # 72 requests while frozen reached it as at most one cancel and one pause, then the last one
        assert len(sent) <= 3, sent
    finally:
        stop_producers(frozen, healthy)
        server.stop()
