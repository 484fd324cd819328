"""Every exception wan_nb's public API raises, in one place to import from.

Light on purpose (no torch, no model code): ``from wan_nb.protocol.errors import GenerationError`` is
cheap. The errors about arguments and models are defined beside the checks that raise them
and re-exported here on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GenerationError", "GenerationCancelled", "StoryboardError", "StoryboardCancelled",
           "TaskNotQueued", "ClusterUnavailable", "CheckpointError", "ResumeError", "InvalidParameter", "ModelNotAvailable",
           "LoraError"]


class GenerationError(RuntimeError):
    """A task failed. ``stage`` says where, ``error_type`` what (the original exception's class)."""

    def __init__(self, message: str, *, task_id: str, stage: str, error_type: str) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.stage = stage
        self.error_type = error_type


class GenerationCancelled(RuntimeError):
    """The task was cancelled before it finished."""

    def __init__(self, task_id: str, stage: str, current_step: int) -> None:
        super().__init__(f"task {task_id} was cancelled during {stage} (after step {current_step})")
        self.task_id = task_id
        self.stage = stage
        self.current_step = current_step


class StoryboardError(RuntimeError):
    """A storyboard failed; ``failed_scene`` (1-based) says which scene, or None (e.g. stitching)."""

    def __init__(self, message: str, *, storyboard_id: str, step: str, failed_scene: int | None,
                 scene_task_id: str | None = None) -> None:
        super().__init__(message)
        self.storyboard_id = storyboard_id
        self.step = step
        self.failed_scene = failed_scene
        self.scene_task_id = scene_task_id


class StoryboardCancelled(RuntimeError):
    """The storyboard was cancelled; ``scene`` is the scene that was running (1-based) or None."""

    def __init__(self, storyboard_id: str, step: str, scene: int | None) -> None:
        where = f"during scene {scene}" if scene else f"during {step}"
        super().__init__(f"storyboard {storyboard_id} was cancelled {where}")
        self.storyboard_id = storyboard_id
        self.step = step
        self.scene = scene


class TaskNotQueued(RuntimeError):
    """A queue operation (``task.move``) on a task that is no longer waiting in the queue."""

    def __init__(self, task_id: str, status: str) -> None:
        super().__init__(f"task {task_id} is {status}, not queued: only a queued task can be moved "
                         "(see gen.queue for the tasks still waiting)")
        self.task_id = task_id
        self.status = status


class ClusterUnavailable(RuntimeError):
    """``cluster=``: Ray is missing, the cluster cannot be reached, or it cannot run this model."""


class InvalidParameter(ValueError):
    """A generation argument is out of range; the message says what to pass instead."""

    def __init__(self, name: str, value: Any, message: str) -> None:
        super().__init__(f"{name}={value!r}: {message}")
        self.name = name
        self.value = value


class CheckpointError(ValueError):
    """A single-file checkpoint (``transformer=``, ``quant="gguf:..."``) that cannot be used for this model:
    no such file, not readable, not a Wan transformer / UMT5 encoder, or of another architecture."""


class ResumeError(ValueError):
    """A run cannot be resumed (``gen.resume_run``): completed, no checkpoint, another wan_nb's or a
    damaged checkpoint, or its model, inputs or LoRAs changed. The message says what to do; the
    run folder is left as it was."""


class ModelNotAvailable(RuntimeError):
    """The model (or LoRA) cannot be had: offline and not cached, unknown repo, network down."""


class NotEnoughDisk(ModelNotAvailable):
    """The files still to download do not fit in the free space of the Hugging Face cache."""


class LoraError(ValueError):
    """A LoRA cannot be read or does not fit the model; the message names the file."""
