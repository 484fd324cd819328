"""``POST wan-nb/api/tasks/{id}/resume`` of a stopped run: with no process able to continue it the
server says what to run; once a script holds a Generator of the run's model, the server relays the
resume there and answers with the new task, which runs to the end, linked to the old one."""
from __future__ import annotations

import subprocess
import time

import pytest
import requests

from wan_nb import Generator

from tests._server_helpers import PY, isolated_env, start_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# A process that only holds a generator (a notebook's kernel after its run stopped): it answers the
# server's resume_run until the stop file appears.
HOLDER = """
import sys, time, pathlib
from wan_nb import Generator
with Generator("tiny", device="cpu", runs_dir=sys.argv[1], previews=False) as gen:
    print("ready", flush=True)
    while not pathlib.Path(sys.argv[2]).exists():
        time.sleep(0.1)
"""


def _listed(server, *task_ids, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:   # the server reads the runs folder off its loop
        listed = {t["task_id"]: t for t in server.get("tasks").json()["tasks"]}
        if set(task_ids) <= set(listed) or time.monotonic() > deadline:
            return listed
        time.sleep(0.2)


def test_resume_of_a_stopped_run_goes_to_a_live_generator_of_its_model_or_says_what_to_do(tmp_path):
    runs = tmp_path / "wan_nb_runs"   # the server's default runs folder under its root_dir
    with Generator("tiny", device="cpu", runs_dir=runs, previews=False) as gen:
        stopped = gen.generate("a fox", progress=False, seed=3, stop_after=2)
    runtime = tmp_path / "runtime"
    server = start_server(runtime)
    holder = None
    try:
        assert stopped.task_id in _listed(server, stopped.task_id)
        # No live process has a generator: 409, and the message names both ways to go on.
        refused = server.post(f"tasks/{stopped.task_id}/resume")
        assert refused.status_code == 409, refused.text
        message = refused.json()["message"]
        assert f"gen.resume_run('{stopped.task_id}')" in message and f"wan-nb resume {stopped.task_id}" in message
        assert "'tiny'" in message
        # Bad ids and no token are refused before anything is asked of a process.
        assert server.post("tasks/no-such-task/resume").status_code == 404
        assert server.post("tasks/..%2F..%2Fetc/resume").status_code == 404
        assert requests.post(server.api(f"tasks/{stopped.task_id}/resume"), timeout=10).status_code == 403

        stop_file = tmp_path / "stop"
        holder = subprocess.Popen([PY, "-c", HOLDER, str(runs), str(stop_file)], env=isolated_env(runtime),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "ready", holder.stderr.read()
        deadline = time.monotonic() + 30
        while True:   # until the server has read the holder's producer file
            answer = server.post(f"tasks/{stopped.task_id}/resume")
            if answer.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer.status_code == 202, answer.text
        body = answer.json()
        new_id = body["resumed_as"]
        assert (body["task_id"], body["resume_requested"], body["producer_pid"]) == (stopped.task_id, True, holder.pid)
        done = server.wait_task(new_id, lambda s: s["status"] in ("completed", "failed"), timeout=300)
        assert done["status"] == "completed", done
        assert done["resumed_from"] == stopped.task_id and done["resumable"] is False
        assert done["producer_pid"] == holder.pid and done["output_path"].endswith(".mp4")
        old = server.get(f"tasks/{stopped.task_id}").json()
        assert (old["resumable"], old["checkpoint_step"]) == (True, 2)
        # A completed run has nothing to resume: said, not relayed.
        again = server.post(f"tasks/{new_id}/resume")
        assert again.status_code == 409 and "nothing to resume" in again.json()["message"]
        stop_file.touch()
        assert holder.wait(60) == 0, holder.stderr.read()
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
            holder.wait()
        server.stop()
