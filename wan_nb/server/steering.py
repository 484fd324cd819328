"""``POST wan-nb/api/tasks/{id}/cancel``, ``…/pause``, ``…/resume``, ``…/move``: steering a task.

Each is relayed to the process that runs the task (:meth:`.hub.Hub.steer`), which answers whether
it could; ``…/resume`` of a stopped or interrupted run asks a live process to continue it
(:mod:`.resuming`).
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..relay.protocol import API_ROOT
from .handlers import TASK, WanNbAPIHandler

__all__ = ["handlers"]


class SteerHandler(WanNbAPIHandler):
    """``POST …/cancel``, ``…/pause``, ``…/resume``, ``…/move`` (``{"index": n}``): relayed to
    the process that runs the task, which answers whether it could."""

    action = "cancel"

    @web.authenticated
    @authorized
    async def post(self, task_id: str) -> None:
        task = self.task_or_404(task_id)
        arguments = self.arguments()
        if task.finished:
            raise web.HTTPError(409, f"task {task_id} is already {task.snapshot.status}")
        answer = await self.hub.steer(task, self.action, **arguments)
        if answer.get("ok"):
            self.write_json({"task_id": task_id, f"{self.action}_requested": True, **arguments},
                            status=202)
        elif answer.get("busy"):
            raise web.HTTPError(503, f"too many requests to the process running task {task_id} are "
                                     "waiting; try again")
        elif answer.get("error") == "producer did not answer":
            raise web.HTTPError(504, f"the process running task {task_id} did not answer (stopped or "
                                     "hung?); requests to it fail at once for a moment, then try again")
        else:
            raise web.HTTPError(409, f"cannot {self.action} task {task_id}: {answer.get('error')}")

    def arguments(self) -> dict[str, Any]:
        return {}


class CancelHandler(SteerHandler):
    action = "cancel"


class PauseHandler(SteerHandler):
    """``{"release_memory": true}`` (optional) also frees the GPU memory while it waits."""

    action = "pause"

    def arguments(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except (ValueError, RecursionError):
            raise web.HTTPError(400, 'the body must be empty or JSON like {"release_memory": true}')
        release = body.get("release_memory", False) if isinstance(body, dict) else None
        if not isinstance(release, bool):
            raise web.HTTPError(400, '"release_memory" must be true or false')
        return {"release_memory": True} if release else {}


class ResumeHandler(SteerHandler):
    """A paused task goes on; a stopped or interrupted run that kept a checkpoint continues as a
    new task in a live process with a generator of its model (``resumed_as`` names it)."""

    action = "resume"

    @web.authenticated
    @authorized
    async def post(self, task_id: str) -> None:
        task = self.task_or_404(task_id)
        if not task.finished:
            return await super().post(task_id)
        answer = await self.hub.resume_run(task)
        if not answer.get("ok"):
            raise web.HTTPError(answer.get("status", 409), answer.get("error"))
        self.write_json({"task_id": task_id, "resume_requested": True, "resumed_as": answer["task_id"],
                         "producer_pid": answer.get("pid")}, status=202)


class MoveHandler(SteerHandler):
    action = "move"

    def arguments(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except (ValueError, RecursionError):
            raise web.HTTPError(400, 'the body must be JSON like {"index": 0}')
        index = body.get("index") if isinstance(body, dict) else None
        if isinstance(index, float) and index.is_integer():
            index = int(index)   # JSON has one number type: 3.0 is the integer 3
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= 100_000:
            raise web.HTTPError(400, '"index" must be an integer >= 0 (0: runs next)')
        return {"index": index}


def handlers() -> list[tuple[str, type]]:
    api = API_ROOT
    return [(rf"{api}/tasks/{TASK}/{h.action}", h) for h in (CancelHandler, PauseHandler, ResumeHandler,
                                                               MoveHandler)]
