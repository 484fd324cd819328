"""Steering requests to producers: one lane per producer, so a frozen one costs only itself.

A producer answers control requests one at a time on its relay thread, so the server sends it
one at a time too: each producer has a :class:`ControlLane`. On a lane

* a request equal to one in flight (same action, task and arguments) is not sent again: it
  waits for that one's answer (forty cancels of one task are one cancel);
* other requests wait their turn behind the one in flight (at most :data:`MAX_WAITING`; more
  are refused as busy, for this producer only);
* once the producer has not answered (a SIGSTOPped or hung process), every request fails at
  once for :data:`FAIL_FAST_S`, and after that a single request probes it again while the rest
  keep failing fast; an answer, any answer, reopens the lane.

So a producer that never answers holds one worker thread, for one timeout at a time, and the
requests of every other producer go straight through.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Awaitable, Callable

NO_ANSWER = "producer did not answer"     # the relay protocol's reply when a timeout ran out
FAIL_FAST_S = 2.0                        # after a timeout, answer at once for this long
MAX_WAITING = 16                         # different requests queued for one producer


def did_not_answer() -> dict[str, Any]:
    return {"ok": False, "error": NO_ANSWER}


class ControlLane:
    """The requests to one producer (IOLoop thread only: no locks)."""

    def __init__(self) -> None:
        self.in_flight: dict[str, asyncio.Future] = {}    # request key -> its answer
        self.turn: asyncio.Lock | None = None
        self.timed_out_at: float | None = None
        self.probing = False

    @staticmethod
    def key(action: str, task_id: str, arguments: dict[str, Any]) -> str:
        return json.dumps([action, task_id, arguments], sort_keys=True, default=str)

    def failing_fast(self) -> bool:
        if self.timed_out_at is None:
            return False
        return self.probing or time.monotonic() - self.timed_out_at < FAIL_FAST_S

    async def request(self, key: str, send: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """The producer's answer to the request ``key`` (sent by ``send`` unless an equal one
        is already waiting for its answer)."""
        waiting = self.in_flight.get(key)
        if waiting is not None:
            return await asyncio.shield(waiting)
        if self.failing_fast():
            return did_not_answer()
        if len(self.in_flight) >= MAX_WAITING:
            return {"ok": False, "error": "busy", "busy": True}
        answer: asyncio.Future = asyncio.get_running_loop().create_future()
        self.in_flight[key] = answer
        try:
            result = await self._in_turn(send)
        except BaseException as exc:
            answer.set_exception(exc)
            answer.exception()   # retrieved: coalesced waiters re-raise it, no "never retrieved"
            raise
        else:
            answer.set_result(result)
            return result
        finally:
            del self.in_flight[key]

    async def _in_turn(self, send: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        if self.turn is None:
            self.turn = asyncio.Lock()
        async with self.turn:
            if self.failing_fast():     # the request ahead timed out while this one waited
                return did_not_answer()
            probe = self.timed_out_at is not None
            self.probing = probe
            try:
                result = await send()
            finally:
                self.probing = False
            if result.get("error") == NO_ANSWER:
                self.timed_out_at = time.monotonic()
            else:
                self.timed_out_at = None
            return result
