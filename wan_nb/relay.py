"""Kernel/script -> Jupyter server transport, and cancel requests back.

Every process that generates (a kernel of any server, a script, the CLI) is a *producer*.
On the first :func:`attach` it

* binds a zmq PUB socket and sends every event frame (its ``to_json()``) on it, once, whatever
  the number of servers listening (zmq fans out on its own I/O thread; with nobody listening
  a send is dropped at once, so a producer with no server pays one ``to_json`` and one
  non-blocking send per event);
* binds a zmq ROUTER socket for control requests (``cancel``), served by one daemon thread;
* writes ``wan_nb-producer-<pid>.json`` (mode 0600) into the Jupyter runtime directory:
  pid, process start time, both endpoints, a random key that control requests must carry,
  the runs folders and the recent tasks (so a server started later finds their journals).

Servers (``wan_nb.server.hub``) watch the runtime directory, subscribe to every producer they
find, read the journals ``<runs_dir>/<task_id>/events.jsonl`` for what happened before they
subscribed (and for any gap), and notice a dead producer by its pid.

Sockets are ``ipc://`` files inside the (0700) runtime directory where the platform allows,
so other users of the machine can neither read events nor send cancels; elsewhere they are
``tcp://127.0.0.1`` and the key guards the control socket.

Nothing here may block or raise into the generator: sends are non-blocking, failures are
logged once and swallowed.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Callable

from . import stale_files

__all__ = ["attach", "runtime_dir", "producer_files", "PRODUCER_PREFIX", "read_producer_file",
           "send_control", "SERVER_PREFIX", "ring_doorbells"]

log = logging.getLogger(__name__)

PRODUCER_PREFIX = "wan_nb-producer-"
SERVER_PREFIX = "wan_nb-server-"    # a server's doorbell: producers ring it when their file changes
RECENT_TASKS = 200          # tasks listed in the producer file (journals of older ones stay on disk)
_IPC_PATH_MAX = 100         # sun_path is 104-108 bytes depending on the platform
_PUB_HWM = 100_000          # events queued for a slow server before zmq drops (journal repairs)

Cancel = Callable[[str], bool]


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
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def ring_doorbells(context: Any, directory: Path) -> None:
    """Tell every wan_nb server advertising a doorbell in ``directory`` to rescan now, so a new
    process or task shows up at once rather than at the server's next periodic scan."""
    import zmq

    for path in sorted(directory.glob(SERVER_PREFIX + "*.json")):
        info = read_producer_file(path)
        endpoint = (info or {}).get("doorbell")
        if not isinstance(endpoint, str):
            continue
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


