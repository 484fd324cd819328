"""Delivering accepted events to connections: subscribers, their encodings, replay backlogs.

Every encoding of an event is computed once and shared by all the subscribers that use the
same :class:`Encoder`. A replay (a resume, a late subscription) can be far larger than a
connection's buffer and none of it may be coalesced away, so replayed events wait in the
subscriber's backlog and move to its outbox only as fast as that drains; a task's replay is
streamed a chunk at a time (.replay), and live events of that task that arrive meanwhile are
held back and sent after it, keeping the order. What waits undrained is capped in bytes: a
client that reads less than it asks for is closed (it can resume), not allowed to grow the
server without bound.
"""

from __future__ import annotations

import collections
import json
from typing import Any, Callable, Iterable

from ._tornado_compat import ws_text_frame
from .outbox import Outbox
from .store import CHUNK_BYTES, COALESCIBLE, Rec
from .wire import HEARTBEAT, seed_message, sse_named, sse_unnamed

BACKLOG_BYTES = 32 * 1024 * 1024   # replayed bytes one connection may have waiting


class Encoder:
    """Turns an accepted event into the bytes one kind of stream sends."""

    def encode(self, rec: Rec, frame: dict | None = None) -> bytes:
        raise NotImplementedError


class WsEncoder(Encoder):
    def encode(self, rec: Rec, frame: dict | None = None) -> bytes:
        return ws_text_frame(rec.raw)


class SseAllEncoder(Encoder):
    """Named events with opaque ids ``<boot>-<n>`` (n counts this server run's events)."""

    def __init__(self, boot: str) -> None:
        self.boot = boot

    def encode(self, rec: Rec, frame: dict | None = None) -> bytes:
        return sse_named(rec.type, f"{self.boot}-{rec.gid}", rec.raw)


