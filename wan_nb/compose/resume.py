"""Resuming a run from its checkpoint: ``gen.resume_run(source)``, ``submit_resume``, ``resume_queue()``.

A resumed run is a **new task linked to the old one** (decided in ``docs/resume.md``): it gets
its own id and its events start again at seq 1, because the old task already ended with its one
terminal event (``generation_cancelled`` for a stop or a pause-and-quit; none, read as ``lost``,
for a killed process) and every client relies on a task ending exactly once.

Everything is checked before anything is loaded (:func:`resume_point`, :func:`resume_args`): the
folder is a run, not completed, not running, has a checkpoint this wan_nb wrote and can read;
the model, every LoRA file and every input still hash to what the run used (the recipe's own
checks, :mod:`wan_nb.compose.rerun`), and the recipe they make is the checkpoint's. The run side
(latents, RNG, the steps skipped) is :mod:`wan_nb.core.resume`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from wan_nb.core.checkpoint import load_state
from wan_nb.core.resume import ResumePoint
from wan_nb.protocol.errors import ResumeError
from wan_nb.runs import checkpoint_file as files
from wan_nb.runs import journal
from wan_nb.runs.layout import VIDEO_NAME

__all__ = ["ResumePoint", "resume_point", "resume_args", "recipe_for", "submit_point", "submit_resume", "resume_run",
           "resume_queue"]

_NOT_COMPARED = ("versions", "task_id", "created_at", "format", "image", "inputs")


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
        raise ResumeError(f"run {task_id} completed ({folder / (info.get('video') or VIDEO_NAME)}); there is "
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
    from wan_nb.core import recipes

    found = recipes.recipe(point.folder)
    prompt, kwargs = rerun_args(gen, point.folder)
    made = recipe_for(gen, prompt, kwargs)
    if recipes.recipe_key(made) != point.state["recipe_key"]:
        changed = _differences(found, made) or ["the recipe"]
        raise ResumeError(f"run {point.task_id} cannot be resumed here: {', '.join(changed)} differ(s) from the "
                          "run's (this generator: " + ", ".join(f"{k}={made.get(k)!r}" for k in changed if k in made)
                          + "). Use a Generator set up as the run was, or gen.rerun(folder) to start over.")
    return prompt, kwargs


def recipe_for(gen: Any, prompt: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The recipe ``gen.submit(prompt, **kwargs)`` would record (its ``recipe_key`` is what a
    checkpoint must match to be continued by these arguments)."""
    from wan_nb.core import recipes

    params = gen.check(prompt, **kwargs)
    for name in ("image", "last_image"):  # as submit prepares them, so the recipe hashes the same frames
        if params.get(name) is not None:
            from wan_nb.models.specs import prepare_image

            params[name] = prepare_image(params[name], params["height"], params["width"])
    return recipes.build(gen, params)


def submit_point(gen: Any, point: ResumePoint, prompt: str, kwargs: dict[str, Any], *,
                 parent_id: str | None = None) -> Any:
    """Queue the continuation of a checked ``point`` with arguments that make its recipe (from
    :func:`resume_args`, or a storyboard's scene checked with :func:`recipe_for`); the new Task."""
    from wan_nb.core.queue import QueueFile

    task = gen.submit(prompt, resume_from=point, parent_id=parent_id, **kwargs)
    if (Path(gen.runs_dir) / point.task_id).resolve() == point.folder.resolve():
        QueueFile(gen.runs_dir).remove(point.task_id)  # an interrupted run's orphaned entry: resumed now
    return task


def submit_resume(gen: Any, source: Any) -> Any:
    """``gen.submit_resume(source)``: queue the continuation of ``source``; the new Task."""
    point = resume_point(gen, source)
    prompt, kwargs = resume_args(gen, point)
    return submit_point(gen, point, prompt, kwargs)


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
