"""The server's own VRAM readings: sampled off the IOLoop while anyone listens to ``vram``."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from tornado.ioloop import IOLoop, PeriodicCallback

from wan_nb.protocol.events import dumps, utc_now
from ._tornado_compat import ws_text_frame
from .outbox import Outbox

log = logging.getLogger(__name__)

SERVER_TASK_ID = "server"   # task_id of the VRAM samples the server takes itself


class VramMonitor:
    def __init__(self, interval: float = 1.0, sampler: Callable[[], dict] | None = None,
                 executor: Any = None) -> None:
        self.interval = interval
        self._sampler = sampler
        self._executor = executor
        self.subs: list[Outbox] = []
        self.latest: dict[str, Any] | None = None
        self.at = 0.0
        self.seq = 0
        self._timer: PeriodicCallback | None = None
        self._busy = False

    def subscribe(self, outbox: Outbox) -> None:
        if outbox not in self.subs:
            self.subs.append(outbox)
        if self.latest is not None and time.monotonic() - self.at < 2 * self.interval:
            outbox.push(self._frame(), ("vram", SERVER_TASK_ID))
        if self._timer is None:
            self._timer = PeriodicCallback(self._tick, self.interval * 1000)
            self._timer.start()
            IOLoop.current().add_callback(self._tick)

    def unsubscribe(self, outbox: Outbox) -> None:
        if outbox in self.subs:
            self.subs.remove(outbox)
        if not self.subs:
            self.stop()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    async def sample(self) -> dict[str, Any]:
        """A fresh reading (at most ``interval`` old), taken off the IOLoop thread."""
        if self.latest is not None and time.monotonic() - self.at < self.interval:
            return self.latest
        sampler = self._sampler
        if sampler is None:
            from wan_nb.protocol import monitor

            sampler = monitor.sample
        reading = await IOLoop.current().run_in_executor(self._executor, sampler)
        self.latest = {**reading, "task_id": SERVER_TASK_ID, "timestamp": utc_now()}
        self.at = time.monotonic()
        self.seq += 1
        return self.latest

    def _frame(self) -> bytes:
        frame = {"type": "vram_monitoring", "seq": self.seq, "task_id": SERVER_TASK_ID,
                 "data": self.latest}
        return ws_text_frame(dumps(frame).encode())

    async def _tick(self) -> None:
        if self._busy or not self.subs:
            return
        self._busy = True
        try:
            self.at = 0.0  # force a new reading
            await self.sample()
        except Exception:
            log.debug("wan_nb: VRAM sample failed", exc_info=True)
            return
        finally:
            self._busy = False
        payload = self._frame()
        for outbox in list(self.subs):
            outbox.push(payload, ("vram", SERVER_TASK_ID))
