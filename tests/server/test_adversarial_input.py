"""What an adversarial run broke, each against a real server and real producer processes:
active content on the Jupyter origin, lax input, silent waits, steering, shutdown."""

from __future__ import annotations

import json
import os
import signal
import shutil
import uuid
from pathlib import Path

import pytest
import websocket

from _server_helpers import (start_producer, start_server, wait_producer_ready,
                             ws_connect, ws_recv_until)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("hardening")
    runtime, runs = base / "runtime", base / "runs"
    server = start_server(runtime)
    yield server, runtime, runs
    server.stop()


procs: list = []


@pytest.fixture(autouse=True)
def _reap():
    yield
    while procs:
        proc = procs.pop()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def run_task(env, steps=4, interval=0.01, **kwargs) -> str:
    server, runtime, runs = env
    task_id = "h-" + uuid.uuid4().hex[:8]
    proc = start_producer(runtime, runs, task_id, steps=steps, interval=interval, **kwargs)
    wait_producer_ready(proc)
    procs.append(proc)
    return task_id


def finished(snapshot):
    return snapshot["status"] in ("completed", "failed", "cancelled", "lost")


def plant(runs, output_name: str, body: bytes, mode: int | None = None) -> str:
    """A run folder someone else could have written: a journal naming ``output_name``."""
    task_id = "planted-" + uuid.uuid4().hex[:6]
    folder = runs / task_id
    folder.mkdir(parents=True)
    target = folder / output_name
    target.write_bytes(body)
    line = {"type": "generation_completed", "seq": 1, "task_id": task_id,
            "data": {"output_path": str(target), "duration_s": 1, "params": {}, "seed": 0,
                     "task_id": task_id, "timestamp": "2026-01-01T00:00:00.000Z"}}
    (folder / "events.jsonl").write_text(json.dumps(line) + "\n")
    if mode is not None:
        os.chmod(folder, mode)
    return task_id


# -- the video route -----------------------------------------------------------------------------
def test_a_planted_html_output_is_never_served(env):
    server, _, runs = env
    server.wait_task(run_task(env), finished)          # a live producer announces the runs folder
    task_id = plant(runs, "video.html", b"<script>alert(document.cookie)</script>")
    response = server.get(f"tasks/{task_id}/video")
    assert response.status_code == 404
    assert b"<script>" not in response.content
    assert response.headers["Content-Type"].startswith("application/json")
    assert "message" in response.json()


def test_videos_are_served_as_inert_mp4_downloads_of_the_origin(env):
    server = env[0]
    task_id = run_task(env)
    server.wait_task(task_id, finished)
    response = server.get(f"tasks/{task_id}/video")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "video/mp4"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response.headers["Content-Security-Policy"]
    assert response.headers["Content-Disposition"] == 'inline; filename="video.mp4"'


def test_run_folders_others_can_write_are_ignored(env):
    server, _, runs = env
    server.wait_task(run_task(env), finished)
    task_id = plant(runs, "video.mp4", b"\x00\x00\x00\x18ftypmp42", mode=0o777)
    assert server.get(f"tasks/{task_id}/video").status_code == 404
    assert server.get(f"tasks/{task_id}").status_code == 404


def test_a_nul_in_an_output_path_is_a_404_not_a_500(env):
    server, _, runs = env
    server.wait_task(run_task(env), finished)
    task_id = plant(runs, "video.mp4", b"mp4")
    journal = runs / task_id / "events.jsonl"
    frame = json.loads(journal.read_text())
    frame["data"]["output_path"] = str(runs / task_id / "video.mp4") + "\x00.html"
    journal.write_text(json.dumps(frame) + "\n")
    response = server.get(f"tasks/{task_id}/video")
    assert response.status_code == 404 and "Traceback" not in response.text
    assert response.json()["message"]


def test_video_errors_are_json(env):
    response = env[0].get("tasks/nope-1/video")
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    assert "nope-1" in response.json()["message"]


