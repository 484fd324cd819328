"""A run whose process is ended by SIGTERM mid-denoise reads ``interrupted`` on the server, not ``lost``.

The process's SIGTERM handler writes a checkpoint of the last step done and then ends the process
as SIGTERM does: no event announces that checkpoint. A real Jupyter server follows a real tiny
generation in a child process; when the child is gone the server ends the task with ProducerLost
and, finding the checkpoint in the run folder, names its step, so the live snapshot, the task list
and its ``?status=`` filter say "Interrupted at step k/N: resumable".
"""
from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from wan_nb.runs import checkpoint_file

from tests._server_helpers import PY, isolated_env, start_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

STEPS = 8
# checkpoints=100: none is paced within 8 steps, so the only checkpoint is the SIGTERM handler's.
CHILD = """
import sys, time
from wan_nb import Generator
gen = Generator("tiny", device="cpu", runs_dir=sys.argv[1], previews=False, checkpoints=100)
gen.add_step_hook(lambda task, step, *rest: time.sleep(0.5))  # slow steps: the test ends it mid-denoise
task = gen.submit("a fox in the snow", seed=5, steps=%d)
print(task.id, flush=True)
task.wait()
""" % STEPS


def test_a_run_ended_by_sigterm_reads_interrupted_at_its_checkpoint_step(tmp_path):
    runtime, runs = tmp_path / "runtime", tmp_path / "wan_nb_runs"
    server = start_server(runtime)
    child = subprocess.Popen([PY, "-c", CHILD, str(runs)], env=isolated_env(runtime),
                             stdout=subprocess.PIPE, text=True)
    try:
        task_id = child.stdout.readline().strip()
        assert task_id, "the child printed no task id"
        live = server.wait_task(task_id, lambda s: (s["current_step"] or 0) >= 3 and s["status"] == "running",
                                timeout=240)
        assert live["producer_pid"] == child.pid and not live["resumable"]
        child.send_signal(signal.SIGTERM)
        assert child.wait(60) == -signal.SIGTERM
        kept = checkpoint_file.read_summary(runs / task_id)
        assert kept is not None and 3 <= kept["step"] < STEPS, kept
        journal = [json.loads(line) for line in (runs / task_id / "events.jsonl").read_text().splitlines()]
        announced = [e["data"]["checkpoint"] for e in journal if "checkpoint" in (e.get("data") or {})]
        assert not [c for c in announced if c.get("saved")], announced   # no event said it was kept

        snap = server.wait_task(task_id, lambda s: s["status"] not in ("running", "paused"), timeout=60)
        assert (snap["status"], snap["resumable"], snap["checkpoint_step"], snap["current_step"]) \
            == ("interrupted", True, kept["step"], kept["step"]), snap
        assert snap["message"] == f"Interrupted at step {kept['step']}/{STEPS}: resumable"
        assert snap["error_type"] == "ProducerLost" and str(child.pid) in snap["error"]
        found = [t["task_id"] for t in server.get("tasks", params={"status": "interrupted"}).json()["tasks"]]
        assert found == [task_id]
        assert server.get("tasks", params={"status": "lost"}).json()["tasks"] == []
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        server.stop()
