"""What one process of the same user can make the server believe or keep (issue 27, item 14):
events of another process's task are refused, and no event's strings, lists or storyboard story
make the server keep (and serve in every ``GET /tasks``) megabytes. The hub's real store and
journals, driven directly."""

from __future__ import annotations

import json
import os

from wan_nb.core.bus import EventBus
from wan_nb.protocol.events import dumps
from wan_nb.runs.journal import Journal
from wan_nb.server.discovery import Producer
from wan_nb.server.frame_limits import FRAME_BUDGET
from wan_nb.server.hub import Hub
from wan_nb.server.store import read_journal


def frame(task_id: str, seq: int, type_: str, **data) -> bytes:
    return json.dumps({"type": type_, "seq": seq, "task_id": task_id,
                       "data": {**data, "task_id": task_id, "timestamp": "2026-01-01T00:00:00.000Z"}}).encode()


def producer(tmp_path, pid: int) -> Producer:
    return Producer(tmp_path / f"wan_nb-producer-{pid}.json", {"pid": pid, "pub": f"ipc:///p{pid}"})


def stored_bytes(hub: Hub) -> int:
    return sum(len(r.raw) for t in hub.tasks.values() for r in t.events) + sum(len(r.raw) for r in hub.store.ring)


def test_only_the_process_that_announced_a_task_may_publish_its_events(tmp_path):
    hub = Hub(runtime_dir=tmp_path)
    owner, other = producer(tmp_path, os.getpid()), producer(tmp_path, 4242)
    hub.ingest(frame("t", 1, "generation_stage", stage="generating", stage_progress=0, stage_message="x"), owner)
    hub.ingest(frame("t", 2, "generation_completed", output_path="/etc/passwd", duration_s=1.0, params={},
                     seed=0), other)
    snap = hub.snapshot(hub.tasks["t"])
    assert snap["status"] == "running" and snap["output_path"] is None and snap["last_seq"] == 1
    assert "t" not in other.tasks
    hub.store.lose_tasks(other, "ended")              # the impostor dying ends nothing either
    assert hub.snapshot(hub.tasks["t"])["status"] == "running"
    again = producer(tmp_path, os.getpid())            # the owner re-attached with new sockets
    hub.ingest(frame("t", 2, "detailed_generation_progress", stage="generating", progress=50, message="m",
                     estimated_time_remaining=0, current_step=1, total_steps=2), again)
    assert hub.snapshot(hub.tasks["t"])["last_seq"] == 2
    hub.stop()


def test_a_50_mb_message_is_cut_at_ingest_so_no_listing_carries_it(tmp_path):
    hub = Hub(runtime_dir=tmp_path)
    owner = producer(tmp_path, os.getpid())
    hub.ingest(frame("big", 1, "generation_stage", stage="generating", stage_progress=0,
                     stage_message="m" * 50_000_000), owner)
    body = dumps(hub.snapshots())
    assert len(body) < 20_000 and hub.snapshot(hub.tasks["big"])["message"].startswith("mmmm")
    assert stored_bytes(hub) < 2 * 20_000
    hub.stop()


def test_a_huge_field_in_a_journal_is_cut_when_it_is_read_back(tmp_path):
    folder = tmp_path / "runs" / "j"
    folder.mkdir(parents=True)
    (folder / "events.jsonl").write_bytes(
        frame("j", 1, "generation_failed", stage="generating", error_type="X", error="e" * 5_000_000) + b"\n")
    recs, missing = read_journal(folder / "events.jsonl", "j")
    assert len(recs) == 1 and not missing and len(recs[0].raw) < 20_000
    assert json.loads(recs[0].raw)["data"]["error"].startswith("eee")


def test_a_10_mb_storyboard_story_is_not_kept_twice(tmp_path):
    """The story's scenes travel in two events (story split, scenes planned): each is bounded."""
    runs = tmp_path / "runs"
    bus, journal = EventBus(), Journal()
    bus.add_sink(journal)
    journal.open("sb", runs / "sb")
    hub = Hub(runtime_dir=tmp_path / "rt", runs_dirs=[runs])
    owner = producer(tmp_path, os.getpid())
    bus.add_sink(lambda event: hub.ingest(event.to_json().encode(), owner))
    story = "A fox wakes at dawn and runs to the river. " * 240_000        # ~10 MB
    scenes = [story[i:i + 100_000] for i in range(0, len(story), 100_000)]
    bus.publish("sb", "storyboard_progress", step="init", status="in_progress", progress=0,
                message="Starting", data={"prompt": story})
    bus.publish("sb", "storyboard_progress", step="story", status="completed", progress=10,
                message=f"Story has {len(scenes)} scene(s)", data={"scenes": scenes})
    bus.publish("sb", "storyboard_progress", step="scenes", status="completed", progress=15,
                message="Planned", data={"scenes": scenes, "scene_frames": [9] * len(scenes)})
    journal.close("sb")
    assert (runs / "sb" / "events.jsonl").stat().st_size > 25_000_000   # the journal keeps it all
    assert stored_bytes(hub) < 2 * 3 * (FRAME_BUDGET + 64 * 1024)
    task = hub.tasks["sb"]
    assert [r.seq for r in hub.replay(task)] == [1, 2, 3]
    assert len(dumps(hub.snapshots())) < 20_000
    hub.stop()
