"""``GET wan-nb/api/tasks``'s finished runs on disk, kept sorted and brought up to date incrementally.

Listing used to re-read and re-sort every finished run on every request (about 0.8 s over 10,000
runs, on the IOLoop). Now each runs folder has a cursor: the history index
(``<runs_dir>/index.jsonl``, one line per finished run, appended) is read from where the last
read stopped, and each new run is inserted into sorted lists (all runs, and one per status).
The folder itself is looked at only when its mtime says a run folder was added or removed, or
while runs in it have not ended yet (at most every :data:`RESCAN_S`): then
``wan_nb.history`` indexes what it does not know yet (runs of an older wan_nb, runs whose
process died) and deleted folders drop out.

The disk work runs on a worker thread, one refresh at a time (concurrent requests share it),
and never on the IOLoop: the thread only computes what changed; the sorted lists are changed on
the loop, where requests read them. A page is then a merge of the live tasks (few) with the
sorted lists, walked only as far as ``offset + limit``.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import os
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError

from wan_nb.runs import history
from wan_nb.protocol.events import dumps
from . import runs
from .store import trusted, valid_task_id

log = logging.getLogger(__name__)

RESCAN_S = 2.0       # how often a folder with runs still in progress is looked at again
_IN_PROGRESS = ("queued", "running")
_Key = tuple[str, str]   # (created_at, task_id): ascending; pages read it from the end


@dataclass
class _Changes:
    """What one refresh of one folder found (computed on the worker thread)."""

    directory: Path
    reset: bool = False                                           # forget every run of this folder first
    upserts: dict[str, tuple[dict[str, Any], bytes]] = field(default_factory=dict)  # task id -> summary, its JSON
    removed: set[str] = field(default_factory=set)


class _FolderCursor:
    """Where the reading of one runs folder stands. Touched only by the (single) refresh thread."""

    def __init__(self, directory: Path, base_url: str) -> None:
        self.directory = directory
        self.base_url = base_url
        self.index_file: tuple[int, int] | None = None   # (st_dev, st_ino) of the index read
        self.offset = 0                                  # bytes of it read so far
        self.folder_mtime: int | None = None
        self.rescan_at: float | None = None              # runs in progress: look again then
        self.names: dict[str, str] = {}                  # run folder name -> task id listed

    def read(self) -> _Changes:
        changes = _Changes(self.directory)
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except OSError:   # the folder is gone (or unreadable): none of its runs are listed
            self.index_file, self.offset, self.folder_mtime, self.rescan_at, self.names = None, 0, None, None, {}
            changes.reset = True
            return changes
        looked = mtime != self.folder_mtime or (self.rescan_at is not None and time.monotonic() >= self.rescan_at)
        if looked:
            self._index_unknown_folders()
            self.folder_mtime = mtime
        self._read_index(changes)
        if looked:
            self._drop_deleted(changes)
        return changes

    def _index_unknown_folders(self) -> None:
        """``wan_nb.history`` appends to the index every ended run it finds unindexed; what it
        returns here are the runs still going (not indexed until they end)."""
        try:
            going = history.history(self.directory, status=_IN_PROGRESS)
        except Exception:   # an unreadable folder still lists what its index says
            log.debug("wan_nb: cannot look through %s", self.directory, exc_info=True)
            going = []
        self.rescan_at = time.monotonic() + RESCAN_S if going else None

    def _read_index(self, changes: _Changes) -> None:
        path = self.directory / history.INDEX_NAME
        try:
            info = os.stat(path)
        except OSError:
            if self.index_file is not None:
                self.index_file, self.offset, self.names = None, 0, {}
                changes.reset = True
            return
        identity = (info.st_dev, info.st_ino)
        if identity != self.index_file or info.st_size < self.offset:   # rewritten: read it afresh
            self.index_file, self.offset, self.names = identity, 0, {}
            changes.reset = True
        if info.st_size <= self.offset:
            return
        with open(path, "rb") as handle:
            handle.seek(self.offset)
            blob = handle.read(info.st_size - self.offset)
        end = blob.rfind(b"\n") + 1    # a line still being written is read next time
        self.offset += end
        for line in blob[:end].split(b"\n"):
            self._take(line, changes)

    def _take(self, line: bytes, changes: _Changes) -> None:
        # One small parse a line (not one for the whole file): the thread lets go of the GIL
        # between them, so the IOLoop keeps delivering events during a first, large read.
        if not line.strip():
            return
        try:
            entry = json.loads(line)
            task_id = entry["task_id"]
        except (ValueError, KeyError, TypeError):
            return
        name = entry.get("folder") or task_id
        if not isinstance(name, str) or not valid_task_id(name) or not valid_task_id(task_id):
            return
        run = runs.run_from_index(self.directory, entry) \
            if entry.get("status") in history.FINISHED and trusted(os.path.join(self.directory, name)) else None
        previous = self.names.pop(name, None)
        if previous is not None and previous != task_id:
            changes.removed.add(previous)
            changes.upserts.pop(previous, None)
        if run is None:        # the last line for a folder wins, even one that is not listable
            if previous is not None:
                changes.removed.add(previous)
            changes.upserts.pop(task_id, None)
            return
        self.names[name] = task_id
        changes.removed.discard(task_id)
        summary = runs.summary(run, self.base_url)
        # Encoded once, here: a listing of every run joins these bytes instead of encoding
        # thousands of summaries on the IOLoop for each request.
        changes.upserts[task_id] = (summary, _encode(summary))

    def _drop_deleted(self, changes: _Changes) -> None:
        try:
            present = {e.name for e in os.scandir(self.directory) if e.is_dir(follow_symlinks=False)}
        except OSError:
            return
        for name in [n for n in self.names if n not in present]:
            task_id = self.names.pop(name)
            changes.removed.add(task_id)
            changes.upserts.pop(task_id, None)


class RunListing:
    """Finished runs of every runs folder, sorted newest first, for paging with the live tasks."""

    def __init__(self, base_url: str, executor: Executor) -> None:
        self.base_url = base_url
        self.executor = executor
        self._cursors: dict[Path, _FolderCursor] = {}
        self._runs: dict[str, dict[str, Any]] = {}     # task id -> summary (on the loop only)
        self._json: dict[str, bytes] = {}              # task id -> its summary's JSON
        self._home: dict[str, Path] = {}               # task id -> the runs folder listing it
        self._keys: dict[str, _Key] = {}
        self._sorted: dict[str | None, list[_Key]] = {None: []}   # None: every status
        self._refresh: asyncio.Future | None = None

    def __len__(self) -> int:
        return len(self._runs)

    async def refresh(self, directories: Iterable[Path]) -> None:
        """Bring the lists up to date with ``directories`` (one refresh at a time; a request that
        comes while one runs waits for that one and then starts its own, which is then quick)."""
        while self._refresh is not None:
            await asyncio.shield(self._refresh)
        wanted = list(dict.fromkeys(Path(d) for d in directories))
        for gone in [d for d in self._cursors if d not in wanted]:
            del self._cursors[gone]
            self._apply(_Changes(gone, reset=True))
        cursors = [self._cursors.setdefault(d, _FolderCursor(d, self.base_url)) for d in wanted]
        self._refresh = IOLoop.current().run_in_executor(self.executor, _read_all, cursors)
        try:
            for changes in await self._refresh:
                self._apply(changes)
        finally:
            self._refresh = None

    def _apply(self, changes: _Changes) -> None:
        if changes.reset:
            for task_id in [t for t, home in self._home.items() if home == changes.directory]:
                self._remove(task_id)
        for task_id in changes.removed:
            if self._home.get(task_id) == changes.directory:
                self._remove(task_id)
        for task_id, (summary, encoded) in changes.upserts.items():
            self._remove(task_id)
            key = (summary.get("created_at") or "", task_id)
            self._runs[task_id], self._home[task_id], self._keys[task_id] = summary, changes.directory, key
            self._json[task_id] = encoded
            for status in (None, summary["status"]):
                bisect.insort(self._sorted.setdefault(status, []), key)

    def _remove(self, task_id: str) -> None:
        summary = self._runs.pop(task_id, None)
        if summary is None:
            return
        key = self._keys.pop(task_id)
        del self._home[task_id], self._json[task_id]
        for status in (None, summary["status"]):
            keys = self._sorted[status]
            at = bisect.bisect_left(keys, key)
            if at < len(keys) and keys[at] == key:
                del keys[at]

    def page(self, live: list[dict[str, Any]], *, limit: int | None, offset: int,
             status: str | None) -> dict[str, Any]:
        """Live snapshots (newest first) and finished runs on disk, merged newest first: the
        page ``[offset, offset + limit)`` and the total. A run the live list has is not repeated.

        The runs on disk are read newest first by "depth" ``d`` (``on_disk[-1 - d]``); a live
        task goes before the runs on disk that are not newer than it. The walk starts at the
        deepest ``d`` whose merged position is still at most ``offset`` (a binary search), so a
        deep page costs about as little as the first."""
        shown = [s for s in live if status is None or s.get("status") == status]
        on_disk = self._sorted.get(status, [])
        n = len(on_disk)
        live_ids = {s["task_id"] for s in live}
        # depths of the runs on disk that the live list repeats (skipped by the walk)
        repeated = sorted(n - 1 - bisect.bisect_left(on_disk, self._keys[t]) for t in live_ids
                          if t in self._runs and (status is None or self._runs[t]["status"] == status))
        created = [s.get("created_at") or "" for s in shown]
        # how many runs on disk are newer than each live task (non-decreasing: live is newest first)
        newer = [n - bisect.bisect_right(on_disk, (c, "\U0010ffff")) for c in created]
        total = len(shown) + n - len(repeated)
        end = total if limit is None else min(total, offset + limit)

        def position(d: int) -> int:
            # merged position of the walk's state at depth d: the newer runs on disk and the live
            # tasks that go before them are behind it (those just before run d are not yet)
            return d - bisect.bisect_left(repeated, d) + bisect.bisect_left(newer, d)

        lo, hi = 0, n
        while lo < hi:                 # the deepest d with position(d) <= offset
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if position(mid) <= offset else (lo, mid - 1)
        d, j = lo, bisect.bisect_left(newer, lo)
        at, skip = position(d), set(repeated)
        page: list[dict[str, Any]] = []
        while at < end and (d < n or j < len(shown)):
            if j >= len(shown) or (d < n and on_disk[n - 1 - d][0] > created[j]):
                d += 1
                if d - 1 in skip:
                    continue
                item = self._runs[on_disk[n - d][1]]
            else:
                item = shown[j]
                j += 1
            if at >= offset:
                page.append(item)
            at += 1
        return {"tasks": page, "total": total}

    def body(self, tasks: list[dict[str, Any]]) -> bytes:
        """``{"tasks": [...]}`` of a page as JSON, runs on disk from their stored encoding."""
        parts = [self._json[s["task_id"]] if self._runs.get(s["task_id"]) is s else dumps(s).encode()
                 for s in tasks]
        return b'{"tasks":[' + b",".join(parts) + b"]}"


CHUNK_BYTES = 256 * 1024


async def finish_in_chunks(handler: Any, body: bytes) -> None:
    """Answer ``body`` (JSON) a slice at a time, waiting for each to leave: a listing of every
    run is megabytes, and one write of it would hold the IOLoop (and the events it delivers)
    while tornado hashes and sends it all. A small body goes out in one piece, as usual."""
    if len(body) <= CHUNK_BYTES:
        handler.finish(body)
        return
    handler.set_header("Content-Type", "application/json")
    try:
        for start in range(0, len(body), CHUNK_BYTES):
            handler.write(body[start:start + CHUNK_BYTES])
            await handler.flush()
    except StreamClosedError:   # the client went away mid-answer: nothing more to send
        return
    handler.finish()


def _encode(summary: dict[str, Any]) -> bytes:
    # UTF-8 as it is (a Chinese negative prompt as \u escapes costs twice the time and size);
    # what a summary holds came from JSON, so it needs no fallback encoder.
    return json.dumps(summary, ensure_ascii=False, separators=(",", ":")).encode()


def _read_all(cursors: list[_FolderCursor]) -> list[_Changes]:
    return [cursor.read() for cursor in cursors]


__all__ = ["RunListing", "RESCAN_S", "finish_in_chunks"]
