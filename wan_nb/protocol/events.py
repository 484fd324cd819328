"""Typed progress events: the one vocabulary every part of wan_nb speaks.

No torch, no Jupyter here: the server, the CLI and the widgets all import this module.

An event in Python is an immutable :class:`Event`; on the wire (WebSocket frame, ``--json``
line, SSE ``data:``) it is one frame::

    {"type": T, "seq": N, "task_id": ID, "data": {...fields, "task_id": ID, "timestamp": TS}}
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

__all__ = [
    "Stage",
    "EventType",
    "Event",
    "FrozenDict",
    "TERMINAL_TYPES",
    "TERMINAL_STATUS",
    "COALESCIBLE_TYPES",
    "is_terminal",
    "dumps",
    "utc_now",
    "schema",
    "validate",
]


class Stage(str, enum.Enum):
    """Where a task is. The value is the lowercase name used on the wire."""

    INITIALIZING = "initializing"
    DOWNLOADING_MODEL = "downloading_model"
    LOADING_MODEL = "loading_model"
    PREPARING_INPUTS = "preparing_inputs"
    APPLYING_LORA = "applying_lora"
    GENERATING = "generating"
    POST_PROCESSING = "post_processing"
    SAVING = "saving"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:  # so f"{stage}" prints "generating", not "Stage.GENERATING"
        return self.value


class EventType(str, enum.Enum):
    GENERATION_STARTED = "generation_started"
    GENERATION_STAGE = "generation_stage"
    DETAILED_GENERATION_PROGRESS = "detailed_generation_progress"
    MODEL_LOADING_PROGRESS = "model_loading_progress"
    VRAM_MONITORING = "vram_monitoring"
    GENERATION_COMPLETED = "generation_completed"
    GENERATION_FAILED = "generation_failed"
    GENERATION_CANCELLED = "generation_cancelled"
    STORYBOARD_PROGRESS = "storyboard_progress"
    PREVIEW = "preview"
    GENERATION_PAUSED = "generation_paused"
    GENERATION_RESUMED = "generation_resumed"
    GENERATION_QUEUED = "generation_queued"  # waiting for the worker: position in the queue

    def __str__(self) -> str:
        return self.value


TERMINAL_TYPES = frozenset(
    {EventType.GENERATION_COMPLETED, EventType.GENERATION_FAILED, EventType.GENERATION_CANCELLED}
)

# The task status each terminal generation event leaves behind.
TERMINAL_STATUS = {
    EventType.GENERATION_COMPLETED.value: "completed",
    EventType.GENERATION_FAILED.value: "failed",
    EventType.GENERATION_CANCELLED.value: "cancelled",
}

# Events a slow consumer may skip when a newer one of the same type and task is waiting:
# each carries a complete state, so the latest one says everything the skipped ones said.
COALESCIBLE_TYPES = frozenset(
    {EventType.DETAILED_GENERATION_PROGRESS, EventType.VRAM_MONITORING, EventType.PREVIEW,
     EventType.MODEL_LOADING_PROGRESS}
)


def is_terminal(type: str, data: Mapping[str, Any]) -> bool:
    """Whether an event of ``type`` with ``data`` is its task's last: the one place this is decided.

    A generation ends with completed / failed / cancelled; a storyboard with a
    ``storyboard_progress`` whose step is ``complete`` or whose status is failed / cancelled.
    """
    if type in TERMINAL_TYPES:
        return True
    return type == EventType.STORYBOARD_PROGRESS and (
        data.get("step") == "complete" or data.get("status") in ("failed", "cancelled"))


def utc_now() -> str:
    """ISO-8601 UTC with millisecond precision and a ``Z`` (the wire format of every timestamp)."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class FrozenDict(dict):
    """A dict that refuses changes: what :attr:`Event.data` and its nested mappings are.

    A real ``dict`` subclass (not a ``MappingProxyType``), so ``json.dumps(event.data)``,
    ``wan_nb.protocol.events.dumps`` and anything else that takes a dict take it as it is; ``dict(data)``
    or ``data.copy()`` gives a plain, changeable copy.
    """

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("event data is read-only; change a copy (dict(event.data)) instead")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]

    def copy(self) -> dict[str, Any]:
        return dict(self)

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle / copy rebuild it from a plain dict (item by item would hit __setitem__)
        return (type(self), (dict(self),))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return FrozenDict({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Mapping):  # a MappingProxyType or any other read-only mapping
        return dict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@dataclass(frozen=True)
class Event:
    """One progress event. ``data`` holds the type's fields: a read-only dict (:class:`FrozenDict`;
    nested mappings are too, lists become tuples), which ``json.dumps`` and :func:`dumps` take."""

    type: str
    task_id: str
    seq: int
    timestamp: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", str(self.type))
        object.__setattr__(self, "data", _freeze(dict(self.data)))

    @property
    def is_terminal(self) -> bool:
        return is_terminal(self.type, self.data)

    def to_frame(self) -> dict[str, Any]:
        """The wire form: a plain dict (the WebSocket frame / ``--json`` line)."""
        data = _thaw(self.data)
        data["task_id"] = self.task_id
        data["timestamp"] = self.timestamp
        return {"type": self.type, "seq": self.seq, "task_id": self.task_id, "data": data}

    def to_json(self) -> str:
        # Encoded once: the journal, the relay and every server client share these bytes.
        text = self.__dict__.get("_json")
        if text is None:
            text = dumps(self.to_frame())
            object.__setattr__(self, "_json", text)
        return text

    @classmethod
    def from_frame(cls, frame: Mapping[str, Any]) -> "Event":
        data = dict(frame.get("data") or {})
        task_id = frame.get("task_id") or data.get("task_id")
        timestamp = data.pop("timestamp", None) or frame.get("timestamp") or utc_now()
        data.pop("task_id", None)
        return cls(type=frame["type"], task_id=task_id, seq=int(frame["seq"]), timestamp=timestamp, data=data)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Event":
        return cls.from_frame(json.loads(text))

    def __repr__(self) -> str:
        keys = ", ".join(f"{k}={v!r}" for k, v in list(self.data.items())[:4])
        return f"Event({self.type} #{self.seq} {self.task_id}: {keys})"


def dumps(obj: Any) -> str:
    """JSON with the encoder events use: takes what events hold (their read-only ``data`` and
    tuples, any other mapping) and paths, enums, sets and numpy / torch scalars."""
    return json.dumps(obj, default=_json_default, separators=(",", ":"))


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an event frame, shipped in the package."""
    path = Path(__file__).with_name("schema") / "events.schema.json"
    return json.loads(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _validator():
    import jsonschema  # imported lazily: only tests and debugging validate

    cls = jsonschema.validators.validator_for(schema())
    return cls(schema(), format_checker=cls.FORMAT_CHECKER)


def validate(frame: Mapping[str, Any] | Event) -> None:
    """Raise ``jsonschema.ValidationError`` if ``frame`` is not a valid event frame."""
    if isinstance(frame, Event):
        frame = json.loads(frame.to_json())
    _validator().validate(frame)
