"""The producer side of the relay: events out to Jupyter servers, steering requests back in.

Every process that generates (a kernel of any server, a script, the CLI) is a *producer*.
On the first :func:`attach` it

* binds a zmq PUB socket and sends every event frame (its ``to_json()``) on it, once, whatever
  the number of servers listening (zmq fans out on its own I/O thread; with nobody listening
  a send is dropped at once, so a producer with no server pays one ``to_json`` and one
  non-blocking send per event);
* binds a zmq ROUTER socket for control requests (cancel, pause, resume, move, and
  ``resume_run``: continue a finished run from its checkpoint), served by one daemon thread;
* writes ``wan_nb-producer-<pid>.json`` (mode 0600) into the Jupyter runtime directory:
  pid, process start time, both endpoints, a random key that control requests must carry,
  the runs folders, the recent tasks (so a server started later finds their journals) and the
  ``resumers``: the models of the generators here that can continue a run (``resume=``).

Servers (``wan_nb.server``) watch the runtime directory, subscribe to every producer they
find, read the journals ``<runs_dir>/<task_id>/events.jsonl`` for what happened before they
subscribed (and for any gap), and notice a dead producer by its pid.

Sockets are ``ipc://`` files inside the (0700) runtime directory, or a short 0700 folder of
this user when that path is too long, so other users of the machine can neither read events nor
send cancels; where ipc is not available they are ``tcp://127.0.0.1`` with ZMQ CURVE, admitting
only the client key in the 0600 producer file (:mod:`.transport`).

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

from wan_nb.protocol.processes import process_start_time
from wan_nb.relay import stale_files

from . import protocol, transport
from .protocol import PRODUCER_PREFIX, ring_doorbells, runtime_dir

__all__ = ["attach"]

log = logging.getLogger(__name__)

RECENT_TASKS = 200          # tasks listed in the producer file (journals of older ones stay on disk)
_PUB_HWM = 100_000          # events queued for a slow server before zmq drops (journal repairs)

Cancel = Callable[[str], bool]
Steer = Callable[..., bool]   # steer(task_id, action, **arguments) -> bool
Resume = Callable[[str], str]  # resume(run_folder) -> the new task's id; raises with what to do


class _Attachment:
    def __init__(self, bus: Any, runs_dir: Path, cancel: Cancel | None, steer: Steer | None,
                 model: str | None = None, resume: Resume | None = None) -> None:
        self.bus = bus
        self.runs_dir = runs_dir
        self.cancel = cancel
        self.steer = steer
        self.model = model
        self.resume = resume if model is not None else None   # a server picks a resumer by its model
        self.tasks: set[str] = set()
        self.remove_sink: Callable[[], None] | None = None


def _resumers(attachments: list[_Attachment], task_id: str, folder: Path, model: str) -> list[_Attachment]:
    """The generators that may continue ``task_id`` (a run of ``model`` in ``folder``), best first:
    the one that ran it, then one writing to the same runs folder, then any of that model."""
    able = [a for a in attachments if a.resume is not None and a.model == model]
    return sorted(able, key=lambda a: (task_id not in a.tasks, a.runs_dir != folder.parent))


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
        self.curve = transport.CurveServer(self.context)   # used only where ipc is not
        self.pub = self.context.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, _PUB_HWM)
        self.pub.setsockopt(zmq.LINGER, 1000)  # let the last (terminal) events reach servers
        self.pub_endpoint = self._bind(self.pub, "pub")
        self.control = self.context.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.setsockopt(zmq.MAXMSGSIZE, transport.MAX_CONTROL_REQUEST)
        self.control_endpoint = self._bind(self.control, "ctl")
        for folder in {Path(e[len("ipc://"):]).parent for e in (self.pub_endpoint, self.control_endpoint)
                       if e.startswith("ipc://")} - {self.directory}:
            try:   # the short socket folder collects killed processes' sockets too
                stale_files.sweep(folder)
            except Exception:
                log.debug("wan_nb relay: sweeping %s failed", folder, exc_info=True)
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
        return protocol.bind(socket, self.directory, role, self.curve)

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
                "create_time": process_start_time(self.pid),
                "pub": self.pub_endpoint,
                "control": self.control_endpoint,
                "key": self.key,
                "runs_dirs": sorted({str(a.runs_dir) for a in self.attachments}),
                "resumers": [{"model": a.model, "runs_dir": str(a.runs_dir)}
                             for a in self.attachments if a.resume is not None],
                "tasks": list(self.tasks.values()),
                "updated": time.time(),
                **({"curve": keys} if (keys := self.curve.describe()) else {}),
            }

    def write_file(self) -> None:
        try:
            protocol.write_private_json(self.path, self.describe())
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
        if op == protocol.RESUME_RUN:
            return self._resume_run(str(request.get("task_id", "")), str(request.get("folder", "")),
                                    str(request.get("model", "")))
        if op in protocol.STEER_ACTIONS:     # {"op": "cancel", "task_id": ...}
            request = {**request, "action": op}
        elif op != "steer":
            return {"ok": False, "error": f"unknown op {str(op)[:40]!r}"}
        action = request.get("action")
        if action not in protocol.STEER_ACTIONS:
            return {"ok": False, "error": f"unknown action {str(action)[:40]!r}"}
        arguments = request.get("arguments") or {}
        if not isinstance(arguments, dict):
            return {"ok": False, "error": "'arguments' must be an object"}
        return self._steer(str(request.get("task_id", "")), action, arguments)

    def _steer(self, task_id: str, action: str, arguments: dict[str, Any]) -> dict[str, Any]:
        with self.state_lock:
            owners = [a for a in self.attachments if task_id in a.tasks]
        answered = False
        for attachment in owners:
            if attachment.steer is not None:
                call = lambda a=attachment: a.steer(task_id, action, **arguments)  # noqa: E731
            elif action == "cancel" and attachment.cancel is not None:
                call = lambda a=attachment: a.cancel(task_id)  # noqa: E731
            else:
                continue
            answered = True
            try:
                if call():
                    return {"ok": True}
            except Exception as exc:  # the generator's refusal must not kill this thread
                return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        if owners and not answered:
            return {"ok": False, "error": f"this process cannot {action} tasks"}
        return {"ok": False, "error": f"no task with that id in this process can {action} now"
                if owners else "no running task with that id in this process"}

    def _resume_run(self, task_id: str, folder: str, model: str) -> dict[str, Any]:
        if not task_id or not folder or not Path(folder).is_absolute():
            return {"ok": False, "error": "resume_run needs 'task_id', an absolute 'folder' and 'model'"}
        with self.state_lock:
            able = _resumers(self.attachments, task_id, Path(folder), model)
        if not able:
            return {"ok": False, "error": f"no generator of model {model[:80]!r} in this process can resume runs"}
        try:   # the generator checks the checkpoint, model, inputs and LoRA files, then queues it
            return {"ok": True, "task_id": str(able[0].resume(folder))}
        except Exception as exc:   # its refusal names what to do; it must not kill this thread
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}

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
            protocol.unlink_endpoint(endpoint)
        with self.send_lock:
            self.pub.close()
            self.wake_send.close()
        self.wake_recv.close()
        self.control.close()
        self.curve.stop()
        self.context.term()


_lock = threading.Lock()
# One relay per runtime directory: servers look for producers in theirs, so a generator made after
# JUPYTER_RUNTIME_DIR changed (a test, a tool serving another Jupyter) announces itself there even
# while an earlier generator of this process still uses the old one.
_producers: dict[Path, _Producer] = {}


def attach(bus: Any, runs_dir: Path | str, cancel: Cancel | None = None,
           steer: Steer | None = None, *, model: str | None = None,
           resume: Resume | None = None) -> Callable[[], None]:
    """Relay ``bus``'s events to every wan_nb server of this user; returns ``detach()``.

    ``steer(task_id, action, **arguments) -> bool`` is called (on the relay thread) when a
    server asks to cancel, pause, resume or move (``index=``) a task of this bus; without it,
    ``cancel(task_id) -> bool`` answers cancels and the other actions are refused.
    ``resume(run_folder) -> new_task_id`` (with ``model``, the generator's model name) lets a
    server continue a stopped or interrupted run of that model here (the Lab's Resume button);
    it is called on the relay thread and should only check and queue. Never raises: without
    zmq or a writable runtime directory the generator simply runs unrelayed (a warning is logged).
    """
    attachment = _Attachment(bus, Path(runs_dir).expanduser().resolve(), cancel, steer, model, resume)
    try:
        with _lock:
            producer = _producers.get(runtime_dir())
            if producer is None or producer.pid != os.getpid():
                if not _producers:
                    atexit.register(shutdown)
                producer = _Producer()
                _producers[producer.directory] = producer
            producer.add(attachment)
    except Exception:
        log.warning("wan_nb relay unavailable; Jupyter servers will not see this process's tasks",
                    exc_info=True)
        return lambda: None

    def detach() -> None:
        with _lock:
            if _producers.get(producer.directory) is producer and producer.remove(attachment):
                del _producers[producer.directory]
                producer.close()

    return detach


def current() -> "_Producer | None":
    """The process's relay for the current runtime directory, if one is attached (tools and tests look)."""
    with _lock:
        return _producers.get(runtime_dir())


def shutdown() -> None:
    """Close the process's relays now (tests reset them between cases)."""
    with _lock:
        producers = list(_producers.values())
        _producers.clear()
    for producer in producers:
        if producer.pid == os.getpid():
            producer.close()