class SseTaskEncoder(Encoder):
    """The per-task stream's unnamed events, ids = the task's seq."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def encode(self, rec: Rec, frame: dict | None = None) -> bytes:
        if frame is None:
            frame = json.loads(rec.raw)
        return sse_unnamed(rec.seq, seed_message(frame, rec.progress, rec.stage, self.base_url))


class Subscriber:
    """A connection's interest in events, and how it wants them encoded."""

    def __init__(self, outbox: Outbox, encoder: Encoder, *, previews: bool = False,
                 skip_types: Iterable[str] = (), on_terminal: Callable[[], Any] | None = None,
                 backlog_bytes: int = BACKLOG_BYTES) -> None:
        self.outbox = outbox
        self.encoder = encoder
        self.previews = previews
        self.skip_types = frozenset(skip_types)
        self.on_terminal = on_terminal
        self.last_sent: dict[str, int] = {}
        self.backlog: collections.deque[tuple[bytes, bool]] = collections.deque()
        self.backlog_size = 0
        self.backlog_limit = backlog_bytes
        self.pending_replays = 0       # journal reads in flight for this subscriber
        # task -> its live events that arrived while its replay streams (sent after it)
        self.held: dict[str, list[tuple[Rec, bytes]]] = {}
        self.held_size = 0

    def wants(self, rec: Rec) -> bool:
        if rec.type == "preview" and not self.previews:
            return False
        return rec.type not in self.skip_types and rec.seq > self.last_sent.get(rec.task_id, 0)

    def deliver(self, rec: Rec, payload: bytes, *, replay: bool = False, capped: bool = True) -> None:
        held = None if replay else self.held.get(rec.task_id)
        if held is not None:
            held.append((rec, payload))
            self.held_size += len(payload)
            if self.held_size > self.backlog_limit:
                self.outbox.close(f"events waiting behind a replay over {self.backlog_limit} bytes")
                self.drop_backlog()
            return
        self.last_sent[rec.task_id] = rec.seq
        if replay or self.backlog:
            self.backlog.append((payload, rec.terminal))
            self.backlog_size += len(payload)
            if capped and self.backlog_size > self.backlog_limit:
                self.outbox.close(f"replay backlog over {self.backlog_limit} bytes")
                self.drop_backlog()
            return
        self.outbox.push(payload, (rec.type, rec.task_id) if rec.type in COALESCIBLE else None)
        if rec.terminal and self.on_terminal is not None:
            self.on_terminal()

    def drop_backlog(self) -> int:
        dropped, self.backlog_size = self.backlog_size + self.held_size, 0
        self.backlog.clear()
        self.held_size = 0
        for waiting in self.held.values():
            waiting.clear()
        return dropped

    def hold(self, task_id: str) -> None:
        """Keep ``task_id``'s live events back until :meth:`release` (its replay streams)."""
        self.held.setdefault(task_id, [])

    def release(self, task_id: str) -> None:
        """Send the live events held back, those the replay did not already send."""
        for rec, payload in self.held.pop(task_id, ()):
            self.held_size -= len(payload)
            if rec.seq > self.last_sent.get(rec.task_id, 0):
                self.deliver(rec, payload)

    def pump(self) -> None:
        """Move the backlog into the outbox while it keeps up; resume when it has drained."""
        outbox, backlog = self.outbox, self.backlog
        low_water = max(1, outbox.limit // 2)
        while backlog and not outbox.closed:
            if outbox.pending and len(outbox.queue) >= low_water:
                outbox.when_drained(self.pump)
                return
            payload, terminal = backlog.popleft()
            self.backlog_size -= len(payload)
            outbox.push(payload)  # no coalescing key: a replayed event is never dropped
            if terminal and self.on_terminal is not None:
                self.on_terminal()
        if outbox.closed:
            self.drop_backlog()


class Fanout:
    def __init__(self) -> None:
        self.all_subs: list[Subscriber] = []
        self.preview_subs: list[Subscriber] = []
        self.task_subs: dict[str, list[Subscriber]] = {}
        self.streams: set[Outbox] = set()      # SSE responses: they get heartbeats
        self.released_bytes = 0                # backlog bytes freed by leaving clients

    def publish(self, rec: Rec, frame: dict) -> None:
        targets = self.preview_subs if rec.type == "preview" else self.all_subs
        per_task = self.task_subs.get(rec.task_id)
        if not targets and not per_task:
            return
        encoded: dict[Encoder, bytes] = {}
        for group in (targets, per_task or ()):
            for sub in list(group):
                if not sub.wants(rec):
                    continue
                payload = encoded.get(sub.encoder)
                if payload is None:
                    payload = encoded[sub.encoder] = sub.encoder.encode(rec, frame)
                sub.deliver(rec, payload)

    def replay_to(self, sub: Subscriber, recs: Iterable[Rec], *, capped: bool = True) -> None:
        """Queue ``recs`` behind what ``sub`` has waiting. ``capped=False`` for one chunk of a
        streamed replay: its size is bounded by the chunk, and the next waits for it to drain;
        but only into a connection with nothing waiting — a chunk queued behind bytes that still
        wait (several replays to a client that stopped reading) counts against the cap."""
        # A cap set below two journal chunks (backlog_bytes >= 64 KiB is allowed) bounds every
        # replayed byte, as the operator asked: such a server closes a replay larger than it.
        capped = capped or bool(sub.backlog) or sub.outbox.pending or sub.backlog_limit < 2 * CHUNK_BYTES
        for rec in recs:
            if sub.wants(rec):
                sub.deliver(rec, sub.encoder.encode(rec), replay=True, capped=capped)
        sub.pump()

    def watching(self, task_id: str) -> bool:
        return bool(self.task_subs.get(task_id))

    def is_subscribed(self, sub: Subscriber, task_id: str) -> bool:
        return sub in self.task_subs.get(task_id, ())

    def add_task(self, sub: Subscriber, task_id: str) -> None:
        subs = self.task_subs.setdefault(task_id, [])
        if sub not in subs:
            subs.append(sub)

    def remove_task(self, sub: Subscriber, task_id: str) -> None:
        subs = self.task_subs.get(task_id)
        if subs and sub in subs:
            subs.remove(sub)
            if not subs:
                del self.task_subs[task_id]

    def add_all(self, sub: Subscriber) -> None:
        if sub not in self.all_subs:
            self.all_subs.append(sub)
        if sub.previews:
            self.set_previews(sub, True)

    def remove_all(self, sub: Subscriber) -> None:
        if sub in self.all_subs:
            self.all_subs.remove(sub)

    def set_previews(self, sub: Subscriber, on: bool) -> None:
        sub.previews = on
        if on and sub not in self.preview_subs:
            self.preview_subs.append(sub)
        elif not on and sub in self.preview_subs:
            self.preview_subs.remove(sub)

    def remove(self, sub: Subscriber) -> None:
        self.remove_all(sub)
        if sub in self.preview_subs:
            self.preview_subs.remove(sub)
        for task_id in [t for t, subs in self.task_subs.items() if sub in subs]:
            self.remove_task(sub, task_id)
        self.released_bytes += sub.drop_backlog()

    def heartbeat(self) -> None:
        for outbox in list(self.streams):
            outbox.push(HEARTBEAT, "heartbeat")
