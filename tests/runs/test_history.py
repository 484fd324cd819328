"""History: past runs listed from the runs folder's index, from any process, damaged folders skipped."""
import json
import os
import subprocess
import sys
import time
import warnings

import pytest

import wan_nb
from wan_nb import Generator
from wan_nb.runs.history import INDEX_NAME, Run, find_by_key, history
from wan_nb.core.recipes import plan
from wan_nb.runs.recipe import recipe_key

from _runs_helpers import fake_run


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Two real runs of the tiny model, the second one newer."""
    runs = tmp_path_factory.mktemp("runs")
    with Generator(model="tiny", runs_dir=runs, previews=False) as gen:
        first = gen.generate("a red fox in the snow", seed=1, progress=False)
        second = gen.generate("an owl at dusk", seed=2, steps=2, progress=False)
    return runs, first, second


def test_finished_runs_are_listed_newest_first_from_a_new_process(made):
    runs, first, second = made
    # The contract's names (wan_nb.history, the module and the call), as a user's script has them.
    code = ("import json, sys, wan_nb; from wan_nb.history import run_to_dict; "
            "print(json.dumps([run_to_dict(r) for r in wan_nb.history(sys.argv[1])]))")
    done = subprocess.run([sys.executable, "-c", code, str(runs)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [r["task_id"] for r in listed] == [second.task_id, first.task_id]
    newest = listed[0]
    assert newest["status"] == "completed" and newest["seed"] == 2 and newest["model"] == "tiny"
    assert newest["params"]["steps"] == 2 and newest["prompt"] == "an owl at dusk"
    assert newest["video_path"] == str(second.video_path) and newest["duration_s"] == second.duration_s
    assert newest["created_at"].endswith("Z") and newest["loras"] == {}
    assert newest["key"] == recipe_key(wan_nb.recipe(second))


def test_the_index_is_read_not_the_folders(made):
    runs, first, second = made
    lines = (runs / INDEX_NAME).read_text().splitlines()
    assert {json.loads(l)["task_id"] for l in lines} == {first.task_id, second.task_id}
    listed = history(runs)
    assert isinstance(listed[0], Run) and listed[0].video_path.is_file()
    assert listed[0].recipe() == wan_nb.recipe(second)


def test_a_deleted_index_is_rebuilt_from_the_run_folders(made, tmp_path):
    runs, first, second = made
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(runs), str(copy)], check=True)
    (copy / INDEX_NAME).unlink()
    listed = history(copy)
    assert [r.task_id for r in listed] == [second.task_id, first.task_id]
    assert listed[0].key == recipe_key(wan_nb.recipe(second))
    rebuilt = [json.loads(l)["task_id"] for l in (copy / INDEX_NAME).read_text().splitlines()]
    assert sorted(rebuilt) == sorted([first.task_id, second.task_id])
    # A deleted run folder is no longer a run.
    subprocess.run(["rm", "-r", str(copy / first.task_id)], check=True)
    assert [r.task_id for r in history(copy)] == [second.task_id]


def test_find_by_key_finds_the_run_an_identical_recipe_made(made):
    runs, first, second = made
    with Generator(model="tiny", runs_dir=runs, previews=False) as gen:
        key = recipe_key(plan(gen, "a red fox in the snow", seed=1))
        assert find_by_key(runs, key).task_id == first.task_id
        assert find_by_key(runs, recipe_key(plan(gen, "a red fox in the snow", seed=9))) is None


def test_runs_of_older_versions_and_of_dead_processes_are_listed(tmp_path):
    fake_run(tmp_path, "20260101-000001-aaaaaaaa", created_at="2026-01-01T00:00:01Z")
    fake_run(tmp_path, "20260101-000002-bbbbbbbb", status="failed", created_at="2026-01-01T00:00:02Z")
    fake_run(tmp_path, "20260101-000003-cccccccc", status="running", created_at="2026-01-01T00:00:03Z")
    fake_run(tmp_path, "20260101-000004-dddddddd", status="running", created_at="2026-01-01T00:00:04Z",
             pid=os.getpid())
    killed = fake_run(tmp_path, "20260101-000006-ffffffff", status="failed", created_at="2026-01-01T00:00:06Z")
    with open(killed / "events.jsonl", "a") as handle:   # what a server appends for a dead producer
        handle.write(json.dumps({"type": "generation_failed", "seq": 3, "task_id": killed.name,
                                 "data": {"error_type": "ProducerLost", "error": "killed"}}) + "\n")
    board = fake_run(tmp_path, "20260101-000005-eeeeeeee", status="running", created_at="2026-01-01T00:00:05Z")
    final = board / "final.mp4"
    final.write_bytes(b"\0")
    done = {"type": "storyboard_progress", "seq": 9, "task_id": board.name,
            "data": {"step": "complete", "status": "completed", "data": {"final_video_path": str(final)}}}
    (board / "events.jsonl").write_text(json.dumps(done) + "\n")
    listed = {r.task_id[-8:]: r for r in history(tmp_path)}
    assert listed["eeeeeeee"].status == "completed" and listed["eeeeeeee"].video_path == final
    assert listed["eeeeeeee"].kind == "generation" and listed["ffffffff"].status == "lost"
    assert listed["aaaaaaaa"].status == "completed" and listed["aaaaaaaa"].duration_s == 1.5
    assert listed["aaaaaaaa"].video_path == tmp_path / "20260101-000001-aaaaaaaa" / "video.mp4"
    assert listed["bbbbbbbb"].status == "failed" and listed["bbbbbbbb"].video_path is None
    assert listed["cccccccc"].status == "lost"      # its process is gone and it never finished
    assert listed["dddddddd"].status == "running"   # its process is alive: not indexed yet
    indexed = {json.loads(l)["task_id"][-8:] for l in (tmp_path / INDEX_NAME).read_text().splitlines()}
    assert indexed == {"aaaaaaaa", "bbbbbbbb", "cccccccc", "eeeeeeee", "ffffffff"}


def test_runs_in_progress_are_listed_as_queued_or_running_then_as_they_ended(tmp_path):
    with Generator(model="tiny", runs_dir=tmp_path, previews=False) as gen:
        slow = gen.submit("a slow fox", seed=1, steps=1000)
        waiting = gen.submit("an owl", seed=2, steps=2)
        deadline = time.monotonic() + 120
        while slow.current_step < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert {r.task_id: r.status for r in history(tmp_path)} == {slow.id: "running", waiting.id: "queued"}
        waiting.cancel()
        slow.cancel()
        slow.wait(60)
        waiting.wait(60)
    listed = history(tmp_path)
    assert {r.task_id: r.status for r in listed} == {slow.id: "cancelled", waiting.id: "cancelled"}
    assert [r.task_id for r in listed] == [waiting.id, slow.id]


def test_corrupt_and_half_written_folders_are_skipped_with_a_warning(tmp_path):
    fake_run(tmp_path, "20260101-000001-aaaaaaaa")
    (tmp_path / "20260101-000002-broken00").mkdir()
    (tmp_path / "20260101-000002-broken00" / "task.json").write_text('{"task_id": "20260101-00')
    (tmp_path / "20260101-000003-notjson0").mkdir()
    (tmp_path / "20260101-000003-notjson0" / "task.json").write_text("[1, 2]")
    empty = tmp_path / "20260101-000004-empty000"
    empty.mkdir()
    old = time.time() - 3600
    os.utime(empty, (old, old))
    torn = fake_run(tmp_path, "20260101-000005-torn0000", created_at="2026-01-01T00:00:05Z")
    with open(torn / "events.jsonl", "a") as handle:
        handle.write('{"type": "generation_sta')   # the writer died mid-line
    (tmp_path / INDEX_NAME).write_text('{"task_id": "x", "folder": "gone"}\n{"task_id": "torn li')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        listed = history(tmp_path)
    assert sorted(r.task_id[-8:] for r in listed) == ["aaaaaaaa", "torn0000"]
    reasons = " ".join(str(w.message) for w in caught)
    for name in ("broken00", "notjson0", "empty000"):
        assert name in reasons
    with warnings.catch_warnings(record=True) as again:  # once per folder, not on every call
        warnings.simplefilter("always")
        assert len(history(tmp_path)) == 2
    assert not again


def test_filters_and_paging(tmp_path):
    for i in range(6):
        fake_run(tmp_path, f"2026010{i + 1}-000000-0000000{i}", prompt=f"A Red Fox {i}" if i % 2 else f"an owl {i}",
                 model="tiny" if i < 4 else "tiny-a14b", status="completed" if i != 3 else "failed",
                 created_at=f"2026-01-0{i + 1}T12:00:00Z", seed=i)
    seeds = lambda **f: [r.seed for r in history(tmp_path, **f)]
    assert seeds() == [5, 4, 3, 2, 1, 0]
    assert seeds(status="failed") == [3] and seeds(status=["failed", "completed"]) == [5, 4, 3, 2, 1, 0]
    assert seeds(model="tiny-a14b") == [5, 4]
    assert seeds(prompt="red fox") == [5, 3, 1]
    assert seeds(since="2026-01-03") == [5, 4, 3, 2] and seeds(until="2026-01-02") == [1, 0]
    import datetime as dt
    assert seeds(since=dt.datetime(2026, 1, 2, 13, tzinfo=dt.timezone.utc), until=dt.date(2026, 1, 4)) == [3, 2]
    assert seeds(limit=2) == [5, 4] and seeds(limit=2, offset=2) == [3, 2] and seeds(offset=5) == [0]
    assert seeds(prompt="fox", model="tiny", status="completed") == [1]
    with pytest.raises(TypeError, match="unknown history filter.*colour"):
        history(tmp_path, colour="red")
    with pytest.raises(ValueError, match="since='yesterday'"):
        history(tmp_path, since="yesterday")
    with pytest.raises(ValueError, match="limit=-1"):
        history(tmp_path, limit=-1)
    assert history(tmp_path / "nothing-here") == []


def test_runs_appended_by_another_process_show_up(tmp_path):
    fake_run(tmp_path, "20260101-000001-aaaaaaaa")
    assert len(history(tmp_path)) == 1
    fake_run(tmp_path, "20260101-000002-bbbbbbbb", created_at="2026-01-01T00:00:02Z")
    assert [r.task_id[-8:] for r in history(tmp_path)] == ["bbbbbbbb", "aaaaaaaa"]


def test_history_is_standard_library_only():
    """The Jupyter server imports it: nothing beyond the standard library (and no torch at all)."""
    code = ("import sys, wan_nb; before = set(sys.modules); import wan_nb.history as h; h.history('.'); "
            "new = [m for m in set(sys.modules) - before if not m.startswith('wan_nb.') "
            "and m.split('.')[0] not in sys.stdlib_module_names]; "
            "print(sorted(new + [m for m in ('torch', 'diffusers', 'wan_nb.generator') if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
