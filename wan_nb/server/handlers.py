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
from tornado.ioloop import IOLoop

from wan_nb.protocol.state import TASK_STATUSES

from wan_nb.protocol.events import dumps
from ..relay.protocol import API_ROOT
from . import _tornado_compat as compat
from .hub import Hub, Subscriber, TaskEntry, parse_seq, valid_task_id
from .listing import finish_in_chunks
from .original_video import original_video_file
from .outbox import HandlerOutbox, Outbox
from .wire import sse_comment, ws_text_frame

AUTH_RESOURCE = "wan_nb"
TASK = r"(?P<task_id>[^/]+)"
TOPICS_HELP = "topics: 'generation_progress', 'vram', 'previews', 'task:<task_id>'"


class WanNbAPIHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def hub(self) -> Hub:
        return self.settings["wan_nb_hub"]

    def task_or_404(self, task_id: str) -> TaskEntry:
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
        limit = self._count("limit", None)
        offset = self._count("offset", 0)
        status = self.get_argument("status", None)
        if status is not None and status not in TASK_STATUSES:
            raise web.HTTPError(400, f"status must be one of {', '.join(TASK_STATUSES)}")
        listing = await self.hub.list_tasks(limit=limit, offset=offset, status=status)
        self.set_header("X-Total-Count", str(listing["total"]))   # the body stays {"tasks": [...]}
        await finish_in_chunks(self, self.hub.tasks_body(listing["tasks"]))

    def _count(self, name: str, default: int | None) -> int | None:
        raw = self.get_argument(name, None)
        if raw is None:
            return default
        value = parse_seq(raw)
        if value is None or value > 100_000:
            raise web.HTTPError(400, f"{name} must be an integer from 0 to 100000, not {raw[:40]!r}")
        return value


class TaskHandler(WanNbAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, task_id: str) -> None:
        self.write_json(self.hub.snapshot(self.task_or_404(task_id)))


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
        kwargs = {"limit": self.hub.client_buffer, "on_close": self._outbox_closed}
        if compat.is_gzipping(self):
            outbox: Outbox = HandlerOutbox(self, **kwargs)
        else:
            outbox = Outbox(stream, chunked=self.request.version == "HTTP/1.1", **kwargs)
        self.outbox = outbox
        self.done = asyncio.get_running_loop().create_future()
        self.hub.connect(outbox, heartbeat=True)
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
            self.hub.disconnect(self.outbox, self.sub)
        if reason == "ended" and not self.request.connection.stream.closed():
            self.finish(set_content_type="text/event-stream; charset=utf-8")


class TaskProgressHandler(_SSEHandler):
    """``GET wan-nb/api/progress/{id}``: one task's progress as Server-Sent Events (what an ``EventSource`` reads)."""

    @web.authenticated
    @authorized
    async def get(self, task_id: str) -> None:
        task = self.task_or_404(task_id)
        raw = self.last_event_id()
        after = parse_seq(raw) if raw not in (None, "") else 0
        if after is None:
            raise web.HTTPError(400, f"Last-Event-ID {raw[:40]!r} is not a sequence number of task "
                                     f"{task_id} (a decimal integer >= 0)")
        if task.finished and after >= task.last_seq:
            self.set_status(204)  # EventSource stops reconnecting on 204
            self.finish()
            return
        if after > task.last_seq:
            raise web.HTTPError(400, f"Last-Event-ID {after} is beyond task {task_id}'s last event "
                                     f"(seq {task.last_seq}); resume from at most that")
        outbox = await self.open_stream()
        skip = () if self.flag("vram") else ("vram_monitoring",)
        self.sub = self.hub.subscriber("sse_task", outbox, previews=self.flag("previews"),
                                       skip_types=skip, on_terminal=self.end_when_drained)
        await self.hub.subscribe_task(self.sub, task.task_id, after)
        if task.missing:
            gaps = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in task.missing)
            outbox.push(sse_comment(f"incomplete: events {gaps} of this task are missing from "
                                    "its journal and cannot be replayed"))
        await self.serve()


