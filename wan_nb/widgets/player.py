"""The notebook's video player: the MP4 goes to the browser once, as a binary widget buffer (no
base64, no server route: the kernel cannot rely on the server extension being installed); the
browser turns it into a ``blob:`` URL for both the <video> and its download link."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from .vram_plot import STATIC

__all__ = ["VideoPlayer", "MAX_EMBED_BYTES"]

# Larger files are linked, not embedded: a notebook should not carry hundreds of MB over the comm.
MAX_EMBED_BYTES = 200 * 1024 * 1024


class VideoPlayer(anywidget.AnyWidget):
    _esm = STATIC / "video_player.js"
    _css = STATIC / "video_player.css"

    value = traitlets.Bytes(b"").tag(sync=True)
    mime = traitlets.Unicode("video/mp4").tag(sync=True)
    filename = traitlets.Unicode("video.mp4").tag(sync=True)
    display_width = traitlets.Int(256).tag(sync=True)   # tiny test videos are 32 px wide: scale up
    autoplay = traitlets.Bool(True).tag(sync=True)

    @classmethod
    def from_file(cls, path: str | os.PathLike, filename: str | None = None, **kwargs: Any) -> "VideoPlayer":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no video at {path}; was it moved or deleted?")
        size = path.stat().st_size
        if size > MAX_EMBED_BYTES:
            raise ValueError(f"{path} is {size / 2**20:.0f} MB, more than the {MAX_EMBED_BYTES / 2**20:.0f} MB "
                             "that is embedded in a notebook; open the file directly")
        return cls(value=path.read_bytes(), filename=filename or path.name, **kwargs)
