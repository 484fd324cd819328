"""The inputs a run used, as its run folder keeps them (read side only).

Every run keeps the images and videos it was given in ``<run_dir>/inputs/`` and lists them in
``<run_dir>/task.json`` under ``"inputs"``::

    {name: {"kind": "image" | "video" | "images", "files": ["inputs/<file>", ...], "sha256": "..."}}

The generator writes that (it owns the format's writing); everything that *shows* inputs — the
history, the widgets, the Jupyter server — reads it through :func:`listed` here, so a malformed
or hostile ``task.json`` is judged in one place: a name or file that does not look exactly like
the format is dropped, never guessed at. Standard library only: the server imports this.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

from wan_nb.runs.layout import INPUTS_DIR, TASK_FILE

__all__ = ["INPUT_NAMES", "INPUTS_DIR", "KINDS", "MEDIA_TYPES", "listed", "read", "paths", "label",
           "file_name_ok"]

# In the order front ends show them: what the video starts from, then what steers it.
INPUT_NAMES = ("image", "last_image", "reference_images", "video", "mask", "pose_video", "face_video",
               "background_video")
KINDS = ("image", "video", "images")
MEDIA_TYPES = {".png": "image/png", ".mp4": "video/mp4"}
MAX_FILES = 64   # per input: reference images are a handful; a listing is not a file index
_FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,39}")


def file_name_ok(name: Any) -> bool:
    """A plain file name of a kind that is served (``.png`` or ``.mp4``): no folder, no ``..``."""
    return (isinstance(name, str) and _FILE_RE.fullmatch(name) is not None and ".." not in name
            and Path(name).suffix.lower() in MEDIA_TYPES)


def listed(info: Any) -> dict[str, dict[str, Any]]:
    """The well-formed entries of a ``task.json``'s ``"inputs"``: ``name -> {"kind", "files",
    "sha256"}``, where ``files`` are plain file names inside ``inputs/``. Known names come first,
    in :data:`INPUT_NAMES` order; anything malformed is left out."""
    raw = info.get("inputs") if isinstance(info, Mapping) else None
    if not isinstance(raw, Mapping):
        return {}
    order = {name: i for i, name in enumerate(INPUT_NAMES)}
    found: dict[str, dict[str, Any]] = {}
    for name in sorted((n for n in raw if isinstance(n, str)), key=lambda n: (order.get(n, len(order)), n)):
        entry = raw[name]
        if not _NAME_RE.fullmatch(name) or not isinstance(entry, Mapping) or entry.get("kind") not in KINDS:
            continue
        files = entry.get("files")
        if not isinstance(files, list) or not files or len(files) > MAX_FILES:
            continue
        names = []
        for item in files:
            folder, _, file = item.partition("/") if isinstance(item, str) else ("", "", "")
            if folder != INPUTS_DIR or not file_name_ok(file):
                names = []
                break
            names.append(file)
        if names:
            sha = entry.get("sha256")
            found[name] = {"kind": entry["kind"], "files": names, "sha256": sha if isinstance(sha, str) else None}
    return found


def read(run_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """:func:`listed` of ``run_dir``'s ``task.json`` (empty when it has none or cannot be read)."""
    try:
        info = json.loads((Path(run_dir) / TASK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return listed(info)


def paths(run_dir: str | os.PathLike, inputs: Mapping[str, Any] | None = None) -> dict[str, list[Path]]:
    """Each input's files as absolute paths (``Result.inputs`` / ``Run.inputs``); ``inputs`` is a
    ``task.json``-shaped ``"inputs"`` mapping, read from ``run_dir`` when not given."""
    folder = Path(run_dir).absolute()
    entries = read(folder) if inputs is None else listed({"inputs": inputs})
    return {name: [folder / INPUTS_DIR / f for f in entry["files"]] for name, entry in entries.items()}


def label(name: str, names: Any = ()) -> str:
    """What a front end calls an input. ``video`` is the source of a video-to-video run, and the
    control video of a VACE run (one that also has a mask or reference images); ``image`` is the
    first frame, except in an Animate run (one with a pose video), where it is the character."""
    names = set(names)
    if name == "video":
        return "control video" if {"mask", "reference_images"} & names else "source video"
    if name == "image" and "pose_video" in names:   # Animate: the character to animate
        return "character"
    return {"image": "first frame", "last_image": "last frame", "reference_images": "reference images",
            "mask": "mask", "pose_video": "pose video", "face_video": "face video",
            "background_video": "background video"}.get(name, name.replace("_", " "))
