"""The producer side of the relay: what a process advertises, sends and answers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from wan_nb import relay
from wan_nb.core.bus import EventBus
from wan_nb.protocol.events import Event

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    path = tmp_path / "rt"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(path))
    # The process's relays (one per runtime dir) may still be held by generators of earlier tests;
    # start these tests from none.
    relay._shutdown()
    return path


def subscriber(info):
    import zmq

    socket = zmq.Context.instance().socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(info["pub"])
    time.sleep(0.2)  # let the subscription reach the publisher
    return socket


def test_attach_advertises_the_process_and_detach_removes_it(runtime, runs_dir):
    bus = EventBus()
    detach = relay.attach(bus, runs_dir=runs_dir, cancel=lambda task_id: False)
    try:
        files = relay.producer_files(runtime)
        assert [f.name for f in files] == [f"wan_nb-producer-{os.getpid()}.json"]
        assert stat.S_IMODE(files[0].stat().st_mode) == 0o600  # holds the control key
        info = relay.read_producer_file(files[0])
        assert info["pid"] == os.getpid() and info["runs_dirs"] == [str(runs_dir.resolve())]
        assert info["pub"].startswith(("ipc://", "tcp://127.0.0.1:"))
        assert len(info["key"]) >= 32
    finally:
        detach()
    assert relay.producer_files(runtime) == []


def test_a_generator_made_after_the_runtime_dir_changed_announces_itself_in_the_new_one(runtime, runs_dir,
                                                                                         tmp_path, monkeypatch):
    """A relay still attached for one runtime directory (an earlier generator of this process, not
    closed) must not swallow a later attachment made for another: servers of the new directory
    look only there (seen in CI: a cluster test's server never saw its driver's tasks)."""
    first = relay.attach(EventBus(), runs_dir=runs_dir)
    other = tmp_path / "other-runtime"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(other))
    bus = EventBus()
    second = relay.attach(bus, runs_dir=runs_dir)
    try:
        assert [f.name for f in relay.producer_files(other)] == [f"wan_nb-producer-{os.getpid()}.json"]
        assert [f.name for f in relay.producer_files(runtime)] == [f"wan_nb-producer-{os.getpid()}.json"]
        socket = subscriber(relay.read_producer_file(relay.producer_files(other)[0]))
        sent = bus.publish("task-2", "generation_stage", stage="generating", stage_progress=0, stage_message="Denoising")
        assert Event.from_json(socket.recv()).to_frame() == sent.to_frame()
    finally:
        second()
        assert relay.producer_files(other) == [] and relay.producer_files(runtime) != []
        first()
    assert relay.producer_files(runtime) == []


def test_events_are_sent_as_wire_frames_and_tasks_are_listed(runtime, runs_dir):
    bus = EventBus()
    detach = relay.attach(bus, runs_dir=runs_dir)
    try:
        info = relay.read_producer_file(relay.producer_files(runtime)[0])
        socket = subscriber(info)
        sent = [bus.publish("task-1", "generation_stage", stage="generating", stage_progress=0,
                            stage_message="Denoising") for _ in range(3)]
        received = [Event.from_json(socket.recv()) for _ in sent]
        assert [e.to_frame() for e in received] == [e.to_frame() for e in sent]
        socket.close()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # the relay thread rewrites the file off the hot path
            tasks = relay.read_producer_file(relay.producer_files(runtime)[0])["tasks"]
            if tasks:
                break
            time.sleep(0.05)
        assert tasks == [{"task_id": "task-1", "runs_dir": str(runs_dir.resolve()), "active": True}]
    finally:
        detach()


def test_cancel_requests_need_the_key_and_reach_the_right_generator(runtime, runs_dir):
    asked = []
    bus_a, bus_b = EventBus(), EventBus()
    detach_a = relay.attach(bus_a, runs_dir=runs_dir, cancel=lambda t: asked.append(("a", t)) or True)
    detach_b = relay.attach(bus_b, runs_dir=runs_dir, cancel=lambda t: asked.append(("b", t)) or True)
    try:
        bus_b.publish("task-b", "generation_started", model_type="tiny", params={}, estimated_duration=None)
        info = relay.read_producer_file(relay.producer_files(runtime)[0])
        assert relay.send_control({**info, "key": "wrong"}, "cancel", task_id="task-b") == \
            {"ok": False, "error": "bad key"}
        assert relay.send_control(info, "cancel", task_id="task-b") == {"ok": True}
        assert asked == [("b", "task-b")]
        assert relay.send_control(info, "cancel", task_id="nope")["ok"] is False
        assert relay.send_control(info, "ping")["pid"] == os.getpid()
    finally:
        detach_a()
        detach_b()


def test_a_producer_without_a_usable_runtime_dir_still_generates(tmp_path, monkeypatch, runs_dir):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(blocker / "rt"))
    bus = EventBus()
    detach = relay.attach(bus, runs_dir=runs_dir)  # logs a warning, never raises
    assert bus.publish("t", "generation_stage", stage="generating", stage_progress=0,
                       stage_message="x").seq == 1
    detach()


def test_relay_sink_costs_little_per_event(runtime, runs_dir):
    """The whole relay path for one event (to_json + a non-blocking send) stays in microseconds."""
    bare, relayed = EventBus(), EventBus()
    detach = relay.attach(relayed, runs_dir=runs_dir)
    try:
        def per_event(bus):
            start = time.perf_counter()
            for step in range(2000):
                bus.publish("t", "detailed_generation_progress", stage="generating", progress=step / 20,
                            message="Step", estimated_time_remaining=1.0, current_step=step,
                            total_steps=2000)
            return (time.perf_counter() - start) / 2000

        per_event(relayed)
        extra = min(per_event(relayed) for _ in range(3)) - min(per_event(bare) for _ in range(3))
        # A real step takes milliseconds to seconds; 100 us would still be < 1 % of the fastest.
        assert extra < 100e-6, f"relay adds {extra * 1e6:.1f} us per event"
    finally:
        detach()


def test_importing_the_relay_or_wan_nb_does_not_import_zmq():
    code = "import sys, wan_nb, wan_nb.relay; print('zmq' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


PRODUCER_SCRIPT = r"""
import sys, time
from wan_nb import relay
from wan_nb.core.bus import EventBus
relay.attach(EventBus(), runs_dir=sys.argv[1])
print("attached", flush=True)
time.sleep(600)
"""


def test_files_of_a_killed_producer_are_swept_by_the_next_one(runtime, runs_dir, monkeypatch):
    """SIGKILL leaves a producer no chance to remove its files; the next producer removes them
    once the grace period (for servers to mark the tasks lost) is over, and never a live one's."""
    from wan_nb.relay import stale_files

    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)}
    victim = subprocess.Popen([sys.executable, "-c", PRODUCER_SCRIPT, str(runs_dir)], env=env,
                              stdout=subprocess.PIPE, text=True)
    survivor = subprocess.Popen([sys.executable, "-c", PRODUCER_SCRIPT, str(runs_dir)], env=env,
                                stdout=subprocess.PIPE, text=True)
    try:
        assert victim.stdout.readline().strip() == "attached"
        assert survivor.stdout.readline().strip() == "attached"
        victim.kill()
        victim.wait(10)
        left = sorted(p.name for p in runtime.iterdir() if f"-{victim.pid}" in p.name)
        assert f"wan_nb-producer-{victim.pid}.json" in left and len(left) >= 2, left  # file + sockets
        unrelated = runtime / "kernel-123.json"
        unrelated.write_text("{}")

        # Within the grace period nothing goes: servers may not have marked its tasks lost yet.
        bus = EventBus()
        relay.attach(bus, runs_dir=runs_dir)()
        assert sorted(p.name for p in runtime.iterdir() if f"-{victim.pid}" in p.name) == left

        monkeypatch.setattr(stale_files, "GRACE_S", 0.0)
        relay.attach(bus, runs_dir=runs_dir)()
        names = sorted(p.name for p in runtime.iterdir())
        assert not [n for n in names if f"-{victim.pid}" in n], names
        assert f"wan_nb-producer-{survivor.pid}.json" in names    # alive: kept, sockets too
        assert len([n for n in names if f"-{survivor.pid}" in n]) == len(left)
        assert unrelated.exists()                                  # not ours: never touched
    finally:
        for proc in (victim, survivor):
            proc.kill()
            proc.wait(10)


