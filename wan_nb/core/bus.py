"""Thread-safe publish/subscribe for events, with per-task sequence numbers and history.

Two kinds of listeners:

* **sinks** (``add_sink``) run inline, in ``seq`` order, while the bus lock is held. They are
  for cheap, must-not-lose work: the run journal, the relay to Jupyter servers.
* **subscribers** (``subscribe``) each get a mailbox and a thread of their own, so a slow or
  failing callback never slows generation. When a mailbox fills up, superseded intermediate
  progress is dropped (the newest state always survives); terminal events are never dropped.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from typing import Any, Callable, Iterable

from wan_nb.protocol.events import COALESCIBLE_TYPES, Event, EventType, utc_now

__all__ = ["EventBus", "Unsubscribe"]

log = logging.getLogger(__name__)

Callback = Callable[[Event], Any]
Unsubscribe = Callable[[], None]


class _Mailbox:
    """One subscriber's queue and delivery thread."""

    _ids = itertools.count(1)

    def __init__(self, callback: Callback, task_id: str | None, types: frozenset[str] | None,
                 max_pending: int) -> None:
        self.callback = callback
        self.task_id = task_id
        self.types = types
        self.max_pending = max_pending
        self.queue: collections.deque[Event] = collections.deque()
        self.cond = threading.Condition()
        self.busy = False
        self.closed = False
        self.errors = 0
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name=f"wan_nb-subscriber-{next(self._ids)}",
                                       daemon=True)
        self.thread.start()

    def wants(self, event: Event) -> bool:
        if self.task_id is not None and event.task_id != self.task_id:
            return False
        return self.types is None or event.type in self.types

    def put(self, event: Event) -> None:
        with self.cond:
            if self.closed:
                return
            if len(self.queue) >= self.max_pending:
                self._make_room(event)
            self.queue.append(event)
            self.cond.notify()

    def _make_room(self, incoming: Event) -> None:
        # Drop the oldest waiting event that a newer one of the same kind supersedes.
        newest: dict[tuple[str, str], Event] = {(incoming.type, incoming.task_id): incoming}
        for queued in reversed(self.queue):
            newest.setdefault((queued.type, queued.task_id), queued)
        for index, queued in enumerate(self.queue):
            if queued.type in COALESCIBLE_TYPES and newest[(queued.type, queued.task_id)] is not queued:
                del self.queue[index]
                self.dropped += 1
                return
        # Nothing superseded is waiting (all stage/terminal events): let the queue grow; such
        # events are few per task.

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.closed:
                    self.cond.wait()
                if self.closed and not self.queue:
                    return
                event = self.queue.popleft()
                self.busy = True
            try:
                self.callback(event)
            except Exception:  # a subscriber's bug must not reach the generator
                self.errors += 1
                if self.errors == 1:
                    log.exception("wan_nb event subscriber %r raised; further errors are counted, "
                                  "not logged", self.callback)
            finally:
                with self.cond:
                    self.busy = False
                    self.cond.notify_all()

    def idle(self) -> bool:
        return not self.queue and not self.busy

    def wait_idle(self, deadline: float) -> bool:
        with self.cond:
            while not self.idle():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
            return True

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class EventBus:
    """Numbers, stores and fans out the events of many tasks."""

    def __init__(self, history_per_task: int = 20_000, max_tasks: int = 500) -> None:
        self._lock = threading.RLock()
        self._seq: dict[str, int] = {}
        self._history: collections.OrderedDict[str, collections.deque[Event]] = collections.OrderedDict()
        self._history_per_task = history_per_task
        self._max_tasks = max_tasks
        self._sinks: list[Callback] = []
        self._mailboxes: list[_Mailbox] = []

    # -- producing -------------------------------------------------------------------------
    def publish(self, task_id: str, type: str, /, **data: Any) -> Event:
        """Create the next event of ``task_id`` and deliver it. Returns the event."""
        with self._lock:
            seq = self._seq.get(task_id, 0) + 1
            self._seq[task_id] = seq
            event = Event(type=str(type), task_id=task_id, seq=seq, timestamp=utc_now(), data=data)
            self._deliver(event)
            return event

    def publish_event(self, event: Event) -> Event:
        """Deliver an event numbered by another process (a task on a Ray worker), seq kept.

        Its ``seq`` must be the next one of its task here, so the numbering every consumer relies
        on (1, 2, 3 ... no gaps) holds across processes; anything else raises ``ValueError``.
        """
        with self._lock:
            expected = self._seq.get(event.task_id, 0) + 1
            if event.seq != expected:
                raise ValueError(f"event {event.type} of task {event.task_id} has seq {event.seq}; "
                                 f"the next one here is {expected}")
            self._seq[event.task_id] = event.seq
            self._deliver(event)
            return event

    def _deliver(self, event: Event) -> None:
        self._remember(event)
        for sink in self._sinks:
            try:
                sink(event)
            except Exception:
                log.exception("wan_nb sink %r failed on %s", sink, event)
        for mailbox in self._mailboxes:
            if mailbox.wants(event):
                mailbox.put(event)

    def _remember(self, event: Event) -> None:
        history = self._history.get(event.task_id)
        if history is None:
            history = self._history[event.task_id] = collections.deque(maxlen=self._history_per_task)
            while len(self._history) > self._max_tasks:
                evicted, _ = self._history.popitem(last=False)
                self._seq.pop(evicted, None)
        if event.type == EventType.PREVIEW:
            # A preview is an image of up to a few hundred KB and supersedes the one before:
            # history keeps only the newest (it is usually among the last few events).
            for index in range(len(history) - 1, max(-1, len(history) - 200), -1):
                if history[index].type == EventType.PREVIEW:
                    del history[index]
                    break
        history.append(event)

    # -- consuming -------------------------------------------------------------------------
    def subscribe(self, callback: Callback, *, task_id: str | None = None,
                  types: Iterable[str] | None = None, max_pending: int = 1000,
                  replay: bool = False) -> Unsubscribe:
        """Call ``callback(event)`` on a thread of its own for every matching event.

        ``replay=True`` first delivers the stored history (of ``task_id``, or of every task).
        Returns a function that stops the subscription.
        """
        wanted = frozenset(str(t) for t in types) if types is not None else None
        with self._lock:
            mailbox = _Mailbox(callback, task_id, wanted, max_pending)
            if replay:
                for event in self.history(task_id) if task_id else self.all_history():
                    if mailbox.wants(event):
                        mailbox.put(event)
            self._mailboxes.append(mailbox)

        def unsubscribe() -> None:
            with self._lock:
                if mailbox in self._mailboxes:
                    self._mailboxes.remove(mailbox)
            mailbox.close()

        return unsubscribe

    def add_sink(self, sink: Callback) -> Unsubscribe:
        """Call ``sink(event)`` inline, in order, for every event (keep it fast)."""
        with self._lock:
            self._sinks.append(sink)

        def remove() -> None:
            with self._lock:
                if sink in self._sinks:
                    self._sinks.remove(sink)

        return remove

    def history(self, task_id: str, after: int = 0) -> list[Event]:
        with self._lock:
            return [e for e in self._history.get(task_id, ()) if e.seq > after]

    def all_history(self) -> list[Event]:
        with self._lock:
            return [e for events in self._history.values() for e in events]

    def continue_seq(self, task_id: str, seq: int) -> None:
        """Number the next event of ``task_id`` after ``seq`` (a task resumed from its journal)."""
        with self._lock:
            self._seq[task_id] = max(self._seq.get(task_id, 0), int(seq))

    def last_seq(self, task_id: str) -> int:
        with self._lock:
            return self._seq.get(task_id, 0)

    def task_ids(self) -> list[str]:
        with self._lock:
            return list(self._history)

    def drain(self, timeout: float = 2.0) -> bool:
        """Wait until every subscriber has handled what was published so far."""
        deadline = time.monotonic() + timeout
        me = threading.current_thread()
        with self._lock:
            # Called from a subscriber's own callback (task.result() in a handler), that
            # subscriber is busy until we return: waiting for it would only run out the timeout.
            mailboxes = [m for m in self._mailboxes if m.thread is not me]
        return all(m.wait_idle(deadline) for m in mailboxes)