def _process_start_time(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


class _Attachment:
    def __init__(self, bus: Any, runs_dir: Path, cancel: Cancel | None) -> None:
        self.bus = bus
        self.runs_dir = runs_dir
        self.cancel = cancel
        self.tasks: set[str] = set()
        self.remove_sink: Callable[[], None] | None = None


class _Producer:
    """The process-wide relay: one pair of sockets and one file, whatever the generators."""

    def __init__(self) -> None:
        import zmq

        self._zmq = zmq
        self.pid = os.getpid()
        self.directory = runtime_dir()
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(self.directory, 0o700)
        except OSError:
            pass
        self.path = self.directory / f"{PRODUCER_PREFIX}{self.pid}.json"
        try:  # files of killed processes would otherwise pile up here forever
            stale_files.sweep(self.directory)
        except Exception:
            log.debug("wan_nb relay: sweeping %s failed", self.directory, exc_info=True)
        self.key = secrets.token_hex(16)
        self.context = zmq.Context(io_threads=1)
        self.pub = self.context.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, _PUB_HWM)
        self.pub.setsockopt(zmq.LINGER, 1000)  # let the last (terminal) events reach servers
        self.pub_endpoint = self._bind(self.pub, "pub")
        self.control = self.context.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control_endpoint = self._bind(self.control, "ctl")
        self.send_lock = threading.Lock()
        self.state_lock = threading.Lock()
        self.attachments: list[_Attachment] = []
        self.tasks: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self.dirty = threading.Event()
        self.stopping = threading.Event()
        # Wakes the relay thread when a new task is noted, so the file and the servers'
        # doorbells are updated at once (not at the next poll timeout).
        wake_endpoint = f"inproc://wan_nb-wake-{secrets.token_hex(4)}"
        self.wake_recv = self.context.socket(zmq.PAIR)
        self.wake_recv.bind(wake_endpoint)
        self.wake_send = self.context.socket(zmq.PAIR)
        self.wake_send.connect(wake_endpoint)
        self.errors = 0
        self.write_file()
        self.thread = threading.Thread(target=self._serve, name="wan_nb-relay", daemon=True)
        self.thread.start()

    def _bind(self, socket: Any, role: str) -> str:
        zmq = self._zmq
        if zmq.has("ipc"):
            path = self.directory / f"wan_nb-{self.pid}-{secrets.token_hex(3)}.{role}"
            if len(str(path)) <= _IPC_PATH_MAX:
                try:
                    socket.bind(f"ipc://{path}")
                    return f"ipc://{path}"
                except zmq.ZMQError:
                    pass
        port = socket.bind_to_random_port("tcp://127.0.0.1")
        return f"tcp://127.0.0.1:{port}"

    # -- the sink: runs inline in the bus, under its lock ----------------------------------
    def make_sink(self, attachment: _Attachment) -> Callable[[Any], None]:
        pid = self.pid
        tasks = attachment.tasks
        send_lock = self.send_lock
        pub = self.pub
        noblock = self._zmq.NOBLOCK

        def relay_sink(event: Any) -> None:
            if os.getpid() != pid:  # a forked child must not touch the parent's sockets
                return
            try:
                if event.task_id not in tasks or event.is_terminal:
                    self._note_task(attachment, event)
                payload = event.to_json().encode()
                with send_lock:
                    pub.send(payload, noblock)
            except Exception:
                self.errors += 1
                if self.errors == 1:
                    log.exception("wan_nb relay could not send an event; further errors are counted")

        return relay_sink

    def _note_task(self, attachment: _Attachment, event: Any) -> None:
        with self.state_lock:
            attachment.tasks.add(event.task_id)
            entry = self.tasks.get(event.task_id)
            if entry is None:
                entry = self.tasks[event.task_id] = {"task_id": event.task_id,
                                                     "runs_dir": str(attachment.runs_dir),
                                                     "active": True}
                while len(self.tasks) > RECENT_TASKS:
                    self.tasks.popitem(last=False)
                new = True
            else:
                new = False
            if event.is_terminal:
                entry["active"] = False
        self.dirty.set()  # the relay thread rewrites the file; the generator never waits on disk
        if new:
            with self.send_lock:
                try:
                    self.wake_send.send(b"", self._zmq.NOBLOCK)
                except self._zmq.ZMQError:
                    pass

    # -- the producer file -----------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        with self.state_lock:
            return {
                "pid": self.pid,
                "create_time": _process_start_time(self.pid),
                "pub": self.pub_endpoint,
                "control": self.control_endpoint,
                "key": self.key,
                "runs_dirs": sorted({str(a.runs_dir) for a in self.attachments}),
                "tasks": list(self.tasks.values()),
                "updated": time.time(),
            }

    def write_file(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.describe(), handle)
            os.replace(tmp, self.path)
        except OSError:
            log.warning("wan_nb relay could not write %s; servers will not see this process",
                        self.path, exc_info=True)

    # -- the control thread ----------------------------------------------------------------
    def _serve(self) -> None:
        zmq = self._zmq
        poller = zmq.Poller()
        poller.register(self.control, zmq.POLLIN)
        poller.register(self.wake_recv, zmq.POLLIN)
        ring_doorbells(self.context, self.directory)  # servers already running: look now
        while not self.stopping.is_set():
            try:
                ready = dict(poller.poll(200))
            except zmq.ZMQError:
                return
            woken = self.wake_recv in ready
            while woken:
                try:
                    self.wake_recv.recv(zmq.NOBLOCK)
                except zmq.ZMQError:
                    break
            if self.dirty.is_set():
                self.dirty.clear()
                self.write_file()
                if woken:
                    ring_doorbells(self.context, self.directory)
            if self.control in ready:
                try:
                    ident, *frames = self.control.recv_multipart(zmq.NOBLOCK)
                except zmq.ZMQError:
                    continue
                reply = self._handle(frames[-1] if frames else b"")
                try:
                    self.control.send_multipart([ident, b"", json.dumps(reply).encode()], zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass

    def _handle(self, raw: bytes) -> dict[str, Any]:
        try:
            request = json.loads(raw)
        except ValueError:
            return {"ok": False, "error": "not JSON"}
        if not isinstance(request, dict) or not secrets.compare_digest(str(request.get("key", "")), self.key):
            return {"ok": False, "error": "bad key"}
        op = request.get("op")
        if op == "ping":
            return {"ok": True, "pid": self.pid}
        if op == "cancel":
            task_id = str(request.get("task_id", ""))
            with self.state_lock:
                owners = [a for a in self.attachments if task_id in a.tasks and a.cancel]
            for attachment in owners:
                try:
                    if attachment.cancel(task_id):
                        return {"ok": True}
                except Exception as exc:  # the generator's cancel must not kill this thread
                    return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            return {"ok": False, "error": "no running task with that id in this process"}
        return {"ok": False, "error": f"unknown op {op!r}"}

    # -- lifecycle -------------------------------------------------------------------------
    def add(self, attachment: _Attachment) -> None:
        with self.state_lock:
            self.attachments.append(attachment)
        attachment.remove_sink = attachment.bus.add_sink(self.make_sink(attachment))
        self.write_file()

    def remove(self, attachment: _Attachment) -> bool:
        """Detach one generator; True when no attachment is left."""
        if attachment.remove_sink:
            attachment.remove_sink()
        with self.state_lock:
            if attachment in self.attachments:
                self.attachments.remove(attachment)
            left = bool(self.attachments)
        if left:
            self.dirty.set()
        return not left

    def close(self) -> None:
        self.stopping.set()
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=2)
        try:
            self.path.unlink()
        except OSError:
            pass
        for endpoint in (self.pub_endpoint, self.control_endpoint):
            if endpoint.startswith("ipc://"):
                try:
                    os.unlink(endpoint[len("ipc://"):])
                except OSError:
                    pass
        with self.send_lock:
            self.pub.close()
            self.wake_send.close()
        self.wake_recv.close()
        self.control.close()
        self.context.term()


