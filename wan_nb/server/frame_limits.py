"""Bounds on what one event may make the server keep: strings, lists, and the frame as a whole.

The server keeps every accepted frame's bytes (a task's history, the all-tasks ring) and puts
its fields into snapshots that every ``GET /tasks`` serializes; a producer that publishes a
50 MB ``message`` (or a storyboard whose 10 MB story travels in two events' scene lists) would
otherwise make each of those 50 MB. Frames larger than :data:`SMALL_FRAME` are walked once at
ingest (live or from a journal) and rebuilt within a character budget; smaller ones, nearly all,
pass untouched at the cost of one ``len``.
"""

from __future__ import annotations

from typing import Any

from wan_nb.protocol.events import dumps

SMALL_FRAME = 16 * 1024          # bytes: below this a frame is kept as it came
STRING_CAP = 4096                # characters of one string (as the state caps prompts)
LIST_CAP = 256                   # items of one list, keys of one object
FRAME_BUDGET = 256 * 1024        # characters of all strings of one frame together
PREVIEW_IMAGE_CAP = 8 * 1024 * 1024   # a preview's base64 image (realistic ones: ~200 KB)
MAX_DEPTH = 8
CUT = "…"


class _Budget:
    def __init__(self, characters: int) -> None:
        self.left = characters
        self.cut = False

    def text(self, value: str, cap: int = STRING_CAP) -> str:
        keep = max(0, min(cap, self.left))
        self.left -= min(len(value), keep)
        if len(value) <= keep:
            return value
        self.cut = True
        return value[:keep] + CUT

    def value(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (list, tuple)):
            if depth >= MAX_DEPTH:
                self.cut = True
                return []
            if len(value) > LIST_CAP:
                self.cut = True
            return [self.value(item, depth + 1) for item in value[:LIST_CAP]]
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                self.cut = True
                return {}
            items = list(value.items())
            if len(items) > LIST_CAP:
                self.cut = True
            return {self.text(str(k), 256): self.value(v, depth + 1) for k, v in items[:LIST_CAP]}
        return value


def bounded(frame: dict, raw: bytes) -> tuple[dict, bytes]:
    """``frame`` and its bytes, rebuilt within the limits when ``raw`` is large (else as given).
    Only ``data`` is touched: type, seq and task_id were checked before."""
    if len(raw) <= SMALL_FRAME:
        return frame, raw
    data = frame.get("data") or {}
    image = data.get("data_b64") if frame.get("type") == "preview" else None
    budget = _Budget(FRAME_BUDGET)
    rest = budget.value({k: v for k, v in data.items() if k != "data_b64"} if image is not None else data)
    if isinstance(image, str):
        # An image cut short is no image: an outsized one is left out, the event kept.
        rest["data_b64"] = image if len(image) <= PREVIEW_IMAGE_CAP else ""
        budget.cut = budget.cut or len(image) > PREVIEW_IMAGE_CAP
    if not budget.cut:
        return frame, raw
    frame = {**frame, "data": rest}
    return frame, dumps(frame).encode()
