"""The server's listing of finished runs on disk (wan_nb/server/listing.py): sorted once, then
brought up to date from what changed (index lines appended, folders added or deleted, runs whose
process died), merged with the live tasks page by page."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _runs_helpers import fake_run  # noqa: E402

from wan_nb.runs import history  # noqa: E402
from wan_nb.server import listing as listing_module  # noqa: E402
from wan_nb.server.listing import RunListing  # noqa: E402


def name(i: int) -> str:
    return f"20260101-0000{i:02d}-{i:08x}"


def stamp(i: int) -> str:
    return f"2026-01-01T00:00:{i:02d}Z"


@pytest.fixture
def listing():
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wan_nb-listing")
    yield RunListing("/base/", pool)
    pool.shutdown()


def refresh(listing: RunListing, *dirs: Path) -> None:
    asyncio.run(listing.refresh(dirs))


def ids(page: dict) -> list[str]:
    return [s["task_id"][-2:] for s in page["tasks"]]


def test_runs_are_listed_newest_first_paged_filtered_and_merged_with_live_tasks(tmp_path, listing):
    for i in range(1, 7):
        fake_run(tmp_path, name(i), status="failed" if i % 3 == 0 else "completed", created_at=stamp(i))
    refresh(listing, tmp_path)
    every = listing.page([], limit=None, offset=0, status=None)
    assert ids(every) == ["06", "05", "04", "03", "02", "01"] and every["total"] == 6
    assert every["tasks"][0]["on_disk"] and every["tasks"][0]["video_url"] is None      # failed: no video
    assert every["tasks"][1]["video_url"] == f"/base/wan-nb/api/tasks/{name(5)}/video"
    assert ids(listing.page([], limit=2, offset=1, status=None)) == ["05", "04"]
    failed = listing.page([], limit=10, offset=0, status="failed")
    assert ids(failed) == ["06", "03"] and failed["total"] == 2
    # Live tasks (the server's own snapshots) interleave by creation time; one also on disk is
    # listed once, as the live snapshot.
    live = [{"task_id": "live-b", "status": "running", "created_at": "2026-01-01T00:00:04.500Z"},
            {"task_id": name(2), "status": "completed", "created_at": stamp(2), "last_seq": 9}]
    merged = listing.page(live, limit=None, offset=0, status=None)
    assert [s["task_id"] for s in merged["tasks"]][2:5] == [name(4), "live-b", name(3)]
    assert merged["total"] == 7 and [s for s in merged["tasks"] if s["task_id"] == name(2)] == [live[1]]
    assert ids(listing.page(live, limit=3, offset=2, status=None)) == ["04", "-b", "03"]
    # The body: runs on disk from their stored encoding, live ones encoded now; the same JSON.
    assert json.loads(listing.body(merged["tasks"])) == {"tasks": merged["tasks"]}
    assert listing.page(live, limit=10, offset=0, status="completed")["total"] == 4


def test_what_changes_on_disk_is_read_without_rereading_the_rest(tmp_path, listing):
    for i in (1, 2):
        fake_run(tmp_path, name(i), created_at=stamp(i))
    refresh(listing, tmp_path)
    index = tmp_path / history.INDEX_NAME
    assert len(index.read_text().splitlines()) == 2 and len(listing) == 2

    # A run another process records: its index line is appended and read from where reading stopped.
    folder = fake_run(tmp_path, name(5), created_at=stamp(5), journal=False)
    info = {**json.loads((folder / "task.json").read_text()), "status": "completed", "video": "video.mp4"}
    (folder / "task.json").write_text(json.dumps(info))   # as the recorder leaves a run that ended
    history.record(tmp_path, history.entry_from_task(info, folder.name, status="completed", video="video.mp4"))
    refresh(listing, tmp_path)
    assert ids(listing.page([], limit=None, offset=0, status=None)) == ["05", "02", "01"]
    # An older wan_nb's run (no index line): found when the folder changes, indexed, listed.
    fake_run(tmp_path, name(3), status="cancelled", created_at=stamp(3))
    refresh(listing, tmp_path)
    assert ids(listing.page([], limit=None, offset=0, status=None)) == ["05", "03", "02", "01"]
    assert listing.page([], limit=None, offset=0, status="cancelled")["total"] == 1
    # A deleted run folder drops out; a rewritten index is read afresh.
    for path in sorted((tmp_path / name(2)).iterdir()):
        path.unlink()
    (tmp_path / name(2)).rmdir()
    refresh(listing, tmp_path)
    assert ids(listing.page([], limit=None, offset=0, status=None)) == ["05", "03", "01"]
    lines = index.read_text().splitlines()
    index.unlink()
    index.write_text("".join(line.replace('"completed"', '"failed"') + "\n" for line in lines if name(1) in line))
    refresh(listing, tmp_path)
    assert [(s["task_id"][-2:], s["status"]) for s in listing.page([], limit=None, offset=0, status=None)["tasks"]] \
        == [("05", "completed"), ("03", "cancelled"), ("01", "failed")]  # 05, 03: indexed again from their folders
    assert ids(listing.page([], limit=None, offset=0, status="failed")) == ["01"]
    # A runs folder the server no longer reads takes its runs with it.
    other = tmp_path.parent / (tmp_path.name + "-other")
    fake_run(other, name(9), created_at=stamp(9))
    refresh(listing, tmp_path, other)
    assert ids(listing.page([], limit=None, offset=0, status=None)) == ["09", "05", "03", "01"]
    refresh(listing, other)
    assert ids(listing.page([], limit=None, offset=0, status=None)) == ["09"]


def test_a_run_whose_process_dies_is_listed_as_lost(tmp_path, listing, monkeypatch):
    monkeypatch.setattr(listing_module, "RESCAN_S", 0.0)   # look again at once, not 2 s later
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        fake_run(tmp_path, name(1), status="running", created_at=stamp(1), pid=worker.pid)
        refresh(listing, tmp_path)
        assert len(listing) == 0      # still running: the live list's, not the disk's
    finally:
        worker.kill()
        worker.wait()
    refresh(listing, tmp_path)
    page = listing.page([], limit=None, offset=0, status=None)
    assert [(s["task_id"], s["status"]) for s in page["tasks"]] == [(name(1), "lost")]


def test_the_disk_is_read_on_the_listing_thread_and_concurrent_requests_share_it(tmp_path, listing, monkeypatch):
    for i in range(1, 4):
        fake_run(tmp_path, name(i), created_at=stamp(i))
    threads, read = [], listing_module._FolderCursor.read

    def noting(cursor):   # the real read, noting which thread does it
        threads.append(threading.current_thread().name)
        return read(cursor)

    monkeypatch.setattr(listing_module._FolderCursor, "read", noting)

    async def three_requests():
        await asyncio.gather(*(listing.refresh([tmp_path]) for _ in range(3)))

    asyncio.run(three_requests())
    assert len(threads) == 3 and all(t.startswith("wan_nb-listing") for t in threads)   # one at a time
    assert len(listing) == 3 and len(listing.page([], limit=None, offset=0, status=None)["tasks"]) == 3


def test_every_page_is_the_slice_of_the_whole_merged_list(tmp_path, listing):
    """Pages start where they should however deep: each equals the slice of the full merge."""
    import random

    rng = random.Random(7)
    for i in range(1, 41):
        fake_run(tmp_path, name(i), status=rng.choice(["completed", "failed"]), created_at=stamp(i % 20 + 1))
    refresh(listing, tmp_path)
    live = sorted(([{"task_id": f"live-{k}", "status": rng.choice(["running", "failed"]),
                     "created_at": stamp(rng.randint(0, 22))} for k in range(6)]
                   + [{"task_id": name(i), "status": "completed", "created_at": stamp(i % 20 + 1), "live": True}
                      for i in (3, 17, 30)]),
                  key=lambda s: s["created_at"], reverse=True)
    for status in (None, "failed", "completed"):
        whole = listing.page(live, limit=None, offset=0, status=status)["tasks"]
        live_ids = {s["task_id"] for s in live}
        assert sorted(s["task_id"] for s in whole) == sorted(
            [s["task_id"] for s in live if status in (None, s["status"])]
            + [s["task_id"] for s in listing.page([], limit=None, offset=0, status=status)["tasks"]
               if s["task_id"] not in live_ids])
        created = [s["created_at"][:19] for s in whole]
        assert created == sorted(created, reverse=True)
        for offset in range(0, len(whole) + 2):
            for limit in (1, 3, 10):
                assert listing.page(live, limit=limit, offset=offset, status=status)["tasks"] \
                    == whole[offset:offset + limit], (status, offset, limit)
