"""Clean the Jupyter runtime directory of relay files left by processes that are gone.

A producer (kernel, script) removes its files when it exits normally, and a server its
doorbell. A process killed outright (SIGKILL, a kernel restart, a crash at exit) cannot, and its
files would pile up and be re-read by every server's scan forever. So whoever starts relaying —
a producer attaching, a server scanning — sweeps files whose process is gone. A grace period
leaves each dead producer's file in place long enough for every running server to notice the
death and mark its tasks ``lost`` (servers scan every second or so).

No torch, no zmq: the server imports this.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from wan_nb.protocol.processes import pid_alive

log = logging.getLogger(__name__)

__all__ = ["pid_alive", "sweep"]

GRACE_S = 60.0
# wan_nb-producer-<pid>.json, wan_nb-server-<pid>.json, and the ipc sockets wan_nb-<pid>-<hex>.<kind>
_NAMES = re.compile(r"^wan_nb-(?:producer-|server-)?(\d+)(?:-[0-9a-f]+)?\.(json|pub|ctl|bell|tmp)$")


def _create_time(path: Path) -> float | None:
    """The process start time a JSON relay file recorded (None if it has none)."""
    import json

    if path.suffix != ".json":
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("create_time")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:       # 10**400 written by hand: no process started then
        return None


def sweep(directory: Path, grace_s: float | None = None) -> list[Path]:
    """Remove wan_nb relay files of dead processes untouched for ``grace_s`` (default
    :data:`GRACE_S`); returns them.

    Only names wan_nb itself writes are considered, and only files directly in ``directory``.
    """
    removed: list[Path] = []
    grace_s = GRACE_S if grace_s is None else grace_s
    now = time.time()
    me = os.getpid()
    alive: dict[tuple[int, float | None], bool] = {}
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = _NAMES.match(entry.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == me:
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < grace_s:
                continue
        except OSError:
            continue
        path = Path(entry.path)
        key = (pid, _create_time(path))
        if key not in alive:
            alive[key] = pid_alive(*key)
        if alive[key]:
            continue
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    if removed:
        log.debug("wan_nb: removed %d relay file(s) of ended processes from %s", len(removed), directory)
    return removed
