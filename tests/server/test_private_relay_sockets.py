"""A real server and producer still find each other, stream and steer when the sockets cannot
be ipc files in the runtime dir (issue 27, item 1): a runtime dir path too long for a socket
(a short private folder is used instead) and a platform without ipc (CURVE-secured TCP, forced
here with ``WAN_NB_RELAY_TRANSPORT=tcp``)."""

from __future__ import annotations

import json
import uuid

import pytest

from _server_helpers import start_producer, start_server, wait_producer_ready

pytestmark = pytest.mark.timeout(120)


def _run_and_cancel(runtime, runs):
    server = start_server(runtime)
    task_id = "priv-" + uuid.uuid4().hex[:8]
    producer = start_producer(runtime, runs, task_id, steps=100_000, interval=0.02)
    try:
        wait_producer_ready(producer)
        info = json.loads(next(runtime.glob("wan_nb-producer-*.json")).read_text())
        bells = [json.loads(p.read_text()) for p in runtime.glob("wan_nb-server-*.json")]
        server.wait_task(task_id, lambda s: (s["current_step"] or 0) >= 3, timeout=30)
        assert server.post(f"tasks/{task_id}/cancel").status_code == 202
        snap = server.wait_task(task_id, lambda s: s["status"] == "cancelled")
        assert snap["incomplete"] is False
        return info, bells, server.log.read_text()
    finally:
        producer.kill()
        producer.wait()
        server.stop()


def test_a_runtime_dir_too_long_for_sockets_still_relays_over_ipc(tmp_path):
    base = tmp_path / ("runtime-folder-with-a-very-long-name-" * 3)
    info, bells, _ = _run_and_cancel(base / "runtime", tmp_path / "runs")
    assert info["pub"].startswith("ipc://") and info["control"].startswith("ipc://")
    assert [bell["doorbell"][:6] for bell in bells] == ["ipc://"]      # the server's doorbell too


def test_without_ipc_server_and_producer_use_curve_over_tcp(tmp_path, monkeypatch):
    monkeypatch.setenv("WAN_NB_RELAY_TRANSPORT", "tcp")   # the producer and server processes inherit it
    info, bells, log = _run_and_cancel(tmp_path / "runtime", tmp_path / "runs")
    assert info["pub"].startswith("tcp://127.0.0.1:") and set(info["curve"]) == \
        {"server_public", "client_public", "client_secret"}
    assert "ignoring producer file" not in log
    assert bells == []          # a doorbell has no keys to hand out: none without ipc
