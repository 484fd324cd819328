"""Finished runs found on disk: the task list's older entries, after their processes are gone.

Each run folder ``<runs_dir>/<task_id>/`` holds ``task.json`` (prompt, parameters, model,
creation time, pid) and ``events.jsonl``, whose last lines say how it ended. A folder that is
half-written, corrupt, not this user's or writable by others is skipped. Summaries are cached
per folder and refreshed when its journal changes, so listing stays cheap on every request.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

from wan_nb.protocol.events import TERMINAL_STATUS as _ENDINGS, is_terminal
from wan_nb.runs import checkpoint_file
from wan_nb.runs.journal import JOURNAL_NAME, TASK_FILE
from wan_nb.protocol.processes import pid_alive as process_alive  # noqa: F401 (hub reads it here)
from wan_nb.protocol.state import PRODUCER_LOST, capped_params, cap_text, resumable_message
from wan_nb.protocol.statuses import FINISHED
from .inputs import listing_inputs
from .store import trusted, valid_task_id
from .wire import video_urls

log = logging.getLogger(__name__)

_TAIL_BYTES = 16 * 1024
_cache: dict[Path, tuple[tuple[int, int], dict[str, Any] | None]] = {}


def servable_video(folder: Path, candidate: Any) -> Path | None:
    """``candidate`` (absolute, or relative to ``folder``) if it is a regular ``.mp4`` file
    inside the run folder, both owned by this user and writable by no one else; else None."""
    if not isinstance(candidate, str) or not trusted(folder):
        return None
    try:
        root = folder.resolve(strict=True)
        path = Path(candidate)
        path = (path if path.is_absolute() else root / path).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):   # ValueError: a NUL in the path
        return None
    if path.suffix.lower() != ".mp4" or not path.is_file() or not path.is_relative_to(root) \
            or not trusted(path):
        return None
    return path


def pid_of(run_folder: Path) -> int | None:
    try:
        pid = json.loads((run_folder / TASK_FILE).read_text())["pid"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None


def _last_event(journal: Path) -> dict[str, Any] | None:
    """The journal's terminal frame if one is among its last lines."""
    try:
        with open(journal, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = handle.seek(max(0, size - _TAIL_BYTES))
            lines = handle.read().split(b"\n")
    except OSError:
        return None
    for line in reversed(lines[1:] if start else lines):   # mid-file, the first line is partial
        try:
            frame = json.loads(line)
            if is_terminal(frame["type"], frame.get("data") or {}):
                return frame
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return None


def _read_run(folder: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((folder / TASK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not valid_task_id(info.get("task_id", folder.name)):
        return None
    params = info.get("params") if isinstance(info.get("params"), dict) else {}
    run = {"task_id": folder.name, "prompt": cap_text(info.get("prompt") or params.get("prompt")),
           "params": capped_params(params), "seed": info.get("seed"), "model_type": info.get("model"),
           "created_at": info.get("created_at"), "status": None, "output_path": None,
           "duration_s": None, "updated_at": None, "error_type": None, "error": None,
           "scene_videos": [], "kind": "generation", "pid": pid_of(folder), "inputs": info.get("inputs")}
    end = _last_event(folder / JOURNAL_NAME)
    if end is None:
        return run
    data = end.get("data") or {}
    run["updated_at"] = data.get("timestamp")
    if end["type"] == "storyboard_progress":
        inner = data.get("data") or {}
        run.update(kind="storyboard", status="completed" if data.get("step") == "complete" else data.get("status"),
                   output_path=inner.get("final_video_path"), scene_videos=list(inner.get("scene_videos") or []))
    else:
        run.update(status=_ENDINGS[end["type"]], output_path=data.get("output_path"),
                   duration_s=data.get("duration_s"), error_type=data.get("error_type"),
                   error=data.get("error"))
        if data.get("error_type") == PRODUCER_LOST:
            run["status"] = "lost"
    return run


def _iso(value: Any) -> str | None:
    """A creation time as the snapshots write it (ISO-8601 UTC), from a string, datetime or epoch."""
    import datetime as dt

    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value, dt.timezone.utc)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _from_history(directory: Path) -> list[dict[str, Any]] | None:
    """The runs of ``directory`` from ``wan_nb.history``'s index where that module exists
    (None otherwise, or if it fails: then the folders are read here)."""
    try:
        from wan_nb.runs import history
    except ImportError:
        return None
    try:
        records = history.history(runs_dir=directory)
    except Exception:
        log.debug("wan_nb: history of %s unreadable; reading its folders", directory, exc_info=True)
        return None
    found = []
    for record in records:
        task_id = getattr(record, "task_id", None)
        status = getattr(record, "status", None)
        if not valid_task_id(task_id) or status not in FINISHED or not trusted(directory / task_id):
            continue
        params = getattr(record, "params", None) or {}
        video = getattr(record, "video_path", None)
        found.append({"task_id": task_id, "prompt": cap_text(params.get("prompt")),
                      "params": capped_params(params), "seed": getattr(record, "seed", None),
                      "model_type": getattr(record, "model", None),
                      "created_at": _iso(getattr(record, "created_at", None)), "status": status,
                      "output_path": str(video) if video else None,
                      "duration_s": getattr(record, "duration_s", None),
                      "updated_at": getattr(record, "finished_at", None), "error_type": None,
                      "error": getattr(record, "error", None), "scene_videos": [],
                      "kind": "storyboard" if getattr(record, "kind", "") == "storyboard" else "generation",
                      "pid": None})
    return found


def run_from_index(directory: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """A run of ``directory`` from its line in the history index (``wan_nb.history``'s format),
    in the shape :func:`summary` takes."""
    params = entry.get("params") if isinstance(entry.get("params"), dict) else {}
    video = entry.get("video")
    folder = os.path.join(directory, entry.get("folder") or entry["task_id"])   # str: thousands a listing
    # A checkpoint kept: "stopped" / "interrupted" at k/N, as a live snapshot of the same run reads.
    kept = checkpoint_file.overlay(entry, Path(directory))
    return {"task_id": entry["task_id"], "prompt": cap_text(entry.get("prompt") or params.get("prompt")),
            "params": capped_params(params), "seed": entry.get("seed"), "model_type": entry.get("model"),
            "created_at": _iso(entry.get("created_at")), "status": kept.get("status"),
            "output_path": os.path.join(folder, video) if isinstance(video, str) and video else None,
            "duration_s": entry.get("duration_s"), "updated_at": entry.get("finished_at"),
            "error_type": None, "error": entry.get("error"), "scene_videos": [],
            "kind": "storyboard" if entry.get("kind") == "storyboard" else "generation", "pid": None,
            "inputs": entry.get("inputs"), "resumed_from": entry.get("resumed_from"),
            "checkpoint_step": kept.get("checkpoint_step") if kept is not entry else None,
            "checkpoint_total": kept.get("total_steps")}


def finished_runs(directories: Iterable[Path]) -> list[dict[str, Any]]:
    """Every ended run in ``directories`` (a run without an ending whose process is gone
    counts as lost; one still running is left to the live list)."""
    found = []
    for directory in directories:
        indexed = _from_history(directory)
        if indexed is not None:
            found += indexed
            continue
        try:
            folders = [Path(e.path) for e in os.scandir(directory) if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        for folder in folders:
            run = _cached(folder)
            if run is None:
                continue
            if run["status"] is None:
                if process_alive(run["pid"]):
                    continue
                run = {**run, "status": "lost"}
            found.append(run)
    return found


def _cached(folder: Path) -> dict[str, Any] | None:
    journal = folder / JOURNAL_NAME
    try:
        stat = journal.stat()
    except OSError:
        return None
    version = (stat.st_mtime_ns, stat.st_size)
    hit = _cache.get(folder)
    if hit is not None and hit[0] == version:
        return hit[1]
    run = _read_run(folder) if trusted(folder) and trusted(journal) else None
    if len(_cache) > 50_000:
        _cache.clear()
    _cache[folder] = (version, run)
    return run


def summary(run: dict[str, Any], base_url: str) -> dict[str, Any]:
    """A run found on disk in the snapshot's shape (``on_disk`` says where it came from)."""
    url, scene_urls = video_urls(base_url, run["task_id"], len(run["scene_videos"]))
    params = run["params"]
    done = run["status"] == "completed"
    step = run.get("checkpoint_step")   # set only where the run folder keeps a checkpoint
    total = run.get("checkpoint_total") or params.get("steps")
    message = resumable_message(run["status"], step, total) if step else ""
    return {"task_id": run["task_id"], "kind": run["kind"], "status": run["status"],
            "stage": run["status"], "progress": 100 if done else 0, "message": message,
            "estimated_time_remaining": 0 if done else None, "current_step": step,
            "total_steps": total, "model_type": run["model_type"],
            "prompt": run["prompt"], "seed": run["seed"], "params": params,
            "storyboard_id": params.get("storyboard_id"), "created_at": run["created_at"],
            "updated_at": run["updated_at"], "output_path": run["output_path"],
            "video_url": url if run["output_path"] else None, "scene_videos": run["scene_videos"],
            "scene_video_urls": scene_urls, "error_type": run["error_type"], "error": run["error"],
            "duration_s": run["duration_s"], "last_seq": None, "producer_pid": None,
            "incomplete": False, "missing_seqs": [], "on_disk": True, "queue_position": None,
            "inputs": listing_inputs(base_url, run["task_id"], run.get("inputs")),
            "resumable": bool(step), "checkpoint_step": step, "resumed_from": run.get("resumed_from")}
