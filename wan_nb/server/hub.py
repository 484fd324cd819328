"""The server's view of every task of every producer: the one object handlers talk to.

A facade over the parts (each its own module): :mod:`.discovery` finds producers and their
sockets, :mod:`.store` holds tasks, events and journals, :mod:`.fanout` delivers to
connections, :mod:`.vram` samples the GPU, :mod:`.memory` trims the heap, :mod:`.runs` lists
finished runs from disk.

Everything here runs on the server's IOLoop thread (no locks): zmq messages arrive through
``ZMQStream`` callbacks, the runtime directory is scanned by a ``PeriodicCallback``, handlers
call in synchronously. Journal reads and control requests run on small dedicated thread pools
so that neither a large replay nor a frozen producer can stall the loop or each other.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import time
from pathlib import Path
from typing import Any, Iterable

from tornado.ioloop import IOLoop, PeriodicCallback

from ..relay import protocol
from . import inputs, runs
from .control import ControlLane
from .discovery import Discovery, Producer, RememberedDirs
from .fanout import BACKLOG_BYTES, Encoder, Fanout, SseAllEncoder, SseTaskEncoder, Subscriber, WsEncoder
from .listing import RunListing
from .memory import MemoryTrimmer
from .outbox import Outbox
from .replay import ReplayStream, until_drained
from .resuming import ResumeLinks, Resumer
from .store import JournalCursor, Rec, Store, TaskEntry, read_journal, valid_task_id
from .vram import SERVER_TASK_ID, VramMonitor
from .wire import video_urls

log = logging.getLogger(__name__)

SEQ_RE = re.compile(r"0|[1-9][0-9]{0,17}")
MAX_PENDING_REPLAYS = 16      # replays one connection may have in flight


def parse_seq(raw: Any) -> int | None:
    """A resume position: a plain non-negative decimal, nothing else (no sign, no ``1_0``)."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw if raw >= 0 else None
    if isinstance(raw, str) and SEQ_RE.fullmatch(raw):
        return int(raw)
    return None


def _read_unless_closed(outbox: Outbox, path: Path, task_id: str, after: int, cursor: Any = None) -> Any:
    # Queued reads of a connection closed meanwhile (a flood that hit its cap) cost nothing.
    return None if outbox.closed or path is None else read_journal(path, task_id, after, cursor)


