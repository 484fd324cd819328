"""The sidebar says where its runs come from, in a real JupyterLab and headless Chromium: the
folded "Runs from" list names each folder and why it is listed (the configured runs folder, one
remembered from an earlier producer), and Forget drops a remembered one (its files stay)."""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_quickstart_pages import _in_browser  # noqa: E402
from test_sidebar import _lab, _open_lab, _open_sidebar  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def lasting_dir():
    """A runs folder outside the temp dirs (which are never remembered), removed afterwards."""
    path = ROOT / ".cache" / "test" / f"lab-sources-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_runs_from_lists_the_folders_and_forgets_a_remembered_one(tmp_path, lasting_dir):
    remembered = tmp_path / "jupyter_data" / "wan_nb" / "runs_dirs.json"
    remembered.parent.mkdir(parents=True)
    remembered.write_text(json.dumps({"runs_dirs": [str(lasting_dir), str(tmp_path / "scratch")]}))
    (tmp_path / "root" / "wan_nb_runs").mkdir(parents=True)

    with _lab(tmp_path) as (base, token):
        def body(page):
            _open_lab(page, base, token)
            _open_sidebar(page)
            sources = page.locator(".wan-nb-Sources")
            sources.locator("summary").wait_for(timeout=20_000)
            assert sources.locator("summary").text_content() == "Runs from 2 folders"
            sources.locator("summary").click()
            items = sources.locator(".wan-nb-Sources-item")
            listed = {items.nth(i).locator("code").text_content(): items.nth(i).get_attribute("data-source")
                      for i in range(items.count())}
            assert listed == {str(tmp_path / "root" / "wan_nb_runs"): "configured", str(lasting_dir): "remembered"}
            page.get_by_role("button", name=f"Forget {lasting_dir}").click()
            page.wait_for_function("() => document.querySelectorAll('.wan-nb-Sources-item').length === 1",
                                   timeout=10_000)
            assert sources.locator("summary").text_content() == "Runs from 1 folder"

        _in_browser(tmp_path, body)
    assert json.loads(remembered.read_text())["runs_dirs"] == [] and lasting_dir.is_dir()