# -- resume positions ----------------------------------------------------------------------------
@pytest.mark.parametrize("last_id", ["-1", "+5", "1_0", "3.0", "0x10"])
def test_sse_refuses_resume_ids_the_websocket_refuses(env, last_id):
    server = env[0]
    task_id = run_task(env)
    server.wait_task(task_id, finished)
    response = server.get(f"progress/{task_id}", headers={**server.headers, "Last-Event-ID": last_id})
    assert response.status_code == 400, (last_id, response.status_code)


def test_resuming_past_the_last_event_of_a_running_task_is_an_error_not_a_silent_wait(env, tmp_path):
    server = env[0]
    hold = tmp_path / "go-on"
    task_id = run_task(env, steps=10, hold_until=hold)
    snapshot = server.wait_task(task_id, lambda s: (s["current_step"] or 0) >= 5)
    beyond = snapshot["last_seq"] + 50
    try:
        response = server.get(f"progress/{task_id}", headers={**server.headers, "Last-Event-ID": str(beyond)})
        assert response.status_code == 400 and str(snapshot["last_seq"]) in response.json()["message"]
        ws = ws_connect(server)
        ws.send(json.dumps({"action": "subscribe", "topic": f"task:{task_id}", "after": beyond}))
        error = ws_recv_until(ws, lambda m: m["type"] == "error")[-1]
        assert error["data"]["last_seq"] >= snapshot["last_seq"]
        ws.close()
    finally:
        hold.touch()


# -- WebSocket -----------------------------------------------------------------------------------
def test_a_second_subscribe_to_a_task_delivers_nothing_twice(env):
    server = env[0]
    task_id = run_task(env, steps=6)
    last = server.wait_task(task_id, finished)["last_seq"]
    ws = ws_connect(server)
    for _ in range(2):
        ws.send(json.dumps({"action": "subscribe", "topic": f"task:{task_id}"}))
    got = ws_recv_until(ws, lambda m: m.get("seq") == last)
    ws.send(json.dumps({"action": "subscribe", "topic": f"task:{task_id}"}))
    ws.send(json.dumps({"action": "ping"}))
    got += ws_recv_until(ws, lambda m: m["type"] == "pong")
    ws.close()
    seqs = [m["seq"] for m in got if "seq" in m and m.get("task_id") == task_id]
    assert sorted(seqs) == list(range(1, last + 1)), seqs
    assert [m["data"].get("already") for m in got if m["type"] == "subscribed"] == [None, True, True]


def test_websocket_clients_get_a_close_frame_when_the_server_shuts_down(tmp_path):
    server = start_server(tmp_path / "runtime")
    try:
        ws = ws_connect(server)
        ws.send(json.dumps({"action": "subscribe", "topic": "generation_progress"}))
        ws_recv_until(ws, lambda m: m["type"] == "subscribed")
        os.kill(server.proc.pid, signal.SIGTERM)
        ws.settimeout(20)
        opcode, data = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(data[:2], "big") == 1001
    finally:
        server.stop()


# -- steering ------------------------------------------------------------------------------------
def test_pause_resume_and_move_reach_the_producer_like_cancel(env, tmp_path):
    server, _, runs = env
    hold = tmp_path / "go-on"
    task_id = run_task(env, steps=10, hold_until=hold, steer=True)
    server.wait_task(task_id, lambda s: (s["current_step"] or 0) >= 5)
    try:
        assert server.post(f"tasks/{task_id}/pause").status_code == 202
        assert server.post(f"tasks/{task_id}/resume").status_code == 202
        moved = server.post(f"tasks/{task_id}/move", json={"index": 0})
        assert moved.status_code == 202 and moved.json()["index"] == 0
        for body in ({"index": -1}, {"index": "0"}, {}, [0]):
            assert server.post(f"tasks/{task_id}/move", json=body).status_code == 400
        assert server.post(f"tasks/{task_id}/move", data=b"not json").status_code == 400
        for body in ({"release_memory": "yes"}, {"release_memory": 1}, [True]):
            assert server.post(f"tasks/{task_id}/pause", json=body).status_code == 400
        assert server.post(f"tasks/{task_id}/pause", json={"release_memory": True}).status_code == 202
        steered = [json.loads(l) for l in (runs / task_id / "steered.jsonl").read_text().splitlines()]
        assert steered == [{"action": "pause"}, {"action": "resume"}, {"action": "move", "index": 0},
                           {"action": "pause", "release_memory": True}]
    finally:
        hold.touch()
    server.wait_task(task_id, finished)
    assert server.post(f"tasks/{task_id}/pause").status_code == 409      # finished
    nothing = server.post(f"tasks/{task_id}/resume")    # a completed run has no checkpoint to go on from
    assert nothing.status_code == 409 and "nothing to resume" in nothing.json()["message"]


