"""Who can reach a producer's sockets (issue 27, item 1). Before, a runtime dir path too long for
an ipc socket made producer and server fall back to plain ``tcp://127.0.0.1``: another local
user read a private prompt off the PUB socket, and a 300 MB frame sent to the control socket
was held in the producer's memory. Now: a short private ipc folder, ``MAXMSGSIZE`` on receiving
sockets, and TCP (only where ipc is unavailable) with CURVE keys from the 0600 producer file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wan_nb import relay
from wan_nb.core.bus import EventBus
from wan_nb.relay import protocol, transport

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def long_runtime(tmp_path, monkeypatch):
    path = tmp_path / ("a-runtime-folder-whose-path-is-far-too-long-for-a-unix-socket-" * 2) / "rt"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(path))
    relay._shutdown()
    yield path
    relay._shutdown()


def _info(runtime: Path) -> dict:
    return relay.read_producer_file(relay.producer_files(runtime)[0])


NOBODY_CONNECTS = r"""
import os, socket, sys
os.setgid(65534); os.setuid(65534)          # another local user
try:
    socket.socket(socket.AF_UNIX).connect(sys.argv[1])
    print("connected")
except PermissionError:
    print("refused")
"""


def test_a_long_runtime_dir_gets_a_short_private_ipc_folder_never_plain_tcp(long_runtime, tmp_path):
    detach = relay.attach(EventBus(), runs_dir=tmp_path / "runs")
    try:
        info = _info(long_runtime)
        assert len(str(long_runtime)) > 100
        for name in ("pub", "control"):
            assert info[name].startswith("ipc://"), info[name]
            folder = Path(info[name][len("ipc://"):]).parent
            mode = os.lstat(folder)
            assert stat.S_IMODE(mode.st_mode) == 0o700 and mode.st_uid == os.getuid()
        assert "curve" not in info
        if os.getuid() == 0:      # root can act as another user: show that user is kept out
            path = info["pub"][len("ipc://"):]
            seen = subprocess.run([sys.executable, "-c", NOBODY_CONNECTS, path], capture_output=True,
                                  text=True, timeout=30)
            assert seen.stdout.strip() == "refused", seen.stderr
    finally:
        detach()


def test_an_outsized_control_frame_is_dropped_by_zmq_and_the_producer_keeps_answering(long_runtime, tmp_path):
    import zmq

    detach = relay.attach(EventBus(), runs_dir=tmp_path / "runs")
    try:
        info = _info(long_runtime)
        socket = zmq.Context.instance().socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(info["control"])
        huge = json.dumps({"op": "ping", "key": info["key"], "pad": "x" * (4 * transport.MAX_CONTROL_REQUEST)})
        socket.send_multipart([b"", huge.encode()])
        assert socket.poll(1500) == 0            # never read: the peer was disconnected instead
        socket.close()
        assert protocol.send_control(info, "ping")["pid"] == os.getpid()
    finally:
        detach()


def test_without_ipc_the_sockets_speak_curve_and_admit_only_the_files_key(tmp_path, monkeypatch):
    import zmq

    runtime = tmp_path / "rt"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("WAN_NB_RELAY_TRANSPORT", "tcp")
    relay._shutdown()
    bus = EventBus()
    detach = relay.attach(bus, runs_dir=tmp_path / "runs", cancel=lambda task_id: True)
    context = zmq.Context.instance()
    sockets = []
    try:
        path = relay.producer_files(runtime)[0]
        info = relay.read_producer_file(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert info["pub"].startswith("tcp://127.0.0.1:") and protocol.check_producer_info(info) is None
        plain, keyed, wrong = (context.socket(zmq.SUB) for _ in range(3))
        strangers = {**info, "curve": {**info["curve"]}}
        strangers["curve"]["client_public"], strangers["curve"]["client_secret"] = \
            (k.decode() for k in zmq.curve_keypair())
        for socket, keys in ((plain, None), (keyed, info), (wrong, strangers)):
            sockets.append(socket)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.SUBSCRIBE, b"")
            if keys is not None:
                transport.secure_client(socket, keys)
            socket.connect(info["pub"])
        time.sleep(0.5)
        bus.publish("secret-task", "generation_started", model_type="tiny",
                    params={"prompt": "a private prompt"}, estimated_duration=None)
        assert keyed.poll(5000) and b"a private prompt" in keyed.recv()
        assert plain.poll(500) == 0 and wrong.poll(200) == 0
        assert protocol.send_control(info, "ping")["pid"] == os.getpid()
        assert protocol.send_control(strangers, "ping", timeout=0.5) == \
            {"ok": False, "error": "producer did not answer"}
        unkeyed = {k: v for k, v in info.items() if k != "curve"}
        assert "CURVE" in transport.unauthenticated(unkeyed)    # a server never reads plain TCP
        assert transport.unauthenticated(info) is None
    finally:
        for socket in sockets:
            socket.close()
        detach()
        relay._shutdown()