_lock = threading.Lock()
_producer: _Producer | None = None


def attach(bus: Any, runs_dir: Path | str, cancel: Cancel | None = None) -> Callable[[], None]:
    """Relay ``bus``'s events to every wan_nb server of this user; returns ``detach()``.

    ``cancel(task_id) -> bool`` is called (on the relay thread) when a server asks a task of
    this bus to stop. Never raises: without zmq or a writable runtime directory the generator
    simply runs unrelayed (a warning is logged).
    """
    global _producer
    attachment = _Attachment(bus, Path(runs_dir).expanduser().resolve(), cancel)
    try:
        with _lock:
            if _producer is None or _producer.pid != os.getpid():
                _producer = _Producer()
                atexit.register(_shutdown)
            producer = _producer
            producer.add(attachment)
    except Exception:
        log.warning("wan_nb relay unavailable; Jupyter servers will not see this process's tasks",
                    exc_info=True)
        return lambda: None

    def detach() -> None:
        global _producer
        with _lock:
            if _producer is producer and producer.remove(attachment):
                _producer = None
                producer.close()

    return detach


def _shutdown() -> None:
    global _producer
    with _lock:
        producer, _producer = _producer, None
    if producer is not None and producer.pid == os.getpid():
        producer.close()


def send_control(info: dict[str, Any], op: str, timeout: float = 2.0, **fields: Any) -> dict[str, Any]:
    """Send one control request to the producer described by ``info`` (blocking; for tools).

    The server uses its own asynchronous version of this; scripts and tests may use this one.
    """
    import zmq

    context = zmq.Context.instance()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    try:
        socket.connect(info["control"])
        socket.send_multipart([b"", json.dumps({"op": op, "key": info["key"], **fields}).encode()])
        if not socket.poll(int(timeout * 1000)):
            return {"ok": False, "error": "producer did not answer"}
        return json.loads(socket.recv_multipart()[-1])
    finally:
        socket.close()
