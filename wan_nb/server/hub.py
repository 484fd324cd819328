"""The server's view of every task of every producer: discovery, replay, snapshots, fan-out.

Everything here runs on the server's IOLoop thread (no locks): zmq messages arrive through
``ZMQStream`` callbacks, the runtime directory is scanned by a ``PeriodicCallback``, and
handlers register subscribers synchronously — so a replay followed by registration can never
miss or repeat an event.

Events enter by :meth:`Hub.ingest` (a live zmq message or a journal line). Per task they are
accepted strictly in ``seq`` order: a duplicate is ignored, a gap is filled from the task's
journal first (the journal sink runs before the relay sink, so the journal always holds every
earlier event by the time a later one is relayed).
"""

from __future__ import annotations

import collections
import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from tornado.ioloop import IOLoop, PeriodicCallback

from .. import relay, stale_files
from ..events import COALESCIBLE_TYPES, is_terminal as _is_terminal
from ..snapshot import PRODUCER_LOST, TaskSnapshot
from .outbox import Outbox
from .wire import HEARTBEAT, dumps, seed_message, sse_named, sse_unnamed, video_urls, ws_text_frame

log = logging.getLogger(__name__)

TASK_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
COALESCIBLE = frozenset(str(t) for t in COALESCIBLE_TYPES)
JOURNAL_NAME = "events.jsonl"
SERVER_TASK_ID = "server"   # task_id of the VRAM samples the server takes itself


def valid_task_id(task_id: str) -> bool:
    return bool(TASK_ID_RE.match(task_id)) and task_id not in (".", "..")


def _utc_now() -> str:
    from ..events import utc_now

    return utc_now()


def _libc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (other C libraries, other systems)."""
    import ctypes

    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None


class Rec:
    """One accepted event: its wire bytes and the task's overall state right after it."""

    __slots__ = ("task_id", "seq", "type", "gid", "raw", "progress", "stage", "terminal")

    def __init__(self, task_id: str, seq: int, type_: str, raw: bytes, progress: float,
                 stage: str | None, terminal: bool, gid: int = 0) -> None:
        self.task_id, self.seq, self.type, self.raw = task_id, seq, type_, raw
        self.progress, self.stage, self.terminal, self.gid = progress, stage, terminal, gid


class TaskState:
    __slots__ = ("task_id", "snapshot", "events", "complete", "producer", "journal_path",
                 "journal_offset", "last_activity", "created")

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.snapshot = TaskSnapshot(task_id)
        self.events: list[Rec] = []
        self.complete = True          # events holds every event since seq 1
        self.producer: Producer | None = None
        self.journal_path: Path | None = None
        self.journal_offset = 0
        self.last_activity = time.monotonic()
        self.created = time.time()

    @property
    def finished(self) -> bool:
        return self.snapshot.finished

    @property
    def last_seq(self) -> int:
        return self.snapshot.last_seq


class Producer:
    """A process that relays events (found through its runtime-dir file)."""

    def __init__(self, path: Path, info: dict[str, Any]) -> None:
        self.path = path
        self.info = info
        self.mtime: Any = None
        self.stream: Any = None
        self.tasks: set[str] = set()
        self.alive = True

    @property
    def pid(self) -> int:
        return int(self.info.get("pid", 0))

    def runs_dirs(self) -> list[Path]:
        dirs = [Path(d) for d in self.info.get("runs_dirs") or []]
        dirs += [Path(t["runs_dir"]) for t in self.info.get("tasks") or [] if t.get("runs_dir")]
        return list(dict.fromkeys(dirs))


