"""The Lab sidebar's queue, in a real JupyterLab and a real headless Chromium: tasks waiting behind
a running one read "Queued (#n)" in run order; Pause and Resume hold and release the running one;
the arrows move a waiting task through the server's move route; when the running one ends the
next starts and the others move up; "Pause & free GPU" pauses with ``release_memory`` and the
row then reads "paused · GPU memory released". The tasks come from another process sharing the Lab's
runtime dir (``tests/_queue_producer.py``: the events and steering a generator's queue gives).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_quickstart_pages import _in_browser  # noqa: E402
from test_sidebar import _lab, _lab_env, _open_lab, _open_sidebar, _row  # noqa: E402

PRODUCER = Path(__file__).resolve().parents[1] / "_queue_producer.py"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "lab-queue.png"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _queue_badges(page) -> list[tuple[str, str]]:
    """(task id, badge text) of each row in the order shown; '' for a task that is not queued."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('.wan-nb-Row')).map(row => {
        const badge = row.querySelector('.wan-nb-Row-queue');
        return [row.dataset.taskId, badge.hidden ? '' : badge.textContent]; })""")


def _wait_badges(page, expected: list[tuple[str, str]], timeout_ms: int = 20_000) -> None:
    page.wait_for_function("""expected => {
        const rows = Array.from(document.querySelectorAll('.wan-nb-Row')).map(row => {
          const badge = row.querySelector('.wan-nb-Row-queue');
          return [row.dataset.taskId, badge.hidden ? '' : badge.textContent]; });
        return JSON.stringify(rows) === JSON.stringify(expected); }""", arg=expected, timeout=timeout_ms)


def _status(page, task_id: str, status: str) -> None:
    page.wait_for_function("([id, s]) => document.querySelector(`.wan-nb-Row[data-task-id='${id}']`)"
                           "?.dataset.status === s", arg=[task_id, status], timeout=20_000)


def test_the_sidebar_shows_the_queue_and_steers_it(tmp_path):
    runs = tmp_path / "root" / "wan_nb_runs"
    with _lab(tmp_path) as (base, token):
        runs.mkdir(parents=True, exist_ok=True)
        producer = subprocess.Popen([sys.executable, str(PRODUCER), "--runs-dir", str(runs), "--prefix", "lq",
                                     "--queued", "3"], env={**os.environ, **_lab_env(tmp_path)},
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert producer.stdout.readline().strip() == "ready", producer.stderr.read()
            _in_browser(tmp_path, lambda page: _steer_the_queue(page, base, token, runs))
        finally:
            producer.kill()
            producer.wait()
    steered = [json.loads(line) for line in (runs / "steered.jsonl").read_text().splitlines()]
    assert steered == [{"task_id": "lq-0", "action": "pause"}, {"task_id": "lq-0", "action": "resume"},
                       {"task_id": "lq-0", "action": "pause", "release_memory": True},
                       {"task_id": "lq-0", "action": "resume"},
                       {"task_id": "lq-3", "action": "move", "index": 1},
                       {"task_id": "lq-1", "action": "move", "index": 1}]


def _steer_the_queue(page, base: str, token: str, runs: Path) -> None:
    _open_lab(page, base, token)
    _open_sidebar(page)
    _wait_badges(page, [("lq-0", ""), ("lq-1", "Queued (#1)"), ("lq-2", "Queued (#2)"), ("lq-3", "Queued (#3)")])
    running, next_up = _row(page, "lq-0"), _row(page, "lq-1")
    assert running.get_attribute("data-status") == "running"
    assert next_up.get_attribute("data-status") == "queued"
    assert "queued" in next_up.locator(".wan-nb-Row-meta").text_content()
    # What each kind of row offers: Pause on the running one; arrows on waiting ones (no ▲ on the first).
    assert running.locator(".wan-nb-pause").is_visible() and not running.locator(".wan-nb-resume").is_visible()
    assert not running.locator(".wan-nb-up").is_visible() and not next_up.locator(".wan-nb-pause").is_visible()
    assert not next_up.locator(".wan-nb-up").is_visible() and next_up.locator(".wan-nb-down").is_visible()
    assert _row(page, "lq-3").locator(".wan-nb-up").is_visible()

    # Pause (or Resume) comes before Cancel, as in the notebook panel.
    order = running.evaluate("""row => Array.from(row.querySelectorAll('.wan-nb-Row-actions button'))
                                       .map(b => b.className.match(/wan-nb-(pause|resume|cancel)\\b/))
                                       .filter(m => m).map(m => m[1])""")
    assert order.index("pause") < order.index("cancel") and order.index("resume") < order.index("cancel"), order
    running.locator(".wan-nb-pause").click()
    _status(page, "lq-0", "paused")
    assert running.locator(".wan-nb-resume").is_visible() and not running.locator(".wan-nb-pause").is_visible()
    # A paused run is not counted as running, and its row says paused instead of a frozen time left.
    page.wait_for_function("""() => document.querySelector('.wan-nb-Sidebar-state').textContent
                                     .startsWith('1 paused')""", timeout=10_000)
    assert running.locator(".wan-nb-Row-eta").text_content() == "paused"
    step = int(page.evaluate("() => document.querySelector(\".wan-nb-Row[data-task-id='lq-0']\").dataset.lastSeq"))
    page.wait_for_timeout(600)   # held: no step events while paused
    assert int(running.get_attribute("data-last-seq")) == step
    running.locator(".wan-nb-resume").click()
    _status(page, "lq-0", "running")
    assert running.locator(".wan-nb-pause").is_enabled()

    # The second pause gives the GPU memory back; its tooltip says so, and the paused row then does.
    free = running.locator(".wan-nb-pause-free")
    assert free.is_visible() and free.text_content() == "Pause & free GPU"
    assert "GPU memory" in free.get_attribute("title") and not next_up.locator(".wan-nb-pause-free").is_visible()
    free.click()
    _status(page, "lq-0", "paused")
    page.wait_for_function("""() => document.querySelector(".wan-nb-Row[data-task-id='lq-0'] .wan-nb-Row-eta")
                                     .textContent === 'paused · GPU memory released'""", timeout=10_000)
    assert not free.is_visible() and running.locator(".wan-nb-resume").is_visible()
    running.locator(".wan-nb-resume").click()
    _status(page, "lq-0", "running")
    assert running.locator(".wan-nb-Row-eta").text_content() != "paused · GPU memory released"
    assert free.is_enabled() and free.text_content() == "Pause & free GPU"

    _row(page, "lq-3").locator(".wan-nb-up").click()
    _wait_badges(page, [("lq-0", ""), ("lq-1", "Queued (#1)"), ("lq-3", "Queued (#2)"), ("lq-2", "Queued (#3)")])
    next_up.locator(".wan-nb-down").click()
    _wait_badges(page, [("lq-0", ""), ("lq-3", "Queued (#1)"), ("lq-1", "Queued (#2)"), ("lq-2", "Queued (#3)")])
    assert not _row(page, "lq-3").locator(".wan-nb-up").is_visible()   # now first in line
    page.locator(".wan-nb-Sidebar").screenshot(path=str(SCREENSHOT))

    (runs / "finish").touch()   # the running one ends: the next starts, the others move up
    _status(page, "lq-0", "completed")
    _status(page, "lq-3", "running")
    _wait_badges(page, [("lq-3", ""), ("lq-1", "Queued (#1)"), ("lq-2", "Queued (#2)"), ("lq-0", "")])
    header = page.locator(".wan-nb-Sidebar-state").text_content()
    assert header.startswith("1 running · 2 queued"), header
