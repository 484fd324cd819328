"""Past runs, read back from the runs folder: ``history(runs_dir, **filters)`` newest first.

Standard library only: the Jupyter server imports this module, and it must load neither torch
nor the generator.

Every finished run appends one JSON line to ``<runs_dir>/index.jsonl`` (a :class:`Run` record).
Listing reads that file, not thousands of run folders: the one directory scan it does is a
listing of folder names, which tells which runs the index does not know yet (finished by an
older wan_nb, by a process that died, or the index was deleted). Those folders are read once,
from their ``task.json`` and the tail of their events journal, and appended to the index. A
folder that cannot be read is skipped with a warning. Runs still in progress are listed but not
indexed until they end; the last line written for a task wins.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
import time
import sys
import types
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from wan_nb.protocol import frontend  # standard library only, like this module
from wan_nb.runs import kept_inputs as run_inputs
from wan_nb.runs import checkpoint_file  # stopped / interrupted runs (standard library only)
from wan_nb.runs.atomic import replace_text  # standard library only, like this module
from wan_nb.runs.layout import INDEX_NAME, JOURNAL_NAME, TASK_FILE, VIDEO_NAME, default_runs_dir
from wan_nb.protocol.events import TERMINAL_STATUS, is_terminal  # standard library only, like this module
from wan_nb.protocol.state import PRODUCER_LOST
from wan_nb.protocol.processes import pid_alive
from wan_nb.protocol.statuses import FINISHED

__all__ = ["Run", "RunList", "history", "find_by_key", "record", "default_runs_dir", "INDEX_NAME",
           "FINISHED"]

_STATUS_EVENT = {v: k for k, v in TERMINAL_STATUS.items()}
_YOUNG_S = 10.0  # a folder this new without task.json is being created, not broken
_FILTERS = ("status", "model", "prompt", "since", "until", "limit", "offset", "key")


@dataclass(frozen=True)
class Run:
    """One past (or still running) generation, as the runs folder describes it."""

    task_id: str
    status: str
    params: dict[str, Any]
    seed: int | None
    model: str | None
    loras: dict[str, Any]
    video_path: Path | None
    created_at: str | None           # ISO-8601 UTC, "Z"
    duration_s: float | None
    prompt: str = ""
    run_dir: Path | None = None
    finished_at: str | None = None
    error: str | None = None
    key: str | None = None           # recipe_key of a finished run (for reuse)
    kind: str = "generation"         # or "storyboard" (as in the server's snapshots)
    parent_id: str | None = None     # the storyboard a scene belongs to
    inputs: dict[str, list[Path]] = field(default_factory=dict)  # name -> the files it used
    created_ts: float = field(default=0.0, repr=False, compare=False)
    checkpoint_step: int | None = None   # "stopped" / "interrupted": the step its checkpoint keeps
    resumed_from: str | None = None      # a resumed run: the task it continues (wan_nb.core.resume)

    @property
    def id(self) -> str:
        return self.task_id

    def recipe(self) -> dict[str, Any]:
        """The full recipe (``wan_nb.recipe.recipe(run)``)."""
        from wan_nb.runs.recipe import recipe

        return recipe(self)

    def _ipython_display_(self) -> None:
        frontend.show("history", RunList([self], self.run_dir.parent if self.run_dir else None))


class RunList(list):
    """A list of :class:`Run`; in a notebook it displays as a browsable gallery."""

    def __init__(self, runs: Iterable[Run] = (), runs_dir: Path | None = None,
                 filters: dict[str, Any] | None = None) -> None:
        super().__init__(runs)
        self.runs_dir = runs_dir
        self.filters = dict(filters or {})  # what history() was asked (the gallery starts from it)

    def _ipython_display_(self) -> None:
        frontend.show("history", self)

    def __repr__(self) -> str:
        return format_table(self)


def format_table(runs: Iterable[Run]) -> str:
    """One line a run: when, status, model, seed, seconds, prompt (what ``wan-nb history`` prints)."""
    lines = [f"{'created':<20} {'task':<24} {'status':<10} {'model':<16} {'seed':>10} {'secs':>7}  prompt"]
    for run in runs:
        secs = "" if run.duration_s is None else f"{run.duration_s:.1f}"
        prompt = run.prompt if len(run.prompt) <= 60 else run.prompt[:57] + "..."
        lines.append(f"{run.created_at or '':<20} {run.task_id:<24} {run.status:<10} "
                     f"{str(run.model or ''):<16} {'' if run.seed is None else run.seed:>10} {secs:>7}  {prompt}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Records: what one index line holds
# ---------------------------------------------------------------------------------------------
def _parse_ts(text: Any) -> float:
    if not isinstance(text, str) or not text:
        return 0.0
    try:
        return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _to_run(entry: dict[str, Any], runs_dir: Path) -> Run:
    folder = runs_dir / entry.get("folder", entry["task_id"])
    video = entry.get("video")
    params = entry.get("params") or {}
    return Run(task_id=entry["task_id"], status=entry.get("status", "unknown"), params=params,
               seed=entry.get("seed"), model=entry.get("model"), loras=entry.get("loras") or {},
               video_path=folder / video if video else None, created_at=entry.get("created_at"),
               duration_s=entry.get("duration_s"), prompt=entry.get("prompt") or params.get("prompt", ""),
               run_dir=folder, finished_at=entry.get("finished_at"), error=entry.get("error"),
               key=entry.get("key"), kind=entry.get("kind") or "generation", parent_id=entry.get("parent_id"),
               inputs=run_inputs.paths(folder, entry.get("inputs") or {}),
               created_ts=entry.get("created_ts") or _parse_ts(entry.get("created_at")),
               checkpoint_step=entry.get("checkpoint_step"), resumed_from=entry.get("resumed_from"))


def entry_from_task(info: dict[str, Any], folder: str, *, status: str, video: str | None = None,
                    duration_s: float | None = None, finished_at: str | None = None,
                    error: str | None = None, key: str | None = None) -> dict[str, Any]:
    """An index line from a run's ``task.json`` contents and how the run ended."""
    params = info.get("params") or {}
    created_at = info.get("created_at")
    return {"task_id": info.get("task_id") or folder, "folder": folder, "status": status,
            "prompt": info.get("prompt") or params.get("prompt", ""), "params": params,
            "seed": info.get("seed", params.get("seed")), "model": info.get("model"),
            "loras": info.get("loras") or {}, "video": video, "created_at": created_at,
            "created_ts": info.get("created_ts") or _parse_ts(created_at), "finished_at": finished_at,
            "duration_s": duration_s, "error": error, "key": key, "kind": info.get("kind") or "generation",
            "parent_id": info.get("parent_id"), "inputs": info.get("inputs") or {},
            "resumed_from": info.get("resumed_from")}


