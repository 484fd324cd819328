"""Byte encodings of one event for each kind of stream, and the per-task SSE message shape.

Every encoding is computed once per event and shared by all the connections that want it.
"""

from __future__ import annotations

from typing import Any, Mapping

from wan_nb.protocol.events import TERMINAL_STATUS as _TERMINAL, dumps
from ..relay.protocol import video_path
from wan_nb.protocol.state import PRODUCER_LOST, queued_message
from ._tornado_compat import ws_text_frame


HEARTBEAT = b": heartbeat\n\n"

__all__ = ["HEARTBEAT", "dumps", "ws_text_frame", "sse_named", "sse_unnamed", "sse_comment", "chunk",
           "video_urls", "seed_message"]


def sse_named(event_type: str, event_id: str, payload: bytes) -> bytes:
    """A named SSE event of the all-tasks stream (``payload`` is one line of JSON)."""
    return b"event: %s\nid: %s\ndata: %s\n\n" % (event_type.encode(), event_id.encode(), payload)


def sse_unnamed(seq: int, message: Mapping[str, Any]) -> bytes:
    """An unnamed SSE event (``EventSource.onmessage``) of the per-task stream."""
    return b"id: %d\ndata: %s\n\n" % (seq, dumps(message).encode())


def sse_comment(text: str) -> bytes:
    """An SSE comment line (EventSource ignores it; people and proxies can read it)."""
    return b": %s\n\n" % text.replace("\n", " ").encode()


def chunk(data: bytes) -> bytes:
    """HTTP/1.1 chunked transfer framing."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def video_urls(base_url: str, task_id: str, scene_count: int) -> tuple[str, list[str]]:
    return (f"{base_url}{video_path(task_id)}",
            [f"{base_url}{video_path(task_id, n)}" for n in range(1, scene_count + 1)])


def seed_message(frame: Mapping[str, Any], progress: float, stage: str | None,
                 base_url: str) -> dict[str, Any]:
    """The per-task SSE update ``{step, status, progress, message, data}`` plus the event's
    identity (type, task_id, seq, timestamp).

    ``progress``/``stage`` are the task's overall state after this event (the snapshot's), so
    events that carry neither (VRAM, model loading) still report where the task stands.
    """
    type_ = frame["type"]
    task_id = frame["task_id"]
    data = {k: v for k, v in (frame.get("data") or {}).items() if k not in ("task_id", "timestamp")}
    if type_ == "storyboard_progress":
        inner = dict(data.get("data") or {})
        scenes = inner.get("scene_videos") or []
        final_url, scene_urls = video_urls(base_url, task_id, len(scenes))
        if scenes:
            inner["scene_video_urls"] = scene_urls
        if inner.get("final_video_path"):
            inner["video_url"] = final_url
        step, status = data.get("step"), data.get("status", "in_progress")
        message = {"step": step, "status": status, "progress": data.get("progress", progress),
                   "message": data.get("message", ""), "data": inner}
    else:
        status = _TERMINAL.get(type_, "in_progress")
        step = data.get("stage") or stage or "initializing"
        text = data.get("message") or data.get("stage_message") or ""
        if type_ == "model_loading_progress":
            text = data.get("status") or text
        elif type_ == "vram_monitoring":
            text = f"VRAM {data.get('allocated_percent', 0):.0f}% ({data.get('warning_level', 'normal')})"
        elif type_ == "generation_started":
            text = f"Started {data.get('model_type', '')}".strip()
        elif type_ == "generation_queued":   # waiting: the seed's clients show where it stands
            text = queued_message(data.get("queue_position"), data.get("ahead"))
        elif type_ == "generation_completed":
            step, progress, text = "complete", 100, "Generation complete!"
            data["final_video_path"] = data.get("output_path")
            data["video_url"] = video_urls(base_url, task_id, 0)[0]
        elif type_ == "generation_failed":
            text = f"{data.get('error_type', 'Error')}: {data.get('error', '')}"
            if data.get("error_type") == PRODUCER_LOST:
                data["lost"] = True
        elif type_ == "generation_cancelled":
            text = f"Cancelled during {data.get('stage', step)}"
        message = {"step": step, "status": status, "progress": progress, "message": text,
                   "data": data}
    message.update(type=type_, task_id=task_id, seq=frame["seq"],
                   timestamp=(frame.get("data") or {}).get("timestamp"))
    return message
