"""The run folder: parameters, the append-only events journal, the outputs.

One folder a task, ``<runs_dir>/<task_id>/``::

    task.json      prompt, parameters, seed, model, LoRAs, creation time, producing pid
    events.jsonl   every event of the task, one wire frame a line, flushed as written
    video.mp4      the result
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator

from .events import Event, EventType, dumps

__all__ = ["Journal", "read_events", "write_task_file", "JOURNAL_NAME", "TASK_FILE"]

JOURNAL_NAME = "events.jsonl"
TASK_FILE = "task.json"


class Journal:
    """A bus sink that appends each task's events to its run folder's journal."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, Any] = {}

    def open(self, task_id: str, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._files[task_id] = open(folder / JOURNAL_NAME, "a", encoding="utf-8", buffering=1)

    def __call__(self, event: Event) -> None:
        with self._lock:
            handle = self._files.get(event.task_id)
            if handle is None:
                return
            line = event.to_json() if event.type != EventType.PREVIEW else _preview_stub(event)
            try:
                handle.write(line + "\n")  # line-buffered: one write, one line
            except OSError:
                # Disk full or folder gone: the event still reaches every live listener; the
                # journal keeps what it has (never a torn line: writes are whole lines).
                pass

    def close(self, task_id: str) -> None:
        with self._lock:
            handle = self._files.pop(task_id, None)
        if handle is not None:
            try:
                handle.close()
            except OSError:
                pass


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
    tmp = folder / (TASK_FILE + ".tmp")
    tmp.write_text(dumps({**info, "pid": os.getpid()}))
    tmp.replace(folder / TASK_FILE)