def test_a_producer_that_only_cancels_refuses_pause_clearly(env, tmp_path):
    server = env[0]
    hold = tmp_path / "go-on"
    task_id = run_task(env, steps=10, hold_until=hold)
    server.wait_task(task_id, lambda s: (s["current_step"] or 0) >= 5)
    try:
        refused = server.post(f"tasks/{task_id}/pause")
        assert refused.status_code == 409 and "cannot pause" in refused.json()["message"]
    finally:
        hold.touch()
    assert server.post("tasks/nope-2/resume").status_code == 404


# -- finished runs on disk -----------------------------------------------------------------------
def test_a_server_started_after_the_producer_exited_lists_its_runs_and_serves_their_videos(tmp_path, request):
    # The runs folder lives outside the temp dir: servers never remember a temporary folder
    # (wan_nb.runs.sources), and remembering this one is what the second server is tested on.
    runtime = tmp_path / "runtime"
    runs = Path(__file__).resolve().parents[2] / ".cache" / "test" / "remembered-runs" / uuid.uuid4().hex[:8]
    request.addfinalizer(lambda: shutil.rmtree(runs, ignore_errors=True))
    first = start_server(runtime)
    try:
        ids = []
        for _ in range(3):
            task_id = "d-" + uuid.uuid4().hex[:8]
            proc = start_producer(runtime, runs, task_id, steps=3, interval=0.005)
            wait_producer_ready(proc)
            first.wait_task(task_id, finished)
            assert proc.wait(30) == 0
            ids.append(task_id)
    finally:
        first.stop()
    second = start_server(runtime)     # same Jupyter data dir: it remembers the runs folder
    try:
        listing = second.get("tasks")
        listed = {t["task_id"]: t for t in listing.json()["tasks"]}
        assert set(ids) <= set(listed) and int(listing.headers["X-Total-Count"]) >= 3
        assert all(listed[t]["status"] == "completed" for t in ids)
        video = second.get(f"tasks/{ids[0]}/video")
        assert video.status_code == 200 and video.content == bytes(range(256)) * 64
        page = second.get("tasks", params={"limit": 2, "offset": 1, "status": "completed"}).json()["tasks"]
        assert len(page) == 2 and all(t["status"] == "completed" for t in page)
        assert second.get("tasks", params={"status": "lost"}).json()["tasks"] == []
        assert second.get("tasks", params={"limit": "-1"}).status_code == 400
        assert second.get("tasks", params={"status": "bogus"}).status_code == 400
    finally:
        second.stop()


def test_the_runs_dir_of_wan_nb_runs_dir_is_listed_without_any_producer(tmp_path):
    from _server_helpers import isolated_env  # noqa: F401  (the env var reaches the server)

    runtime, runs = tmp_path / "runtime", tmp_path / "elsewhere"
    proc = start_producer(runtime, runs, "solo-1", steps=2, interval=0.005)
    wait_producer_ready(proc)
    assert proc.wait(30) == 0
    os.environ["WAN_NB_RUNS_DIR"] = str(runs)
    try:
        server = start_server(tmp_path / "runtime2")
    finally:
        del os.environ["WAN_NB_RUNS_DIR"]
    try:
        listed = [t["task_id"] for t in server.get("tasks").json()["tasks"]]
        assert "solo-1" in listed
        assert server.get("tasks/solo-1/video").status_code == 200
    finally:
        server.stop()