class Subscriber:
    """A connection's interest in events; ``variant`` names the encoding it wants.

    A replay (a resume, a late subscription) can be far larger than the connection's buffer,
    and every replayed event must arrive (none may be coalesced away), so replayed events wait
    in ``backlog`` and are handed to the outbox only as fast as it drains; live events that
    arrive meanwhile queue behind them, keeping the order.
    """

    variant = "ws"

    def __init__(self, outbox: Outbox, *, previews: bool = False,
                 skip_types: Iterable[str] = ()) -> None:
        self.outbox = outbox
        self.previews = previews
        self.skip_types = frozenset(skip_types)
        self.last_sent: dict[str, int] = {}
        self.on_terminal: Callable[[], Any] | None = None
        self.backlog: collections.deque[tuple[bytes, bool]] = collections.deque()

    def wants(self, rec: Rec) -> bool:
        if rec.type == "preview" and not self.previews:
            return False
        return rec.type not in self.skip_types and rec.seq > self.last_sent.get(rec.task_id, 0)

    def deliver(self, rec: Rec, payload: bytes, *, replay: bool = False) -> None:
        self.last_sent[rec.task_id] = rec.seq
        if replay or self.backlog:
            self.backlog.append((payload, rec.terminal))
            return
        self.outbox.push(payload, (rec.type, rec.task_id) if rec.type in COALESCIBLE else None)
        if rec.terminal and self.on_terminal is not None:
            self.on_terminal()

    def pump(self) -> None:
        """Move the backlog into the outbox while it keeps up; resume when it has drained."""
        outbox, backlog = self.outbox, self.backlog
        low_water = max(1, outbox.limit // 2)
        while backlog and not outbox.closed:
            if outbox.pending and len(outbox.queue) >= low_water:
                outbox.when_drained(self.pump)
                return
            payload, terminal = backlog.popleft()
            outbox.push(payload)  # no coalescing key: a replayed event is never dropped
            if terminal and self.on_terminal is not None:
                self.on_terminal()
        if outbox.closed:
            backlog.clear()


class Hub:
    def __init__(self, *, runtime_dir: Path | None = None, base_url: str = "/",
                 history_size: int = 20_000, max_tasks: int = 2_000, max_tasks_with_events: int = 200,
                 global_history_size: int = 20_000, client_buffer: int = 1_000,
                 scan_interval: float = 0.5, heartbeat_interval: float = 10.0,
                 vram_interval: float = 1.0, sample_vram: Callable[[], dict] | None = None,
                 memory_trim_interval: float = 1.0,
                 logger: logging.Logger | None = None) -> None:
        self.log = logger or log
        self.runtime_dir = Path(runtime_dir) if runtime_dir else relay.runtime_dir()
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.history_size = history_size
        self.max_tasks = max_tasks
        self.max_tasks_with_events = max_tasks_with_events
        self.client_buffer = client_buffer
        self.scan_interval = scan_interval
        self.heartbeat_interval = heartbeat_interval
        self.vram_interval = vram_interval
        self._sample_vram = sample_vram
        self.memory_trim_interval = memory_trim_interval
        self._malloc_trim = _libc_malloc_trim() if memory_trim_interval > 0 else None
        self._accepted_since_trim = 0
        self._last_accept = self._last_trim = time.monotonic()
        self._last_sweep = 0.0
        self._trimming = False
        # Ids of the all-tasks stream: "<boot>-<n>", n counting every event this server run
        # accepted; a different boot means the id is from an earlier server run.
        self.boot = format(int(time.time() * 1000), "x")
        self.gid = 0
        self.ring: collections.deque[Rec] = collections.deque(maxlen=global_history_size)
        self.tasks: collections.OrderedDict[str, TaskState] = collections.OrderedDict()
        self.producers: dict[Path, Producer] = {}
        self.all_subs: list[Subscriber] = []
        self.preview_subs: list[Subscriber] = []
        self.task_subs: dict[str, list[Subscriber]] = {}
        self.sse_outboxes: set[Outbox] = set()
        self.vram_subs: list[Outbox] = []
        self.vram_latest: dict[str, Any] | None = None
        self.vram_at = 0.0
        self.vram_seq = 0
        self._vram_timer: PeriodicCallback | None = None
        self._vram_busy = False
        self._timers: list[PeriodicCallback] = []
        self._zmq_context: Any = None
        self._doorbell: Any = None
        self.doorbell_file: Path | None = None
        self.started = False

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self.started:
            return
        self.started = True
        self._open_doorbell()
        self.scan()
        timers = [(self.scan, self.scan_interval), (self._heartbeat, self.heartbeat_interval)]
        if self._malloc_trim is not None:
            timers.append((self._maybe_trim, self.memory_trim_interval))
        for callback, seconds in timers:
            timer = PeriodicCallback(callback, seconds * 1000)
            timer.start()
            self._timers.append(timer)

    def stop(self) -> None:
        for timer in self._timers + ([self._vram_timer] if self._vram_timer else []):
            timer.stop()
        self._timers.clear()
        for producer in self.producers.values():
            self._disconnect(producer)
        self._close_doorbell()
        for outbox in list(self.sse_outboxes) + [s.outbox for s in self.all_subs]:
            outbox.close("server stopping")
        self.started = False

    # -- the doorbell ----------------------------------------------------------------------
    def _open_doorbell(self) -> None:
        """A zmq PULL socket producers ring when they start or begin a task (see
        :func:`wan_nb.relay.ring_doorbells`), advertised as ``wan_nb-server-<pid>.json``: a new
        task reaches clients in milliseconds instead of up to ``scan_interval`` later."""
        import os
        import secrets

        import zmq
        from zmq.eventloop.zmqstream import ZMQStream

        try:
            if self._zmq_context is None:
                self._zmq_context = zmq.Context.instance()
            socket = self._zmq_context.socket(zmq.PULL)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.RCVHWM, 64)
            path = self.runtime_dir / f"wan_nb-{os.getpid()}-{secrets.token_hex(3)}.bell"
            if zmq.has("ipc") and len(str(path)) <= 100:
                endpoint = f"ipc://{path}"
                socket.bind(endpoint)
            else:
                endpoint = f"tcp://127.0.0.1:{socket.bind_to_random_port('tcp://127.0.0.1')}"
            self._doorbell = ZMQStream(socket)
            self._doorbell.on_recv(lambda frames: self.scan(force=True))
            self.doorbell_file = self.runtime_dir / f"{relay.SERVER_PREFIX}{os.getpid()}.json"
            tmp = self.doorbell_file.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"pid": os.getpid(), "doorbell": endpoint}, handle)
            os.replace(tmp, self.doorbell_file)
        except Exception:  # the periodic scan still finds everything, only later
            self.log.warning("wan_nb: no doorbell in %s; new tasks show up at the next scan",
                             self.runtime_dir, exc_info=True)

    def _close_doorbell(self) -> None:
        if self._doorbell is not None:
            import zmq

            endpoint = self._doorbell.socket.getsockopt_string(zmq.LAST_ENDPOINT)
            self._doorbell.close()
            self._doorbell = None
            if endpoint.startswith("ipc://"):
                Path(endpoint[len("ipc://"):]).unlink(missing_ok=True)
        if self.doorbell_file is not None:
            self.doorbell_file.unlink(missing_ok=True)
            self.doorbell_file = None

    # -- discovery -------------------------------------------------------------------------
    def scan(self, force: bool = False) -> None:
        """Find new, changed and vanished producers; notice dead ones; tail quiet journals.
        ``force`` re-reads every producer file (a doorbell rang: one changed, maybe within the
        file system's timestamp granularity)."""
        try:
            seen = set()
            for path in relay.producer_files(self.runtime_dir):
                seen.add(path)
                self._refresh_producer(path, force)
            for path in [p for p in self.producers if p not in seen]:
                producer = self.producers.pop(path)
                self._disconnect(producer)
                self._lose_tasks(producer, "stopped relaying (its producer file is gone)")
            for producer in self.producers.values():
                if producer.alive and not stale_files.pid_alive(producer.pid, producer.info.get("create_time")):
                    producer.alive = False
                    self._disconnect(producer)
                    self._lose_tasks(producer, f"ended (pid {producer.pid})")
            self._tail_quiet_tasks()
            if time.monotonic() - self._last_sweep > stale_files.GRACE_S / 2:
                self._last_sweep = time.monotonic()
                stale_files.sweep(self.runtime_dir)  # files of killed producers and servers
        except Exception:
            self.log.exception("wan_nb: scanning %s failed", self.runtime_dir)

    def _refresh_producer(self, path: Path, force: bool = False) -> None:
        try:
            stat = path.stat()
        except OSError:
            return
        # Producers replace the file (a new inode each time): the inode tells a rewrite apart
        # even within one tick of a coarse modification-time clock.
        mtime = (stat.st_ino, stat.st_mtime_ns)
        producer = self.producers.get(path)
        if producer is not None and producer.mtime == mtime and not force:
            return
        info = relay.read_producer_file(path)
        if not info or "pid" not in info:
            return
        if producer is not None and producer.info.get("pub") != info.get("pub"):
            self._disconnect(producer)  # the same pid re-attached with new sockets
            producer = None
        if producer is None:
            producer = self.producers[path] = Producer(path, info)
            producer.alive = stale_files.pid_alive(producer.pid, info.get("create_time"))
            self.log.debug("wan_nb: producer pid %s at %s (alive: %s)", producer.pid, info.get("pub"),
                           producer.alive)
            if producer.alive:
                self._connect(producer)
        producer.info, producer.mtime = info, mtime
        for entry in info.get("tasks") or []:
            task_id = str(entry.get("task_id", ""))
            if not valid_task_id(task_id):
                continue
            producer.tasks.add(task_id)
            task = self.tasks.get(task_id)
            if task is None or not task.finished:
                self._load_journal(task_id, producer, Path(entry.get("runs_dir") or "."))
        if not producer.alive:
            self._lose_tasks(producer, f"ended (pid {producer.pid})")

    def _connect(self, producer: Producer) -> None:
        import zmq
        from zmq.eventloop.zmqstream import ZMQStream

        if self._zmq_context is None:
            self._zmq_context = zmq.Context.instance()
        socket = self._zmq_context.socket(zmq.SUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, 100_000)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.connect(producer.info["pub"])
        producer.stream = ZMQStream(socket)
        producer.stream.on_recv(lambda frames, p=producer: self._on_zmq(p, frames))

    def _disconnect(self, producer: Producer) -> None:
        if producer.stream is not None:
            try:
                producer.stream.flush()
            except Exception:
                pass
            try:
                producer.stream.close()
            except Exception:
                pass
            producer.stream = None

    def _on_zmq(self, producer: Producer, frames: list) -> None:
        for frame in frames:
            self.ingest(bytes(frame), producer)

    # -- journals --------------------------------------------------------------------------
    @staticmethod
    def _journal_of(task_id: str, producer: Producer | None, runs_dir: Path | None = None) -> Path | None:
        candidates = ([runs_dir] if runs_dir else []) + (producer.runs_dirs() if producer else [])
        for directory in candidates:
            candidate = directory / task_id / JOURNAL_NAME
            if candidate.is_file():
                return candidate
        return None

    def _load_journal(self, task_id: str, producer: Producer | None, runs_dir: Path | None) -> TaskState | None:
        path = self._journal_of(task_id, producer, runs_dir)
        task = self.tasks.get(task_id)
        if path is None:
            return task
        if task is None:
            task = self._new_task(task_id)
        if producer is not None and task.producer is None:
            task.producer = producer
        if task.journal_path is None:
            task.journal_path = path
        self._tail(task)
        return task

    def _tail(self, task: TaskState) -> None:
        """Ingest whatever the journal holds beyond what was read before (whole lines only)."""
        path = task.journal_path
        if path is None:
            return
        try:
            with open(path, "rb") as handle:
                handle.seek(task.journal_offset)
                data = handle.read()
        except OSError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        task.journal_offset += end + 1
        for line in data[:end].split(b"\n"):
            if line.strip():
                self.ingest(line, task.producer, from_journal=True)

    def _tail_quiet_tasks(self) -> None:
        # A safety net for events the socket missed (a server that subscribed mid-task, a
        # full queue): a running task that has been quiet for a second has its journal read.
        now = time.monotonic()
        for task in list(self.tasks.values()):
            if not task.finished and task.journal_path is not None and now - task.last_activity > 1.0:
                try:
                    size = task.journal_path.stat().st_size
                except OSError:
                    continue
                if size > task.journal_offset:
                    self._tail(task)

    def _lose_tasks(self, producer: Producer, why: str) -> None:
        for task_id in list(producer.tasks):
            task = self.tasks.get(task_id)
            if task is not None and task.producer in (None, producer):
                self._lose(task, producer.pid, why)

    def _lose(self, task: TaskState, pid: int | None, why: str) -> None:
        """End ``task`` with a ProducerLost failure unless its journal shows how it ended."""
        if task.finished:
            return
        if task.journal_path is None:
            self._load_journal(task.task_id, task.producer, None)
        self._tail(task)  # its last words may be in the journal but not on the socket
        if task.finished:
            return
        self.log.warning("wan_nb: task %s lost: process %s %s (last seq %s)", task.task_id, pid, why,
                         task.last_seq)
        data = {"stage": task.snapshot.stage or "initializing", "error_type": PRODUCER_LOST,
                "error": f"the process that ran this task (pid {pid}) {why} before it finished",
                "task_id": task.task_id, "timestamp": _utc_now()}
        frame = {"type": "generation_failed", "seq": task.last_seq + 1, "task_id": task.task_id,
                 "data": data}
        self._accept(task, frame, dumps(frame).encode())

    # -- ingest ----------------------------------------------------------------------------
    def _new_task(self, task_id: str) -> TaskState:
        task = self.tasks[task_id] = TaskState(task_id)
        self._evict()
        return task

    def ingest(self, raw: bytes, producer: Producer | None = None, *, from_journal: bool = False) -> None:
        try:
            frame = json.loads(raw)
            task_id, seq, type_ = frame["task_id"], frame["seq"], frame["type"]
        except (ValueError, KeyError, TypeError):
            return
        if not isinstance(task_id, str) or not isinstance(seq, int) or not valid_task_id(task_id):
            return
        task = self.tasks.get(task_id)
        if task is None:
            task = self._new_task(task_id)
            if producer is not None:  # known from the start, so quiet or lost tasks can be re-read
                task.journal_path = self._journal_of(task_id, producer)
        if producer is not None:
            producer.tasks.add(task_id)
            if task.producer is None:
                task.producer = producer
        if seq <= task.last_seq or task.finished:
            return
        if seq > task.last_seq + 1 and not from_journal:
            self._fill_gap(task)
            if seq <= task.last_seq or task.finished:
                return
        if seq > task.last_seq + 1:
            # Accepted with a hole (the journal is not found yet, or lacks those lines): the
            # events in memory no longer tell the whole story, so a replay must come from the
            # journal, located later (a rescan, or lazily at replay time).
            task.complete = False
        self._accept(task, frame, raw)

    def _fill_gap(self, task: TaskState) -> None:
        """Read the events a socket missed from the task's journal, locating it first if need
        be (the producer file may have been rewritten with its runs folder since we read it)."""
        if task.journal_path is None:
            producer = task.producer
            info = relay.read_producer_file(producer.path) if producer is not None else None
            if info and info.get("pub") == producer.info.get("pub"):
                # Only the info: the next scan still sees the file as changed and does the rest.
                producer.info = info
            self._locate_journal(task)
        self._tail(task)

    def _locate_journal(self, task: TaskState) -> Path | None:
        """The task's journal: in its producer's runs folders, else any known producer's."""
        if task.journal_path is None:
            path = self._journal_of(task.task_id, task.producer)
            if path is None:
                folders = dict.fromkeys(d for p in self.producers.values() for d in p.runs_dirs())
                path = next((d / task.task_id / JOURNAL_NAME for d in folders
                             if (d / task.task_id / JOURNAL_NAME).is_file()), None)
            task.journal_path = path
        return task.journal_path

    def _accept(self, task: TaskState, frame: dict, raw: bytes) -> None:
        snapshot = task.snapshot
        snapshot.apply_frame(frame)
        type_ = frame["type"]
        terminal = _is_terminal(type_, frame.get("data") or {})
        self.gid += 1
        self._accepted_since_trim += 1
        self._last_accept = time.monotonic()
        rec = Rec(task.task_id, frame["seq"], type_, raw, snapshot.progress, snapshot.stage, terminal,
                  self.gid)
        task.last_activity = time.monotonic()
        task.events.append(rec)
        self.ring.append(rec)
        if len(task.events) > self.history_size:
            self._compact(task)
        self._fan_out(rec, frame)
        if terminal:
            self._compact(task)

    def _compact(self, task: TaskState) -> None:
        # Keep the events that tell the story (stages, terminal) and the newest of each
        # superseding kind; a full replay comes from the journal.
        newest = {rec.type: rec for rec in task.events if rec.type in COALESCIBLE}
        kept = [r for r in task.events if r.type not in COALESCIBLE or newest[r.type] is r]
        if len(kept) != len(task.events):
            task.complete = False
            task.events = kept

    def _evict(self) -> None:
        if len(self.tasks) <= self.max_tasks_with_events:
            return
        with_events = [t for t in self.tasks.values() if t.events]
        for task in with_events[:max(0, len(with_events) - self.max_tasks_with_events)]:
            if task.finished and not self.task_subs.get(task.task_id):
                task.events, task.complete = [], False
        while len(self.tasks) > self.max_tasks:
            oldest = next((t for t in self.tasks.values() if t.finished), None)
            if oldest is None:
                break
            del self.tasks[oldest.task_id]
            if oldest.producer is not None:  # a long-lived kernel's task ids must not pile up
                oldest.producer.tasks.discard(oldest.task_id)

    # -- fan-out ---------------------------------------------------------------------------
    def encode(self, rec: Rec, variant: str, frame: dict | None = None) -> bytes:
        if variant == "ws":
            return ws_text_frame(rec.raw)
        if variant == "sse_all":
            return sse_named(rec.type, f"{self.boot}-{rec.gid}", rec.raw)
        if frame is None:
            frame = json.loads(rec.raw)
        return sse_unnamed(rec.seq, seed_message(frame, rec.progress, rec.stage, self.base_url))

    def _fan_out(self, rec: Rec, frame: dict) -> None:
        targets = self.preview_subs if rec.type == "preview" else self.all_subs
        per_task = self.task_subs.get(rec.task_id)
        if not targets and not per_task:
            return
        encoded: dict[str, bytes] = {}
        for group in (targets, per_task or ()):
            for sub in list(group):
                if not sub.wants(rec):
                    continue
                payload = encoded.get(sub.variant)
                if payload is None:
                    payload = encoded[sub.variant] = self.encode(rec, sub.variant, frame)
                sub.deliver(rec, payload)

    # -- memory ----------------------------------------------------------------------------
    TRIM_BUSY_SECONDS = 10.0

    async def _maybe_trim(self) -> None:
        """Hand the C allocator's free pages back to the OS once a burst of events is over.

        Every event passes through memory that is freed right after (zmq message buffers
        allocated on zmq's I/O thread, JSON decoding, encodings for clients), and glibc keeps
        freed pages in its arenas: measured, a server that relayed 100,000 events stayed
        ~130 MB above its fresh size, 14 MB once trimmed. Trimmed when events arrived since the
        last trim and none came for ``memory_trim_interval`` (or every 10 s while events keep
        coming), on a worker thread: the trim walks every arena and must not stall the loop.
        """
        if self._trimming or not self._accepted_since_trim:
            return
        now = time.monotonic()
        if (now - self._last_accept < self.memory_trim_interval
                and now - self._last_trim < self.TRIM_BUSY_SECONDS):
            return
        self._trimming = True
        self._accepted_since_trim = 0
        try:
            await IOLoop.current().run_in_executor(None, self.trim_memory)
        finally:
            self._trimming = False
            self._last_trim = time.monotonic()

    def trim_memory(self) -> bool:
        """Return freed heap memory to the OS now (glibc ``malloc_trim(0)``); False where the
        C library has no such call."""
        trim = self._malloc_trim or _libc_malloc_trim()
        if trim is None:
            return False
        trim(0)
        return True

    def _heartbeat(self) -> None:
        for outbox in list(self.sse_outboxes):
            outbox.push(HEARTBEAT, "heartbeat")

    # -- subscriptions (handlers call these) ----------------------------------------------
    def replay(self, task: TaskState, after: int = 0) -> list[Rec]:
        """Every event of ``task`` with seq > ``after``, from memory or else from its journal."""
        if not task.complete and task.journal_path is None:
            self._locate_journal(task)
        if task.complete or task.journal_path is None:
            if not task.complete:
                self.log.warning("wan_nb: replaying %s from memory with gaps: its journal is "
                                 "not found", task.task_id)
            return [r for r in task.events if r.seq > after]
        snapshot = TaskSnapshot(task.task_id)
        recs = []
        try:
            with open(task.journal_path, "rb") as handle:
                lines = handle.read().split(b"\n")[:-1]  # a torn last line is not an event yet
        except OSError:
            return [r for r in task.events if r.seq > after]
        for line in lines:
            try:
                frame = json.loads(line)
                snapshot.apply_frame(frame)
            except (ValueError, KeyError, TypeError):
                continue
            if frame["seq"] > after:
                recs.append(Rec(task.task_id, frame["seq"], frame["type"], line, snapshot.progress,
                                snapshot.stage, _is_terminal(frame["type"], frame.get("data") or {})))
        # Events the server added itself (a lost producer's terminal) are not in the journal.
        last = recs[-1].seq if recs else after
        recs += [r for r in task.events if r.seq > max(last, after)]
        return recs

    def subscribe_task(self, sub: Subscriber, task_id: str, after: int = 0) -> None:
        """Replay ``task_id``'s events after ``after`` to ``sub``, then keep it posted."""
        task = self.tasks.get(task_id)
        if task is not None:
            for rec in self.replay(task, after):
                if sub.wants(rec):
                    sub.deliver(rec, self.encode(rec, sub.variant), replay=True)
            sub.pump()
        else:
            sub.last_sent[task_id] = max(sub.last_sent.get(task_id, 0), after)
        subs = self.task_subs.setdefault(task_id, [])
        if sub not in subs:
            subs.append(sub)

    def unsubscribe_task(self, sub: Subscriber, task_id: str) -> None:
        subs = self.task_subs.get(task_id)
        if subs and sub in subs:
            subs.remove(sub)
            if not subs:
                del self.task_subs[task_id]

    def subscribe_all(self, sub: Subscriber, after_gid: int | None = None) -> None:
        if after_gid is not None and self.ring:
            first = self.ring[0].gid
            for rec in list(self.ring)[max(0, after_gid + 1 - first):]:
                if rec.type == "preview" and not sub.previews:
                    continue
                if sub.wants(rec):
                    sub.deliver(rec, self.encode(rec, sub.variant), replay=True)
            sub.pump()
        if sub not in self.all_subs:
            self.all_subs.append(sub)
        if sub.previews and sub not in self.preview_subs:
            self.preview_subs.append(sub)

    def subscribe_previews(self, sub: Subscriber) -> None:
        if sub not in self.preview_subs:
            self.preview_subs.append(sub)

    def unsubscribe(self, sub: Subscriber) -> None:
        for group in (self.all_subs, self.preview_subs):
            if sub in group:
                group.remove(sub)
        for task_id in [t for t, subs in self.task_subs.items() if sub in subs]:
            self.unsubscribe_task(sub, task_id)
        self.unsubscribe_vram(sub.outbox)

    # -- lookups ---------------------------------------------------------------------------
    def find(self, task_id: str) -> TaskState | None:
        """The task, looking in the runtime dir and the known runs folders if not yet seen."""
        if not valid_task_id(task_id):
            return None
        task = self.tasks.get(task_id)
        if task is not None:
            return task
        self.scan()
        task = self.tasks.get(task_id)
        if task is not None:
            return task
        folders = dict.fromkeys(d for p in self.producers.values() for d in p.runs_dirs())
        for directory in folders:
            if not (directory / task_id / JOURNAL_NAME).is_file():
                continue
            # Runs folders are shared: the owner is the pid its task.json names, not the folder.
            pid = self._pid_of(directory / task_id)
            owner = next((p for p in self.producers.values() if p.pid == pid), None)
            task = self._load_journal(task_id, owner, directory)
            if task is not None and owner is not None:
                owner.tasks.add(task_id)
                if not owner.alive:
                    self._lose(task, pid, "ended")
            elif task is not None and pid and not stale_files.pid_alive(pid, None):
                self._lose(task, pid, "ended")
            break
        return task

    @staticmethod
    def _pid_of(run_folder: Path) -> int | None:
        try:
            return int(json.loads((run_folder / "task.json").read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def snapshot(self, task: TaskState) -> dict[str, Any]:
        url, scene_urls = video_urls(self.base_url, task.task_id, len(task.snapshot.scene_videos))
        result = task.snapshot.to_dict(video_url=url)
        result["scene_video_urls"] = scene_urls
        result["producer_pid"] = task.producer.pid if task.producer else None
        return result

    def snapshots(self) -> list[dict[str, Any]]:
        tasks = sorted(self.tasks.values(),
                       key=lambda t: (t.snapshot.created_at or "", t.created), reverse=True)
        return [self.snapshot(t) for t in tasks if t.snapshot.last_seq]

    def run_folder(self, task: TaskState) -> Path | None:
        if task.journal_path is not None:
            return task.journal_path.parent
        for directory in task.producer.runs_dirs() if task.producer else []:
            if (directory / task.task_id).is_dir():
                return directory / task.task_id
        return None

    def video_file(self, task: TaskState, scene: int | None = None) -> Path | None:
        """The task's output (or its ``scene``-th scene video, 1-based), if it is a file inside
        the task's run folder; None otherwise. Only paths announced in the task's own events
        are candidates, so no request path reaches the filesystem."""
        snap = task.snapshot
        if scene is None:
            candidate = snap.output_path
        else:
            candidate = snap.scene_videos[scene - 1] if 1 <= scene <= len(snap.scene_videos) else None
        folder = self.run_folder(task)
        if not candidate or folder is None:
            return None
        try:
            root = folder.resolve(strict=True)
            path = Path(candidate)
            path = (path if path.is_absolute() else root / path).resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not path.is_file() or not path.is_relative_to(root):
            return None
        return path

    # -- cancel ----------------------------------------------------------------------------
    async def cancel(self, task: TaskState, timeout: float = 3.0) -> dict[str, Any]:
        producer = task.producer
        if producer is None or not producer.alive:
            return {"ok": False, "error": "the task's process is not reachable"}
        loop = IOLoop.current()
        info = dict(producer.info)
        return await loop.run_in_executor(None, lambda: relay.send_control(
            info, "cancel", timeout, task_id=task.task_id))

    # -- VRAM ------------------------------------------------------------------------------
    def subscribe_vram(self, outbox: Outbox) -> None:
        if outbox not in self.vram_subs:
            self.vram_subs.append(outbox)
        if self.vram_latest is not None and time.monotonic() - self.vram_at < 2 * self.vram_interval:
            outbox.push(self._vram_frame(), ("vram", SERVER_TASK_ID))
        if self._vram_timer is None:
            self._vram_timer = PeriodicCallback(self._vram_tick, self.vram_interval * 1000)
            self._vram_timer.start()
            IOLoop.current().add_callback(self._vram_tick)

    def unsubscribe_vram(self, outbox: Outbox) -> None:
        if outbox in self.vram_subs:
            self.vram_subs.remove(outbox)
        if not self.vram_subs and self._vram_timer is not None:
            self._vram_timer.stop()
            self._vram_timer = None

    async def sample_vram(self) -> dict[str, Any]:
        """A fresh reading (at most ``vram_interval`` old), taken off the IOLoop thread."""
        if self.vram_latest is not None and time.monotonic() - self.vram_at < self.vram_interval:
            return self.vram_latest
        sampler = self._sample_vram
        if sampler is None:
            from .. import monitor

            sampler = monitor.sample
        reading = await IOLoop.current().run_in_executor(None, sampler)
        self.vram_latest = {**reading, "task_id": SERVER_TASK_ID, "timestamp": _utc_now()}
        self.vram_at = time.monotonic()
        self.vram_seq += 1
        return self.vram_latest

    def _vram_frame(self) -> bytes:
        frame = {"type": "vram_monitoring", "seq": self.vram_seq, "task_id": SERVER_TASK_ID,
                 "data": self.vram_latest}
        return ws_text_frame(dumps(frame).encode())

    async def _vram_tick(self) -> None:
        if self._vram_busy or not self.vram_subs:
            return
        self._vram_busy = True
        try:
            self.vram_at = 0.0  # force a new reading
            await self.sample_vram()
        except Exception:
            log.debug("wan_nb: VRAM sample failed", exc_info=True)
            return
        finally:
            self._vram_busy = False
        payload = self._vram_frame()
        for outbox in list(self.vram_subs):
            outbox.push(payload, ("vram", SERVER_TASK_ID))


def make_outbox(hub: Hub, stream: Any, *, chunked: bool, on_close: Callable[[str], Any]) -> Outbox:
    return Outbox(stream, limit=hub.client_buffer, chunked=chunked, on_close=on_close)


__all__ = ["Hub", "Subscriber", "TaskState", "Rec", "valid_task_id", "make_outbox", "SERVER_TASK_ID"]
