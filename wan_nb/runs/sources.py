"""Where runs are listed from: the runs folder of this place, plus the folders producers
announced to Jupyter servers (remembered in ``<jupyter data dir>/wan_nb/runs_dirs.json``).

One answer for every reader: the Lab sidebar (through the server) and ``wan-nb history`` list
the same folders, and both can say which. Temporary folders (test runs, scratch under the
system's temp dir) are never remembered, and a folder that no longer exists is forgotten.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

__all__ = ["is_temporary", "worth_remembering", "remembered_file", "remembered_dirs"]

# Scratch locations besides the system temp dir (tempfile.gettempdir()).
_SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")


def _resolved(path: Path) -> Path:
    try:
        return Path(path).expanduser().resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(Path(path).expanduser()))


def is_temporary(path: Path | str) -> bool:
    """True for a folder under the system temp dir or another scratch place (pytest's tmp_path,
    ``tempfile.mkdtemp()``): its runs vanish with it, so it is no source to keep."""
    resolved = _resolved(Path(path))
    roots = {_resolved(Path(tempfile.gettempdir())), *(_resolved(Path(p)) for p in _SCRATCH)}
    return any(resolved == root or root in resolved.parents for root in roots)


def worth_remembering(path: Path | str) -> bool:
    return Path(path).is_dir() and not is_temporary(path)


def remembered_file() -> Path:
    """The file Jupyter servers keep announced runs folders in (their ``data_dir``)."""
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "wan_nb" / "runs_dirs.json"


def remembered_dirs(path: Path | None = None) -> list[Path]:
    """The runs folders Jupyter servers remember, as they would list them (existing, not temporary)."""
    try:
        stored = json.loads((path or remembered_file()).read_text(encoding="utf-8"))
    except (OSError, ValueError, ImportError):
        return []
    found = stored.get("runs_dirs", []) if isinstance(stored, dict) else []
    return [Path(d) for d in found if isinstance(d, str) and worth_remembering(Path(d))]
