"""Resume and "tell me when it ends", in a real JupyterLab and a real headless Chromium.

A ``wan-nb generate --stop-after 2`` run (the tiny model) lists as stopped at step 2/4 with a Resume
button. With no process able to continue it, Resume shows what to run instead; once a script holds
a Generator of the tiny model, Resume continues it there as a new task, which the sidebar follows
and links to the old one. While the page is hidden, the run that finishes raises a browser
Notification; while it is seen, or with the sidebar's toggle off (kept across reloads), none.

The page is "hidden" through ``document.hidden`` / ``visibilityState`` (headless Chromium has no
window to minimise), and ``window.Notification`` is wrapped to record each construction before
the real constructor runs; the extension's own code decides when to construct one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_quickstart_pages import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from test_sidebar import SMALL, WAN_NB, _lab, _lab_env, _open_lab, _open_sidebar, _row  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

HELPERS = Path(__file__).resolve().parents[1] / "_server_helpers.py"
RECORD = """
window.__notices = [];
window.__hidden = false;
const Real = window.Notification;
if (Real) {
  class Recording extends Real {
    constructor(title, options) {
      window.__notices.push({title, body: (options || {}).body, tag: (options || {}).tag});
      super(title, options);
    }
  }
  window.Notification = Recording;
}
Object.defineProperty(Document.prototype, 'hidden', {configurable: true, get: () => window.__hidden});
Object.defineProperty(Document.prototype, 'visibilityState', {configurable: true,
  get: () => (window.__hidden ? 'hidden' : 'visible')});
"""
# A kernel whose run stopped: it only holds a generator of the tiny model, until told to stop.
HOLDER = """
import sys, time, pathlib
from wan_nb import Generator
with Generator("tiny", device="cpu", previews=False) as gen:
    print("ready", flush=True)
    while not pathlib.Path(sys.argv[1]).exists():
        time.sleep(0.1)
"""


def _hide(page, hidden: bool) -> None:
    page.evaluate("h => { window.__hidden = h; document.dispatchEvent(new Event('visibilitychange')); }", hidden)


def _notices(page) -> list:
    return page.evaluate("() => window.__notices")


def _quick_run(tmp_path: Path, task_id: str) -> None:
    """A producer process publishing a short generation (no model: only the ending matters here)."""
    env = {**os.environ, **_lab_env(tmp_path)}
    proc = subprocess.run([sys.executable, str(HELPERS), "produce", "--runs-dir", str(tmp_path / "quick"),
                           "--task-id", task_id, "--steps", "4", "--interval", "0.05"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_resume_from_the_sidebar_and_a_notification_when_the_run_ends_hidden(tmp_path):
    from playwright.sync_api import sync_playwright

    with _lab(tmp_path) as (base, token), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        context.grant_permissions(["notifications"], origin=base)
        context.add_init_script(RECORD)
        page = context.new_page()
        holder = None
        stop_file = tmp_path / "stop-holder"
        try:
            _open_lab(page, base, token)
            _open_sidebar(page)
            assert page.locator(".wan-nb-Notify-toggle").is_checked()   # on by default
            _hide(page, True)

            env = {**os.environ, **_lab_env(tmp_path)}
            stopped = subprocess.run([str(WAN_NB), "generate", "a red fox in the snow", *SMALL, "--steps", "4",
                                      "--stop-after", "2", "--seed", "5", "--json"],
                                     cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
            assert stopped.returncode == 0, stopped.stderr[-2000:]
            old_id = json.loads(stopped.stdout.splitlines()[0])["task_id"]
            old = _row(page, old_id)
            old.locator(".wan-nb-resume").wait_for(state="visible", timeout=30_000)
            assert old.get_attribute("data-resumable") == "true"
            assert old.locator(".wan-nb-Row-steps").text_content() == "stopped at step 2/4 · resumable"
            assert _notices(page) == []          # a stop the user asked for is not announced

            # No process can continue it: the row says what to run instead.
            old.locator(".wan-nb-resume").click()
            error = old.locator(".wan-nb-Row-error")
            error.wait_for(state="visible", timeout=20_000)
            text = error.text_content()
            assert f"gen.resume_run('{old_id}')" in text and f"wan-nb resume {old_id}" in text, text
            assert old.locator(".wan-nb-resume").text_content() == "Resume"

            holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(stop_file)], cwd=tmp_path, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert holder.stdout.readline().strip() == "ready", holder.stderr.read()
            deadline = time.monotonic() + 30
            while True:   # until the server has read the new process's file (a doorbell: about at once)
                old.locator(".wan-nb-resume").click()
                page.wait_for_function(
                    "row => row.dataset.refused === 'true' || row.dataset.resumable === 'false'",
                    arg=old.element_handle(), timeout=30_000)
                if old.get_attribute("data-resumable") == "false" or time.monotonic() > deadline:
                    break
                time.sleep(1)
            link = old.locator(".wan-nb-Row-link")
            assert link.text_content().startswith("Resumed as "), old.inner_text()
            new_id = link.text_content().removeprefix("Resumed as ")
            new = _row(page, new_id)
            new.wait_for(timeout=30_000)
            assert new.get_attribute("data-followed") == "true"          # the sidebar follows it
            assert new.locator(".wan-nb-Row-link").text_content() == f"Continues {old_id}"
            assert not old.locator(".wan-nb-resume").is_visible()
            page.wait_for_selector(f".wan-nb-Row[data-task-id='{new_id}'][data-status='completed']",
                                   timeout=300_000)
            page.wait_for_function("() => window.__notices.length > 0", timeout=10_000)
            assert _notices(page) == [{"title": "Wan run finished", "body": "a red fox in the snow",
                                       "tag": f"wan-nb-{new_id}"}]

            # Seen: no notice. Hidden but turned off: none either, and off stays off after a reload.
            _hide(page, False)
            _quick_run(tmp_path, "quick-seen")
            page.wait_for_selector(".wan-nb-Row[data-task-id='quick-seen'][data-status='completed']", timeout=30_000)
            page.locator(".wan-nb-Notify-toggle").uncheck()
            _hide(page, True)
            _quick_run(tmp_path, "quick-off")
            page.wait_for_selector(".wan-nb-Row[data-task-id='quick-off'][data-status='completed']", timeout=30_000)
            time.sleep(0.5)
            assert len(_notices(page)) == 1, _notices(page)
            page.reload()
            page.wait_for_selector(".wan-nb-Notify-toggle", state="attached", timeout=60_000)
            assert not page.locator(".wan-nb-Notify-toggle").is_checked()
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            raise
        finally:
            stop_file.touch()
            if holder is not None:
                try:
                    holder.wait(60)
                except subprocess.TimeoutExpired:
                    holder.kill()
                    holder.wait()
            browser.close()
