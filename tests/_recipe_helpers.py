"""Helpers for the tests of recipes read from files someone else made."""
from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg


def _escape(text: str) -> str:
    return "".join("\\" + c if c in "=;#\\\n" else c for c in text)


def tagged_mp4(path: Path, comment: str) -> Path:
    """A real two-frame MP4 whose comment tag is ``comment``, written through an ffmetadata file
    (as a crafted file would carry a tag too long for ffmpeg's command line)."""
    meta = path.with_suffix(".ffmetadata")
    meta.write_text(";FFMETADATA1\ncomment=" + _escape(comment) + "\n", encoding="utf-8")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "color=c=gray:size=16x16:rate=8", "-f", "ffmetadata", "-i", str(meta), "-map", "0:v",
                    "-map_metadata", "1", "-frames:v", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)],
                   check=True)
    return path
