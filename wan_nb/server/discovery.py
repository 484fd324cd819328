"""Finding producers: the runtime directory's producer files, their zmq sockets, the doorbell.

A producer file is trusted only after :func:`wan_nb.relay.protocol.check_producer_info`: a file
of the wrong shape is logged once (per version of the file) and skipped, so one bad file never
stops the scan that notices dead producers, tails journals and sweeps stale files for everyone.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from wan_nb.relay import stale_files
from wan_nb.runs import sources
from ..relay import protocol, transport
from .control import ControlLane
from .store import Store, valid_task_id

log = logging.getLogger(__name__)


class Producer:
    """A process that relays events (found through its runtime-dir file)."""

    def __init__(self, path: Path, info: dict[str, Any]) -> None:
        self.path = path
        self.info = info
        self.mtime: Any = None
        self.stream: Any = None
        self.tasks: set[str] = set()
        self.alive = True
        self.control = ControlLane()   # its steering requests, one at a time

    @property
    def pid(self) -> int:
        return int(self.info.get("pid", 0))

    def runs_dirs(self) -> list[Path]:
        dirs = [Path(d) for d in self.info.get("runs_dirs") or []]
        dirs += [Path(t["runs_dir"]) for t in self.info.get("tasks") or [] if t.get("runs_dir")]
        return list(dict.fromkeys(dirs))


class RememberedDirs:
    """Runs folders producers announced, kept in a file so a server started after they exited
    still lists their runs (at most ``limit``, the most recently seen last). A folder that no
    longer exists is forgotten, a temporary one (test runs, scratch) never remembered
    (:func:`wan_nb.runs.sources.is_temporary`), and the user can forget one (:meth:`forget`)."""

    def __init__(self, path: Path | None, limit: int = 200) -> None:
        self.path = path
        self.limit = limit
        self.dirs: dict[str, None] = {}
        if path is not None:
            try:
                stored = json.loads(path.read_text(encoding="utf-8"))
                self.dirs = dict.fromkeys(d for d in stored.get("runs_dirs", []) if isinstance(d, str))
            except (OSError, ValueError, AttributeError):
                pass
        if any(not sources.worth_remembering(Path(d)) for d in self.dirs):
            self.dirs = {d: None for d in self.dirs if sources.worth_remembering(Path(d))}
            self._save()

    def add(self, directories: list[Path]) -> None:
        new = [str(d) for d in directories if str(d) not in self.dirs and sources.worth_remembering(Path(d))]
        if not new:
            return
        self.dirs.update(dict.fromkeys(new))
        while len(self.dirs) > self.limit:
            self.dirs.pop(next(iter(self.dirs)))
        self._save()

    def forget(self, directory: Path | str) -> bool:
        """Stop listing ``directory``'s runs (its files stay); False if it was not remembered."""
        if self.dirs.pop(str(directory), False) is False:
            return False
        self._save()
        return True

    def _save(self) -> None:
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                protocol.write_private_json(self.path, {"runs_dirs": list(self.dirs)})
            except OSError:
                log.debug("wan_nb: cannot remember runs folders in %s", self.path, exc_info=True)

    def __iter__(self):
        gone = [d for d in self.dirs if not Path(d).is_dir()]
        for directory in gone:   # deleted since: forgotten, not listed as an empty source forever
            self.forget(directory)
        return (Path(d) for d in list(self.dirs))


