"""``GET …/tasks/{id}/video/original``: the video before interpolation / upscaling, which a run keeps
as ``original.mp4`` beside its own video; served by :class:`.handlers.VideoHandler` like the video."""

from __future__ import annotations

from pathlib import Path

from wan_nb.runs.layout import ORIGINAL_NAME

from .hub import Hub, TaskEntry
from .runs import servable_video

__all__ = ["original_video_file"]


def original_video_file(hub: Hub, task: TaskEntry) -> Path | None:
    """``original.mp4`` beside the task's served video (kept when it was interpolated or upscaled),
    under the video's own checks; the name is fixed, so no request path reaches the file system."""
    video, folder = hub.video_file(task), hub.run_folder(task)
    if video is None or folder is None:
        return None
    return servable_video(folder, str(video.parent / ORIGINAL_NAME))
