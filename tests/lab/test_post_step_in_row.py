"""The sidebar row names the post-processing step while it runs, in a real JupyterLab and Chromium.

A ``wan-nb generate --interpolate 2 --upscale 4`` run of the tiny model reports its frame pairs and
frames (``post_step`` / ``post_done`` / ``post_total`` in its progress events); the row's meta line
reads e.g. "tiny · running · post processing · upscale 30/97" while it does, and loses the suffix once
the run completes. A MutationObserver records every text the meta line showed, so the short stage
is not missed between two polls.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_quickstart_pages import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from test_sidebar import WAN_NB, _lab, _lab_env, _open_lab, _open_sidebar, _row  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

RECORD = """
window.__metas = [];
new MutationObserver(() => {
  for (const node of document.querySelectorAll('.wan-nb-Row-meta')) {
    const seen = node.textContent;
    if (window.__metas[window.__metas.length - 1] !== seen) { window.__metas.push(seen); }
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def test_the_row_names_the_post_processing_step_and_its_count(tmp_path):
    from playwright.sync_api import sync_playwright

    with _lab(tmp_path) as (base, token), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.add_init_script(RECORD)
            _open_lab(page, base, token)
            _open_sidebar(page)
            env = {**os.environ, **_lab_env(tmp_path)}
            # Long enough post steps for the row to show: it redraws at most every FLUSH_MS (100 ms),
            # and interpolating 16 small frames takes less (upscaling 97 frames 4x takes ~0.5 s here).
            run = subprocess.run([str(WAN_NB), "generate", "a red fox in the snow", "--model", "tiny",
                                  "--height", "128", "--width", "128", "--frames", "49", "--steps", "2",
                                  "--interpolate", "2", "--upscale", "4", "--upscaler", "lanczos",
                                  "--seed", "4", "--json"],
                                 cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
            assert run.returncode == 0, run.stderr[-2000:]
            task_id = json.loads(run.stdout.splitlines()[0])["task_id"]
            row = _row(page, task_id)
            page.wait_for_selector(f".wan-nb-Row[data-task-id='{task_id}'][data-status='completed']", timeout=60_000)
            metas = page.evaluate("() => window.__metas")
            during = [m for m in metas
                      if re.fullmatch(r"tiny · running · post processing · (interpolate|upscale) \d+/\d+", m)]
            assert during, metas
            for step in ("interpolate", "upscale"):
                counts = [tuple(map(int, m.rsplit(" ", 1)[1].split("/"))) for m in during if f" {step} " in m]
                assert all(0 <= done <= total for done, total in counts) and len({t for _, t in counts}) <= 1, counts
            assert any(" upscale " in m for m in during), during
            assert row.locator(".wan-nb-Row-meta").text_content() == "tiny · completed"
        finally:
            browser.close()