class Discovery:
    def __init__(self, runtime_dir: Path, store: Store, *, remembered: RememberedDirs,
                 on_ring: Callable[[], Any], logger: logging.Logger | None = None) -> None:
        self.log = logger or log
        self.runtime_dir = runtime_dir
        self.store = store
        self.remembered = remembered
        self.on_ring = on_ring
        self.producers: dict[Path, Producer] = {}
        self._refused: dict[Path, Any] = {}     # file -> the version already logged as bad
        self._last_sweep = 0.0
        self._zmq_context: Any = None
        self._doorbell: Any = None
        self.doorbell_file: Path | None = None

    def context(self) -> Any:
        import zmq

        if self._zmq_context is None:
            self._zmq_context = zmq.Context.instance()
        return self._zmq_context

    # -- the doorbell ----------------------------------------------------------------------
    def open_doorbell(self) -> None:
        """A zmq PULL socket producers ring when they start or begin a task (see
        :func:`wan_nb.relay.ring_doorbells`), advertised as ``wan_nb-server-<pid>.json``: a new
        task reaches clients in milliseconds instead of up to a scan interval later."""
        import zmq
        from zmq.eventloop.zmqstream import ZMQStream

        try:
            socket = self.context().socket(zmq.PULL)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.RCVHWM, 64)
            socket.setsockopt(zmq.MAXMSGSIZE, transport.MAX_DOORBELL)
            endpoint = protocol.bind(socket, self.runtime_dir, "bell")
            self._doorbell = ZMQStream(socket)
            self._doorbell.on_recv(lambda frames: self.on_ring())
            self.doorbell_file = self.runtime_dir / f"{protocol.SERVER_PREFIX}{os.getpid()}.json"
            protocol.write_private_json(self.doorbell_file, {"pid": os.getpid(), "doorbell": endpoint})
        except Exception:  # the periodic scan still finds everything, only later
            self.log.warning("wan_nb: no doorbell in %s; new tasks show up at the next scan",
                             self.runtime_dir, exc_info=True)

    def close(self) -> None:
        for producer in self.producers.values():
            self.disconnect(producer)
        if self._doorbell is not None:
            import zmq

            endpoint = self._doorbell.socket.getsockopt_string(zmq.LAST_ENDPOINT)
            self._doorbell.close()
            self._doorbell = None
            protocol.unlink_endpoint(endpoint)
        if self.doorbell_file is not None:
            self.doorbell_file.unlink(missing_ok=True)
            self.doorbell_file = None

    # -- scanning --------------------------------------------------------------------------
    def scan(self, force: bool = False) -> None:
        """Find new, changed and vanished producers; notice dead ones; tail quiet journals.
        ``force`` re-reads every producer file (a doorbell rang: one changed, maybe within the
        file system's timestamp granularity). Each step is isolated: one failure is logged and
        the others still run."""
        seen = set()
        for path in protocol.producer_files(self.runtime_dir):
            seen.add(path)
            self._guarded(self.refresh, path, force)
        for path in [p for p in self.producers if p not in seen]:
            producer = self.producers.pop(path)
            self.disconnect(producer)
            self._guarded(self.store.lose_tasks, producer, "stopped relaying (its producer file is gone)")
        for producer in list(self.producers.values()):
            self._guarded(self.notice_death, producer)   # one bad producer never stops the rest
        self._guarded(self.store.tail_quiet_tasks)
        if time.monotonic() - self._last_sweep > stale_files.GRACE_S / 2:
            self._last_sweep = time.monotonic()
            self._guarded(stale_files.sweep, self.runtime_dir)  # files of killed processes

    def notice_death(self, producer: Producer) -> None:
        if producer.alive and not stale_files.pid_alive(producer.pid, producer.info.get("create_time")):
            producer.alive = False
            self.disconnect(producer)
            self.store.lose_tasks(producer, "ended")

    def _guarded(self, step: Callable[..., Any], *args: Any) -> None:
        try:
            step(*args)
        except Exception:
            self.log.exception("wan_nb: %s%r failed while scanning %s", step.__name__, args[:1],
                               self.runtime_dir)

    def read(self, path: Path, version: Any) -> dict[str, Any] | None:
        """The producer file's content if valid; a bad one is logged once per version."""
        info = protocol.read_producer_file(path)
        if info is None:
            return None   # being replaced, or gone: the next scan reads it again
        problem = protocol.check_producer_info(info) or transport.unauthenticated(info)
        if problem is None:
            self._refused.pop(path, None)
            return info
        if self._refused.get(path) != version:
            self._refused[path] = version
            self.log.warning("wan_nb: ignoring producer file %s: %s", path, problem)
        return None

    def refresh(self, path: Path, force: bool = False) -> None:
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
        if self._refused.get(path) == mtime:
            return
        info = self.read(path, mtime)
        if info is None:
            return
        if producer is not None and producer.info.get("pub") != info.get("pub"):
            self.disconnect(producer)  # the same pid re-attached with new sockets
            producer = None
        if producer is None:
            producer = self.producers[path] = Producer(path, info)
            producer.alive = stale_files.pid_alive(producer.pid, info.get("create_time"))
            self.log.debug("wan_nb: producer pid %s at %s (alive: %s)", producer.pid, info.get("pub"),
                           producer.alive)
            if producer.alive:
                self.connect(producer)
        producer.info, producer.mtime = info, mtime
        self.remembered.add(producer.runs_dirs())
        for entry in info.get("tasks") or []:
            task_id = entry["task_id"]
            task = self.store.tasks.get(task_id)
            if not valid_task_id(task_id) or (task is not None and not self.store.owned_by(task, producer)):
                continue   # another process's task: announcing it does not make it this one's
            producer.tasks.add(task_id)
            if task is None or not task.finished:
                self.store.load_journal(task_id, producer, Path(entry.get("runs_dir") or "."))
        if not producer.alive:
            self.store.lose_tasks(producer, "ended")

    def reread(self, producer: Producer) -> None:
        """Refresh ``producer.info`` from its file now (a gap names a folder not yet known);
        only the info: the next scan still sees the file as changed and does the rest."""
        info = self.read(producer.path, None)
        if info and info.get("pub") == producer.info.get("pub"):
            producer.info = info

    # -- sockets ---------------------------------------------------------------------------
    def connect(self, producer: Producer) -> None:
        import zmq
        from zmq.eventloop.zmqstream import ZMQStream

        socket = self.context().socket(zmq.SUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, 100_000)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.setsockopt(zmq.MAXMSGSIZE, transport.MAX_EVENT_FRAME)
        transport.secure_client(socket, producer.info)
        socket.connect(producer.info["pub"])
        producer.stream = ZMQStream(socket)
        ingest = self.store.ingest
        producer.stream.on_recv(lambda frames, p=producer: [ingest(bytes(f), p) for f in frames])

    @staticmethod
    def disconnect(producer: Producer) -> None:
        if producer.stream is not None:
            for step in (producer.stream.flush, producer.stream.close):
                try:
                    step()
                except Exception:
                    pass
            producer.stream = None

    # -- lookups ---------------------------------------------------------------------------
    def announced_dirs(self) -> list[Path]:
        return list(dict.fromkeys(d for p in self.producers.values() for d in p.runs_dirs()))

    def owner_of(self, pid: int | None) -> Producer | None:
        return next((p for p in self.producers.values() if p.pid == pid), None) if pid else None
