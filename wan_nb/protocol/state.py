"""The one event -> task-state reducer: what a task is doing, folded from its events.

Pure and cheap (no torch, no Jupyter, no widgets): the server folds every relayed frame with it
(:mod:`wan_nb.protocol.snapshot`), the widgets and the text progress draw from it. Feed events in
``seq`` order with :meth:`TaskState.apply` (an :class:`~wan_nb.protocol.events.Event`) or
:meth:`TaskState.apply_frame` (a wire frame dict); an event already folded is ignored.
"""

from __future__ import annotations

from typing import Any, Mapping

from wan_nb.protocol.events import TERMINAL_STATUS as _ENDINGS, is_terminal
from wan_nb.protocol.statuses import FINISHED, TASK_STATUSES

__all__ = ["TaskState", "TASK_STATUSES", "FINISHED", "PRODUCER_LOST", "PROMPT_CAP", "queued_message",
           "resumable_message", "paused_message"]

# error_type of the terminal event a server adds for a task whose producing process died.
PRODUCER_LOST = "ProducerLost"

# Characters of a prompt kept in the state (the text encoder reads 512 tokens, ~2,000 characters;
# a 10 MB prompt must not be stored again by every reader).
PROMPT_CAP = 4096

# Events that say nothing about whether the task runs (a server may add VRAM readings anytime).
_NEUTRAL = frozenset({"vram_monitoring", "preview", "generation_started"})


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def cap_text(value: Any, limit: int = PROMPT_CAP) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "…"
    return value


def queued_message(position: int | None, ahead: int | None = None) -> str:
    """How a waiting task reads everywhere (snapshot message, console, widgets): ``Queued (#1)``
    for the task that runs next, with how many run before it."""
    text = "Queued" if position is None else f"Queued (#{position + 1})"
    if ahead:
        text += f": {ahead} task{'s' if ahead != 1 else ''} ahead"
    return text


def resumable_message(status: str, step: int | None, total: int | None) -> str:
    """How a run that ended with a checkpoint reads everywhere: ``Stopped at step 3/8: resumable``
    (``status``: ``stopped`` or ``interrupted``)."""
    return f"{status.capitalize()} at step {step}/{total if total is not None else '?'}: resumable"


def paused_message(stage: str | None, release_memory: bool) -> str:
    """A held task: ``Paused during generating``, ``… · memory released`` after
    ``task.pause(release_memory=True)`` gave the accelerator's memory back."""
    return f"Paused during {stage}" + (" · memory released" if release_memory else "")


