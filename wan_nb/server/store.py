"""Every task the server knows: its events (in memory and in its journal) and its snapshot.

Events enter by :meth:`Store.ingest` (a live zmq message or a journal line). Per task they are
accepted strictly in ``seq`` order: a duplicate is ignored, a gap is filled from the task's
journal first (the journal sink runs before the relay sink, so the journal holds every earlier
event by the time a later one is relayed). Runs on the IOLoop thread, except
:func:`read_journal`, which is pure and runs on a worker thread.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import stat
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from wan_nb.protocol.events import COALESCIBLE_TYPES, dumps, is_terminal, utc_now
from wan_nb.runs import checkpoint_file
from wan_nb.runs.journal import JOURNAL_NAME, TASK_FILE
from wan_nb.protocol.snapshot import PRODUCER_LOST, TaskSnapshot
from wan_nb.protocol.state import PROMPT_CAP, capped_params

from .frame_limits import bounded

log = logging.getLogger(__name__)

TASK_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
COALESCIBLE = frozenset(str(t) for t in COALESCIBLE_TYPES)
_RECORDED_ENDINGS = {"completed": "generation_completed", "failed": "generation_failed",
                     "cancelled": "generation_cancelled"}
_BIG_FRAME = 4 * PROMPT_CAP   # a generation_started this large may carry an outsized prompt


def valid_task_id(task_id: Any) -> bool:
    return isinstance(task_id, str) and TASK_ID_RE.fullmatch(task_id) is not None \
        and task_id not in (".", "..")


def trusted(path: Path) -> bool:
    """True if ``path`` is owned by this user and no one else can write it: a run folder or
    journal others can plant would otherwise decide which file the server serves."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return False
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return False
    return not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


class Rec:
    """One accepted event: its wire bytes and the task's overall state right after it."""

    __slots__ = ("task_id", "seq", "type", "gid", "raw", "progress", "stage", "terminal")

    def __init__(self, task_id: str, seq: int, type_: str, raw: bytes, progress: float,
                 stage: str | None, terminal: bool, gid: int = 0) -> None:
        self.task_id, self.seq, self.type, self.raw = task_id, seq, type_, raw
        self.progress, self.stage, self.terminal, self.gid = progress, stage, terminal, gid


class TaskEntry:
    __slots__ = ("task_id", "snapshot", "events", "complete", "producer", "journal_path",
                 "journal_offset", "last_activity", "created", "missing")

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.snapshot = TaskSnapshot(task_id)
        self.events: list[Rec] = []
        self.complete = True          # events holds every event since seq 1
        self.producer: Any = None
        self.journal_path: Path | None = None
        self.journal_offset = 0
        self.last_activity = time.monotonic()
        self.created = time.time()
        self.missing: list[tuple[int, int]] = []   # seq ranges no replay can serve

    @property
    def finished(self) -> bool:
        return self.snapshot.finished

    @property
    def last_seq(self) -> int:
        return self.snapshot.last_seq


def missing_ranges(seqs: Iterable[int], last: int, start: int = 1) -> list[tuple[int, int]]:
    """The ranges of ``start``..``last`` absent from ``seqs`` (ascending, none below ``start``)."""
    gaps, expected = [], start
    for seq in seqs:
        if seq > expected:
            gaps.append((expected, seq - 1))
        expected = max(expected, seq + 1)
    if last >= expected:
        gaps.append((expected, last))
    return gaps


class JournalCursor:
    """Where a streamed replay is in a journal: the byte offset of the next line, the state
    the lines so far built (progress and stage ride along with each event), the gaps so far."""

    __slots__ = ("offset", "snapshot", "expected", "gaps", "done")

    def __init__(self, task_id: str) -> None:
        self.offset = 0
        self.snapshot = TaskSnapshot(task_id)
        self.expected = 1
        self.gaps: list[tuple[int, int]] = []
        self.done = False

    def saw(self, seq: int) -> None:
        if seq > self.expected:
            self.gaps.append((self.expected, seq - 1))
        self.expected = max(self.expected, seq + 1)


CHUNK_BYTES = 1024 * 1024     # journal bytes one streamed replay step reads


