"""The server under faults and bad input: a reconnect storm loses and repeats nothing,
fuzzed WebSocket messages get error frames on a connection that stays up, and the shipped
OpenAPI document, fuzzed by schemathesis against a real server, never gets a 5xx or a hang.

One real ``jupyter server`` for the module; real producer processes (``_server_helpers``).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid

import pytest
import requests

from _server_helpers import TOKEN, start_producer, start_server, wait_producer_ready, ws_connect
from _storm_clients import Client, Storm, run_client

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("reliability")
    runtime, runs = base / "runtime", base / "runs"
    server = start_server(runtime, extra_args=["--ServerApp.log_level=WARN"])
    yield server, runtime, runs
    server.stop()


@pytest.fixture
def producers():
    procs = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def run_producer(env, producers, *, steps=20, interval=0.005, go=None, **kwargs) -> str:
    server, runtime, runs = env
    task_id = "r-" + uuid.uuid4().hex[:8]
    proc = start_producer(runtime, runs, task_id, steps=steps, interval=interval, wait_for_go=go, **kwargs)
    producers.append(proc)
    wait_producer_ready(proc)
    return task_id


# -- reconnect storm -----------------------------------------------------------------------------
HANG_UPS = 1000


def test_reconnect_storm_loses_and_repeats_nothing(env, producers):
    """1,000 random hang-ups and resumes across SSE (per task and all tasks, ``Last-Event-ID``)
    and WebSocket (``after``) clients while a task publishes ~3,000 events: every client ends
    with every seq of the task exactly once, in order."""
    server, runtime, runs = env
    go = runs.parent / f"go-{uuid.uuid4().hex[:6]}"
    task_id = run_producer(env, producers, steps=3000, interval=0.002, go=go)
    go.touch()
    server.wait_task(task_id, lambda s: s["last_seq"] > 0)
    storm = Storm(left=HANG_UPS)
    rng = random.Random(8)
    kinds = ["sse"] * 6 + ["sse_all"] * 4 + ["ws"] * 6
    clients = [Client(kind, server.port, task_id, random.Random(rng.random())) for kind in kinds]
    finished_during_storm = []

    async def main():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60

        async def watch():  # how many hang-ups happened while the task still ran
            while True:
                snapshot = await loop.run_in_executor(None, lambda: server.get(f"tasks/{task_id}").json())
                if snapshot["status"] != "running":
                    finished_during_storm.append(HANG_UPS - storm.left)
                    return
                await asyncio.sleep(0.1)

        watcher = asyncio.ensure_future(watch())
        await asyncio.gather(*(run_client(c, storm, mean_budget=40, deadline=deadline) for c in clients))
        await watcher

    asyncio.run(main())
    final = server.get(f"tasks/{task_id}").json()
    assert final["status"] == "completed", final
    expected = list(range(1, final["last_seq"] + 1))
    assert len(expected) > 3000
    hang_ups = sum(c.disconnects for c in clients)
    assert storm.left == 0 and hang_ups >= HANG_UPS
    for client in clients:
        lost = sorted(set(expected) - set(client.seqs))
        repeated = len(client.seqs) - len(set(client.seqs))
        assert not lost and not repeated, (client.kind, f"lost {len(lost)} {lost[:10]}",
                                           f"repeated {repeated}", client.disconnects)
        assert client.seqs == expected, client.kind  # and in order
    print(f"\nstorm: {hang_ups} hang-ups ({finished_during_storm[0] if finished_during_storm else '?'} "
          f"while the task ran), {sum(c.connects for c in clients)} connects, "
          f"{storm.refused} 204 answers, {len(expected)} events x {len(clients)} clients")


def test_resume_from_the_start_of_a_long_finished_task_gets_every_event(tmp_path, producers):
    """A replay far larger than a client's buffer (here 20 events) is sent whole: no progress
    event of a resume is coalesced away (regression: resumes over the all-tasks stream and the
    WebSocket lost most progress events once the replay outran the socket)."""
    runtime, runs = tmp_path / "runtime", tmp_path / "runs"
    server = start_server(runtime, extra_args=["--ServerApp.log_level=WARN",
                                               "--WanNbExtension.client_buffer=20",
                                               "--WanNbExtension.global_history_size=50000"])
    try:
        task_id = run_producer((server, runtime, runs), producers, steps=40000, interval=0)
        server.wait_task(task_id, lambda s: s["status"] == "completed", timeout=60)
        last = server.get(f"tasks/{task_id}").json()["last_seq"]
        for kind in ("sse", "sse_all", "ws"):
            client = Client(kind, server.port, task_id, random.Random(0))
            # (asyncio's loop clock is time.monotonic)
            asyncio.run(run_client(client, Storm(left=0), mean_budget=1 << 20,
                                   deadline=time.monotonic() + 60))
            assert client.seqs == list(range(1, last + 1)), (kind, len(client.seqs), last)
    finally:
        server.stop()


# -- WebSocket fuzzing ---------------------------------------------------------------------------
def _topic_is_valid(topic) -> bool:
    import re

    if topic in ("generation_progress", "vram", "previews"):
        return True
    return (isinstance(topic, str) and topic.startswith("task:")
            and re.match(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$", topic[5:]) is not None
            and topic[5:] not in (".", ".."))


def expected_error(message) -> bool:
    """An independent reading of the protocol: is this message one the server must refuse?"""
    try:
        request = json.loads(message)
    except (ValueError, RecursionError):
        return True
    if not isinstance(request, dict):
        return True
    action, topic = request.get("action"), request.get("topic")
    if action == "ping":
        return False
    if action not in ("subscribe", "unsubscribe") or not _topic_is_valid(topic):
        return True
    after = request.get("after", 0)
    if action == "subscribe" and topic.startswith("task:"):
        return not (isinstance(after, int) and not isinstance(after, bool) and after >= 0)
    return False


def ws_messages():
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                               | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
    actions = st.sampled_from(["subscribe", "unsubscribe", "ping", "SUBSCRIBE", "", "close"]) | json_values
    topics = (st.sampled_from(["generation_progress", "vram", "previews", "task:", "task:..", "task:a/b",
                               "task:" + "x" * 200, "all", "task:no-such-task"])
              | st.text(max_size=30).map(lambda t: "task:" + t) | json_values)
    afters = st.integers(min_value=-5, max_value=10**30) | json_values
    requests_ = st.fixed_dictionaries({"action": actions, "topic": topics},
                                      optional={"after": afters, "extra": json_values})
    huge = st.integers(min_value=10_000, max_value=2_000_000).map(
        lambda n: json.dumps({"action": "subscribe", "topic": "task:" + "x" * n}))
    deep = st.integers(min_value=10, max_value=100_000).map(lambda n: "[" * n + "]" * n)
    return (requests_.map(json.dumps) | json_values.map(json.dumps) | st.text(max_size=200)
            | huge | deep | st.binary(max_size=50).map(lambda b: b.decode("latin-1")))


def _until_barrier(ws, timeout=20) -> list[dict]:
    """Frames up to the answer to a marker request sent after the message under test (frames
    keep their order; a fuzzed message may itself be a ping, so the marker is unique)."""
    marker = "task:barrier-" + uuid.uuid4().hex
    ws.send(json.dumps({"action": "unsubscribe", "topic": marker}))
    frames = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws.settimeout(max(0.1, deadline - time.monotonic()))
        frame = json.loads(ws.recv())
        if frame.get("type") == "unsubscribed" and frame["data"].get("topic") == marker:
            return frames
        frames.append(frame)
    raise AssertionError(f"no answer to the marker; frames {frames[-3:]}")


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # reprs of 2 MB messages
def test_fuzzed_websocket_messages_get_error_frames_and_the_connection_stays(env, producers):
    from hypothesis import HealthCheck, given, settings

    server, *_ = env
    watcher = ws_connect(server)  # another client, subscribed throughout
    watcher.send(json.dumps({"action": "subscribe", "topic": "generation_progress"}))
    assert json.loads(watcher.recv())["type"] == "subscribed"
    ws = ws_connect(server)
    seen = {"errors": 0, "messages": 0}

    @settings(max_examples=300, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(ws_messages())
    def fuzz(message):
        ws.send(message)
        frames = [f for f in _until_barrier(ws) if f.get("type") not in ("vram_monitoring", "pong")]
        seen["messages"] += 1
        errors = [f for f in frames if f.get("type") == "error"]
        for frame in errors:
            assert isinstance(frame["data"]["message"], str) and len(frame["data"]["message"]) < 1000
        if expected_error(message):
            seen["errors"] += 1
            assert len(errors) == 1, (message[:200], frames)
        else:
            assert not errors, (message[:200], frames)

    fuzz()
    assert seen["errors"] > 100 and seen["messages"] >= 300
    # The fuzzed connection still works for a real subscription, and so does everyone else.
    for socket in (ws, watcher):
        socket.send(json.dumps({"action": "unsubscribe", "topic": "vram"}))
    ws.send(json.dumps({"action": "subscribe", "topic": "generation_progress"}))
    task_id = run_producer(env, producers, steps=5, interval=0.001)
    for socket in (ws, watcher):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            socket.settimeout(30)
            frame = json.loads(socket.recv())
            if frame.get("task_id") == task_id and frame["type"] == "generation_completed":
                break
        else:
            raise AssertionError("no generation_completed after the fuzzing")
    ws.close()
    watcher.close()
    assert requests.get(server.api("tasks"), headers=server.headers, timeout=10).status_code == 200


# -- schemathesis against the shipped OpenAPI document ------------------------------------------
STREAMING = {"taskProgress", "allEvents"}


def test_openapi_document_fuzzed_by_schemathesis_gets_no_5xx_and_no_hang(env, producers):
    """Every operation of ``openapi.json``, with schemathesis-generated parameters and the
    token: REST answers conform to the document (status, content type, body schema) and none
    is a 5xx; streaming operations answer their headers (a bounded read) without a 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings, strategies as st
    from importlib import resources

    server, *_ = env
    # Real tasks to describe: a completed generation and a storyboard.
    known = []
    for kwargs in ({}, {"storyboard": True}):
        known.append(run_producer(env, producers, steps=5, interval=0.001, **kwargs))
        server.wait_task(known[-1], lambda s: s["status"] == "completed")
    # and one still running (held mid-task), so cancel can be accepted
    hold = env[2].parent / f"hold-{uuid.uuid4().hex[:6]}"
    known.append(run_producer(env, producers, steps=10, interval=0.001, hold_until=hold))
    server.wait_task(known[-1], lambda s: s["current_step"] == 5)
    document = json.loads(resources.files("wan_nb.server").joinpath("openapi.json").read_text())
    schema = schemathesis.openapi.from_dict(document)
    headers = {"Authorization": f"token {TOKEN}"}
    session = requests.Session()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.definition.raw["operationId"] for op in operations} >= {"listTasks", "getTask", "cancelTask",
                                                                       "getVideo", "taskProgress",
                                                                       "allEvents", "getVram"}
    statuses: dict[str, set[int]] = {}
    for operation in operations:
        op_id = operation.definition.raw["operationId"]

        @settings(max_examples=25, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(operation.as_strategy(), st.sampled_from([None, *known]))
        def check(case, task_id):
            if task_id and "task_id" in (case.path_parameters or {}):
                case.path_parameters["task_id"] = task_id  # half of the cases about real tasks
            if op_id in STREAMING:
                # The same request schemathesis would send, read only up to the headers.
                kwargs = case.as_transport_kwargs(base_url=server.url, headers=headers)
                response = session.request(**kwargs, stream=True, timeout=10)
                response.close()
            else:
                response = case.call_and_validate(base_url=server.url, session=session, headers=headers,
                                                  timeout=10)
            statuses.setdefault(op_id, set()).add(response.status_code)
            assert response.status_code < 500, (op_id, response.status_code, response.text[:300])

        check()
    hold.touch()
    assert set(statuses) == {op.definition.raw["operationId"] for op in operations}
    assert 200 in statuses["getTask"] and 200 in statuses["taskProgress"] | statuses["getVideo"]
    print("\nschemathesis statuses:", {k: sorted(v) for k, v in statuses.items()})


def test_a_new_process_task_shows_up_without_waiting_for_the_periodic_scan(tmp_path, producers):
    """Producers ring the servers' doorbells when they start and when a task begins
    (regression: the first task of a new process reached clients only at the next scan,
    ~0.5 s; here the scan is 60 s away)."""
    runtime, runs = tmp_path / "runtime", tmp_path / "runs"
    server = start_server(runtime, extra_args=["--ServerApp.log_level=WARN",
                                               "--WanNbExtension.scan_interval=60"])
    try:
        assert list(runtime.glob("wan_nb-server-*.json"))
        task_id = run_producer((server, runtime, runs), producers, steps=3, interval=0.001)
        # The task list (unlike GET tasks/{id}, which looks for an unknown id) only shows what
        # the server was told.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tasks = {t["task_id"]: t for t in server.get("tasks").json()["tasks"]}
            if tasks.get(task_id, {}).get("status") == "completed":
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"task {task_id} not listed 20 s after it began; scan interval 60 s")
    finally:
        server.stop()
    assert not list(runtime.glob("wan_nb-server-*.json"))  # the doorbell leaves with the server


