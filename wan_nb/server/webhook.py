"""The server's webhook: POST a JSON summary of each task's end to a configured URL.

``WanNbExtension.webhook_url`` (ntfy, Slack, Discord, anything that takes a JSON POST; the
summary has ``text`` and ``content`` for the chat services) with ``webhook_timeout`` and
``webhook_retries``. Delivery never waits for it: the store hands the summary to a queue and
returns; one thread posts, retrying a failed post (a connection error, a timeout, a non-2xx
answer) with doubling pauses, and gives up after the retries with a log line. Each task is
posted once (a journal read again, or a reconnecting producer, does not post it twice), and
endings older than the server itself (journals read at start) are not posted.
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from wan_nb.protocol.events import utc_now
from wan_nb.protocol.notice import terminal_summary

__all__ = ["Webhook", "attach"]

log = logging.getLogger(__name__)


class Webhook:
    """Posts summaries to ``url`` from a thread of its own."""

    def __init__(self, url: str, *, timeout: float = 5.0, retries: int = 3, backoff: float = 1.0,
                 logger: logging.Logger | None = None, max_pending: int = 1000) -> None:
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"webhook_url={url!r}: give an http:// or https:// URL")
        self.url, self.timeout, self.retries, self.backoff = url, float(timeout), int(retries), float(backoff)
        self.log = logger or log
        self.since = utc_now()[:19]   # endings before this server started are not news
        self.pending: queue.Queue = queue.Queue(max_pending)
        self.posted: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.delivered = 0
        self.failed = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="wan_nb-webhook", daemon=True)
        self.thread.start()

    def offer(self, task_id: str, frame: dict[str, Any], about: dict[str, Any] | None) -> bool:
        """Queue the summary of ``frame`` if it is a task's end not posted yet; never blocks."""
        data = frame.get("data") or {}
        summary = terminal_summary(frame.get("type", ""), task_id, data, about)
        if summary is None or task_id in self.posted or str(data.get("timestamp") or "")[:19] < self.since:
            return False
        self.posted[task_id] = None
        while len(self.posted) > 10_000:
            self.posted.popitem(last=False)
        try:
            self.pending.put_nowait(summary)
        except queue.Full:
            self.log.warning("wan_nb webhook: %d summaries waiting; dropped the one of %s", self.pending.qsize(), task_id)
            return False
        return True

    def _run(self) -> None:
        while not self.stopping.is_set():
            summary = self.pending.get()
            if summary is None:
                return
            self._post(summary)

    def _post(self, summary: dict[str, Any]) -> None:
        body = json.dumps(summary).encode()
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    if 200 <= answer.status < 300:
                        self.delivered += 1
                        return
                    why = f"HTTP {answer.status}"
            except urllib.error.HTTPError as exc:
                why = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                why = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            if attempt < self.retries and self.stopping.wait(self.backoff * 2 ** attempt):
                break
        self.failed += 1
        self.log.warning("wan_nb webhook: could not post the end of %s to %s (%s)", summary["task_id"], self.url, why)

    def close(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self.pending.put(None)
        self.thread.join(timeout)


def attach(store: Any, webhook: Webhook) -> Webhook:
    """Offer every event ``store`` accepts that ends a task to ``webhook`` (after its delivery)."""
    deliver = store.on_accept

    def on_accept(rec: Any, frame: dict) -> None:
        deliver(rec, frame)
        if rec.terminal:
            entry = store.tasks.get(rec.task_id)
            webhook.offer(rec.task_id, frame, entry.snapshot.to_dict() if entry is not None else None)

    store.on_accept = on_accept
    return webhook