def read_journal(path: Path, task_id: str, after: int = 0,
                 cursor: JournalCursor | None = None) -> tuple[list[Rec], list[tuple[int, int]]] | None:
    """The events of a journal with seq > ``after`` and the seq ranges it lacks; None if it
    cannot be read. Pure (a worker thread runs it): a torn last line is not an event yet, a
    torn line inside (a full disk) is skipped and shows as a gap.

    With a ``cursor`` only the next :data:`CHUNK_BYTES` (whole lines) are read and the cursor
    moves on (``cursor.done`` at the end); the ranges are those found so far."""
    if not trusted(path):
        return None
    whole = cursor is None
    cursor = cursor or JournalCursor(task_id)
    try:
        with open(path, "rb") as handle:
            handle.seek(cursor.offset)
            data = handle.read() if whole else handle.read(CHUNK_BYTES)
            at_end = whole or len(data) < CHUNK_BYTES
            if not at_end and b"\n" not in data:
                data += handle.readline()     # one line longer than a chunk
    except OSError:
        return None
    end = data.rfind(b"\n") + 1
    lines = data[:end].split(b"\n")[:-1]
    cursor.offset += end
    cursor.done = at_end or end == 0     # the rest is a line still being written
    snapshot = cursor.snapshot
    recs = []
    for line in lines:
        try:
            frame = json.loads(line)
            if frame["task_id"] != task_id:
                continue
            frame, line = bounded(frame, line)
            if not snapshot.apply_frame(frame):
                continue
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            continue
        cursor.saw(frame["seq"])
        if frame["seq"] > after:
            recs.append(Rec(task_id, frame["seq"], frame["type"], line, snapshot.progress,
                            snapshot.stage, is_terminal(frame["type"], frame.get("data") or {})))
    return recs, cursor.gaps + ([(cursor.expected, snapshot.last_seq)]
                                if snapshot.last_seq >= cursor.expected else [])


def _kept_step(journal: Path | None) -> int | None:
    """The step of the checkpoint the run folder of a lost task keeps (None without one)."""
    folder = journal.parent if journal is not None else None
    if folder is None or not trusted(folder):
        return None
    step = (checkpoint_file.read_summary(folder) or {}).get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) and step > 0 else None