# -- replay floods -------------------------------------------------------------------------------
def test_a_replay_flood_from_a_client_that_never_reads_is_closed_and_others_are_served(tmp_path, producers):
    """3,000 subscribe-from-the-start/unsubscribe pairs on a finished task from a client that
    never reads: the replayed bytes waiting for it are capped (close 1013, it may resume), and
    another client's requests are answered meanwhile."""
    import socket

    import websocket

    runtime, runs = tmp_path / "runtime", tmp_path / "runs"
    server = start_server(runtime, extra_args=["--WanNbExtension.backlog_bytes=65536",
                                               "--ServerApp.log_level=WARN"])
    try:
        task_id = run_producer((server, runtime, runs), producers, steps=300, interval=0.0)
        server.wait_task(task_id, lambda s: s["status"] == "completed", timeout=60)
        flood = ws_connect(server)
        flood.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        topic = f"task:{task_id}"
        try:
            for n in range(3000):
                flood.send(json.dumps({"action": "subscribe", "topic": topic, "after": 0}))
                flood.send(json.dumps({"action": "unsubscribe", "topic": topic}))
                if n % 500 == 0:
                    assert server.get("tasks").status_code == 200   # another client, served
        except (OSError, websocket.WebSocketException):
            pass    # the server closed the connection while we were still sending
        assert server.get(f"tasks/{task_id}").status_code == 200
        flood.settimeout(5)
        code, deadline = None, time.monotonic() + 60
        while code is None and time.monotonic() < deadline:
            try:
                opcode, data = flood.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                continue
            except (OSError, websocket.WebSocketException):
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big")
        assert code == 1013, code
        assert server.get("tasks").status_code == 200
    finally:
        server.stop()


