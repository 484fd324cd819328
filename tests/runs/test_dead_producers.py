"""A run, a queue entry: each records the process that wrote it, and a reader judges whether that
process still runs (``wan_nb.protocol.processes``, the one answer everyone uses). These are the
cases the separate answers got wrong: an exited child nobody reaped yet (a zombie) and a pid that
another program now holds."""
import json
import os

from wan_nb.core.queue import QueueFile
from wan_nb.protocol.processes import process_start_time
from wan_nb.runs.history import history

from _process_helpers import zombie
from _runs_helpers import fake_run


def test_a_run_whose_process_exited_unreaped_is_listed_lost_not_running(tmp_path):
    """The history asked ``os.kill(pid, 0)``, which a zombie answers: its run read ``running``
    forever (until the parent reaped it, which a crashed kernel's parent may never do)."""
    child = zombie()
    try:
        fake_run(tmp_path, "20260101-000001-aaaaaaaa", status="running", pid=child.pid)
        fake_run(tmp_path, "20260101-000002-bbbbbbbb", status="running", pid=os.getpid())
        listed = {r.task_id[-8:]: r.status for r in history(tmp_path)}
    finally:
        child.wait()
    assert listed == {"aaaaaaaa": "lost", "bbbbbbbb": "running"}


def _queue_with(runs_dir, owners):
    runs_dir.mkdir(parents=True, exist_ok=True)
    tasks = {f"task-{i}": {"model": "tiny", "prompt": "a fox", "kwargs": {}, "order": i, "owner": owner}
             for i, owner in enumerate(owners)}
    (runs_dir / "queue.json").write_text(json.dumps({"tasks": tasks}))
    return QueueFile(runs_dir)


def test_queued_tasks_of_an_unreaped_process_are_orphans(tmp_path):
    """The queue checked the pid with ``os.kill`` and its start time, both of which a zombie still
    has: ``resume_queue`` left its tasks waiting for a process that will never run them."""
    child = zombie()
    try:
        queue = _queue_with(tmp_path / "runs", [{"pid": child.pid, "create_time": process_start_time(child.pid)}])
        taken = queue.take_orphans(lambda entry: True)
    finally:
        child.wait()
    assert [task_id for task_id, _ in taken] == ["task-0"]


def test_queued_tasks_of_a_reused_pid_are_orphans_and_a_live_owners_are_not(tmp_path):
    me = {"pid": os.getpid(), "create_time": process_start_time(os.getpid())}
    reused = {"pid": os.getpid(), "create_time": me["create_time"] - 3600}   # the pid's earlier owner
    older_file = {"pid": os.getpid(), "started": "12345"}   # a queue.json from before create_time
    queue = _queue_with(tmp_path / "runs", [me, reused, older_file])
    assert [task_id for task_id, _ in queue.take_orphans(lambda entry: True)] == ["task-1"]
    assert queue.owner == me
