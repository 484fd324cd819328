"""HTTP, SSE and WebSocket handlers. They only translate requests; the hub does the work.

All are behind Jupyter's authentication (403 without it) and authorize against the
``wan_nb`` resource. Paths are relative to the server's ``base_url``.
"""

from __future__ import annotations

import asyncio
import json
import os
from importlib import resources
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web, websocket

from .hub import Hub, Subscriber, TaskState, valid_task_id
from .outbox import HandlerOutbox, Outbox
from .wire import dumps, ws_text_frame

AUTH_RESOURCE = "wan_nb"
TASK = r"(?P<task_id>[^/]+)"
TOPICS_HELP = "topics: 'generation_progress', 'vram', 'previews', 'task:<task_id>'"


class WanNbAPIHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def hub(self) -> Hub:
        return self.settings["wan_nb_hub"]

    def task_or_404(self, task_id: str) -> TaskState:
        task = self.hub.find(task_id) if valid_task_id(task_id) else None
        if task is None:
            raise web.HTTPError(404, f"unknown task {task_id!r}")
        return task

    def write_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(dumps(obj))


class TasksHandler(WanNbAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({"tasks": self.hub.snapshots()})


class TaskHandler(WanNbAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, task_id: str) -> None:
        self.write_json(self.hub.snapshot(self.task_or_404(task_id)))


class CancelHandler(WanNbAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, task_id: str) -> None:
        task = self.task_or_404(task_id)
        if task.finished:
            raise web.HTTPError(409, f"task {task_id} is already {task.snapshot.status}")
        answer = await self.hub.cancel(task)
        if answer.get("ok"):
            self.write_json({"task_id": task_id, "cancel_requested": True}, status=202)
        elif answer.get("error") == "producer did not answer":
            raise web.HTTPError(504, f"the process running task {task_id} did not answer")
        else:
            raise web.HTTPError(409, f"cannot cancel task {task_id}: {answer.get('error')}")


class VramHandler(WanNbAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(await self.hub.sample_vram())


class OpenAPIHandler(WanNbAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(openapi_text())


def openapi_text() -> str:
    return resources.files(__package__).joinpath("openapi.json").read_text(encoding="utf-8")


# -- Server-Sent Events ----------------------------------------------------------------------
class _SSEHandler(WanNbAPIHandler):
    outbox: Outbox | None = None
    sub: Subscriber | None = None

    def flag(self, name: str) -> bool:
        return self.get_argument(name, "0").lower() in ("1", "true", "yes")

    def last_event_id(self) -> str | None:
        return self.request.headers.get("Last-Event-ID") or self.get_argument("last_event_id", None)

    async def open_stream(self) -> Outbox:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache, no-transform")
        self.set_header("X-Accel-Buffering", "no")  # tell reverse proxies not to buffer
        self.set_status(200)
        await self.flush()
        stream = self.request.connection.stream
        stream.set_nodelay(True)
        gzipping = any(getattr(t, "_gzipping", False) for t in self._transforms)
        kwargs = {"limit": self.hub.client_buffer, "on_close": self._outbox_closed}
        if gzipping:
            outbox: Outbox = HandlerOutbox(self, **kwargs)
        else:
            outbox = Outbox(stream, chunked=self.request.version == "HTTP/1.1", **kwargs)
        self.outbox = outbox
        self.done = asyncio.get_running_loop().create_future()
        self.hub.sse_outboxes.add(outbox)
        outbox.push(b"retry: 2000\n\n")
        return outbox

    def _outbox_closed(self, reason: str) -> None:
        if not self.done.done():
            self.done.set_result(reason)

    def end_when_drained(self) -> None:
        self.outbox.when_drained(lambda: self._outbox_closed("ended") if not self.done.done() else None)

    def on_connection_close(self) -> None:
        if self.outbox is not None:
            self.outbox.close("peer closed")

    async def serve(self) -> None:
        try:
            reason = await self.done
        finally:
            if self.sub is not None:
                self.hub.unsubscribe(self.sub)
            self.hub.sse_outboxes.discard(self.outbox)
        if reason == "ended" and not self.request.connection.stream.closed():
            self.finish(set_content_type="text/event-stream; charset=utf-8")


class TaskProgressHandler(_SSEHandler):
    """``GET wan-nb/api/progress/{id}``: the 002 seed's stream for one task."""

    @web.authenticated
    @authorized
    async def get(self, task_id: str) -> None:
        task = self.task_or_404(task_id)
        raw = self.last_event_id()
        try:
            after = int(raw) if raw not in (None, "") else 0
        except ValueError:
            raise web.HTTPError(400, f"Last-Event-ID {raw!r} is not a sequence number of task {task_id}")
        if task.finished and after >= task.last_seq:
            self.set_status(204)  # EventSource stops reconnecting on 204
            self.finish()
            return
        outbox = await self.open_stream()
        skip = () if self.flag("vram") else ("vram_monitoring",)
        self.sub = Subscriber(outbox, previews=self.flag("previews"), skip_types=skip)
        self.sub.variant = "sse_task"
        self.sub.on_terminal = self.end_when_drained
        self.hub.subscribe_task(self.sub, task.task_id, after)
        await self.serve()


class AllEventsHandler(_SSEHandler):
    """``GET wan-nb/api/events``: every task's events, named by type, resumable by id."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        raw = self.last_event_id()
        after: int | None = None
        if raw:
            boot, _, number = raw.partition("-")
            if boot == self.hub.boot and number.isdigit():
                after = int(number)
            else:
                after = 0  # an id of an earlier server run: send all that is retained
        elif self.flag("replay"):
            after = 0
        outbox = await self.open_stream()
        self.sub = Subscriber(outbox, previews=self.flag("previews"))
        self.sub.variant = "sse_all"
        self.hub.subscribe_all(self.sub, after)
        await self.serve()


class VideoHandler(JupyterHandler, web.StaticFileHandler):
    """The task's MP4 (``…/video``) or a storyboard scene (``…/video/scenes/{n}``, 1-based).

    Only a file named by the task's own events and lying inside its run folder is served;
    tornado's StaticFileHandler does Range, ETag and HEAD.
    """

    auth_resource = AUTH_RESOURCE

    def get_login_url(self) -> str:
        raise web.HTTPError(403)  # an API: no redirect to the login page

    @property
    def hub(self) -> Hub:
        return self.settings["wan_nb_hub"]

    def _resolve(self, task_id: str, scene: str | None) -> str:
        task = self.hub.find(task_id) if valid_task_id(task_id) else None
        if task is None:
            raise web.HTTPError(404, f"unknown task {task_id!r}")
        path = self.hub.video_file(task, int(scene) if scene is not None else None)
        if path is None:
            what = f"scene {scene}" if scene is not None else "video"
            raise web.HTTPError(404, f"task {task_id} has no {what} (yet)")
        self.root = str(path.parent)
        return path.name

    @classmethod
    def get_content_version(cls, abspath: str) -> str:
        # size and mtime, not an MD5 of a possibly large video on every first request
        stat = os.stat(abspath)
        return f"{stat.st_size:x}-{int(stat.st_mtime_ns):x}"

    @web.authenticated
    @authorized
    async def get(self, task_id: str, scene: str | None = None, include_body: bool = True) -> None:
        await super().get(self._resolve(task_id, scene), include_body=include_body)

    @web.authenticated
    @authorized
    async def head(self, task_id: str, scene: str | None = None) -> None:
        await web.StaticFileHandler.get(self, self._resolve(task_id, scene), include_body=False)


# -- WebSocket -------------------------------------------------------------------------------
class EventsSocketHandler(WebSocketMixin, websocket.WebSocketHandler, JupyterHandler):
    """``WS wan-nb/api/ws``: the 000 seed's subscribe/unsubscribe protocol."""

    auth_resource = AUTH_RESOURCE
    outbox: Outbox | None = None

    @property
    def hub(self) -> Hub:
        return self.settings["wan_nb_hub"]

    def get_compression_options(self) -> None:
        return None  # frames are encoded once and shared by every socket: no per-socket deflate

    async def pre_get(self) -> None:
        allowed = await ensure_async(self.authorizer.is_authorized(self, self.current_user, "read",
                                                                   AUTH_RESOURCE))
        if not allowed:
            raise web.HTTPError(403)

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        await ensure_async(self.pre_get())
        result = super().get(*args, **kwargs)
        if result is not None:
            await result

    def open(self, *args: Any, **kwargs: Any) -> None:
        super().open(*args, **kwargs)
        self.set_nodelay(True)
        self.outbox = Outbox(self.ws_connection.stream, limit=self.hub.client_buffer,
                             on_close=self._outbox_closed)
        self.sub = Subscriber(self.outbox)
        self.sub.variant = "ws"

    def _outbox_closed(self, reason: str) -> None:
        if reason != "peer closed":
            self.close(1013, reason[:100])  # "try again later": the client resumes with "after"

    def reply(self, type_: str, **data: Any) -> None:
        self.outbox.push(ws_text_frame(dumps({"type": type_, "data": data}).encode()))

    def error(self, message: str) -> None:
        self.reply("error", message=message)

    def on_message(self, message: str | bytes) -> None:
        try:
            request = json.loads(message)
        except (ValueError, RecursionError):  # RecursionError: nested too deep ("[[[[...")
            return self.error('not JSON; send {"action": "subscribe", "topic": "generation_progress"}')
        if not isinstance(request, dict):
            return self.error('expected a JSON object like {"action": "subscribe", "topic": "vram"}')
        action, topic = request.get("action"), request.get("topic")
        if action == "ping":
            return self.reply("pong")
        if action not in ("subscribe", "unsubscribe"):
            return self.error(f"unknown action {_short(action)}: use 'subscribe' or 'unsubscribe'")
        if not isinstance(topic, str):
            return self.error(f"'topic' must be a string; {TOPICS_HELP}")
        if topic.startswith("task:"):
            return self._task_topic(action, topic, request)
        hub, sub = self.hub, self.sub
        if topic == "generation_progress":
            if action == "subscribe":
                self.reply("subscribed", topic=topic)
                hub.subscribe_all(sub)
            else:
                if sub in hub.all_subs:
                    hub.all_subs.remove(sub)
                self.reply("unsubscribed", topic=topic)
        elif topic == "vram":
            if action == "subscribe":
                self.reply("subscribed", topic=topic)
                hub.subscribe_vram(self.outbox)
            else:
                hub.unsubscribe_vram(self.outbox)
                self.reply("unsubscribed", topic=topic)
        elif topic == "previews":
            sub.previews = action == "subscribe"
            if sub.previews:
                self.reply("subscribed", topic=topic)
                hub.subscribe_previews(sub)
            else:
                if sub in hub.preview_subs:
                    hub.preview_subs.remove(sub)
                self.reply("unsubscribed", topic=topic)
        else:
            self.error(f"unknown topic {_short(topic)}; {TOPICS_HELP}")

    def _task_topic(self, action: str, topic: str, request: dict) -> None:
        task_id = topic[len("task:"):]
        if not valid_task_id(task_id):
            return self.error(f"{_short(topic)} does not name a task: use 'task:<task_id>'")
        if action == "unsubscribe":
            self.hub.unsubscribe_task(self.sub, task_id)
            return self.reply("unsubscribed", topic=topic)
        after = request.get("after", 0)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            return self.error(f"'after' must be a sequence number >= 0, not {_short(after)}")
        self.reply("subscribed", topic=topic)
        self.sub.last_sent[task_id] = after  # an explicit resume point replays from there
        self.hub.find(task_id)
        self.hub.subscribe_task(self.sub, task_id, after)

    def on_close(self) -> None:
        if self.outbox is not None:
            self.outbox.close("peer closed")
            self.hub.unsubscribe(self.sub)


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` for an error message, cut short: a client's 2 MB topic is not echoed back."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # ints past the str conversion limit, deep nesting
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def handlers() -> list[tuple[str, type, dict] | tuple[str, type]]:
    api = "wan-nb/api"
    return [
        (rf"{api}/tasks", TasksHandler),
        (rf"{api}/tasks/{TASK}", TaskHandler),
        (rf"{api}/tasks/{TASK}/cancel", CancelHandler),
        (rf"{api}/tasks/{TASK}/video", VideoHandler, {"path": "/"}),
        (rf"{api}/tasks/{TASK}/video/scenes/(?P<scene>[0-9]{{1,4}})", VideoHandler, {"path": "/"}),
        (rf"{api}/progress/{TASK}", TaskProgressHandler),
        (rf"{api}/events", AllEventsHandler),
        (rf"{api}/vram", VramHandler),
        (rf"{api}/ws", EventsSocketHandler),
        (rf"{api}/openapi.json", OpenAPIHandler),
    ]
