"""Is this process alive? The one answer, for everyone who asks.

A run folder, a queue entry and a relay file each record the pid (and start time) of the process
that wrote them; a reader judges whether that process still runs to tell a running task from a
lost one, an orphaned queue entry from a waiting one, a stale relay file from a live one. They
all ask here, so they agree.

* A pid may be reused by another program after its process died: a recorded start time
  (``create_time``, seconds since the epoch, as ``psutil.Process.create_time()`` gives it) must
  match too.
* A zombie (exited, not yet reaped by its parent) is dead: it will never write again.

Standard library only on Linux (``/proc``: microseconds, nothing to import, which matters to the
server's scans and to the history listing); psutil, a dependency anyway, elsewhere.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["pid_alive", "process_start_time"]

_PROC = "/proc"
# Start times closer than this are the same process (psutil's and /proc's figures round
# differently; a pid is not reused within a second).
_SAME_START_S = 1.0
_boot_time: float | None = None


def _valid(pid: Any) -> bool:
    # A pid is a C int: a larger number (a damaged or planted file) is no process, and os.kill
    # would raise OverflowError on it.
    return isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2**31


def _proc_stat(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first); None if gone."""
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _linux_boot_time() -> float:
    global _boot_time
    if _boot_time is None:
        with open(f"{_PROC}/stat", "rb") as stat:
            for line in stat:
                if line.startswith(b"btime "):
                    _boot_time = float(line.split()[1])
                    break
            else:
                raise OSError("no btime in /proc/stat")
    return _boot_time


_HAS_PROC = os.path.isfile(f"{_PROC}/self/stat")


def _started(fields: list[bytes]) -> float | None:
    try:
        # field 22 of stat, "starttime": clock ticks after boot
        return _linux_boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), None if it does not run or cannot
    be read. What a writer records beside its pid, so a reader can tell a reused pid apart."""
    if not _valid(pid):
        return None
    if _HAS_PROC:
        fields = _proc_stat(pid)
        return _started(fields) if fields else None
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # NoSuchProcess, AccessDenied, or no psutil on this platform
        return None


def pid_alive(pid: Any, create_time: float | None = None) -> bool:
    """True if process ``pid`` runs (not a zombie) and, when ``create_time`` is given, is the one
    that started then. Anything but a positive int is no process: False."""
    if not _valid(pid):
        return False
    if create_time is not None:
        try:   # a file's start time may be anything: 10**400 is no float, "x" no number
            create_time = float(create_time)
        except (TypeError, ValueError, OverflowError):
            return False
    if _HAS_PROC:
        fields = _proc_stat(pid)
        if fields is None:
            return _exists_unreadable(pid)
        if fields[0] in (b"Z", b"X"):   # zombie, dead
            return False
        started = _started(fields) if create_time is not None else None
        return started is None or abs(started - create_time) < _SAME_START_S
    return _psutil_alive(pid, create_time)


def _exists_unreadable(pid: int) -> bool:
    """No ``/proc/<pid>`` to read: gone, or hidden from us (``hidepid``; another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True    # someone else's process: it runs, its start time is not ours to read
    return True


def _psutil_alive(pid: int, create_time: float | None) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(process.create_time() - create_time) < _SAME_START_S
    except psutil.AccessDenied:
        return True
    except (psutil.NoSuchProcess, ProcessLookupError, ValueError):
        return False
