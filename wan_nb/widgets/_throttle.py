"""Coalescing: turn a burst of state changes into at most ``rate`` renders a second.

Events arrive on bus subscriber threads at whatever rate the pipeline steps (hundreds a second
for a small model). Each widget update is a comm message to the browser, so rendering every
event would flood the front end. Callers mark the state dirty with :meth:`Throttle.request`;
the throttle renders at once if the last render is old enough, and otherwise arms a single
trailing timer, so the newest state is always drawn within one interval. :meth:`flush` draws
synchronously (still keeping the spacing) — used for the final state, so that once the
subscriber callback returns, the widget shows how the task ended.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

__all__ = ["Throttle"]


class Throttle:
    def __init__(self, render: Callable[[], None], rate: float = 10.0) -> None:
        if rate <= 0:
            raise ValueError(f"rate={rate!r}: give a positive number of renders per second")
        self._render = render
        self.interval = 1.0 / rate
        self._lock = threading.RLock()  # one render at a time, from whichever thread
        self._last = float("-inf")
        self._timer: threading.Timer | None = None
        self._dirty = False
        self.renders: list[float] = []  # monotonic times of renders (tests, benchmarks)

    def request(self) -> None:
        """The state changed: render now if allowed, else within one interval."""
        with self._lock:
            self._dirty = True
            wait = self._last + self.interval - time.monotonic()
            if wait <= 0:
                self._draw()
            elif self._timer is None:
                self._timer = threading.Timer(wait, self._on_timer)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Render the current state now (sleeping out the spacing first if needed)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._dirty = True
            self._draw()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            if self._dirty:
                wait = self._last + self.interval - time.monotonic()
                if wait > 0:  # a flush drew in between: keep the spacing
                    self._timer = threading.Timer(wait, self._on_timer)
                    self._timer.daemon = True
                    self._timer.start()
                    return
                self._draw()

    def _draw(self) -> None:
        self._dirty = False
        self._last = time.monotonic()
        self.renders.append(self._last)
        self._render()

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def max_per_second(self) -> int:
        """The most renders that fell in any one-second window."""
        times, best, start = self.renders, 0, 0
        for end in range(len(times)):
            while times[end] - times[start] >= 1.0:
                start += 1
            best = max(best, end - start + 1)
        return best