# -- a malformed producer file -------------------------------------------------------------------
BAD_PRODUCER_FILES = {
    "wan_nb-producer-900001.json": {"pid": "900001", "pub": "ipc:///nowhere"},
    "wan_nb-producer-900002.json": {"pid": 900002, "pub": "ipc:///nowhere", "tasks": {"a": 1}},
    "wan_nb-producer-900003.json": {"pid": 900003, "pub": "ipc:///nowhere", "runs_dirs": "/tmp"},
    "wan_nb-producer-900004.json": {"pid": 900004, "pub": "ipc:///nowhere", "create_time": "x"},
    "wan_nb-producer-900005.json": [1, 2, 3],
}


def test_malformed_producer_files_do_not_blind_dead_producer_detection(env, producers):
    server, runtime, _ = env
    for name, content in BAD_PRODUCER_FILES.items():
        (runtime / name).write_text(json.dumps(content))
    try:
        task_id = run_producer(env, producers, steps=400, interval=0.02)
        server.wait_task(task_id, lambda s: (s["current_step"] or 0) >= 3)
        producers[-1].kill()
        lost = server.wait_task(task_id, lambda s: s["status"] == "lost", timeout=20)
        assert lost["error_type"] == "ProducerLost"
        log = server.log.read_text()
        for name, content in BAD_PRODUCER_FILES.items():
            if isinstance(content, dict):     # not a JSON object at all reads as no file
                assert log.count(f"ignoring producer file {runtime / name}") == 1, name
    finally:
        for name in BAD_PRODUCER_FILES:
            (runtime / name).unlink(missing_ok=True)


