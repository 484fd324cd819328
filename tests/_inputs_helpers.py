"""Run folders with inputs, for the tests of what *shows* inputs (history, widgets, server, Lab).

Until the generator's new pipelines record their inputs themselves, :func:`record_inputs` writes
them into a real run's folder in exactly the format they will use (``<run>/inputs/`` and
``task.json``'s ``"inputs"``: ``{name: {"kind", "files": ["inputs/<file>"], "sha256"}}``), and
:class:`InputsSink` does it for every task of a real ``Generator(model="tiny")`` as it is queued,
so the run's own later ``task.json`` writes (running, the outcome, the history index) carry them.
The videos are real MP4s (``wan_nb.models.video_io.write_mp4``), the images real PNGs.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

KIND_OF = {"image": "image", "last_image": "image", "video": "video", "mask": "video",
           "reference_images": "images", "pose_video": "video", "face_video": "video",
           "background_video": "video"}


def gradient(height: int = 32, width: int = 32, color=(255, 80, 0)) -> np.ndarray:
    """An RGB picture (uint8) that is not flat: a left-to-right ramp of ``color``."""
    ramp = np.linspace(0.2, 1.0, width, dtype=np.float32)[None, :, None]
    return (np.ones((height, width, 3), np.float32) * ramp * np.array(color, np.float32)).astype(np.uint8)


def moving_square(frames: int = 9, size: int = 32) -> np.ndarray:
    """A white square crossing a dark frame: a short control video (F, H, W, 3) uint8."""
    video = np.full((frames, size, size, 3), 20, np.uint8)
    for i in range(frames):
        x = i * (size - 8) // max(frames - 1, 1)
        video[i, 12:20, x:x + 8] = 255
    return video


def _png(picture: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(picture).save(out, format="PNG")
    return out.getvalue()


def record_inputs(run_dir: Path, inputs: Mapping[str, Any], fps: float = 8) -> dict[str, Any]:
    """Write ``inputs`` (name -> picture (H, W, 3), video (F, H, W, 3), or a list of pictures for
    ``reference_images``) into ``run_dir/inputs/`` and list them in its ``task.json``."""
    from wan_nb.runs.atomic import replace_text
    from wan_nb.models.video_io import write_mp4

    folder = Path(run_dir) / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    listed: dict[str, Any] = {}
    for name, value in inputs.items():
        kind = KIND_OF[name]
        digest = hashlib.sha256()
        files = []
        pictures = list(value) if kind == "images" else [value]
        for n, picture in enumerate(pictures):
            if kind == "video":
                path = write_mp4(np.asarray(picture), folder / f"{name}.mp4", fps)
            else:
                path = folder / (f"{name}.png" if kind == "image" else f"{name}_{n:02d}.png")
                path.write_bytes(_png(np.asarray(picture)))
            digest.update(path.read_bytes())
            files.append(f"inputs/{path.name}")
        listed[name] = {"kind": kind, "files": files, "sha256": digest.hexdigest()}
    task_file = Path(run_dir) / "task.json"
    info = json.loads(task_file.read_text()) if task_file.is_file() else {}
    info["inputs"] = {**(info.get("inputs") or {}), **listed}
    replace_text(task_file, json.dumps(info))
    return listed


class InputsSink:
    """``gen.add_sink(InputsSink(gen, inputs_for))``: on each task's ``generation_started`` (after
    the generator's own recorder wrote its queued ``task.json``), ``inputs_for(task)`` names the
    inputs to record for it (or None)."""

    def __init__(self, gen: Any, inputs_for: Callable[[Any], Mapping[str, Any] | None]) -> None:
        self.gen, self.inputs_for = gen, inputs_for

    def __call__(self, event: Any) -> None:
        if event.type != "generation_started":
            return
        try:
            task = self.gen.task(event.task_id)
        except KeyError:
            return
        inputs = self.inputs_for(task)
        if inputs:
            record_inputs(task.run_dir, inputs)


def flf2v_and_control(task: Any) -> dict[str, Any]:
    """The inputs most tests use: first and last frame, a control video, two reference images."""
    return {"image": gradient(color=(255, 80, 0)), "last_image": gradient(color=(0, 80, 255)),
            "video": moving_square(), "reference_images": [gradient(color=(0, 200, 0)), gradient(color=(200, 0, 200))]}
