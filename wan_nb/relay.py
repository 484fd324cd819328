"""Kernel/script -> Jupyter server event transport (placeholder until the server lands)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


def attach(bus: Any, *, runs_dir: Path, cancel: Callable[[str], bool]) -> Callable[[], None]:
    return lambda: None
