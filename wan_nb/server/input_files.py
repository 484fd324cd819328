"""``GET wan-nb/api/tasks/{id}/inputs/{file}``: one input file of a task (the checks are
:func:`.inputs.servable_input`)."""

from __future__ import annotations

from tornado import web

from wan_nb.runs import kept_inputs as run_inputs
from ..relay.protocol import API_ROOT
from .handlers import TASK, VideoHandler
from .inputs import servable_input

__all__ = ["InputFileHandler", "handlers"]


class InputFileHandler(VideoHandler):
    """``GET …/tasks/{id}/inputs/{file}``: tornado's StaticFileHandler (Range, ETag, HEAD) over
    one checked file, with the video route's authentication and headers."""

    def _resolve(self, task_id: str, file: str) -> str:  # type: ignore[override]
        task = self.hub.find(task_id)
        if task is None:
            raise web.HTTPError(404, f"unknown task {task_id!r}")
        path = servable_input(self.hub.run_folder(task), file)
        if path is None:
            raise web.HTTPError(404, f"task {task_id} has no input file {file[:80]!r}")
        self.root = str(path.parent)
        self._media_type = run_inputs.MEDIA_TYPES[path.suffix.lower()]
        return path.name

    def get_content_type(self) -> str:
        return self._media_type

    @web.authenticated
    async def get(self, task_id: str, file: str, include_body: bool = True) -> None:  # type: ignore[override]
        await super().get(task_id, file, include_body=include_body)

    @web.authenticated
    async def head(self, task_id: str, file: str) -> None:  # type: ignore[override]
        await super().head(task_id, file)


def handlers() -> list[tuple[str, type, dict]]:
    return [(rf"{API_ROOT}/tasks/{TASK}/inputs/(?P<file>[^/]+)", InputFileHandler, {"path": "/"})]
