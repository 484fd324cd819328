"""The weight files a run's post-processing names, read and checked before the run (torch here, so
this stays out of :mod:`.options`, which the server's recipe reading imports)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wan_nb.protocol.errors import InvalidParameter

__all__ = ["check_post_files"]


def check_post_files(p: dict[str, Any]) -> None:
    """A local RIFE or upscaler file of another architecture is refused now, naming the file to use."""
    interpolator = p.get("interpolator")
    if interpolator and Path(interpolator).is_file():
        from wan_nb.protocol.errors import CheckpointError

        from .rife import load_rife

        try:
            load_rife(interpolator)
        except CheckpointError as exc:
            raise InvalidParameter("interpolator", interpolator, str(exc)) from exc
    upscaler = p.get("upscaler")
    if upscaler and upscaler != "lanczos" and Path(upscaler).is_file():
        from wan_nb.protocol.errors import CheckpointError

        from .upscaling import load_upscaler

        try:
            load_upscaler(upscaler)
        except CheckpointError as exc:
            raise InvalidParameter("upscaler", upscaler, str(exc)) from exc
