"""A long task's replay streams a chunk at a time as the connection drains (issue 27, item 5):
before, the whole replay was queued at once against the connection's byte cap, so a 130k-event
task was never replayed (WebSocket close 1013, three times; per-task SSE: nothing). The hub's
real store, journal and fan-out, with a connection that drains on the loop's next turn."""

from __future__ import annotations

import asyncio
import json

from wan_nb.core.bus import EventBus
from wan_nb.runs.journal import Journal
from wan_nb.server.hub import Hub
from wan_nb.server import store as store_module


class DrainingOutbox:
    """Takes what is pushed; 'sends' it on a later turn of the loop, ``limit`` items at a time."""

    def __init__(self, stuck: bool = False) -> None:
        self.limit, self.stuck, self.closed = 1000, stuck, False
        self.queue: list[bytes] = []
        self.sent: list[bytes] = []
        self.pending = False
        self.waiters: list = []

    def push(self, data, key=None):
        self.queue.append(data)
        self.pending = True
        if not self.stuck:
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self):
        self.sent += self.queue
        self.queue, self.pending = [], False
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter()

    def when_drained(self, callback):
        if self.closed or not self.pending:
            callback()
        else:
            self.waiters.append(callback)

    def close(self, reason=""):
        self.closed, self.reason = True, reason


def long_task(runs, task_id: str, steps: int) -> None:
    bus, journal = EventBus(history_per_task=16), Journal()
    bus.add_sink(journal)
    journal.open(task_id, runs / task_id)
    bus.publish(task_id, "generation_started", model_type="tiny", params={"steps": steps}, estimated_duration=None)
    for step in range(1, steps + 1):
        bus.publish(task_id, "detailed_generation_progress", stage="generating", progress=step * 90 / steps,
                    message=f"Step {step}/{steps}", estimated_time_remaining=0, current_step=step, total_steps=steps)
    bus.publish(task_id, "generation_completed", output_path="v.mp4", duration_s=1.0, params={}, seed=0)
    journal.close(task_id)


def hub_bytes(module) -> int:
    return 2 * module.CHUNK_BYTES     # the replay cap these tests give the hub


def test_a_replay_far_larger_than_the_backlog_cap_arrives_whole_in_order(tmp_path):
    runs = tmp_path / "runs"
    long_task(runs, "long", 40_000)                  # ~11 MB of journal
    assert (runs / "long" / "events.jsonl").stat().st_size > 5 * hub_bytes(store_module)
    hub = Hub(runtime_dir=tmp_path / "rt", runs_dirs=[runs], backlog_bytes=2 * store_module.CHUNK_BYTES)

    async def main():
        outbox = DrainingOutbox()
        sub = hub.subscriber("ws", outbox)
        await hub.subscribe_task(sub, "long", 0)
        return outbox

    outbox = asyncio.run(main())
    hub.stop()
    assert not outbox.closed, getattr(outbox, "reason", "")
    seqs = [json.loads(frame[2:] if frame[1] < 126 else frame[4:] if frame[1] == 126 else frame[10:])["seq"]
            for frame in outbox.sent]
    assert seqs == list(range(1, 40_003))
    assert hub.tasks["long"].missing == []


def test_a_client_that_stops_reading_holds_one_chunk_not_the_whole_journal(tmp_path):
    runs = tmp_path / "runs"
    long_task(runs, "long", 40_000)
    hub = Hub(runtime_dir=tmp_path / "rt", runs_dirs=[runs])
    reads = []
    real = store_module.read_journal

    def counting(*args):
        reads.append(args[-1].offset if args[-1] is not None else None)
        return real(*args)

    async def main():
        outbox = DrainingOutbox(stuck=True)
        sub = hub.subscriber("ws", outbox)
        replay = asyncio.ensure_future(hub.subscribe_task(sub, "long", 0))
        for _ in range(400):                       # the first chunk reaches the connection
            if outbox.queue:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)                   # ... and nothing more is read meanwhile
        held = len(outbox.queue) + sum(1 for _ in sub.backlog)
        live = hub.tasks["long"]
        outbox.close("peer closed")                # it leaves: the stream stops
        outbox._drain()
        await asyncio.wait_for(replay, 10)
        return held, live

    import wan_nb.server.hub as hub_module
    hub_module.read_journal = counting
    try:
        held, _ = asyncio.run(main())
    finally:
        hub_module.read_journal = real
        hub.stop()
    assert len(reads) == 1                           # one chunk read, not 11 MB
    assert 0 < held < 40_000 // 4
