"""What producers and servers agree on: file names, endpoints, the producer file, control.

Both sides import this module (the server without zmq at import time, the producer without
Jupyter): file names in the runtime directory, the atomic 0600 write of an advertisement,
binding a socket privately (an ``ipc://`` file; see :mod:`.transport`), validating what a producer
file holds, the control request/reply shapes, and the server's URL layout.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path
from typing import Any, Mapping

from wan_nb.protocol.steering import STEER_ACTIONS
from wan_nb.runs.atomic import replace_text

__all__ = ["PRODUCER_PREFIX", "SERVER_PREFIX", "API_ROOT", "CONTROL_OPS", "STEER_ACTIONS", "RESUME_RUN",
           "RESUME_TIMEOUT_S",
           "runtime_dir", "producer_files", "read_producer_file", "check_producer_info",
           "write_private_json", "bind", "control_request", "send_control", "ring_doorbells",
           "video_path"]

PRODUCER_PREFIX = "wan_nb-producer-"
SERVER_PREFIX = "wan_nb-server-"    # a server's doorbell: producers ring it when their file changes
PID_MAX = 2**22                      # Linux's highest pid_max; a larger "pid" is not a process
CREATE_TIME_MAX = 1e11               # seconds since 1970: year 5138, far past any real start time
IPC_PATH_MAX = 100                   # sun_path is 104-108 bytes depending on the platform
API_ROOT = "wan-nb/api"              # the server's routes, relative to its base_url
RESUME_RUN = "resume_run"            # continue a finished run's checkpoint in a new task (below)
CONTROL_OPS = ("ping", "steer", RESUME_RUN) + STEER_ACTIONS
RESUME_TIMEOUT_S = 60.0              # a resume checks the model, inputs and LoRA files before it answers


def video_path(task_id: str, scene: int | None = None) -> str:
    """The route of a task's video (or its ``scene``-th scene, 1-based), without base_url."""
    root = f"{API_ROOT}/tasks/{task_id}/video"
    return root if scene is None else f"{root}/scenes/{scene}"


def runtime_dir() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


def producer_files(directory: Path | None = None) -> list[Path]:
    directory = directory or runtime_dir()
    try:
        return sorted(directory.glob(PRODUCER_PREFIX + "*.json"))
    except OSError:
        return []


