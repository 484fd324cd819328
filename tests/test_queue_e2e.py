"""End to end: two tasks submitted to one real tiny Generator in another process. While the first
runs, the second reads queued, with its place, in the server's snapshot, in the all-tasks list
and in the Lab sidebar (a real JupyterLab and headless Chromium), until the worker starts it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_browser import _in_browser  # noqa: E402
from test_lab_sidebar import _lab, _lab_env, _open_lab, _open_sidebar, _row  # noqa: E402

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
    print(json.dumps({"first": first.id, "second": second.id}), flush=True)
    while not stop.exists():
        time.sleep(0.02)
    first.cancel()
    second.result(timeout=300)
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
            assert kernel.stdout.readline().strip() == "done", kernel.stderr.read()[-2000:]
        finally:
            kernel.kill()
            kernel.wait()


def _snapshot(base: str, token: str, task_id: str) -> dict:
    response = requests.get(f"{base}/wan-nb/api/tasks/{task_id}", params={"token": token}, timeout=10)
    return response.json() if response.ok else {}


def _follow(page, base: str, token: str, ids: dict, stop: Path) -> None:
    first, second = ids["first"], ids["second"]
    _open_lab(page, base, token)
    _open_sidebar(page)
    page.evaluate("""id => { const seen = window.__statuses = [];
        const look = () => { const row = document.querySelector(`.wan-nb-Row[data-task-id='${id}']`);
          const s = row && row.dataset.status; if (s && seen[seen.length - 1] !== s) seen.push(s); };
        new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true,
          attributeFilter: ['data-status']}); look(); }""", second)
    # The first one denoises (the model is loaded and steps count); the second has waited all along.
    deadline = time.monotonic() + 240
    while (_snapshot(base, token, first).get("current_step") or 0) < 2:
        assert time.monotonic() < deadline, _snapshot(base, token, first)
        time.sleep(0.1)
    snap = _snapshot(base, token, second)
    assert (snap["status"], snap["queue_position"]) == ("queued", 0), snap
    assert snap["message"].startswith("Queued (#1)"), snap
    listed = requests.get(f"{base}/wan-nb/api/tasks", params={"token": token, "status": "queued"}, timeout=10).json()
    assert [s["task_id"] for s in listed["tasks"]] == [second]
    assert _snapshot(base, token, first)["queue_position"] is None
    row = _row(page, second)
    row.locator(".wan-nb-Row-queue").wait_for(state="visible", timeout=20_000)
    assert row.locator(".wan-nb-Row-queue").text_content() == "Queued (#1)"
    assert row.get_attribute("data-status") == "queued"

    stop.touch()   # the first is cancelled; the worker takes the second
    page.wait_for_function(f"() => document.querySelector(\".wan-nb-Row[data-task-id='{second}']\")"
                           "?.dataset.status === 'completed'", timeout=240_000)
    assert page.evaluate("() => window.__statuses")[:1] == ["queued"]
    assert "running" in page.evaluate("() => window.__statuses")
    assert not row.locator(".wan-nb-Row-queue").is_visible()
    done = _snapshot(base, token, second)
    assert (done["status"], done["queue_position"]) == ("completed", None)
