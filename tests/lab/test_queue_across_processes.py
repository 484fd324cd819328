"""End to end: tasks submitted to one real tiny Generator in another process. While the first
runs, the others read queued, with their places, in the server's snapshot, in the all-tasks list
and in the Lab sidebar (a real JupyterLab and headless Chromium), until the worker starts them;
the sidebar's Pause / Resume hold and release the running one, and its arrows reorder the
generator's own queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_quickstart_pages import _in_browser  # noqa: E402
from test_sidebar import _lab, _lab_env, _open_lab, _open_sidebar, _row  # noqa: E402

# A kernel-like process: the first task runs until told to stop; the second waits behind it.
SCRIPT = """
import json, sys, time
from pathlib import Path
from wan_nb import Generator

stop = Path(sys.argv[2])
small = dict(height=32, width=32, num_frames=5, seed=0)
with Generator(model="tiny", runs_dir=sys.argv[1]) as gen:
    first = gen.submit("a fox that runs until stopped", steps=100_000, **small)
    second = gen.submit("an owl that waits its turn", steps=30, **small)
    third = gen.submit("a hare that jumps the queue", steps=30, **small)
    print(json.dumps({"first": first.id, "second": second.id, "third": third.id}), flush=True)
    while not stop.exists():
        time.sleep(0.02)
    print(json.dumps([t.id for t in gen.queue]), flush=True)   # the generator's own run order
    first.cancel()
    second.result(timeout=300)
    third.result(timeout=300)
    print("done", flush=True)
    time.sleep(0.5)  # let the last frames leave the relay socket
"""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_a_task_behind_another_reads_queued_everywhere_until_it_starts(tmp_path):
    script, stop = tmp_path / "two_tasks.py", tmp_path / "stop"
    script.write_text(SCRIPT)
    with _lab(tmp_path) as (base, token):
        runs = tmp_path / "root" / "wan_nb_runs"
        kernel = subprocess.Popen([sys.executable, str(script), str(runs), str(stop)],
                                  env={**os.environ, **_lab_env(tmp_path)}, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            line = kernel.stdout.readline()
            assert line, kernel.stderr.read()
            ids = json.loads(line)
            _in_browser(tmp_path, lambda page: _follow(page, base, token, ids, stop))
            assert json.loads(kernel.stdout.readline()) == [ids["third"], ids["second"]]
            assert kernel.stdout.readline().strip() == "done", kernel.stderr.read()[-2000:]
        finally:
            kernel.kill()
            kernel.wait()


def _snapshot(base: str, token: str, task_id: str) -> dict:
    response = requests.get(f"{base}/wan-nb/api/tasks/{task_id}", params={"token": token}, timeout=10)
    return response.json() if response.ok else {}


def _wait_for(page, predicate: str, arg, timeout_ms: int = 60_000) -> None:
    page.wait_for_function(predicate, arg=arg, timeout=timeout_ms)


ROW_STATUS = "([id, s]) => document.querySelector(`.wan-nb-Row[data-task-id='${id}']`)?.dataset.status === s"
BADGES = """expected => JSON.stringify(Array.from(document.querySelectorAll('.wan-nb-Row')).map(row => {
    const badge = row.querySelector('.wan-nb-Row-queue');
    return [row.dataset.taskId, badge.hidden ? '' : badge.textContent]; })) === JSON.stringify(expected)"""


def _follow(page, base: str, token: str, ids: dict, stop: Path) -> None:
    first, second, third = ids["first"], ids["second"], ids["third"]
    _open_lab(page, base, token)
    _open_sidebar(page)
    page.evaluate("""ids => { const seen = window.__statuses = {};
        const look = () => { for (const id of ids) {
          const row = document.querySelector(`.wan-nb-Row[data-task-id='${id}']`);
          const s = row && row.dataset.status, list = seen[id] || (seen[id] = []);
          if (s && list[list.length - 1] !== s) list.push(s); } };
        new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true,
          attributeFilter: ['data-status']}); look(); }""", [second, third])
    # The first one denoises (the model is loaded and steps count); the others have waited all along.
    deadline = time.monotonic() + 240
    while (_snapshot(base, token, first).get("current_step") or 0) < 2:
        assert time.monotonic() < deadline, _snapshot(base, token, first)
        time.sleep(0.1)
    snap = _snapshot(base, token, second)
    assert (snap["status"], snap["queue_position"]) == ("queued", 0), snap
    assert snap["message"].startswith("Queued (#1)"), snap
    assert (_snapshot(base, token, third)["status"], _snapshot(base, token, third)["queue_position"]) == ("queued", 1)
    listed = requests.get(f"{base}/wan-nb/api/tasks", params={"token": token, "status": "queued"}, timeout=10).json()
    assert {s["task_id"] for s in listed["tasks"]} == {second, third}   # newest first, as every listing
    assert _snapshot(base, token, first)["queue_position"] is None
    _wait_for(page, BADGES, [[first, ""], [second, "Queued (#1)"], [third, "Queued (#2)"]])
    assert _row(page, second).get_attribute("data-status") == "queued"

    # Pause and Resume in the sidebar hold and release the generator's running task.
    running = _row(page, first)
    running.locator(".wan-nb-pause").click()
    _wait_for(page, ROW_STATUS, [first, "paused"])
    held = _snapshot(base, token, first)
    assert held["status"] == "paused"
    time.sleep(1.0)
    assert _snapshot(base, token, first)["current_step"] == held["current_step"]   # no step while held
    running.locator(".wan-nb-resume").click()
    _wait_for(page, ROW_STATUS, [first, "running"])

    # The third jumps the queue: the generator reorders and re-announces both places.
    _row(page, third).locator(".wan-nb-up").click()
    _wait_for(page, BADGES, [[first, ""], [third, "Queued (#1)"], [second, "Queued (#2)"]])
    assert _snapshot(base, token, third)["queue_position"] == 0

    stop.touch()   # the first is cancelled; the worker takes the third, then the second
    _wait_for(page, ROW_STATUS, [second, "completed"], 240_000)
    statuses = page.evaluate("() => window.__statuses")
    for task_id in (second, third):
        assert statuses[task_id][0] == "queued" and statuses[task_id][-1] == "completed", statuses
    assert not _row(page, second).locator(".wan-nb-Row-queue").is_visible()
    done = _snapshot(base, token, second), _snapshot(base, token, third)
    assert [(d["status"], d["queue_position"]) for d in done] == [("completed", None)] * 2
    assert done[1]["updated_at"] <= done[0]["updated_at"]     # the third finished first