def test_a_reused_pid_does_not_keep_a_dead_producer_alive():
    from wan_nb.relay import stale_files

    me = os.getpid()
    assert stale_files.pid_alive(me)
    assert not stale_files.pid_alive(me, create_time=12345.0)  # same pid, another start time


def test_resume_run_reaches_a_generator_of_the_runs_model_preferring_the_one_that_ran_it(runtime, runs_dir):
    """``resume_run`` (the Lab's Resume of a stopped run) is answered by a generator listed in the
    file's ``resumers`` with the run's model: the new task's id, or the generator's refusal."""
    asked = []

    def resumer(name, new_id):
        def resume(folder):
            asked.append((name, folder))
            if "refuse" in folder:
                raise ValueError("input image changed; use gen.rerun(folder)")
            return new_id
        return resume

    bus_a, bus_b, bus_c = EventBus(), EventBus(), EventBus()
    detach_a = relay.attach(bus_a, runs_dir=runs_dir, model="tiny", resume=resumer("a", "new-a"))
    detach_b = relay.attach(bus_b, runs_dir=runs_dir, model="tiny", resume=resumer("b", "new-b"))
    detach_c = relay.attach(bus_c, runs_dir=runs_dir)   # no resume: not listed
    try:
        bus_b.publish("old-1", "generation_started", model_type="tiny", params={}, estimated_duration=None)
        info = relay.read_producer_file(relay.producer_files(runtime)[0])
        assert info["resumers"] == [{"model": "tiny", "runs_dir": str(runs_dir.resolve())}] * 2
        folder = str(runs_dir / "old-1")
        assert relay.send_control(info, "resume_run", task_id="old-1", folder=folder, model="tiny") == \
            {"ok": True, "task_id": "new-b"}                     # b ran it
        assert asked == [("b", folder)]
        other = str(runs_dir / "old-2")
        assert relay.send_control(info, "resume_run", task_id="old-2", folder=other, model="tiny")["task_id"] == "new-a"
        wrong = relay.send_control(info, "resume_run", task_id="old-1", folder=folder, model="wan2.1-t2v-1.3b")
        assert wrong["ok"] is False and "no generator of model 'wan2.1-t2v-1.3b'" in wrong["error"]
        refused = relay.send_control(info, "resume_run", task_id="x", folder=str(runs_dir / "refuse"), model="tiny")
        assert refused == {"ok": False, "error": "ValueError: input image changed; use gen.rerun(folder)"}
        relative = relay.send_control(info, "resume_run", task_id="x", folder="x", model="tiny")
        assert relative["ok"] is False and "absolute 'folder'" in relative["error"]
        assert relay.send_control({**info, "key": "wrong"}, "resume_run", task_id="old-1", folder=folder,
                                  model="tiny") == {"ok": False, "error": "bad key"}
    finally:
        detach_a()
        detach_b()
        detach_c()