def capped_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with over-long prompts cut to :data:`PROMPT_CAP` characters."""
    return {k: cap_text(v) if k in ("prompt", "negative_prompt") else v for k, v in params.items()}


class TaskState:
    """The latest known state of one task (a generation or a storyboard)."""

    __slots__ = (
        "task_id", "kind", "status", "stage", "progress", "message", "estimated_time_remaining",
        "current_step", "total_steps", "model_type", "prompt", "params", "seed", "storyboard_id",
        "created_at", "updated_at", "output_path", "scene_videos", "error_type", "error",
        "duration_s", "last_seq", "vram", "error_stage", "queue_position", "queue_ahead",
        "checkpoint_step", "resumable", "resumed_from", "memory_released",
    )

    def __init__(self, task_id: str | None = None) -> None:
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
        self.error_stage: str | None = None
        self.duration_s: float | None = None
        self.last_seq = 0
        self.vram: dict[str, Any] | None = None
        # Where a waiting task stands (0 = runs next) and how many run before it, the running
        # one included: from its latest generation_queued; None once the worker has taken it.
        self.queue_position: int | None = None
        self.queue_ahead: int | None = None
        # Resuming (docs/resume.md): the step of the latest checkpoint a progress event announced
        # (a run whose process dies after one reads "interrupted"), whether the run ended resumable,
        # the task a resumed run continues, and whether a pause gave the accelerator's memory back.
        self.checkpoint_step: int | None = None
        self.resumable = False
        self.resumed_from: str | None = None
        self.memory_released = False

    # -- feeding -----------------------------------------------------------------------------
    def apply(self, event: Any) -> bool:
        """Fold an :class:`~wan_nb.protocol.events.Event`; False if its seq was already folded."""
        if self.task_id is None:
            self.task_id = event.task_id
        return self._apply(str(event.type), int(event.seq), event.timestamp, event.data)

    def apply_frame(self, frame: Mapping[str, Any]) -> bool:
        """Fold a wire frame ``{"type", "seq", "task_id", "data": {..., "timestamp"}}``."""
        data = frame.get("data") or {}
        if self.task_id is None:
            self.task_id = frame.get("task_id")
        return self._apply(frame["type"], int(frame["seq"]), data.get("timestamp"), data)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def _apply(self, type_: str, seq: int, timestamp: str | None, data: Mapping[str, Any]) -> bool:
        if seq <= self.last_seq:
            return False
        self.last_seq = seq
        if timestamp:
            self.created_at = self.created_at or timestamp
            self.updated_at = timestamp
        if self.finished:  # nothing after a terminal event changes the outcome
            return True
        if type_ == "storyboard_progress":
            self._apply_storyboard(data)
            return True
        if type_ == "vram_monitoring":
            self.vram = {k: v for k, v in data.items() if k not in ("task_id", "timestamp")}
            return True
        if type_ == "generation_queued":
            self._apply_queued(data)
            return True
        if type_ not in _NEUTRAL:
            self.status = "running"   # the worker took it: generation_stage(initializing) and on
            self.queue_position = self.queue_ahead = None
            self.memory_released = False  # generation_paused says it again while it holds
        stage = data.get("stage")
        if type_ == "generation_started":
            self._apply_started(data)
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
            self._note_checkpoint(data.get("checkpoint"))
        elif type_ == "model_loading_progress":
            self.model_type = data.get("model_type") or self.model_type
            self.message = data.get("status") or self.message
        elif type_ == "generation_paused":
            self.status = "paused"
            self.current_step = data.get("current_step", self.current_step)
            self.memory_released = bool(data.get("release_memory"))
            self.message = paused_message(data.get("stage") or self.stage, self.memory_released)
        elif type_ in _ENDINGS:
            self._apply_terminal(type_, data)
        return True

    def _apply_started(self, data: Mapping[str, Any]) -> None:
        params = capped_params(data.get("params") or {})
        self.params = params
        self.model_type = data.get("model_type")
        self.prompt = params.get("prompt", self.prompt)
        self.seed = params.get("seed", self.seed)
        self.storyboard_id = params.get("storyboard_id")
        self.total_steps = params.get("steps", self.total_steps)
        if data.get("estimated_duration") is not None:
            self.estimated_time_remaining = data["estimated_duration"]
        self.stage = self.stage or "initializing"
        if isinstance(data.get("resumed_from"), str):
            self.resumed_from = data["resumed_from"]

    def _note_checkpoint(self, checkpoint: Any) -> None:
        if isinstance(checkpoint, Mapping) and checkpoint.get("saved") and _whole(checkpoint.get("step")):
            self.checkpoint_step = checkpoint["step"]

    def _apply_queued(self, data: Mapping[str, Any]) -> None:
        """A waiting task (again) told where it stands; it says queued until the worker starts it."""
        position, ahead = data.get("queue_position"), data.get("ahead")
        self.status = "queued"
        self.queue_position = position if isinstance(position, int) and not isinstance(position, bool) else None
        self.queue_ahead = ahead if isinstance(ahead, int) and not isinstance(ahead, bool) else None
        self.message = queued_message(self.queue_position, self.queue_ahead)

    def _raise_progress(self, value: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.progress = max(self.progress, min(100, value))

    def _apply_terminal(self, type_: str, data: Mapping[str, Any]) -> None:
        self.status = _ENDINGS[type_]
        self.memory_released = False
        self.estimated_time_remaining = 0 if type_ == "generation_completed" else None
        if type_ == "generation_completed":
            self.stage = "completed"
            self.progress = 100
            self.output_path = data.get("output_path")
            self.duration_s = data.get("duration_s")
            self.seed = data.get("seed", self.seed)
            self.message = "Generation complete"
        elif type_ == "generation_failed":
            self.error_stage = data.get("stage") or self.stage
            self.stage = "failed"
            self.error_type = data.get("error_type")
            self.error = data.get("error")
            self.message = data.get("error") or "Generation failed"
            if self.error_type == PRODUCER_LOST:
                # Its process died; with a checkpoint announced, or one the server found in its run
                # folder (a SIGTERM's, which no event announced), resume_run finishes it from there.
                if _whole(data.get("checkpoint_step")):
                    self.checkpoint_step = data["checkpoint_step"]
                self.status = "interrupted" if self.checkpoint_step else "lost"
                if self.checkpoint_step:
                    self._end_resumable(self.checkpoint_step)
        else:
            self.error_stage = data.get("stage") or self.stage
            self.stage = "cancelled"
            self.current_step = data.get("current_step", self.current_step)
            self.message = "Generation cancelled"
            step = data.get("checkpoint_step")
            if data.get("resumable") and _whole(step):  # stop_after=k, cancel(keep=True)
                self.status = "stopped"
                self.total_steps = data.get("total_steps", self.total_steps)
                self._end_resumable(step)

    def _end_resumable(self, step: int) -> None:
        self.resumable = True
        self.checkpoint_step = self.current_step = step
        self.message = resumable_message(self.status, step, self.total_steps)

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
            self.prompt = cap_text(inner["prompt"])
        if is_terminal("storyboard_progress", data) and status in ("failed", "cancelled"):
            self.status = status
            self.error = data.get("message")
        elif step == "complete":
            self.status = "completed"
            self.progress = 100
        else:
            self.status = "running"