def read_producer_file(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None if unreadable or not JSON (a file being replaced)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut short; an int too long for ``repr`` (10**5000) is named, not raised."""
    try:
        text = repr(value)
    except ValueError:
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def _is_start_time(value: Any) -> bool:
    # An int of 401 digits passes isinstance(int) but overflows float() in every later
    # comparison with psutil's start time; bounds are checked on the exact value first.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return 0 <= value <= CREATE_TIME_MAX and (not isinstance(value, float) or math.isfinite(value))


def check_producer_info(info: Mapping[str, Any]) -> str | None:
    """What is wrong with a producer file's content, or None if a server can use it.

    A server trusts these fields in its periodic scan (pid liveness, sockets, journals), so one
    file of the wrong shape must be refused, not allowed to raise there.
    """
    if not _is_int(info.get("pid")) or not 0 < info["pid"] <= PID_MAX:
        return f"'pid' must be a positive integer up to {PID_MAX}, not {_shown(info.get('pid'))}"
    for name in ("pub", "control", "key"):
        if name in info and not isinstance(info[name], str):
            return f"{name!r} must be a string"
    if not isinstance(info.get("pub"), str) or not info["pub"].startswith(("ipc://", "tcp://")):
        return "'pub' must be an ipc:// or tcp:// endpoint"
    if "curve" in info:
        from .transport import check_curve

        problem = check_curve(info["curve"])
        if problem is not None:
            return problem
    created = info.get("create_time")
    if created is not None and not _is_start_time(created):
        return f"'create_time' must be a process start time in seconds or null, not {_shown(created)}"
    dirs = info.get("runs_dirs", [])
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        return "'runs_dirs' must be a list of paths"
    resumers = info.get("resumers", [])
    if not isinstance(resumers, list) or not all(
            isinstance(r, dict) and isinstance(r.get("model"), str) and isinstance(r.get("runs_dir"), str)
            for r in resumers):
        return "'resumers' must be a list of {'model': str, 'runs_dir': str}"
    tasks = info.get("tasks", [])
    if not isinstance(tasks, list):
        return "'tasks' must be a list"
    for entry in tasks:
        if not isinstance(entry, dict) or not isinstance(entry.get("task_id"), str) \
                or not isinstance(entry.get("runs_dir", ""), str):
            return "each of 'tasks' must be {'task_id': str, 'runs_dir': str}"
    return None


def write_private_json(path: Path, obj: Any) -> None:
    """Replace ``path`` atomically with ``obj`` as JSON, readable by this user only (0600):
    the files hold control keys, and a reader never sees half a file."""
    replace_text(path, json.dumps(obj), private=True)


def bind(socket: Any, directory: Path, role: str, curve: Any = None) -> str:
    """Bind a zmq ``socket`` privately; the endpoint (see :func:`.transport.bind`: an ipc file in
    ``directory`` or a short 0700 folder, else CURVE-secured TCP when ``curve`` is given)."""
    from . import transport

    return transport.bind(socket, directory, role, curve)


def unlink_endpoint(endpoint: str) -> None:
    if endpoint.startswith("ipc://"):
        try:
            os.unlink(endpoint[len("ipc://"):])
        except OSError:
            pass


def control_request(info: Mapping[str, Any], op: str, **fields: Any) -> bytes:
    """One control message: ``{"op", "key", ...fields}``; steering is ``op="steer"`` with
    ``action`` (cancel, pause, resume, move), ``task_id`` and the action's arguments.

    ``op="resume_run"`` with ``task_id`` (the finished run), ``folder`` (its run folder) and
    ``model`` asks a generator of that model listed in the file's ``resumers`` to continue the
    run from its checkpoint as a new task; the reply is ``{"ok": true, "task_id": <new id>}``."""
    if op not in CONTROL_OPS:
        raise ValueError(f"unknown control op {op!r}; one of {', '.join(CONTROL_OPS)}")
    return json.dumps({"op": op, "key": info["key"], **fields}).encode()


def send_control(info: Mapping[str, Any], op: str, timeout: float = 2.0, **fields: Any) -> dict[str, Any]:
    """Send one control request to the producer ``info`` describes and wait for its reply
    (blocking: the server calls it on a worker thread)."""
    import zmq

    from .transport import MAX_CONTROL_REPLY, secure_client

    context = zmq.Context.instance()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.MAXMSGSIZE, MAX_CONTROL_REPLY)
    try:
        secure_client(socket, info)
        socket.connect(info["control"])
        socket.send_multipart([b"", control_request(info, op, **fields)])
        if not socket.poll(int(timeout * 1000)):
            return {"ok": False, "error": "producer did not answer"}
        reply = json.loads(socket.recv_multipart()[-1])
        return reply if isinstance(reply, dict) else {"ok": False, "error": "bad reply"}
    finally:
        socket.close()


def ring_doorbells(context: Any, directory: Path) -> None:
    """Tell every wan_nb server advertising a doorbell in ``directory`` to rescan now, so a new
    process or task shows up at once rather than at the server's next periodic scan."""
    import zmq

    for path in sorted(directory.glob(SERVER_PREFIX + "*.json")):
        info = read_producer_file(path)
        endpoint = (info or {}).get("doorbell")
        if not isinstance(endpoint, str) or not endpoint.startswith("ipc://"):
            continue   # doorbells are private ipc files only
        bell = context.socket(zmq.PUSH)
        try:
            bell.setsockopt(zmq.LINGER, 200)   # the connect completes after send() returns
            bell.setsockopt(zmq.SNDHWM, 1)
            bell.connect(endpoint)
            bell.send(b"rescan", zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        finally:
            bell.close()
