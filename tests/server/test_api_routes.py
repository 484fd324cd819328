"""The extension's endpoints against a real ``jupyter server`` and real producer processes,
read by clients written to the seeds' protocols (EventSource for 002, subscribe/switch for 000)."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests
import websocket

from _server_helpers import (TOKEN, EventSourceClient, start_producer, start_server,
                             wait_producer_ready, ws_connect, ws_recv_until)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("server")
    runtime, runs = base / "runtime", base / "runs"
    server = start_server(runtime, extra_args=["--WanNbExtension.heartbeat_interval=0.5"])
    yield server, runtime, runs
    server.stop()


def run_task(env, steps=20, interval=0.01, **kwargs) -> str:
    server, runtime, runs = env
    task_id = "t-" + uuid.uuid4().hex[:8]
    proc = start_producer(runtime, runs, task_id, steps=steps, interval=interval, **kwargs)
    wait_producer_ready(proc)
    env_procs.append(proc)
    return task_id


env_procs: list = []


@pytest.fixture(autouse=True)
def _reap():
    yield
    while env_procs:
        proc = env_procs.pop()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def finished(snapshot):
    return snapshot["status"] in ("completed", "failed", "cancelled", "lost")


# -- auth --------------------------------------------------------------------------------------
ENDPOINTS = [("GET", "tasks"), ("GET", "tasks/{id}"), ("POST", "tasks/{id}/cancel"),
             ("GET", "tasks/{id}/video"), ("GET", "tasks/{id}/video/scenes/1"),
             ("GET", "progress/{id}"), ("GET", "events"), ("GET", "vram"), ("GET", "openapi.json")]


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_every_endpoint_refuses_requests_without_credentials(env, method, path):
    server = env[0]
    url = server.api(path.format(id="anything"))
    assert requests.request(method, url, timeout=10).status_code == 403
    bad = {"Authorization": "token not-the-token"}
    assert requests.request(method, url, headers=bad, timeout=10).status_code == 403


def test_websocket_refuses_without_credentials(env):
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        ws_connect(env[0], token=False)
    assert info.value.status_code == 403


def test_cookie_authenticated_websocket_from_a_foreign_origin_is_refused(env):
    server = env[0]
    session = requests.Session()
    session.get(server.url + f"tree?token={TOKEN}", timeout=10)  # logs in: sets the cookie
    cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
    assert "username" in cookie
    assert session.get(server.api("tasks"), timeout=10).status_code == 200  # the cookie works
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        ws_connect(server, origin="http://evil.example", cookie=cookie, token=False)
    assert info.value.status_code == 403
    ws = ws_connect(server, origin=server.url.rstrip("/"), cookie=cookie, token=False)  # same origin
    ws.close()


# -- REST ---------------------------------------------------------------------------------------
def test_unknown_task_is_404_everywhere(env):
    server = env[0]
    for path in ("tasks/no-such-task", "tasks/no-such-task/video", "progress/no-such-task",
                 "tasks/no-such-task/video/scenes/1"):
        assert server.get(path).status_code == 404, path
    assert server.post("tasks/no-such-task/cancel").status_code == 404


def test_task_list_and_snapshot(env):
    server = env[0]
    first = run_task(env)
    second = run_task(env)
    for task_id in (first, second):
        server.wait_task(task_id, finished)
    tasks = server.get("tasks").json()["tasks"]
    ids = [t["task_id"] for t in tasks]
    assert ids.index(second) < ids.index(first)  # newest first
    snap = server.get(f"tasks/{first}").json()
    for key in ("task_id", "status", "stage", "progress", "message", "estimated_time_remaining",
                "current_step", "total_steps", "model_type", "prompt", "created_at", "updated_at",
                "output_path", "video_url"):
        assert key in snap
    assert snap["status"] == "completed" and snap["progress"] == 100
    assert snap["prompt"] == "a red fox running through snow"
    assert snap["current_step"] == snap["total_steps"] == 20
    assert snap["video_url"] == f"/wan-nb/api/tasks/{first}/video"


def test_video_supports_range_and_serves_only_the_task_output(env):
    server = env[0]
    task_id = run_task(env, steps=4)
    snapshot = server.wait_task(task_id, finished)
    whole = server.get(f"tasks/{task_id}/video")
    proc = env_procs[-1]
    assert whole.status_code == 200, (snapshot, proc.poll(), proc.stderr.read() if proc.poll() is not None else "")
    assert whole.headers["Content-Type"] == "video/mp4"
    assert whole.content == bytes(range(256)) * 64
    part = server.get(f"tasks/{task_id}/video", headers={**server.headers, "Range": "bytes=256-259"})
    assert part.status_code == 206 and part.content == bytes([0, 1, 2, 3])
    assert part.headers["Content-Range"] == f"bytes 256-259/{256 * 64}"
    tail = server.get(f"tasks/{task_id}/video", headers={**server.headers, "Range": "bytes=-2"})
    assert tail.status_code == 206 and tail.content == bytes([254, 255])
    assert server.get(f"tasks/{task_id}/video",
                      headers={**server.headers, "Range": "bytes=99999-"}).status_code == 416
    assert server.get(f"tasks/{task_id}/video/scenes/1").status_code == 404  # not a storyboard


@pytest.mark.parametrize("path", [
    "tasks/..%2F..%2F..%2Fetc%2Fpasswd/video",
    "tasks/%2e%2e/video",
    "tasks/..%2f{task}/video",
    "tasks/{task}%2F..%2F..%2Fetc/video",
    "tasks/{task}/video/..%2F..%2Ftask.json",
    "tasks/{task}/video/scenes/..%2F..%2Fvideo.mp4",
    "tasks/{task}/video/scenes/0",
    "tasks/{task}/video/scenes/-1",
])
def test_video_path_traversal_is_refused(env, path):
    server = env[0]
    task_id = run_task(env, steps=2)
    server.wait_task(task_id, finished)
    url = server.api(path.format(task=task_id))
    response = requests.get(url, headers=server.headers, timeout=10)
    assert response.status_code in (400, 403, 404), (path, response.status_code)
    assert b"root:" not in response.content and b"prompt" not in response.content


def test_vram_endpoint_reports_the_vram_monitoring_fields(env):
    reading = env[0].get("vram").json()
    for key in ("allocated_mb", "reserved_mb", "free_mb", "total_mb", "allocated_percent",
                "warning_level", "device_name"):
        assert key in reading
    assert reading["warning_level"] in ("normal", "warning", "critical")


def test_openapi_is_shipped_and_served(env):
    from wan_nb.server.handlers import openapi_text

    doc = env[0].get("openapi.json").json()
    assert doc == json.loads(openapi_text())
    assert doc["openapi"].startswith("3.")
    paths = set(doc["paths"])
    for path in ("/wan-nb/api/tasks", "/wan-nb/api/tasks/{task_id}", "/wan-nb/api/tasks/{task_id}/cancel",
                 "/wan-nb/api/tasks/{task_id}/video", "/wan-nb/api/tasks/{task_id}/video/scenes/{n}",
                 "/wan-nb/api/progress/{task_id}", "/wan-nb/api/events", "/wan-nb/api/vram"):
        assert path in paths


# -- SSE, an EventSource client of one task ----------------------------------------------------------------
def test_an_eventsource_client_sees_every_step_then_the_stream_ends(env):
    server = env[0]
    task_id = run_task(env, steps=30, interval=0.02)
    source = EventSourceClient(server.api(f"progress/{task_id}"), server.headers)
    response = source.connect()
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    updates = []
    for event in source.events():  # ends when the server ends the stream
        assert event["event"] == "message"  # unnamed: EventSource.onmessage
        update = json.loads(event["data"])
        assert set(update) >= {"step", "status", "progress", "message", "data", "type", "task_id",
                               "seq", "timestamp"}
        assert event["id"] == str(update["seq"])
        updates.append(update)
    seqs = [u["seq"] for u in updates]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    progress = [u["progress"] for u in updates]
    assert progress == sorted(progress)  # never decreasing
    assert all(u["status"] == "in_progress" for u in updates[:-1])
    last = updates[-1]
    assert (last["step"], last["status"], last["progress"]) == ("complete", "completed", 100)
    assert last["data"]["final_video_path"].endswith("video.mp4")
    assert requests.get(server.url.rstrip("/") + last["data"]["video_url"], headers=server.headers,
                        timeout=10).status_code == 200
    steps = {u["step"] for u in updates}
    assert {"initializing", "loading_model", "generating", "complete"} <= steps
    # EventSource reconnects after the end: a finished task with nothing new answers 204
    assert source.connect().status_code == 204
    source.close()


def test_sse_resume_with_last_event_id_loses_and_repeats_nothing(env):
    server = env[0]
    task_id = run_task(env, steps=60, interval=0.01)
    source = EventSourceClient(server.api(f"progress/{task_id}"), server.headers)
    seen = []
    while True:
        response = source.connect()
        if response.status_code == 204:
            break
        assert response.status_code == 200
        for event in source.events(max_events=7):  # drop the connection every 7 events
            seen.append(json.loads(event["data"])["seq"])
        source.close()
    snap = server.get(f"tasks/{task_id}").json()
    expected = list(range(1, snap["last_seq"] + 1))
    vram_seqs = {u for u in expected if u not in seen}
    assert seen == [s for s in expected if s not in vram_seqs]
    assert len(vram_seqs) == 1  # only the vram event, left out of the per-task stream by default
    # the query parameter form of the same resume
    response = requests.get(server.api(f"progress/{task_id}"), params={"last_event_id": seen[-2]},
                            headers=server.headers, stream=True, timeout=10)
    body = response.text
    assert f"id: {seen[-1]}" in body and f"id: {seen[-2]}\n" not in body


def test_sse_storyboard_events_keep_the_seed_shape_and_scene_videos_are_served(env):
    server = env[0]
    task_id = run_task(env, storyboard=True, interval=0.01)
    source = EventSourceClient(server.api(f"progress/{task_id}"), server.headers)
    source.connect()
    updates = [json.loads(e["data"]) for e in source.events()]
    assert [u["step"] for u in updates] == ["init", "story", "scenes", "video_params", "videos", "stitch",
                                            "complete"]
    last = updates[-1]
    assert last["status"] == "completed" and last["progress"] == 100
    assert last["data"]["final_video_path"].endswith("final.mp4")
    assert last["data"]["scene_video_urls"] == [f"/wan-nb/api/tasks/{task_id}/video/scenes/{n}" for n in (1, 2)]
    final = server.get(f"tasks/{task_id}/video")
    assert final.content == b"final" * 200, (final.status_code, server.get(f"tasks/{task_id}").json())
    assert server.get(f"tasks/{task_id}/video/scenes/2").content == bytes([2]) * 1000
    assert server.get(f"tasks/{task_id}/video/scenes/3").status_code == 404
    snap = server.get(f"tasks/{task_id}").json()
    assert snap["kind"] == "storyboard" and snap["status"] == "completed"


def test_all_tasks_stream_is_named_and_resumable(env):
    server = env[0]
    source = EventSourceClient(server.api("events"), server.headers)
    source.connect()
    task_id = run_task(env, steps=10, interval=0.01)
    got = []
    for event in source.events():
        frame = json.loads(event["data"])
        if frame["task_id"] != task_id:
            continue
        assert event["event"] == frame["type"]
        got.append((event["id"], frame["seq"]))
        if len(got) == 5:
            break
    source.close()
    server.wait_task(task_id, finished)
    source.connect()  # resumes after got[-1]'s id
    rest = []
    for event in source.events():
        frame = json.loads(event["data"])
        if frame["task_id"] == task_id:
            rest.append(frame["seq"])
            if frame["type"] == "generation_completed":
                break
    source.close()
    assert [s for _, s in got] + rest == list(range(1, len(got) + len(rest) + 1))
    boot = got[0][0].split("-")[0]
    assert all(i.split("-")[0] == boot for i, _ in got)


# -- WebSocket, a topic subscriber --------------------------------------------------------------------
def test_a_websocket_client_subscribes_and_switches_on_type(env):
    server = env[0]
    ws = ws_connect(server)
    ws.send(json.dumps({"action": "subscribe", "topic": "generation_progress"}))
    assert json.loads(ws.recv()) == {"type": "subscribed", "data": {"topic": "generation_progress"}}
    task_id = run_task(env, steps=10, interval=0.01)
    progress, stages, vram = [], [], []
    messages = ws_recv_until(ws, lambda m: m["type"] == "generation_completed" and m["task_id"] == task_id)
    for message in messages:  # the seed's switch (message.type / message.data)
        if message.get("task_id") != task_id:
            continue
        assert set(message) == {"type", "seq", "task_id", "data"}
        assert message["data"]["task_id"] == task_id and message["data"]["timestamp"].endswith("Z")
        if message["type"] == "detailed_generation_progress":
            progress.append(message["data"]["progress"])
        elif message["type"] == "generation_stage":
            stages.append(message["data"]["stage"])
        elif message["type"] == "vram_monitoring":
            vram.append(message["data"]["allocated_percent"])
    seqs = [m["seq"] for m in messages if m.get("task_id") == task_id]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(progress) == 10 and progress == sorted(progress)
    assert stages[:3] == ["initializing", "loading_model", "generating"] and vram == [10.0]
    ws.close()


def test_websocket_task_topic_resumes_after_a_seq(env):
    server = env[0]
    task_id = run_task(env, steps=10, interval=0.005)
    server.wait_task(task_id, finished)
    ws = ws_connect(server)
    ws.send(json.dumps({"action": "subscribe", "topic": f"task:{task_id}", "after": 5}))
    messages = ws_recv_until(ws, lambda m: m["type"] == "generation_completed")
    assert messages[0] == {"type": "subscribed", "data": {"topic": f"task:{task_id}"}}
    seqs = [m["seq"] for m in messages[1:]]
    assert seqs[0] == 6 and seqs == list(range(6, 6 + len(seqs)))
    ws.close()


def test_websocket_vram_topic_is_sampled_by_the_server_without_a_task(env):
    ws = ws_connect(env[0])
    ws.send(json.dumps({"action": "subscribe", "topic": "vram"}))
    assert json.loads(ws.recv())["type"] == "subscribed"
    readings = [json.loads(ws.recv()) for _ in range(2)]
    for reading in readings:
        assert reading["type"] == "vram_monitoring"
        assert reading["data"]["warning_level"] in ("normal", "warning", "critical")
    ws.send(json.dumps({"action": "unsubscribe", "topic": "vram"}))
    ws.close()


BAD_MESSAGES = ["not json", "[]", "42", json.dumps({"action": "shout", "topic": "vram"}),
                json.dumps({"action": "subscribe"}), json.dumps({"action": "subscribe", "topic": 7}),
                json.dumps({"action": "subscribe", "topic": "weather"}),
                json.dumps({"action": "subscribe", "topic": "task:../../etc"}),
                json.dumps({"action": "subscribe", "topic": "task:abc", "after": -1}),
                json.dumps({"action": "subscribe", "topic": "task:abc", "after": "5"})]


def test_bad_websocket_messages_get_an_error_frame_and_the_connection_stays(env):
    ws = ws_connect(env[0])
    for bad in BAD_MESSAGES:
        ws.send(bad)
        answer = json.loads(ws.recv())
        assert answer["type"] == "error" and answer["data"]["message"], bad
    ws.send(json.dumps({"action": "subscribe", "topic": "generation_progress"}))
    assert json.loads(ws.recv())["type"] == "subscribed"
    ws.close()


def test_cancel_from_the_server_reaches_the_producer(env):
    server = env[0]
    task_id = run_task(env, steps=400, interval=0.02)
    server.wait_task(task_id, lambda s: (s["current_step"] or 0) >= 3)
    response = server.post(f"tasks/{task_id}/cancel")
    assert response.status_code == 202, response.text
    snap = server.wait_task(task_id, finished)
    assert snap["status"] == "cancelled" and snap["current_step"] < 400
    assert server.post(f"tasks/{task_id}/cancel").status_code == 409  # already finished


def test_sse_heartbeat_comments_keep_a_quiet_stream_alive(env):
    server, runtime, runs = env
    go = runs.parent / f"go-{uuid.uuid4().hex[:6]}"
    task_id = "t-" + uuid.uuid4().hex[:8]
    proc = start_producer(runtime, runs, task_id, steps=4, interval=0.01, hold_until=go)
    wait_producer_ready(proc)
    env_procs.append(proc)
    server.wait_task(task_id, lambda s: (s["current_step"] or 0) >= 2)  # now paused
    response = requests.get(server.api(f"progress/{task_id}"), headers=server.headers, stream=True, timeout=10)
    started, comments = time.monotonic(), 0
    for line in response.iter_lines(chunk_size=1, decode_unicode=True):
        if line.startswith(":"):
            comments += 1
            if comments == 2:
                break
    assert comments == 2 and time.monotonic() - started < 3  # heartbeat_interval is 0.5 s here
    response.close()
    go.touch()
