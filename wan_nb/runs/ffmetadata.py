"""MP4 tags through ffmpeg's ffmetadata format: how a recipe (and any tag) gets into a video.

Standard library only: the recipe writer (:mod:`wan_nb.runs.recipe`) and the video writer
(:mod:`wan_nb.models.video_io`) both use it.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

__all__ = ["ffmetadata_text", "metadata_file"]


def ffmetadata_text(tags: Mapping[str, Any]) -> str:
    """``tags`` in ffmpeg's ffmetadata format: ``=``, ``;``, ``#``, ``\\`` and newlines escaped."""
    def escape(text: Any) -> str:
        return "".join("\\" + c if c in "=;#\\\n" else c for c in str(text))

    return ";FFMETADATA1\n" + "".join(f"{escape(k)}={escape(v)}\n" for k, v in tags.items())


@contextlib.contextmanager
def metadata_file(tags: Mapping[str, Any]) -> Iterator[Path | None]:
    """A temporary ffmetadata file holding ``tags`` (None when there are none), removed afterwards.

    Tags travel in a file, never as ``-metadata key=value`` arguments: Linux refuses any single
    argument over 128 KiB (``Argument list too long``), and a recipe with long prompts (a grid's
    cells each repeat theirs) passes that.
    """
    if not tags:
        yield None
        return
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".ffmetadata", prefix="wan_nb-",
                                         delete=False)
    try:
        with handle:
            handle.write(ffmetadata_text(tags))
        yield Path(handle.name)
    finally:
        Path(handle.name).unlink(missing_ok=True)
