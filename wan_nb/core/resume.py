"""The run side of resuming: a task that continues a checkpoint, and one that stops after k steps.

Finding and checking what to resume (``gen.resume_run(source)``, ``resume_queue()``) is
:mod:`wan_nb.compose.resume`; this module gives the run the saved latents and RNG state, skips
the steps done, and ends a ``stop_after`` run with its checkpoint and x0 preview. A resumed run is
a **new task linked to the old one** (``docs/resume.md`` says why): ``resumed_from`` and
``resume_step`` in its ``task.json`` and its ``generation_started`` data.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from wan_nb.core.checkpoint import (NO_CHECKPOINTS, RESUMABLE_PIPELINES, Pacing, RunCheckpoints, SkipDoneSteps,
                                    pacing_for)
from wan_nb.protocol.errors import ResumeError
from wan_nb.runs import journal

__all__ = ["ResumePoint", "for_run", "prepare_task", "link_fields", "check_stop_after", "checked_params"]


@dataclass(frozen=True)
class ResumePoint:
    """A checked checkpoint: which run, which step, and the saved state (tensors on the CPU)."""

    folder: Path
    task_id: str
    step: int
    total_steps: int
    state: dict[str, Any]


# -- the task and its run ------------------------------------------------------------------------
def check_stop_after(stop_after: Any, params: dict[str, Any]) -> None:
    if stop_after is None:
        return
    steps = params["steps"]
    if not isinstance(stop_after, int) or isinstance(stop_after, bool) or not 1 <= stop_after < steps:
        from wan_nb.protocol.errors import InvalidParameter

        raise InvalidParameter("stop_after", stop_after, f"give a whole number of steps from 1 to {steps - 1} "
                               f"(this run has steps={steps}); leave it out to run every step")


def checked_params(kwargs: dict[str, Any], build: Any) -> dict[str, Any]:
    """``gen.check(...)`` where the arguments may hold ``stop_after`` (a grid of previews passes
    it with its fixed arguments): the parameters without it, ``stop_after`` checked against them."""
    params = build({k: v for k, v in kwargs.items() if k != "stop_after"})
    check_stop_after(kwargs.get("stop_after"), params)
    return params


def prepare_task(task: Any, resume_from: ResumePoint | None, stop_after: int | None) -> dict[str, Any]:
    """Check ``stop_after`` against the task's steps, mark the task; the fields that link it to the
    run it continues (for ``task.json`` and ``generation_started``)."""
    check_stop_after(stop_after, task.params)
    if (resume_from is not None or stop_after is not None) and type(task.engine).__name__ == "RayEngine":
        from wan_nb.protocol.errors import InvalidParameter

        raise InvalidParameter("stop_after" if stop_after is not None else "resume_from", stop_after or resume_from,
                               "checkpoints are not kept on Ray workers yet; use a Generator without cluster=")
    task.resume_point, task.stop_after = resume_from, stop_after
    return link_fields(resume_from)


def link_fields(resume_from: ResumePoint | None) -> dict[str, Any]:
    """What a resumed task's ``task.json`` and ``generation_started`` carry about its origin."""
    if resume_from is None:
        return {}
    return {"resumed_from": resume_from.task_id, "resume_step": resume_from.step}


@contextlib.contextmanager
def for_run(run: Any, runner: Any, call: dict[str, Any]) -> Iterator[Any]:
    """The checkpoints of ``run`` while ``runner(**call)`` denoises; with a resume point, the call
    starts from the saved latents, RNG state and scheduler state, skipping the steps done."""
    task = run.task
    point: ResumePoint | None = getattr(task, "resume_point", None)
    stop_after = getattr(task, "stop_after", None)
    pacing = pacing_for(getattr(run.ctx, "checkpoints", "auto"))
    if type(runner).__name__ not in RESUMABLE_PIPELINES:
        if point is not None or stop_after is not None:
            raise ResumeError(f"{type(runner).__name__} runs cannot be checkpointed; run it without "
                              "stop_after= (Animate decodes inside its own loop)")
        yield NO_CHECKPOINTS
        return
    if pacing is None and (point is not None or stop_after is not None):
        pacing = Pacing(every_steps=1 << 30)  # only the forced ones (stop_after, pause, keep, last step)
    if pacing is None:
        yield NO_CHECKPOINTS
        return
    task_file = task.run_dir / journal.TASK_FILE
    if not task_file.is_file():  # a Ray worker's scratch folder: the run folder (and resuming) is the driver's
        yield NO_CHECKPOINTS
        return
    info = json.loads(task_file.read_text(encoding="utf-8"))
    skip = None
    if point is not None:
        device = run.holder.execution_device(runner)
        call["latents"] = point.state["latents"].to(device)
        if type(runner).__name__ == "WanVideoToVideoPipeline":
            call.pop("video")  # it takes latents or a video: the video's part is in the latents now
        call["generator"].set_state(point.state["rng_state"])
        skip = SkipDoneSteps(runner, point.step, point.state["scheduler"], device)
        skip.install()
    checkpoints = RunCheckpoints(task, pacing, recipe_key=info.get("recipe_key"), decode=_preview_writer(run),
                                 hashes=conditioning_hashes(info.get("recipe") or {}))
    try:
        yield checkpoints
    finally:
        if skip is not None:
            skip.uninstall()


def stopped_result(run: Any, kept: dict[str, Any]) -> Any:
    """The Result of a ``stop_after`` run: its x0 preview as the video, ``stopped_at`` the step."""
    import time

    from wan_nb.core.params import public_params
    from wan_nb.core.task import Result

    task = run.task
    return Result(task_id=task.id, video_path=Path(kept["preview_path"]), params=public_params(task.params),
                  seed=task.seed, model=run.ctx.model, duration_s=round(time.perf_counter() - run.started, 3),
                  run_dir=task.run_dir, stopped_at=kept["stopped_after"])


def conditioning_hashes(found: dict[str, Any]) -> dict[str, Any]:
    """What the run's result depends on besides its arguments, by hash: each LoRA file, the image
    and every other input's pixels (kept in the checkpoint and its summary, as the recipe has them)."""
    inputs = {name: entry.get("sha256") for name, entry in (found.get("inputs") or {}).items()
              if isinstance(entry, dict)}
    if isinstance(found.get("image"), dict):
        inputs["image"] = found["image"].get("sha256")
    return {"model": (found.get("model") or {}).get("repo_id") or (found.get("model") or {}).get("name"),
            "loras": {l.get("name"): l.get("sha256") for l in found.get("loras") or ()}, "inputs": inputs}


def _preview_writer(run: Any) -> Any:
    def write(pipe: Any, latents: Any, path: Path) -> None:
        from wan_nb.models.video_io import decode_latents, write_mp4

        if run.reference_frames:  # VACE: the reference images' latent frames come first
            latents = latents[:, :, run.reference_frames:]
        write_mp4(decode_latents(pipe, latents), path, fps=run.task.params["fps"],
                  metadata=run.ctx.mp4_tags(run.task.id))

    return write
