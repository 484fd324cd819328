"""The server's task list says which finished runs can be resumed: a stop_after run and its
continuation, found on disk by a freshly started Jupyter server, read as a live snapshot reads them
(``stopped`` at step k/N, ``resumable``), so ``?status=stopped`` finds runs on disk too."""
from __future__ import annotations

import time

from wan_nb import Generator

from tests._server_helpers import start_server


def test_a_stopped_run_lists_as_resumable_at_its_step_and_its_continuation_names_it(tmp_path):
    runs = tmp_path / "wan_nb_runs"   # the server's default runs folder under its root_dir
    with Generator("tiny", device="cpu", runs_dir=runs, previews=False) as gen:
        stopped = gen.generate("a fox", progress=False, seed=2, stop_after=2)
        resumed = gen.resume_run(stopped.run_dir, progress=False)
    server = start_server(tmp_path / "runtime")
    try:
        deadline = time.monotonic() + 30
        while True:   # the server reads the runs folder off its loop: wait for both runs
            listed = {t["task_id"]: t for t in server.get("tasks").json()["tasks"]}
            if {stopped.task_id, resumed.task_id} <= set(listed) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert {stopped.task_id, resumed.task_id} <= set(listed), (sorted(listed), server.log.read_text()[-2000:])
        old, new = listed[stopped.task_id], listed[resumed.task_id]
        assert old["on_disk"] is True   # no live process told this server about it
        assert (old["status"], old["resumable"], old["checkpoint_step"], old["current_step"], old["total_steps"]) \
            == ("stopped", True, 2, 2, 4)
        assert old["message"] == "Stopped at step 2/4: resumable"
        assert (new["status"], new["resumable"], new["resumed_from"]) == ("completed", False, stopped.task_id)
        # the status filter reads the same status: the stopped run, not its completed continuation
        found = [t["task_id"] for t in server.get("tasks", params={"status": "stopped"}).json()["tasks"]]
        assert found == [stopped.task_id]
        assert stopped.task_id not in [t["task_id"] for t in
                                       server.get("tasks", params={"status": "cancelled"}).json()["tasks"]]
        assert resumed.task_id in [t["task_id"] for t in
                                   server.get("tasks", params={"status": "completed"}).json()["tasks"]]
        # the single-task route (which loads the run's journal through the reducer) agrees
        one = server.get(f"tasks/{stopped.task_id}").json()
        assert (one["status"], one["resumable"], one["checkpoint_step"]) == ("stopped", True, 2)
    finally:
        server.stop()
