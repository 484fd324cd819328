"""The snapshot of ``GET wan-nb/api/tasks/{id}``: :class:`wan_nb.protocol.state.TaskState`, as a dict.

The server folds every event it relays into one of these (see :mod:`wan_nb.protocol.state` for the
rules); :meth:`TaskSnapshot.to_dict` is the contract's JSON form.
"""

from __future__ import annotations

from typing import Any

from wan_nb.protocol.state import PRODUCER_LOST, TASK_STATUSES, TaskState

__all__ = ["TaskSnapshot", "TASK_STATUSES", "PRODUCER_LOST"]


class TaskSnapshot(TaskState):
    """A task's state with the contract's JSON form."""

    __slots__ = ()

    def to_dict(self, video_url: str | None = None) -> dict[str, Any]:
        """The contract's snapshot; ``video_url`` is filled in by whoever serves the video."""
        return {
            "task_id": self.task_id,
            "kind": self.kind,
            "status": self.status,
            "queue_position": self.queue_position,   # null unless queued (0 = runs next)
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
            # resuming (docs/resume.md), as the server's listing of runs on disk names them
            "resumable": self.resumable,
            "checkpoint_step": self.checkpoint_step,
            "resumed_from": self.resumed_from,
        }
