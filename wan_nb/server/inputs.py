"""A task's inputs: named in its snapshot, served by ``GET wan-nb/api/tasks/{id}/inputs/{file}``
(the route is :mod:`.input_files`; the checks are here).

What a run used (first and last frames, a source or control video, masks, reference images)
is kept in its run folder's ``inputs/`` and listed in its ``task.json`` (see
:mod:`wan_nb.runs.kept_inputs`). The route serves a file only when that task's own ``task.json``
lists it: the request's file name is looked up in that list, never joined onto a path, and the
file must be a regular ``.png`` or ``.mp4`` inside ``<run>/inputs/`` (symlinks resolved, the
folder's too: it must resolve inside the resolved run folder), owned
by this user and writable by no one else, as its folder and ``task.json`` are. Served with the
video route's headers (no sniffing, a sandbox), as ``image/png`` or ``video/mp4``, with Range.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wan_nb.runs import kept_inputs as run_inputs
from ..relay.protocol import API_ROOT
from .store import trusted

__all__ = ["snapshot_inputs", "servable_input", "input_url", "listed_inputs", "listing_inputs"]

# task.json path -> (its stat's version, its inputs): listings stat the file, not parse it. The
# version includes owner and mode: a file given away or opened to others is judged again.
_cache: dict[Path, tuple[tuple[int, ...], dict[str, dict[str, Any]]]] = {}
_CACHE_LIMIT = 20_000
_final: dict[Path, dict[str, dict[str, Any]]] = {}   # run folder of a finished task -> its snapshot inputs


def input_url(base_url: str, task_id: str, file: str) -> str:
    return f"{base_url}{API_ROOT}/tasks/{task_id}/inputs/{file}"


def listed_inputs(folder: Path | None) -> dict[str, dict[str, Any]]:
    """The inputs ``folder``'s ``task.json`` lists (see :func:`wan_nb.runs.kept_inputs.listed`); empty
    for a folder or ``task.json`` that others could have written."""
    if folder is None or not trusted(folder):
        return {}
    task_file = folder / run_inputs.TASK_FILE
    try:
        stat = task_file.stat()
    except (OSError, ValueError):
        return {}
    version = (stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_uid, stat.st_mode)
    hit = _cache.get(task_file)
    if hit is not None and hit[0] == version:
        return hit[1]
    found = run_inputs.read(folder) if trusted(task_file) else {}
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
    _cache[task_file] = (version, found)
    return found


def snapshot_inputs(folder: Path | None, base_url: str, task_id: str, *,
                    finished: bool = False) -> dict[str, dict[str, Any]]:
    """A snapshot's ``inputs``: ``{name: {"kind", "urls"}}`` (``{}`` when the run has none).

    A ``finished`` task's inputs no longer change: they are read once more and then kept, so a
    listing of thousands of remembered tasks costs no file system calls for them (the route
    still checks everything before it serves a file)."""
    if folder is not None and finished and folder in _final:
        return _final[folder]
    found = _with_urls(base_url, task_id, listed_inputs(folder))
    if folder is not None and finished:
        if len(_final) >= _CACHE_LIMIT:
            _final.clear()
        _final[folder] = found
    return found


def _with_urls(base_url: str, task_id: str, listed: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {"kind": entry["kind"], "urls": [input_url(base_url, task_id, f) for f in entry["files"]]}
            for name, entry in listed.items()}


def servable_input(folder: Path | None, file: str) -> Path | None:
    """The path of ``file`` if the run's ``task.json`` lists it and it may be served; else None."""
    if folder is None or not run_inputs.file_name_ok(file):
        return None
    if not any(file in entry["files"] for entry in listed_inputs(folder).values()):
        return None
    try:
        run_folder = folder.resolve(strict=True)
        root = (folder / run_inputs.INPUTS_DIR).resolve(strict=True)
        path = (root / file).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    # inputs/ itself may be a symlink: only where it leads inside the run folder does it count
    if not root.is_relative_to(run_folder) or not path.is_relative_to(root) or not path.is_file() or path.suffix.lower() != Path(file).suffix.lower() \
            or not trusted(root) or not trusted(path):
        return None
    return path



def listing_inputs(base_url: str, task_id: str, raw: Any) -> dict[str, dict[str, Any]]:
    """The ``inputs`` of a run listed from the history index: ``raw`` is the index line's copy of
    its ``task.json`` ``"inputs"`` (judged by :func:`wan_nb.runs.kept_inputs.listed`; the route still
    checks the ``task.json`` itself before serving anything)."""
    return _with_urls(base_url, task_id, run_inputs.listed({"inputs": raw}))
