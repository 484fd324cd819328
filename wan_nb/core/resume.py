"""Resuming a run from its checkpoint: ``gen.resume_run(source)``, ``resume_queue()``, ``stop_after=``.

A resumed run is a **new task linked to the old one** (decided in ``docs/resume.md``): it gets
its own id and its events start again at seq 1, because the old task already ended with its one
terminal event (``generation_cancelled`` for a stop or a pause-and-quit; none, read as ``lost``,
for a killed process) and every client relies on a task ending exactly once. The link is
``resumed_from`` (the old id) and ``resume_step`` in the new ``task.json``, its recipe's run
folder and its ``generation_started`` data; the old folder is left as it was.

Everything is checked before anything is loaded (:func:`resume_point`, :func:`resume_args`): the
folder is a run, not completed, not running, has a checkpoint this wan_nb wrote and can read;
the model, every LoRA file and every input still hash to what the run used (the recipe's own
checks, ``wan_nb.compose.rerun``), and the recipe they make is the checkpoint's.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from wan_nb.core.checkpoint import (NO_CHECKPOINTS, RESUMABLE_PIPELINES, Pacing, RunCheckpoints, SkipDoneSteps,
                                    load_state, pacing_for)
from wan_nb.protocol.errors import ResumeError
from wan_nb.runs import checkpoint_file as files
from wan_nb.runs import journal

__all__ = ["ResumePoint", "resume_point", "resume_args", "submit_resume", "resume_run", "resume_queue",
           "for_run", "prepare_task", "link_fields", "check_stop_after"]

_NOT_COMPARED = ("versions", "task_id", "created_at", "format", "image", "inputs")


@dataclass(frozen=True)
class ResumePoint:
    """A checked checkpoint: which run, which step, and the saved state (tensors on the CPU)."""

    folder: Path
    task_id: str
    step: int
    total_steps: int
    state: dict[str, Any]


# -- finding and checking ----------------------------------------------------------------------
def _folder(gen: Any, source: Any) -> Path:
    run_dir = getattr(source, "run_dir", None)
    if run_dir is not None:  # a Task, a Result, a history Run
        return Path(run_dir)
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.suffix.lower() == ".mp4" and path.is_file():
        if (path.parent / journal.TASK_FILE).is_file():
            return path.parent
        from wan_nb.runs.recipe import recipe

        task_id = recipe(path).get("task_id")
        if task_id and (Path(gen.runs_dir) / task_id).is_dir():
            return Path(gen.runs_dir) / task_id
        raise ResumeError(f"{path} names run {task_id!r}, which is not in {gen.runs_dir}; pass its run folder")
    if (Path(gen.runs_dir) / text).is_dir():
        return Path(gen.runs_dir) / text
    raise ResumeError(f"nothing to resume at {source!r}: pass a Task, a task id of {gen.runs_dir}, "
                      "a run folder or the MP4 of a stopped run")


def resume_point(gen: Any, source: Any) -> ResumePoint:
    """The checkpoint ``source`` resumes from, checked; raises ResumeError saying what to do."""
    folder = _folder(gen, source)
    try:
        info = json.loads((folder / journal.TASK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResumeError(f"{folder} is not a run folder (no readable {journal.TASK_FILE}: {exc})") from exc
    task_id = info.get("task_id") or folder.name
    if info.get("status") == "completed":
        raise ResumeError(f"run {task_id} completed ({folder / (info.get('video') or 'video.mp4')}); there is "
                          "nothing to resume. Use gen.rerun(folder) to make it again.")
    live = _live_task(gen, task_id)
    if live is not None:
        raise ResumeError(f"run {task_id} is still {live.status} in this process; use task.resume() after "
                          "task.pause(), or cancel it with task.cancel(keep=True) first")
    from wan_nb.runs.history import read_folder

    entry, finished = read_folder(folder.parent, folder.name)
    if not finished:
        raise ResumeError(f"run {task_id} is still {entry['status']} in process {info.get('pid')}; cancel it "
                          "(keep=True) or wait for it to end before resuming")
    state = load_state(folder)
    if state.get("task_id") not in (None, task_id) or state["recipe_key"] != info.get("recipe_key"):
        raise ResumeError(f"{folder / files.STATE_NAME} does not belong to this run's recipe "
                          f"({folder / journal.TASK_FILE} was changed or the file was copied from another run); "
                          "start it again with gen.rerun(folder)")
    return ResumePoint(folder, task_id, int(state["step"]), int(state["total_steps"]), state)


def _live_task(gen: Any, task_id: str) -> Any:
    try:
        task = gen.task(task_id)
    except KeyError:
        return None
    return None if task.done() else task


def _differences(was: dict[str, Any], now: dict[str, Any]) -> list[str]:
    keys = sorted((set(was) | set(now)) - set(_NOT_COMPARED))
    out = [k for k in keys if json.dumps(was.get(k), sort_keys=True, default=str)
           != json.dumps(now.get(k), sort_keys=True, default=str)]
    if k_inputs := [n for n in set(was.get("inputs") or {}) | set(now.get("inputs") or {})
                    if (was.get("inputs") or {}).get(n, {}).get("sha256") != (now.get("inputs") or {}).get(n, {}).get("sha256")]:
        out += [f"input {n}" for n in sorted(k_inputs)]
    if (was.get("image") or {}).get("sha256") != (now.get("image") or {}).get("sha256"):
        out.append("image")
    return out


def resume_args(gen: Any, point: ResumePoint) -> tuple[str, dict[str, Any]]:
    """(prompt, kwargs) that remake the run, with the recipe checked to be the checkpoint's.

    The recipe's checks name a changed model, LoRA file or input; then the recipe the arguments
    would make now is compared with the one recorded (dtype, weights, cache mode...)."""
    from wan_nb.compose.rerun import rerun_args
    from wan_nb.runs import recipe as recipes

    found = recipes.recipe(point.folder)
    prompt, kwargs = rerun_args(gen, point.folder)
    params = gen.check(prompt, **kwargs)
    for name in ("image", "last_image"):  # as submit prepares them, so the recipe hashes the same frames
        if params.get(name) is not None:
            from wan_nb.models.specs import prepare_image

            params[name] = prepare_image(params[name], params["height"], params["width"])
    made = recipes.build(gen, params)
    if recipes.recipe_key(made) != point.state["recipe_key"]:
        changed = _differences(found, made) or ["the recipe"]
        raise ResumeError(f"run {point.task_id} cannot be resumed here: {', '.join(changed)} differ(s) from the "
                          "run's (this generator: " + ", ".join(f"{k}={made.get(k)!r}" for k in changed if k in made)
                          + "). Use a Generator set up as the run was, or gen.rerun(folder) to start over.")
    return prompt, kwargs


def submit_resume(gen: Any, source: Any) -> Any:
    """``gen.submit_resume(source)``: queue the continuation of ``source``; the new Task."""
    from wan_nb.core.queue import QueueFile

    point = resume_point(gen, source)
    prompt, kwargs = resume_args(gen, point)
    task = gen.submit(prompt, resume_from=point, **kwargs)
    if (Path(gen.runs_dir) / point.task_id).resolve() == point.folder.resolve():
        QueueFile(gen.runs_dir).remove(point.task_id)  # an interrupted run's orphaned entry: resumed now
    return task


def resume_run(gen: Any, source: Any, *, progress: Any = "auto") -> Any:
    """``gen.resume_run(source)``: finish a stopped or interrupted run from its last checkpoint (a
    Task, task id, run folder or the MP4 of a ``stop_after`` run), in this process or a new one;
    waits (with live progress) and returns the Result. ResumeError, before anything is loaded, for a
    completed run, no checkpoint, another wan_nb's or a damaged one; a changed model, input or LoRA
    file is named (``RecipeError`` / ``ResumeError``)."""
    from wan_nb.protocol import frontend

    task = submit_resume(gen, source)
    frontend.show("progress", task, mode=progress)
    try:
        return task.result()
    except KeyboardInterrupt:
        task.cancel(keep=True)
        task.wait(timeout=30)
        raise


def resume_queue(gen: Any) -> list[Any]:
    """``gen.resume_queue()``: submit again what a previous process of this runs dir left queued or
    unfinished. A run that had a checkpoint continues from it; the others start over. Tasks of
    another model stay recorded for a generator of that model; storyboard scenes are dropped (the
    storyboard's ``resume()`` remakes them)."""
    from wan_nb.core.queue import QueueFile, resubmit

    queue_file = QueueFile(gen.runs_dir)
    resumed = []
    for old_id, entry in queue_file.take_orphans(lambda e: e.get("model") == gen.model and not e.get("parent_id")):
        folder = Path(gen.runs_dir) / old_id
        if files.has_checkpoint(folder):
            try:
                resumed.append(submit_resume(gen, folder))
                continue
            except Exception as exc:  # the run starts over instead: say why
                warnings.warn(f"wan_nb: run {old_id} cannot continue from its checkpoint ({exc}); it starts over",
                              stacklevel=3)
        queue_file.put_back(old_id, entry)
    return resumed + resubmit(queue_file, gen.model, gen.submit)


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
    info = json.loads((task.run_dir / journal.TASK_FILE).read_text(encoding="utf-8"))
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