class Hub:
    def __init__(self, *, runtime_dir: Path | None = None, base_url: str = "/",
                 history_size: int = 20_000, max_tasks: int = 2_000, max_tasks_with_events: int = 200,
                 global_history_size: int = 20_000, client_buffer: int = 1_000,
                 scan_interval: float = 0.5, heartbeat_interval: float = 10.0,
                 vram_interval: float = 1.0, sample_vram: Any = None,
                 memory_trim_interval: float = 1.0, backlog_bytes: int = BACKLOG_BYTES,
                 runs_dirs: Iterable[Path | str] = (), remembered_file: Path | None = None,
                 logger: logging.Logger | None = None) -> None:
        self.log = logger or log
        self.runtime_dir = Path(runtime_dir) if runtime_dir else protocol.runtime_dir()
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.client_buffer = client_buffer
        self.backlog_bytes = backlog_bytes
        self.scan_interval = scan_interval
        self.heartbeat_interval = heartbeat_interval
        self.configured_dirs = [Path(d).expanduser() for d in runs_dirs]
        self.journal_pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="wan_nb-journal")
        # One request in flight per producer (see .control): a thread per unanswering producer.
        self.control_pool = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="wan_nb-control")
        # Finished runs on disk, read on a thread of their own (see .listing)
        self.listing_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wan_nb-listing")
        self.listing = RunListing(self.base_url, self.listing_pool)
        self.resumer, self.resume_links = Resumer(self.control_pool), ResumeLinks()   # .resuming
        # Ids of the all-tasks stream: "<boot>-<n>", n counting every event this server run
        # accepted; a different boot means the id is from an earlier server run.
        self.boot = format(int(time.time() * 1000), "x")
        self.fanout = Fanout()
        self.store = Store(on_accept=self.fanout.publish, runs_dirs=self.runs_dirs,
                           refresh_producer=lambda p: self.discovery.reread(p),
                           is_watched=self.fanout.watching, history_size=history_size,
                           max_tasks=max_tasks, max_tasks_with_events=max_tasks_with_events,
                           global_history_size=global_history_size, logger=self.log)
        self.discovery = Discovery(self.runtime_dir, self.store, remembered=RememberedDirs(remembered_file),
                                   on_ring=lambda: self.scan(force=True), logger=self.log)
        self.vram = VramMonitor(vram_interval, sample_vram)
        self.trimmer = MemoryTrimmer(memory_trim_interval,
                                     activity=lambda: self.store.accepted + self.fanout.released_bytes,
                                     last_activity=lambda: self.store.last_accept)
        self.encoders: dict[str, Encoder] = {"ws": WsEncoder(), "sse_all": SseAllEncoder(self.boot),
                                             "sse_task": SseTaskEncoder(self.base_url)}
        self.connections: set[Outbox] = set()
        self._timers: list[PeriodicCallback] = []
        self.started = False

    # -- the parts' state, for tools and tests ---------------------------------------------
    @property
    def tasks(self) -> dict[str, TaskEntry]:
        return self.store.tasks

    @property
    def producers(self) -> dict[Path, Producer]:
        return self.discovery.producers

    def ingest(self, raw: bytes, producer: Producer | None = None, *, from_journal: bool = False) -> None:
        self.store.ingest(raw, producer, from_journal=from_journal)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self.started:
            return
        self.started = True
        self.discovery.open_doorbell()
        self.scan()
        timers = [(self.scan, self.scan_interval), (self.fanout.heartbeat, self.heartbeat_interval)]
        if self.trimmer.trim_call is not None:
            timers.append((self.trimmer.maybe_trim, self.trimmer.interval))
        for callback, seconds in timers:
            timer = PeriodicCallback(callback, seconds * 1000)
            timer.start()
            self._timers.append(timer)
        # Read the runs on disk now, off the loop, so the first listing need not wait for it.
        IOLoop.current().spawn_callback(self._warm_listing)

    async def _warm_listing(self) -> None:
        try:
            await self.listing.refresh(self.runs_dirs())
        except Exception:
            self.log.warning("wan_nb: cannot read the runs on disk", exc_info=True)

    def stop(self) -> None:
        for timer in self._timers:
            timer.stop()
        self._timers.clear()
        self.vram.stop()
        self.discovery.close()
        for outbox in list(self.connections):
            outbox.close("server stopping")
        self.journal_pool.shutdown(wait=False, cancel_futures=True)
        self.control_pool.shutdown(wait=False, cancel_futures=True)
        self.listing_pool.shutdown(wait=False, cancel_futures=True)
        self.started = False

    def scan(self, force: bool = False) -> None:
        self.discovery.scan(force)

    # -- connections -------------------------------------------------------------------------
    def connect(self, outbox: Outbox, *, heartbeat: bool = False) -> None:
        """Track a client connection (closed on shutdown; SSE ones get heartbeats)."""
        self.connections.add(outbox)
        if heartbeat:
            self.fanout.streams.add(outbox)

    def disconnect(self, outbox: Outbox, sub: Subscriber | None = None) -> None:
        self.connections.discard(outbox)
        self.fanout.streams.discard(outbox)
        if sub is not None:
            self.fanout.remove(sub)
        self.vram.unsubscribe(outbox)

    def subscriber(self, kind: str, outbox: Outbox, **options: Any) -> Subscriber:
        """A subscriber encoding for ``kind``: ``ws``, ``sse_all`` or ``sse_task``."""
        return Subscriber(outbox, self.encoders[kind], backlog_bytes=self.backlog_bytes, **options)

    # -- subscriptions -----------------------------------------------------------------------
    def is_subscribed(self, sub: Subscriber, task_id: str) -> bool:
        return self.fanout.is_subscribed(sub, task_id)

    def replay(self, task: TaskEntry, after: int = 0) -> list[Rec]:
        """Every event of ``task`` with seq > ``after`` (reads its journal on this thread)."""
        return self.store.replay(task, after)

    async def subscribe_task(self, sub: Subscriber, task_id: str, after: int = 0) -> TaskEntry | None:
        """Replay ``task_id``'s events after ``after`` to ``sub``, then keep it posted. The
        replay streams (.replay): journal chunks read on a worker thread, each queued once the
        connection sent the one before; live events meanwhile wait behind it, so none is missed
        or sent twice. Returns when the replay has been handed to the connection."""
        task = self.find(task_id)
        if task is None:
            sub.last_sent[task_id] = max(sub.last_sent.get(task_id, 0), after)
            self.fanout.add_task(sub, task_id)
            return None
        loop = IOLoop.current()

        async def read_chunk(cursor: JournalCursor) -> Any:
            path = task.journal_path
            return await loop.run_in_executor(self.journal_pool, _read_unless_closed, sub.outbox, path,
                                              task_id, after, cursor)

        sub.pending_replays += 1
        sub.hold(task_id)
        self.fanout.add_task(sub, task_id)
        try:
            async for batch in ReplayStream(self.store, task, after, read_chunk).batches():
                if sub.outbox.closed:
                    break
                self.fanout.replay_to(sub, batch, capped=False)
                await until_drained(sub, asyncio.get_running_loop())
        finally:
            sub.pending_replays -= 1
            sub.release(task_id)
        return task

    def replay_busy(self, sub: Subscriber) -> bool:
        return sub.pending_replays >= MAX_PENDING_REPLAYS

    def unsubscribe_task(self, sub: Subscriber, task_id: str) -> None:
        self.fanout.remove_task(sub, task_id)

    def subscribe_all(self, sub: Subscriber, after_gid: int | None = None) -> None:
        ring = self.store.ring
        if after_gid is not None and ring:
            first = ring[0].gid
            self.fanout.replay_to(sub, list(ring)[max(0, after_gid + 1 - first):])
        self.fanout.add_all(sub)

    def unsubscribe_all(self, sub: Subscriber) -> None:
        self.fanout.remove_all(sub)

    def set_previews(self, sub: Subscriber, on: bool) -> None:
        self.fanout.set_previews(sub, on)

    def all_events_position(self, last_event_id: str | None) -> int | None:
        """Where an all-tasks stream resumes: after this run's event n, or from the oldest
        retained (an id of an earlier server run); None for a new stream."""
        if not last_event_id:
            return None
        boot, _, number = last_event_id.partition("-")
        seq = parse_seq(number)
        return seq if boot == self.boot and seq is not None else 0

    # -- VRAM ------------------------------------------------------------------------------
    def subscribe_vram(self, outbox: Outbox) -> None:
        self.vram.subscribe(outbox)

    def unsubscribe_vram(self, outbox: Outbox) -> None:
        self.vram.unsubscribe(outbox)

    async def sample_vram(self) -> dict[str, Any]:
        return await self.vram.sample()

    # -- memory ------------------------------------------------------------------------------
    def trim_memory(self) -> bool:
        return self.trimmer.trim_memory()

    # -- lookups ---------------------------------------------------------------------------
    def runs_dirs(self) -> list[Path]:
        """Every runs folder this server reads: configured, announced now, announced before."""
        dirs = self.configured_dirs + self.discovery.announced_dirs() + list(self.discovery.remembered)
        return list(dict.fromkeys(dirs))

    def find(self, task_id: str) -> TaskEntry | None:
        """The task, looking in the runtime dir and the known runs folders if not yet seen."""
        if not valid_task_id(task_id):
            return None
        task = self.store.tasks.get(task_id)
        if task is not None:
            return task
        self.scan()
        task = self.store.tasks.get(task_id)
        if task is not None:
            return task
        for directory in self.runs_dirs():
            if self.store.journal_of(task_id, None, directory) is None:
                continue
            # Runs folders are shared: the owner is the pid its task.json names, not the folder.
            pid = runs.pid_of(directory / task_id)
            owner = self.discovery.owner_of(pid)
            task = self.store.load_journal(task_id, owner, directory)
            if task is not None and owner is not None:
                owner.tasks.add(task_id)
                if not owner.alive:
                    self.store.lose(task, pid, "ended")
            elif task is not None and not runs.process_alive(pid):
                self.store.lose(task, pid, "ended")
            break
        return task

    def snapshot(self, task: TaskEntry) -> dict[str, Any]:
        url, scene_urls = video_urls(self.base_url, task.task_id, len(task.snapshot.scene_videos))
        result = task.snapshot.to_dict(video_url=url)
        result["scene_video_urls"] = scene_urls
        result["producer_pid"] = task.producer.pid if task.producer else None
        result["incomplete"] = bool(task.missing)
        result["missing_seqs"] = [list(r) for r in task.missing]
        folder = self.run_folder(task)
        result["inputs"] = inputs.snapshot_inputs(folder, self.base_url, task.task_id, finished=task.finished)
        result.update(self.resume_links.fields(task, folder))   # resumable, checkpoint_step, resumed_from
        return result

    def snapshots(self) -> list[dict[str, Any]]:
        tasks = sorted(self.store.tasks.values(),
                       key=lambda t: (t.snapshot.created_at or "", t.created), reverse=True)
        return [self.snapshot(t) for t in tasks if t.snapshot.last_seq]

    async def list_tasks(self, *, limit: int | None = None, offset: int = 0,
                         status: str | None = None) -> dict[str, Any]:
        """Live and remembered tasks, then finished runs found on disk, newest first:
        ``{"tasks": page, "total": n}``. The disk is read incrementally, off the loop (.listing)."""
        await self.listing.refresh(self.runs_dirs())
        return self.listing.page(self.snapshots(), limit=limit, offset=offset, status=status or None)

    def tasks_body(self, tasks: list[dict[str, Any]]) -> bytes:
        """The JSON body ``{"tasks": tasks}`` of a page :meth:`list_tasks` gave."""
        return self.listing.body(tasks)

    def run_folder(self, task: TaskEntry) -> Path | None:
        if task.journal_path is not None:
            return task.journal_path.parent
        for directory in task.producer.runs_dirs() if task.producer else []:
            if (directory / task.task_id).is_dir():
                return directory / task.task_id
        return None

    def video_file(self, task: TaskEntry, scene: int | None = None) -> Path | None:
        """The task's MP4 (or its ``scene``-th scene video, 1-based) if it may be served (see
        :func:`.runs.servable_video`); only paths named by the task's own events are candidates,
        so no request path reaches the file system."""
        snap = task.snapshot
        if scene is None:
            candidate = snap.output_path
        else:
            candidate = snap.scene_videos[scene - 1] if 1 <= scene <= len(snap.scene_videos) else None
        folder = self.run_folder(task)
        return runs.servable_video(folder, candidate) if folder is not None else None

    # -- steering ----------------------------------------------------------------------------
    async def steer(self, task: TaskEntry, action: str, timeout: float = 3.0, **arguments: Any) -> dict[str, Any]:
        """Relay ``action`` (cancel, pause, resume, move) to the process running ``task``; its
        answer ``{"ok": bool, "error": ...}``. Through the producer's own lane (.control): equal
        requests coalesce, a producer that did not answer is failed fast, and the worker threads
        are shared by lanes, one each, so a frozen producer holds up only its own requests."""
        producer = task.producer
        if producer is None or not producer.alive:
            return {"ok": False, "error": "the task's process is not reachable"}
        info = dict(producer.info)
        if action == "cancel":   # the form every producer version answers
            call = lambda: protocol.send_control(info, "cancel", timeout, task_id=task.task_id)  # noqa: E731
        else:
            call = lambda: protocol.send_control(info, "steer", timeout, task_id=task.task_id,  # noqa: E731
                                                 action=action, arguments=arguments)
        return await producer.control.request(
            ControlLane.key(action, task.task_id, arguments),
            lambda: IOLoop.current().run_in_executor(self.control_pool, call))

    async def resume_run(self, task: TaskEntry) -> dict[str, Any]:   # a finished run, in a live process
        return await self.resumer.resume(task, self.run_folder(task), list(self.producers.values()))

    async def cancel(self, task: TaskEntry, timeout: float = 3.0) -> dict[str, Any]:
        return await self.steer(task, "cancel", timeout)


__all__ = ["Hub", "Subscriber", "TaskEntry", "Rec", "Producer", "valid_task_id", "parse_seq",
           "SERVER_TASK_ID"]