class AllEventsHandler(_SSEHandler):
    """``GET wan-nb/api/events``: every task's events, named by type, resumable by id."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        after = self.hub.all_events_position(self.last_event_id())
        if after is None and self.flag("replay"):
            after = 0
        outbox = await self.open_stream()
        self.sub = self.hub.subscriber("sse_all", outbox, previews=self.flag("previews"))
        self.hub.subscribe_all(self.sub, after)
        await self.serve()


# Served videos must never run as content of the Jupyter origin: no sniffing, a sandbox.
VIDEO_HEADERS = {"X-Content-Type-Options": "nosniff",
                 "Content-Security-Policy": "default-src 'none'; media-src 'self'; sandbox"}


class VideoHandler(JupyterHandler, web.StaticFileHandler):
    """The task's MP4 (``…/video``) or a storyboard scene (``…/video/scenes/{n}``, 1-based).

    Only a regular ``.mp4`` file named by the task's own events and lying inside its run folder
    is served, always as ``video/mp4``; tornado's StaticFileHandler does Range, ETag and HEAD.
    Errors are JSON, like the other routes.
    """

    auth_resource = AUTH_RESOURCE

    def get_login_url(self) -> str:
        raise web.HTTPError(403)  # an API: no redirect to the login page

    @property
    def hub(self) -> Hub:
        return self.settings["wan_nb_hub"]

    def initialize(self, path: str, default_filename: str | None = None, original: bool = False) -> None:
        super().initialize(path, default_filename)
        self.original = original   # …/video/original: original.mp4 beside the video (wan_nb.post)

    def _resolve(self, task_id: str, scene: str | None) -> str:
        task = self.hub.find(task_id) if valid_task_id(task_id) else None
        if task is None:
            raise web.HTTPError(404, f"unknown task {task_id!r}")
        if self.original:
            path = original_video_file(self.hub, task)
        else:
            path = self.hub.video_file(task, int(scene) if scene is not None else None)
        if path is None:
            what = f"scene {scene}" if scene is not None else "original video" if self.original else "video"
            raise web.HTTPError(404, f"task {task_id} has no {what} (yet)")
        self.root = str(path.parent)
        return path.name

    @classmethod
    def get_content_version(cls, abspath: str) -> str:
        # size and mtime, not an MD5 of a possibly large video on every first request
        stat = os.stat(abspath)
        return f"{stat.st_size:x}-{int(stat.st_mtime_ns):x}"

    def get_content_type(self) -> str:
        return "video/mp4"

    def set_extra_headers(self, path: str) -> None:
        for name, value in VIDEO_HEADERS.items():
            self.set_header(name, value)
        safe = "".join(c for c in os.path.basename(path) if c.isalnum() or c in "._-") or "video.mp4"
        self.set_header("Content-Disposition", f'inline; filename="{safe}"')

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        for name, value in VIDEO_HEADERS.items():
            self.set_header(name, value)
        self.clear_header("Content-Disposition")
        self.finish(dumps({"message": message, "reason": None}))

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
    """``WS wan-nb/api/ws``: subscribe/unsubscribe to topics, frames pushed as they happen."""

    auth_resource = AUTH_RESOURCE
    outbox: Outbox | None = None
    sub: Subscriber | None = None

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
        self.outbox = Outbox(compat.ws_stream(self), limit=self.hub.client_buffer,
                             on_close=self._outbox_closed)
        self.sub = self.hub.subscriber("ws", self.outbox)
        self.replaying: dict[str, object] = {}   # task_id -> its replay in flight
        self.hub.connect(self.outbox)

    def _outbox_closed(self, reason: str) -> None:
        if reason == "server stopping":
            self._close_now(1001, "server stopping")
        elif reason != "peer closed":
            self.close(1013, reason[:100])  # "try again later": the client resumes with "after"

    def _close_now(self, code: int, reason: str) -> None:
        """Send the close frame straight to the socket: at shutdown the loop may not run again
        to flush one queued the usual way."""
        stream = compat.ws_stream(self) if self.ws_connection is not None else None
        socket = compat.raw_socket(stream) if stream is not None else None
        try:
            if socket is not None and not stream.writing():
                socket.send(compat.ws_close_frame(code, reason))
                stream.close()
            else:
                self.close(code, reason)
        except OSError:
            pass

    def reply(self, type_: str, **data: Any) -> None:
        self.outbox.push(ws_text_frame(dumps({"type": type_, "data": data}).encode()))

    def error(self, message: str, **data: Any) -> None:
        self.reply("error", message=message, **data)

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
        hub, sub, on = self.hub, self.sub, action == "subscribe"
        if topic == "generation_progress":
            hub.subscribe_all(sub) if on else hub.unsubscribe_all(sub)
        elif topic == "vram":
            hub.subscribe_vram(self.outbox) if on else hub.unsubscribe_vram(self.outbox)
        elif topic == "previews":
            hub.set_previews(sub, on)
        else:
            return self.error(f"unknown topic {_short(topic)}; {TOPICS_HELP}")
        self.reply("subscribed" if on else "unsubscribed", topic=topic)

    def _task_topic(self, action: str, topic: str, request: dict) -> None:
        task_id = topic[len("task:"):]
        if not valid_task_id(task_id):
            return self.error(f"{_short(topic)} does not name a task: use 'task:<task_id>'")
        if action == "unsubscribe":
            self.hub.unsubscribe_task(self.sub, task_id)
            self.replaying.pop(task_id, None)   # a replay in flight ends unsubscribed
            return self.reply("unsubscribed", topic=topic)
        explicit = "after" in request
        after = parse_seq(request.get("after", 0))
        if after is None or isinstance(request.get("after"), str):
            return self.error(f"'after' must be a sequence number >= 0, not {_short(request.get('after'))}")
        if self.hub.is_subscribed(self.sub, task_id) or task_id in self.replaying:
            # Already posted on this task: a repeat changes nothing and replays nothing twice.
            return self.reply("subscribed", topic=topic, already=True)
        task = self.hub.find(task_id)
        if task is not None and after > task.last_seq:
            return self.error(f"'after' {after} is beyond task {task_id}'s last event "
                              f"(seq {task.last_seq})", topic=topic, last_seq=task.last_seq)
        if self.hub.replay_busy(self.sub):
            return self.error("too many replays in progress on this connection; wait for them",
                              topic=topic)
        self.reply("subscribed", topic=topic)
        if explicit:
            self.sub.last_sent[task_id] = after  # an explicit resume point replays from there
        marker = self.replaying[task_id] = object()
        IOLoop.current().spawn_callback(self._replay, task_id, after, marker)

    async def _replay(self, task_id: str, after: int, marker: object) -> None:
        try:
            task = await self.hub.subscribe_task(self.sub, task_id, after)
        except Exception:
            self.log.exception("wan_nb: replaying task %s failed", task_id)
            self.replaying.pop(task_id, None)
            return self.error(f"replaying task {task_id} failed", topic=f"task:{task_id}")
        if self.replaying.get(task_id) is not marker:   # unsubscribed meanwhile
            self.hub.unsubscribe_task(self.sub, task_id)
            return
        del self.replaying[task_id]
        if task is not None and task.missing and not self.outbox.closed:
            self.reply("incomplete", topic=f"task:{task_id}", missing_seqs=[list(r) for r in task.missing])

    def on_close(self) -> None:
        if self.outbox is not None:
            self.outbox.close("peer closed")
            self.hub.disconnect(self.outbox, self.sub)


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` for an error message, cut short: a client's 2 MB topic is not echoed back."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # ints past the str conversion limit, deep nesting
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def handlers() -> list[tuple[str, type, dict] | tuple[str, type]]:
    api = API_ROOT
    return [
        (rf"{api}/tasks", TasksHandler),
        (rf"{api}/tasks/{TASK}", TaskHandler),
        (rf"{api}/tasks/{TASK}/video", VideoHandler, {"path": "/"}),
        (rf"{api}/tasks/{TASK}/video/scenes/(?P<scene>[0-9]{{1,4}})", VideoHandler, {"path": "/"}),
        (rf"{api}/tasks/{TASK}/video/original", VideoHandler, {"path": "/", "original": True}),
        (rf"{api}/progress/{TASK}", TaskProgressHandler),
        (rf"{api}/events", AllEventsHandler),
        (rf"{api}/vram", VramHandler),
        (rf"{api}/ws", EventsSocketHandler),
        (rf"{api}/openapi.json", OpenAPIHandler),
    ]
