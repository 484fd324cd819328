"""The run folder: parameters, the append-only events journal, the outputs.

One folder a task, ``<runs_dir>/<task_id>/``::

    task.json      prompt, parameters, seed, model, LoRAs, creation time, producing pid
    events.jsonl   every event of the task, one wire frame a line, each written whole
    video.mp4      the result
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Iterator

from wan_nb.runs.atomic import replace_text
from wan_nb.runs.layout import JOURNAL_NAME, TASK_FILE
from wan_nb.protocol.events import Event, EventType, dumps

__all__ = ["Journal", "read_events", "repair_torn_tail", "write_task_file", "JOURNAL_NAME", "TASK_FILE"]


class Journal:
    """A bus sink that appends each task's events to its run folder's journal.

    Each line goes down in one ``write`` on an ``O_APPEND`` descriptor; a write the disk cuts
    short (full, over quota, over a file-size limit) is undone by truncating back, so the
    journal never holds a torn line. The events lost that way leave a gap in its seq, which is
    how readers (the server) tell an incomplete journal. Opening an existing journal repairs a
    torn tail left by a process that died mid-write.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, int] = {}
        self.failed: dict[str, int] = {}     # task_id -> events that could not be written

    def open(self, task_id: str, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / JOURNAL_NAME
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            repair_torn_tail(path, fd)
        except OSError:
            pass
        with self._lock:
            old = self._files.pop(task_id, None)
            self._files[task_id] = fd
        if old is not None:
            os.close(old)

    def __call__(self, event: Event) -> None:
        with self._lock:
            fd = self._files.get(event.task_id)
            if fd is None:
                return
            line = event.to_json() if event.type != EventType.PREVIEW else _preview_stub(event)
            data = (line + "\n").encode()
            try:
                written = os.write(fd, data)
            except OSError:
                written = 0
            if written != len(data):
                # Disk full or folder gone: the event still reaches every live listener; the
                # journal drops the partial line and goes on with a gap in its seq.
                self.failed[event.task_id] = self.failed.get(event.task_id, 0) + 1
                if written > 0:
                    try:
                        os.ftruncate(fd, os.fstat(fd).st_size - written)
                    except OSError:
                        pass

    def close(self, task_id: str) -> None:
        with self._lock:
            fd = self._files.pop(task_id, None)
            self.failed.pop(task_id, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def repair_torn_tail(path: Path, fd: int | None = None) -> bool:
    """Cut a journal back to its last whole line; True if it had a torn one."""
    size = os.path.getsize(path)
    if size == 0:
        return False
    with open(path, "rb") as handle:
        start = max(0, size - 65536)
        while True:
            handle.seek(start)
            chunk = handle.read(size - start)
            if chunk.endswith(b"\n"):
                return False
            cut = chunk.rfind(b"\n")
            if cut >= 0 or start == 0:
                keep = start + cut + 1 if cut >= 0 else 0
                break
            start = max(0, start - 65536)
    if fd is not None:
        os.ftruncate(fd, keep)
    else:
        os.truncate(path, keep)
    return True


def _preview_stub(event: Event) -> str:
    """A preview's line without its image: the journal stays small and seq stays gap-free."""
    frame = event.to_frame()
    frame["data"]["data_b64"] = ""
    frame["data"]["omitted"] = True
    return dumps(frame)


def read_events(path: Path) -> Iterator[Event]:
    """Events of a journal; a torn last line (the writer died mid-write) is skipped."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.endswith("\n"):
                try:
                    yield Event.from_json(line)
                except (ValueError, KeyError):
                    continue


def write_task_file(folder: Path, info: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    replace_text(folder / TASK_FILE, dumps({**info, "pid": os.getpid()}))