# -- a full disk mid-run -------------------------------------------------------------------------
FULL_DISK_PRODUCER = r"""
import resource, signal, sys, time
from pathlib import Path
from wan_nb import relay
from wan_nb.core.bus import EventBus
from wan_nb.runs.journal import Journal, write_task_file

runs, task_id = Path(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails (EFBIG) instead
bus, journal = EventBus(), Journal()
bus.add_sink(journal)
detach = relay.attach(bus, runs_dir=runs)
write_task_file(runs / task_id, {"task_id": task_id, "prompt": "full disk"})
journal.open(task_id, runs / task_id)
print("ready", flush=True)
time.sleep(0.5)
def step(n):
    bus.publish(task_id, "detailed_generation_progress", stage="generating", progress=n, message=f"Step {n}",
                estimated_time_remaining=1.0, current_step=n, total_steps=60)
bus.publish(task_id, "generation_started", model_type="tiny", params={"steps": 60}, estimated_duration=None)
bus.publish(task_id, "generation_stage", stage="generating", stage_progress=0, stage_message="Denoising")
for n in range(1, 21):
    step(n)
    time.sleep(0.005)
journal_file = runs / task_id / "events.jsonl"
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (journal_file.stat().st_size + 150, hard))   # the disk fills
for n in range(21, 41):
    step(n)
    time.sleep(0.005)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))                                  # space returns
for n in range(41, 61):
    step(n)
    time.sleep(0.005)
out = runs / task_id / "video.mp4"
out.write_bytes(b"mp4")
bus.publish(task_id, "generation_completed", output_path=str(out), duration_s=1.0, params={}, seed=0)
time.sleep(0.5)
detach()
"""


