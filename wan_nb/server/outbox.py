"""One connection's outgoing bytes: written at once when the peer keeps up, queued (bounded,
coalescing) when it does not, so a slow client never slows the hub or the other clients.

The fast path writes straight to the socket (one ``send`` syscall, no tornado Future): with a
thousand clients the fan-out of one event is a thousand such calls. Whatever the kernel does
not take goes through tornado's ``IOStream.write``, and until that drains new items wait in the
queue. When the queue is full, an intermediate progress item (one with a coalescing key) gives
way to its newer replacement; terminal and stage events are never dropped — if even those pile
up past ``hard_limit`` the connection is closed, and the client resumes where it stopped.
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Callable, Hashable

from tornado.iostream import IOStream, StreamClosedError

from ._tornado_compat import raw_socket
from .wire import chunk

log = logging.getLogger(__name__)


_last_chunked: tuple[bytes | None, bytes] = (None, b"")


def _chunk_shared(data: bytes) -> bytes:
    """``chunk(data)``, framed once for all the connections an event fans out to (the hub hands
    every subscriber the same bytes object, one after the other, on the IOLoop thread)."""
    global _last_chunked
    raw, framed = _last_chunked
    if raw is not data:
        framed = chunk(data)
        _last_chunked = (data, framed)
    return framed


class Outbox:
    def __init__(self, stream: IOStream, *, limit: int = 1000, chunked: bool = False,
                 on_close: Callable[[str], Any] | None = None) -> None:
        self.stream = stream
        # Raw socket writes only on plain TCP streams (TLS must go through the SSL stream).
        self.socket = raw_socket(stream)
        self.limit = max(1, limit)
        self.hard_limit = self.limit * 10
        self.chunked = chunked
        self.on_close = on_close
        self.queue: collections.deque[tuple[Hashable | None, bytes]] = collections.deque()
        self.pending = False      # a tornado write is in flight
        self.closed = False
        self.coalesced = 0
        self.sent = 0
        self._drain_waiters: list[Callable[[], Any]] = []

    # -- producing side (the hub, on the IOLoop thread) ----------------------------------------
    def push(self, data: bytes, key: Hashable | None = None) -> None:
        """Send ``data``; ``key`` marks items a newer item with the same key may replace."""
        if self.closed:
            return
        if self.chunked:
            data = _chunk_shared(data)
        if not self.pending and not self.queue:
            self._write(data)
            return
        if len(self.queue) >= self.limit:
            self._coalesce(key)  # replaces self.queue
        self.queue.append((key, data))
        if len(self.queue) > self.hard_limit:
            self.close("client too slow: buffer full of undroppable events")

    def _coalesce(self, incoming: Hashable | None) -> None:
        # Keep only the newest item of each key (the incoming item supersedes its own key).
        newest: dict[Hashable, int] = {}
        for index, (key, _) in enumerate(self.queue):
            if key is not None:
                newest[key] = index
        if incoming is not None:
            newest[incoming] = -1
        kept = collections.deque()
        for index, item in enumerate(self.queue):
            key = item[0]
            if key is None or newest.get(key) == index:
                kept.append(item)
            else:
                self.coalesced += 1
        self.queue = kept

    def _write(self, data: bytes) -> None:
        self.sent += 1
        sock = self.socket
        if sock is not None and not self.stream.writing():
            try:
                written = sock.send(data)
            except (BlockingIOError, InterruptedError):
                written = 0
            except OSError as exc:
                self.close(f"send failed: {exc}")
                return
            if written == len(data):
                self._notify_drained()
                return
            data = data[written:]
        try:
            future = self.stream.write(data)
        except StreamClosedError:
            self.close("peer closed")
            return
        self._follow(future)

    def _follow(self, future: Any) -> None:
        """Go on when tornado has handed ``future``'s write to the kernel (at once if it has)."""
        if future.done():
            self._after_write(future)
        else:
            self.pending = True
            future.add_done_callback(self._after_write)

    def _after_write(self, future: Any) -> None:
        self.pending = False
        if future.cancelled() or future.exception() is not None:
            self.close("peer closed")
            return
        if self.queue:
            data = b"".join(item for _, item in self.queue)
            self.queue.clear()
            self._write(data)
        else:
            self._notify_drained()

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def idle(self) -> bool:
        return not self.pending and not self.queue

    def when_drained(self, callback: Callable[[], Any]) -> None:
        """Call ``callback`` once everything pushed so far has been handed to the kernel."""
        if self.closed or self.idle:
            callback()
        else:
            self._drain_waiters.append(callback)

    def _notify_drained(self) -> None:
        if self._drain_waiters and self.idle:
            waiters, self._drain_waiters = self._drain_waiters, []
            for waiter in waiters:
                waiter()

    def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        self.queue.clear()
        if self.on_close is not None:
            try:
                self.on_close(reason)
            except Exception:
                log.exception("wan_nb: closing a client failed")
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            waiter()


class HandlerOutbox(Outbox):
    """The same queueing, writing through ``RequestHandler.write``/``flush`` — for responses a
    tornado output transform (gzip) must see, where raw socket writes would corrupt them."""

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler.request.connection.stream, **{**kwargs, "chunked": False})
        self.socket = None
        self.handler = handler

    def _write(self, data: bytes) -> None:
        self.sent += 1
        try:
            self.handler.write(data)
            future = self.handler.flush()
        except Exception:
            self.close("peer closed")
            return
        self._follow(future)
