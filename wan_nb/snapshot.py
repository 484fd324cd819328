"""Reduce a task's events to its current state: the snapshot of ``GET wan-nb/api/tasks/{id}``.

Pure and cheap (no torch, no Jupyter): the server applies it to every event it relays, and
the core or the widgets may reuse it. Feed events in ``seq`` order with :meth:`apply`
(an :class:`~wan_nb.events.Event`) or :meth:`apply_frame` (a wire frame dict).
"""

from __future__ import annotations

from typing import Any, Mapping

from .events import TERMINAL_STATUS as _TERMINAL_STATUS

__all__ = ["TaskSnapshot", "TASK_STATUSES", "PRODUCER_LOST"]

TASK_STATUSES = ("queued", "running", "completed", "failed", "cancelled", "lost")

# error_type of the terminal event a server adds for a task whose producing process died.
PRODUCER_LOST = "ProducerLost"


class TaskSnapshot:
    """The latest known state of one task (a generation or a storyboard)."""

    __slots__ = (
        "task_id", "kind", "status", "stage", "progress", "message", "estimated_time_remaining",
        "current_step", "total_steps", "model_type", "prompt", "params", "seed", "storyboard_id",
        "created_at", "updated_at", "output_path", "scene_videos", "error_type", "error",
        "duration_s", "last_seq", "vram",
    )

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.kind = "generation"
        self.status = "queued"
        self.stage: str | None = None
        self.progress: float = 0
        self.message = ""
        self.estimated_time_remaining: float | None = None
        self.current_step: int | None = None
        self.total_steps: int | None = None
        self.model_type: str | None = None
        self.prompt: str | None = None
        self.params: dict[str, Any] | None = None
        self.seed: int | None = None
        self.storyboard_id: str | None = None
        self.created_at: str | None = None
        self.updated_at: str | None = None
        self.output_path: str | None = None
        self.scene_videos: list[str] = []
        self.error_type: str | None = None
        self.error: str | None = None
        self.duration_s: float | None = None
        self.last_seq = 0
        self.vram: dict[str, Any] | None = None

    # -- feeding -----------------------------------------------------------------------------
    def apply(self, event: Any) -> None:
        """Apply an :class:`~wan_nb.events.Event` (anything with type/seq/timestamp/data)."""
        self._apply(str(event.type), int(event.seq), event.timestamp, event.data)

    def apply_frame(self, frame: Mapping[str, Any]) -> None:
        """Apply a wire frame ``{"type", "seq", "task_id", "data": {..., "timestamp"}}``."""
        data = frame.get("data") or {}
        self._apply(frame["type"], int(frame["seq"]), data.get("timestamp"), data)

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "cancelled", "lost")

    def _apply(self, type_: str, seq: int, timestamp: str | None, data: Mapping[str, Any]) -> None:
        self.last_seq = max(self.last_seq, seq)
        if timestamp:
            self.created_at = self.created_at or timestamp
            self.updated_at = timestamp
        if self.finished:  # nothing after a terminal event changes the outcome
            return
        if type_ == "storyboard_progress":
            self._apply_storyboard(data)
            return
        if type_ == "vram_monitoring":
            self.vram = {k: v for k, v in data.items() if k not in ("task_id", "timestamp")}
            return
        if type_ == "preview":
            return
        self.status = "running"
        stage = data.get("stage")
        if type_ == "generation_started":
            params = data.get("params") or {}
            self.params = dict(params)
            self.model_type = data.get("model_type")
            self.prompt = params.get("prompt", self.prompt)
            self.seed = params.get("seed", self.seed)
            self.storyboard_id = params.get("storyboard_id")
            self.total_steps = params.get("steps", self.total_steps)
            if data.get("estimated_duration") is not None:
                self.estimated_time_remaining = data["estimated_duration"]
            self.stage = self.stage or "initializing"
        elif type_ == "generation_stage":
            self.stage = stage or self.stage
            self.message = data.get("stage_message") or self.message
        elif type_ == "detailed_generation_progress":
            self.stage = stage or self.stage
            self._raise_progress(data.get("progress"))
            self.message = data.get("message") or self.message
            self.estimated_time_remaining = data.get("estimated_time_remaining")
            self.current_step = data.get("current_step", self.current_step)
            self.total_steps = data.get("total_steps", self.total_steps)
        elif type_ == "model_loading_progress":
            self.model_type = data.get("model_type") or self.model_type
            self.message = data.get("status") or self.message
        elif type_ in _TERMINAL_STATUS:
            self._apply_terminal(type_, data)

    def _raise_progress(self, value: Any) -> None:
        if isinstance(value, (int, float)):
            self.progress = max(self.progress, min(100, value))

    def _apply_terminal(self, type_: str, data: Mapping[str, Any]) -> None:
        self.status = _TERMINAL_STATUS[type_]
        self.estimated_time_remaining = 0 if type_ == "generation_completed" else None
        if type_ == "generation_completed":
            self.stage = "completed"
            self.progress = 100
            self.output_path = data.get("output_path")
            self.duration_s = data.get("duration_s")
            self.seed = data.get("seed", self.seed)
            self.message = "Generation complete"
        elif type_ == "generation_failed":
            self.stage = "failed"
            self.error_type = data.get("error_type")
            self.error = data.get("error")
            self.message = data.get("error") or "Generation failed"
            if self.error_type == PRODUCER_LOST:
                self.status = "lost"
        else:
            self.stage = "cancelled"
            self.current_step = data.get("current_step", self.current_step)
            self.message = "Generation cancelled"

    def _apply_storyboard(self, data: Mapping[str, Any]) -> None:
        self.kind = "storyboard"
        step, status = data.get("step"), data.get("status")
        self.stage = step or self.stage
        self._raise_progress(data.get("progress"))
        self.message = data.get("message") or self.message
        inner = data.get("data") or {}
        if inner.get("scene_videos"):
            self.scene_videos = [str(p) for p in inner["scene_videos"]]
        if inner.get("final_video_path"):
            self.output_path = str(inner["final_video_path"])
        if inner.get("prompt") and not self.prompt:
            self.prompt = inner["prompt"]
        if status in ("failed", "cancelled"):
            self.status = status
            self.error = data.get("message")
        elif step == "complete":
            self.status = "completed"
            self.progress = 100
        else:
            self.status = "running"

    def mark_lost(self) -> None:
        self.status = "lost"

    # -- reading -----------------------------------------------------------------------------
    def to_dict(self, video_url: str | None = None) -> dict[str, Any]:
        """The contract's snapshot; ``video_url`` is filled in by whoever serves the video."""
        return {
            "task_id": self.task_id,
            "kind": self.kind,
            "status": self.status,
            "stage": self.stage,
            "progress": self.progress,
            "message": self.message,
            "estimated_time_remaining": self.estimated_time_remaining,
            "current_step": self.current_step,
            "total_steps": self.total_steps,
            "model_type": self.model_type,
            "prompt": self.prompt,
            "seed": self.seed,
            "params": self.params,
            "storyboard_id": self.storyboard_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "output_path": self.output_path,
            "video_url": video_url if self.output_path else None,
            "scene_videos": list(self.scene_videos),
            "error_type": self.error_type,
            "error": self.error,
            "duration_s": self.duration_s,
            "last_seq": self.last_seq,
        }
