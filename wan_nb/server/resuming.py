"""Resume from the server: a stopped or interrupted run continues in a live process, never here.

The server never runs a generator (it must not import torch), so ``POST wan-nb/api/tasks/{id}/resume``
of a *finished* run that kept a checkpoint asks a live producer to do it: one whose file lists a
generator of the run's model among its ``resumers`` (:mod:`wan_nb.relay.producer`), preferring
the process that ran it, then one writing to the same runs folder. That generator checks the
checkpoint, model, inputs and LoRA files (``gen.submit_resume``) and answers with the new
task's id, which the Lab then follows. With no such process the answer says what to run instead.

:class:`ResumeLinks` adds what the task list's runs on disk already say (``resumable``,
``checkpoint_step``, ``resumed_from``) to the snapshots of tasks the server saw live, reading the
run folder once per change of the task, not once per request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from tornado.ioloop import IOLoop

from wan_nb.protocol.statuses import RESUMABLE
from wan_nb.runs import checkpoint_file
from wan_nb.runs.journal import TASK_FILE
from ..relay import protocol
from .control import ControlLane
from .store import TaskEntry, trusted, valid_task_id

__all__ = ["ResumeLinks", "Resumer", "hint", "refusal", "rank_producers"]

_CACHE_LIMIT = 4096
# The endings a checkpoint may follow: as the reducer reads them (stopped, interrupted) and as the
# run folder records them before the overlay (cancelled, lost, failed after its last step).
_MAY_HAVE_CHECKPOINT = RESUMABLE | frozenset(checkpoint_file.RESUMABLE_STATUS)


def hint(task_id: str) -> str:
    """What a user can do where no live process can take the run."""
    return (f"run gen.resume_run('{task_id}') in a notebook (a Generator of the run's model), or "
            f"`wan-nb resume {task_id}` in a terminal")


def _task_file(folder: Path | None) -> dict[str, Any]:
    if folder is None or not trusted(folder):
        return {}
    try:
        info = json.loads((folder / TASK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _checkpoint(folder: Path | None) -> dict[str, Any] | None:
    return checkpoint_file.read_summary(folder) if folder is not None and trusted(folder) else None


def refusal(task: TaskEntry, folder: Path | None) -> str | None:
    """Why the finished ``task`` cannot be continued (None when it can)."""
    snap, task_id = task.snapshot, task.task_id
    if snap.kind == "storyboard":
        return (f"storyboard {task_id} resumes from the notebook or script that made it (board.resume() "
                "continues its interrupted scene)")
    if snap.status not in _MAY_HAVE_CHECKPOINT:
        return f"task {task_id} is {snap.status}: there is nothing to resume (gen.rerun('{task_id}') makes it again)"
    if _checkpoint(folder) is None:
        return (f"task {task_id} ended without a checkpoint, so it cannot continue; start it again with "
                f"gen.rerun('{task_id}') or `wan-nb generate --from` its folder")
    return None


def rank_producers(producers: Iterable[Any], task: TaskEntry, model: str, folder: Path) -> list[Any]:
    """The live producers with a generator of ``model`` that resumes, best first: the process
    that ran ``task``, then one whose generator writes to the run's runs folder, then any."""
    def fits(producer: Any) -> list[dict[str, Any]]:
        return [r for r in producer.info.get("resumers") or [] if r.get("model") == model]

    able = [p for p in producers if p.alive and p.info.get("control") and fits(p)]
    return sorted(able, key=lambda p: (p is not task.producer and task.task_id not in p.tasks,
                                       all(Path(r["runs_dir"]) != folder.parent for r in fits(p)), p.pid))


class Resumer:
    """Sends ``resume_run`` to the best live producer (through its control lane, so a frozen one
    holds up only itself); the next one is tried only if one could not be reached."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def resume(self, task: TaskEntry, folder: Path | None, producers: Iterable[Any]) -> dict[str, Any]:
        """``{"ok": True, "task_id": new_id}``; else ``{"ok": False, "error", "status"}`` (HTTP)."""
        problem = refusal(task, folder)
        if problem is not None:
            return {"ok": False, "error": problem, "status": 409}
        assert folder is not None
        model = task.snapshot.model_type or _task_file(folder).get("model")
        ranked = rank_producers(producers, task, model, folder) if isinstance(model, str) else []
        if not ranked:
            return {"ok": False, "status": 409,
                    "error": f"no running Jupyter kernel or script has a wan_nb Generator of model {model!r} to "
                             f"continue task {task.task_id} in: {hint(task.task_id)}"}
        fields = {"folder": str(folder), "model": model}
        unreachable = []
        for producer in ranked:
            info = dict(producer.info)
            answer = await producer.control.request(
                ControlLane.key(protocol.RESUME_RUN, task.task_id, fields),
                lambda info=info: IOLoop.current().run_in_executor(
                    self.pool, lambda: protocol.send_control(info, protocol.RESUME_RUN, protocol.RESUME_TIMEOUT_S,
                                                             task_id=task.task_id, **fields)))
            if answer.get("ok") and valid_task_id(answer.get("task_id")):
                return {"ok": True, "task_id": answer["task_id"], "pid": producer.pid}
            if answer.get("busy") or answer.get("error") == "producer did not answer":
                unreachable.append(producer.pid)
                continue
            # the generator refused (a changed input, another dtype...): its reason says what to do
            return {"ok": False, "status": 409, "error": f"process {producer.pid} cannot resume task "
                                                          f"{task.task_id}: {answer.get('error')}"}
        return {"ok": False, "status": 504,
                "error": f"the processes able to resume task {task.task_id} ({', '.join(map(str, unreachable))}) "
                         f"did not answer; try again, or {hint(task.task_id)}"}


class ResumeLinks:
    """``resumable``, ``checkpoint_step`` and ``resumed_from`` of a task the server holds."""

    def __init__(self) -> None:
        self.cache: dict[str, tuple[Any, dict[str, Any]]] = {}

    def fields(self, task: TaskEntry, folder: Path | None) -> dict[str, Any]:
        version = (folder, task.finished and task.last_seq)   # a live task's link never changes
        hit = self.cache.get(task.task_id)
        if hit is not None and hit[0] == version:
            return hit[1]
        found: dict[str, Any] = {"resumable": False, "checkpoint_step": None,
                                 "resumed_from": _task_file(folder).get("resumed_from")}
        if task.finished and task.snapshot.kind != "storyboard" \
                and task.snapshot.status in _MAY_HAVE_CHECKPOINT:
            kept = _checkpoint(folder)
            if kept is not None:
                found.update(resumable=True, checkpoint_step=kept.get("step"))
        if len(self.cache) >= _CACHE_LIMIT:
            self.cache.clear()
        self.cache[task.task_id] = (version, found)
        return found