def test_a_full_disk_mid_run_leaves_whole_lines_and_a_replay_that_says_it_has_a_hole(env, producers):
    import subprocess

    from _server_helpers import PY, isolated_env

    server, runtime, runs = env
    task_id = "disk-" + uuid.uuid4().hex[:6]
    proc = subprocess.Popen([PY, "-c", FULL_DISK_PRODUCER, str(runs), task_id], env=isolated_env(runtime),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    producers.append(proc)
    wait_producer_ready(proc)
    assert proc.wait(60) == 0, proc.stderr.read()
    live = server.wait_task(task_id, lambda s: s["status"] == "completed")
    lines = (runs / task_id / "events.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b""                                   # ends with a whole line
    seqs = [json.loads(line)["seq"] for line in lines[:-1]]   # every line parses: none torn
    assert seqs[-1] == live["last_seq"] and len(seqs) < live["last_seq"]   # it went on, with a hole
    response = requests.get(server.api(f"progress/{task_id}"), headers=server.headers, timeout=20)
    comments = [l for l in response.text.split("\n") if l.startswith(": incomplete")]
    assert len(comments) == 1 and "missing" in comments[0]
    replayed = [int(l[4:]) for l in response.text.split("\n") if l.startswith("id: ")]
    assert replayed == seqs
    snapshot = server.get(f"tasks/{task_id}").json()
    assert snapshot["incomplete"] is True and snapshot["missing_seqs"]
    missing = {s for a, b in snapshot["missing_seqs"] for s in range(a, b + 1)}
    assert missing == set(range(1, live["last_seq"] + 1)) - set(seqs)