class Store:
    def __init__(self, *, on_accept: Callable[[Rec, dict], Any], runs_dirs: Callable[[], list[Path]],
                 refresh_producer: Callable[[Any], Any], is_watched: Callable[[str], bool],
                 history_size: int = 20_000, max_tasks: int = 2_000,
                 max_tasks_with_events: int = 200, global_history_size: int = 20_000,
                 logger: logging.Logger | None = None) -> None:
        self.log = logger or log
        self.on_accept = on_accept
        self.runs_dirs = runs_dirs
        self.refresh_producer = refresh_producer
        self.is_watched = is_watched
        self.history_size = history_size
        self.max_tasks = max_tasks
        self.max_tasks_with_events = max_tasks_with_events
        self.tasks: collections.OrderedDict[str, TaskEntry] = collections.OrderedDict()
        self.ring: collections.deque[Rec] = collections.deque(maxlen=global_history_size)
        self.gid = 0
        self.accepted = 0                   # events accepted (the memory trimmer watches it)
        self.last_accept = time.monotonic()
        self._foreign_logged: set[str] = set()   # tasks another process tried to publish into

    # -- journals --------------------------------------------------------------------------
    def journal_of(self, task_id: str, producer: Any, runs_dir: Path | None = None) -> Path | None:
        candidates = ([runs_dir] if runs_dir else []) + (producer.runs_dirs() if producer else [])
        for directory in candidates:
            candidate = directory / task_id / JOURNAL_NAME
            if candidate.is_file() and trusted(candidate.parent) and trusted(candidate):
                return candidate
        return None

    def load_journal(self, task_id: str, producer: Any, runs_dir: Path | None) -> TaskEntry | None:
        path = self.journal_of(task_id, producer, runs_dir)
        task = self.tasks.get(task_id)
        if path is None:
            return task
        if task is None:
            task = self.new_task(task_id)
        if producer is not None and task.producer is None:
            task.producer = producer
        if task.journal_path is None:
            task.journal_path = path
        self.tail(task)
        return task

    def tail(self, task: TaskEntry) -> None:
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

    def tail_quiet_tasks(self) -> None:
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
                    self.tail(task)

    def locate_journal(self, task: TaskEntry) -> Path | None:
        """The task's journal: in its producer's runs folders, else any known runs folder."""
        if task.journal_path is None:
            path = self.journal_of(task.task_id, task.producer)
            if path is None:
                path = next((p for d in self.runs_dirs()
                             if (p := self.journal_of(task.task_id, None, d)) is not None), None)
            task.journal_path = path
        return task.journal_path

    # -- lost tasks --------------------------------------------------------------------------
    def lose_tasks(self, producer: Any, why: str) -> None:
        for task_id in list(producer.tasks):
            task = self.tasks.get(task_id)
            if task is not None and task.producer in (None, producer):
                self.lose(task, producer.pid, why)

    def lose(self, task: TaskEntry, pid: int | None, why: str) -> None:
        """End ``task`` with a ProducerLost failure unless its journal shows how it ended."""
        if task.finished:
            return
        if task.journal_path is None:
            self.load_journal(task.task_id, task.producer, None)
        self.tail(task)  # its last words may be in the journal but not on the socket
        if task.finished:
            return
        frame = self._recorded_ending(task)
        if frame is not None:   # its journal lost the end (a full disk); task.json kept it
            self._accept(task, frame, dumps(frame).encode())
            return
        self.log.warning("wan_nb: task %s lost: process %s %s (last seq %s)", task.task_id, pid, why,
                         task.last_seq)
        data = {"stage": task.snapshot.stage or "initializing", "error_type": PRODUCER_LOST,
                "error": f"the process that ran this task (pid {pid}) {why} before it finished",
                "task_id": task.task_id, "timestamp": utc_now()}
        kept = _kept_step(task.journal_path)
        if kept is not None:   # e.g. written on SIGTERM, which no event announced: it reads "interrupted"
            data["checkpoint_step"] = kept
        frame = {"type": "generation_failed", "seq": task.last_seq + 1, "task_id": task.task_id,
                 "data": data}
        self._accept(task, frame, dumps(frame).encode())

    def _recorded_ending(self, task: TaskEntry) -> dict | None:
        """The terminal event ``task.json`` records (the run recorder writes it at the end, as an
        atomic small file: it survives where appending to a full disk's journal did not), with
        the next seq; None when it records none. The seqs between are missing, and say so."""
        folder = task.journal_path.parent if task.journal_path is not None else None
        if folder is None or not trusted(folder / TASK_FILE):
            return None
        try:
            info = json.loads((folder / TASK_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return None
        status = info.get("status") if isinstance(info, dict) else None
        if status not in _RECORDED_ENDINGS or info.get("task_id", task.task_id) != task.task_id:
            return None
        error = info.get("error") if isinstance(info.get("error"), str) else None
        data: dict[str, Any] = {"stage": task.snapshot.stage or "generating", "task_id": task.task_id,
                                "timestamp": info.get("finished_at") or utc_now(), "from_task_file": True}
        if status == "completed":
            video = info.get("video")
            data.update(output_path=str(folder / video) if isinstance(video, str) else None,
                        duration_s=info.get("duration_s"), params={}, seed=info.get("seed"))
        elif status == "failed":
            data.update(error_type=str(info.get("error_type") or "Error")[:100],
                        error=(error or "failed (the journal lost its last events)")[:PROMPT_CAP])
        self.log.warning("wan_nb: task %s's journal ends at seq %s without its end; task.json says %s",
                         task.task_id, task.last_seq, status)
        return {"type": _RECORDED_ENDINGS[status], "seq": task.last_seq + 1, "task_id": task.task_id,
                "data": data}

    # -- ingest ------------------------------------------------------------------------------
    def new_task(self, task_id: str) -> TaskEntry:
        task = self.tasks[task_id] = TaskEntry(task_id)
        self._evict()
        return task

    def ingest(self, raw: bytes, producer: Any = None, *, from_journal: bool = False) -> None:
        try:
            frame = json.loads(raw)
            task_id, seq, type_ = frame["task_id"], frame["seq"], frame["type"]
        except (ValueError, KeyError, TypeError, RecursionError):
            return
        if not valid_task_id(task_id) or not isinstance(seq, int) or isinstance(seq, bool) \
                or seq < 1 or not isinstance(type_, str) or not isinstance(frame.get("data", {}), dict):
            return
        task = self.tasks.get(task_id)
        if task is None:
            task = self.new_task(task_id)
            if producer is not None:  # known from the start, so quiet or lost tasks can be re-read
                task.journal_path = self.journal_of(task_id, producer)
        if producer is not None:
            if not self.owned_by(task, producer):
                return self._refuse_foreign(task, producer)
            producer.tasks.add(task_id)
            if task.producer is None:
                task.producer = producer
        if seq <= task.last_seq or task.finished:
            return
        if seq > task.last_seq + 1 and not from_journal:
            self._fill_gap(task)
            if seq <= task.last_seq or task.finished:
                return
        if seq > task.last_seq + 1 and from_journal and task.journal_path is not None:
            task.missing.append((task.last_seq + 1, seq - 1))   # the journal itself has the hole
        if seq > task.last_seq + 1:
            # Accepted with a hole (the journal is not found yet, or lacks those lines): the
            # events in memory no longer tell the whole story, so a replay must come from the
            # journal, located later (a rescan, or lazily at replay time).
            task.complete = False
        frame, raw = bounded(frame, raw)
        if type_ == "generation_started" and len(raw) > _BIG_FRAME:
            raw = _cap_started(frame)
        self._accept(task, frame, raw)

    @staticmethod
    def owned_by(task: TaskEntry, producer: Any) -> bool:
        """True unless another process relayed ``task`` first: a task's events are accepted
        from the process that announced it only (the same pid re-attached counts as it)."""
        owner = task.producer
        return owner is None or owner is producer or owner.pid == producer.pid

    def _refuse_foreign(self, task: TaskEntry, producer: Any) -> None:
        if task.task_id not in self._foreign_logged:
            if len(self._foreign_logged) > 10_000:
                self._foreign_logged.clear()
            self._foreign_logged.add(task.task_id)
            self.log.warning("wan_nb: ignoring events of task %s from process %s: process %s runs it",
                             task.task_id, producer.pid, task.producer.pid)

    def _fill_gap(self, task: TaskEntry) -> None:
        """Read the events a socket missed from the task's journal, locating it first if need
        be (the producer file may have been rewritten with its runs folder since we read it)."""
        if task.journal_path is None:
            if task.producer is not None:
                self.refresh_producer(task.producer)
            self.locate_journal(task)
        self.tail(task)

    def _accept(self, task: TaskEntry, frame: dict, raw: bytes) -> None:
        snapshot = task.snapshot
        snapshot.apply_frame(frame)
        type_ = frame["type"]
        terminal = is_terminal(type_, frame.get("data") or {})
        self.gid += 1
        self.accepted += 1
        self.last_accept = task.last_activity = time.monotonic()
        rec = Rec(task.task_id, frame["seq"], type_, raw, snapshot.progress, snapshot.stage, terminal,
                  self.gid)
        task.events.append(rec)
        self.ring.append(rec)
        if len(task.events) > self.history_size:
            self._compact(task)
        self.on_accept(rec, frame)
        if terminal:
            self._compact(task)

    def _compact(self, task: TaskEntry) -> None:
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
            if task.finished and not self.is_watched(task.task_id):
                task.events, task.complete = [], False
        while len(self.tasks) > self.max_tasks:
            oldest = next((t for t in self.tasks.values() if t.finished), None)
            if oldest is None:
                break
            del self.tasks[oldest.task_id]
            if oldest.producer is not None:  # a long-lived kernel's task ids must not pile up
                oldest.producer.tasks.discard(oldest.task_id)

    # -- replay ------------------------------------------------------------------------------
    def replay_source(self, task: TaskEntry) -> Path | None:
        """The journal a full replay of ``task`` must read, or None when memory has it all (or
        when there is no journal to read: then :meth:`replay` serves memory, marked)."""
        if task.complete:
            return None
        return self.locate_journal(task)

    def replay(self, task: TaskEntry, after: int = 0,
               journal: tuple[list[Rec], list[tuple[int, int]]] | None = None) -> list[Rec]:
        """Every event of ``task`` with seq > ``after``: from memory when it holds them all,
        else from the journal's contents ``journal`` (read now if not given). What no source
        holds is recorded in ``task.missing`` (the snapshot and the SSE stream say so)."""
        if task.complete:
            return [r for r in task.events if r.seq > after]
        if journal is None and self.replay_source(task) is not None:
            journal = read_journal(task.journal_path, task.task_id, after)
        if journal is None:
            # The journal is gone (a deleted run folder) or unreadable: memory holds a summary.
            self.log.warning("wan_nb: replaying %s from memory with gaps: its journal is not "
                             "found", task.task_id)
            task.missing = missing_ranges((r.seq for r in task.events), task.last_seq)
            return [r for r in task.events if r.seq > after]
        recs, journal_missing = journal
        # Memory fills what the journal lacks (a full disk drops its lines while the socket
        # still delivered them; events the server added itself, a lost producer's terminal, are
        # only in memory); what neither holds, up to the task's last seq, is missing.
        by_seq = {r.seq: r for r in recs}
        for rec in task.events:
            if rec.seq > after:
                by_seq.setdefault(rec.seq, rec)
        seqs = sorted(by_seq)
        before = [(a, min(b, after)) for a, b in journal_missing if a <= after]   # a resume's past
        task.missing = before + missing_ranges(seqs, task.last_seq, start=after + 1)
        return [by_seq[seq] for seq in seqs]


def _cap_started(frame: dict) -> bytes:
    """A ``generation_started`` frame with its prompts cut to the cap (the stored form)."""
    data = frame.get("data") or {}
    if isinstance(data.get("params"), dict):
        data["params"] = capped_params(data["params"])
    return dumps(frame).encode()
