"""The server's memory stays bounded: freed memory goes back to the OS once a burst of events
is over, and forgotten tasks leave nothing behind. (The end-to-end figure is
``benchmarks/server_memory.py``.)"""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from wan_nb.server.hub import Hub, Producer


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def frame(task_id: str, seq: int, type_: str = "detailed_generation_progress", **data) -> bytes:
    data.setdefault("progress", seq)
    return json.dumps({"type": type_, "seq": seq, "task_id": task_id,
                       "data": {**data, "task_id": task_id, "timestamp": "2026-01-01T00:00:00.000Z"}}).encode()


def finish(hub: Hub, task_id: str, producer: Producer | None = None) -> None:
    hub.ingest(frame(task_id, 1, "generation_started", model_type="tiny", params={"prompt": "fox"}), producer)
    hub.ingest(frame(task_id, 2), producer)
    hub.ingest(frame(task_id, 3, "generation_completed", output_path="v.mp4", duration_s=1.0), producer)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads RSS from /proc")
def test_an_idle_hub_returns_freed_memory_to_the_os(tmp_path):
    hub = Hub(runtime_dir=tmp_path, memory_trim_interval=0.01)
    if hub.trimmer.trim_call is None:
        pytest.skip("this C library has no malloc_trim")
    finish(hub, "t1")
    # What a burst of events leaves: most of ~150 MB of mid-sized blocks freed, every tenth kept.
    blocks = [os.urandom(16) * (40 + n % 20) for n in range(200_000)]
    kept = blocks[::10]
    del blocks
    before = rss_mb()

    async def idle_tick():
        await asyncio.sleep(0.05)  # longer than memory_trim_interval without events
        await hub.trimmer.maybe_trim()

    asyncio.run(idle_tick())
    assert hub.trimmer.pending == 0
    assert before - rss_mb() > 40, f"RSS {before:.0f} MB -> {rss_mb():.0f} MB"
    assert len(kept) == 20_000


def test_no_trim_without_new_events_or_while_events_keep_coming(tmp_path):
    hub = Hub(runtime_dir=tmp_path, memory_trim_interval=5.0)
    calls = []
    hub.trimmer.trim_memory = lambda: calls.append(1) or True
    asyncio.run(hub.trimmer.maybe_trim())
    assert calls == []  # nothing happened since start
    finish(hub, "t1")
    asyncio.run(hub.trimmer.maybe_trim())
    assert calls == []  # the last event is fresh: the burst may not be over
    hub.trimmer.last_trim -= hub.trimmer.BUSY_SECONDS
    asyncio.run(hub.trimmer.maybe_trim())
    assert calls == [1]  # busy for long enough: trimmed anyway


def test_forgotten_tasks_leave_no_trace_in_their_producer(tmp_path):
    hub = Hub(runtime_dir=tmp_path, max_tasks=50, max_tasks_with_events=10)
    producer = Producer(tmp_path / "wan_nb-producer-1.json", {"pid": 1, "runs_dirs": []})
    for n in range(500):
        finish(hub, f"t{n:03d}", producer)
    assert len(hub.tasks) == 50 and len(producer.tasks) == 50
    assert sum(1 for task in hub.tasks.values() if task.events) <= 11
    assert set(producer.tasks) == set(hub.tasks)


def test_memory_trim_interval_is_validated():
    from traitlets import TraitError

    from wan_nb.server.app import WanNbExtension

    with pytest.raises(TraitError, match="memory_trim_interval"):
        WanNbExtension(memory_trim_interval=-1)
    assert WanNbExtension(memory_trim_interval=0).memory_trim_interval == 0