def record(runs_dir: str | os.PathLike, entry: dict[str, Any]) -> None:
    """Append one run's line to the index (one write: concurrent writers never interleave)."""
    line = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode()
    path = Path(runs_dir) / INDEX_NAME
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# Reading a run folder the index does not know
# ---------------------------------------------------------------------------------------------
def _journal_end(path: Path) -> dict[str, Any] | None:
    """The terminal event of a journal (type and data), read from its tail; None if it has none."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 65536))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        if '"generation_' not in line and '"storyboard_progress"' not in line:
            continue
        try:
            frame = json.loads(line)
        except ValueError:
            continue
        kind, data = frame.get("type"), frame.get("data") or {}
        if kind in TERMINAL_STATUS:
            return frame
        if is_terminal(kind, data):  # a storyboard's last storyboard_progress
            final = (data.get("data") or {}).get("final_video_path")
            status = "completed" if data.get("step") == "complete" else data["status"]
            return {"type": _STATUS_EVENT[status],
                    "data": {"output_path": final, "timestamp": data.get("timestamp"),
                             "error": data.get("message") if status == "failed" else None}}
    return None


def read_folder(runs_dir: Path, name: str) -> tuple[dict[str, Any], bool]:
    """(index line, finished?) for one run folder; raises ValueError/OSError if it is unreadable."""
    folder = runs_dir / name
    info = json.loads((folder / TASK_FILE).read_text(encoding="utf-8"))
    if not isinstance(info, dict) or not isinstance(info.get("params", {}), dict):
        raise ValueError("task.json is not a run description")
    status = info.get("status")
    if status in FINISHED:  # written by the recorder when the run ended
        return entry_from_task(info, name, status=status, video=info.get("video"),
                               duration_s=info.get("duration_s"), finished_at=info.get("finished_at"),
                               error=info.get("error"), key=info.get("recipe_key")), True
    end = _journal_end(folder / JOURNAL_NAME)
    if end is not None:
        data = end.get("data") or {}
        status = TERMINAL_STATUS[end["type"]]
        if data.get("error_type") == PRODUCER_LOST:  # a server saw its process die: as the server lists it
            status = "lost"
        video = None
        if status == "completed":
            output = data.get("output_path")
            video = str(Path(output).relative_to(folder)) if output and Path(output).is_relative_to(folder) \
                else Path(output).name if output else VIDEO_NAME
        return entry_from_task(info, name, status=status, video=video, duration_s=data.get("duration_s"),
                               finished_at=data.get("timestamp"), error=data.get("error")), True
    if pid_alive(info.get("pid")):
        return entry_from_task(info, name, status="queued" if status == "queued" else "running"), False
    return entry_from_task(info, name, status="lost", error="the producing process ended before the run did"), True


# ---------------------------------------------------------------------------------------------
# The index, cached per process and read incrementally
# ---------------------------------------------------------------------------------------------
class _Index:
    def __init__(self) -> None:
        self.inode: tuple[int, int] | None = None
        self.offset = 0
        self.entries: dict[str, dict[str, Any]] = {}  # folder -> last line for it
        self.skipped: dict[str, float] = {}          # folder -> mtime when it was found unreadable


_cache: dict[str, _Index] = {}
_cache_lock = threading.Lock()
_warned: set[str] = set()


def _parse_lines(blob: bytes, into: dict[str, dict[str, Any]]) -> None:
    text = blob.decode("utf-8", errors="replace")
    lines = [line for line in text.split("\n") if line]
    try:  # one parse for the whole file: several times faster than a parse a line
        entries = json.loads("[" + ",".join(lines) + "]")
    except ValueError:
        entries = []
        for line in lines:  # a torn or damaged line: keep every other one
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("task_id"), str):
            into[entry.get("folder") or entry["task_id"]] = entry


def _load_index(runs_dir: Path) -> _Index:
    path = runs_dir / INDEX_NAME
    key = str(runs_dir.resolve())
    with _cache_lock:
        index = _cache.setdefault(key, _Index())
    try:
        stat = path.stat()
    except FileNotFoundError:
        index.inode, index.offset, index.entries = None, 0, {}
        return index
    inode = (stat.st_dev, stat.st_ino)
    if inode != index.inode or stat.st_size < index.offset:
        index.inode, index.offset, index.entries = inode, 0, {}
    if stat.st_size > index.offset:
        with open(path, "rb") as handle:
            handle.seek(index.offset)
            blob = handle.read(stat.st_size - index.offset)
        end = blob.rfind(b"\n") + 1  # a line still being written is read next time
        _parse_lines(blob[:end], index.entries)
        index.offset += end
    return index


def _warn(folder: Path, reason: str) -> None:
    if str(folder) not in _warned:
        _warned.add(str(folder))
        warnings.warn(f"wan_nb history: skipping run folder {folder}: {reason}", RuntimeWarning, stacklevel=4)


def _scan(runs_dir: Path, index: _Index) -> list[dict[str, Any]]:
    """Bring the index up to date with the folders; returns the entries of runs in progress."""
    try:
        names = {e.name for e in os.scandir(runs_dir) if e.is_dir(follow_symlinks=False)}
    except FileNotFoundError:
        return []
    for gone in [n for n in index.entries if n not in names]:
        del index.entries[gone]  # deleted by the user: not a run any more
    running, new = [], []
    for name in names.difference(index.entries):
        folder = runs_dir / name
        try:
            mtime = folder.stat().st_mtime
        except OSError:
            continue
        if index.skipped.get(name) == mtime:
            continue
        try:
            entry, finished = read_folder(runs_dir, name)
        except FileNotFoundError:
            # No task.json yet: a run being created this instant, or not a run folder at all.
            if time.time() - mtime > _YOUNG_S:
                index.skipped[name] = mtime
                _warn(folder, "no task.json")
            continue
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            index.skipped[name] = mtime
            _warn(folder, f"unreadable task.json ({type(exc).__name__}: {exc})")
            continue
        index.skipped.pop(name, None)
        if finished:
            new.append(entry)
            index.entries[name] = entry
        else:
            running.append(entry)
    if new:
        _write_new(runs_dir, index, new)
    return running


def _write_new(runs_dir: Path, index: _Index, new: list[dict[str, Any]]) -> None:
    path = runs_dir / INDEX_NAME
    try:
        if index.inode is None:  # no index yet: write it whole, atomically
            replace_text(path, "".join(json.dumps(e, separators=(",", ":"), default=str) + "\n"
                                       for e in index.entries.values()))
        else:
            for entry in new:
                record(runs_dir, entry)
        _load_index(runs_dir)  # our own lines: move the read offset past them
    except OSError as exc:  # a read-only runs folder still lists; it just is not indexed
        warnings.warn(f"wan_nb history: cannot update {path}: {exc}", RuntimeWarning, stacklevel=4)


# ---------------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------------
def _as_ts(value: Any, name: str, end_of_day: bool = False) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{name}={value!r}: give a datetime, a date, an ISO-8601 string or a Unix time")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, _dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)).timestamp()
    if isinstance(value, _dt.date):
        start = _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc).timestamp()
        return start + (86400 - 1e-6 if end_of_day else 0)
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return _as_ts(_dt.date.fromisoformat(text), name, end_of_day)
            return _as_ts(_dt.datetime.fromisoformat(text.replace("Z", "+00:00")), name)
        except ValueError:
            pass
    raise ValueError(f"{name}={value!r}: give a datetime, a date, an ISO-8601 string such as "
                     "'2026-01-31' or '2026-01-31T12:00:00Z', or a Unix time")


def _matcher(status=None, model=None, prompt=None, since=None, until=None, key=None):
    statuses = None
    if status is not None:
        statuses = {status} if isinstance(status, str) else set(status)
    text = prompt.lower() if isinstance(prompt, str) and prompt else None
    lo = _as_ts(since, "since") if since is not None else None
    hi = _as_ts(until, "until", end_of_day=True) if until is not None else None

    def match(entry: dict[str, Any]) -> bool:
        if statuses is not None and entry.get("status") not in statuses:
            return False
        if model is not None and entry.get("model") != model:
            return False
        if key is not None and entry.get("key") != key:
            return False
        if text is not None and text not in (entry.get("prompt") or "").lower():
            return False
        if lo is not None or hi is not None:
            ts = entry.get("created_ts") or _parse_ts(entry.get("created_at"))
            if (lo is not None and ts < lo) or (hi is not None and ts > hi):
                return False
        return True

    return match


def history(runs_dir: str | os.PathLike | None = None, **filters: Any) -> RunList:
    """Past runs of ``runs_dir`` (default: ``WAN_NB_RUNS_DIR`` or ``./wan_nb_runs``), newest first.

    Filters: ``status`` (a status or a list of them), ``model``, ``prompt`` (text the prompt
    contains, any case), ``since`` / ``until`` (datetime, date, ISO-8601 string or Unix time;
    a bare date as ``until`` includes that whole day), ``key`` (a recipe key), and
    ``limit`` / ``offset`` for paging.
    """
    unknown = sorted(set(filters) - set(_FILTERS))
    if unknown:
        raise TypeError(f"unknown history filter(s) {', '.join(unknown)}; valid: {', '.join(_FILTERS)}")
    limit, offset = filters.pop("limit", None), filters.pop("offset", 0) or 0
    for name, value in (("limit", limit), ("offset", offset)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ValueError(f"{name}={value!r}: give a whole number >= 0")
    asked = dict(filters)
    match = _matcher(**filters)
    folder = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    with _scan_lock(folder):
        index = _load_index(folder)
        running = _scan(folder, index)
        entries = [e for e in (checkpoint_file.overlay(e, folder) for e in [*index.entries.values(), *running])
                   if match(e)]  # a run that kept a checkpoint reads "stopped" / "interrupted"
    entries.sort(key=lambda e: (e.get("created_ts") or _parse_ts(e.get("created_at")), e["task_id"]), reverse=True)
    end = None if limit is None else offset + limit
    return RunList((_to_run(e, folder) for e in entries[offset:end]), folder, asked)


def find_by_key(runs_dir: str | os.PathLike | None, key: str) -> Run | None:
    """The newest completed run made from a recipe with this ``recipe_key`` whose video still exists."""
    for run in history(runs_dir, status="completed", key=key):
        if run.video_path is not None and run.video_path.is_file():
            return run
    return None


_locks: dict[str, threading.Lock] = {}


def _scan_lock(folder: Path) -> threading.Lock:
    with _cache_lock:
        return _locks.setdefault(str(folder), threading.Lock())


def run_to_dict(run: Run) -> dict[str, Any]:
    """A JSON-ready dict of a run (paths as strings): what the CLI's ``--json`` and the server send."""
    out = asdict(run)
    out.pop("created_ts", None)
    for name in ("video_path", "run_dir"):
        out[name] = None if out[name] is None else str(out[name])
    out["inputs"] = {name: [str(p) for p in files] for name, files in run.inputs.items()}
    return out


class _CallableModule(types.ModuleType):
    """``wan_nb.history(...)`` calls :func:`history`; ``wan_nb.history.find_by_key`` still works."""

    def __call__(self, runs_dir: str | os.PathLike | None = None, **filters: Any) -> RunList:
        return history(runs_dir, **filters)


sys.modules[__name__].__class__ = _CallableModule
