"""01_quickstart in real JupyterLab 4 and Notebook 7 pages, in headless Chromium: the panel,
chart and video render; and the panel's Cancel stops a foreground ``generate`` (kernel busy).

Starts JupyterLab (which also serves Notebook 7's pages) on 127.0.0.1, stopped by its pid; runs
every cell through the Run menu and checks in the page that the overall bar reaches 100 % in the success style, the memory chart
drew points, and a <video> loaded (readyState >= 2). Saves docs/screenshot.png.
"""

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _jupyter_helpers import running_jupyter  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# The README's picture is refreshed only when asked (WAN_NB_UPDATE_SCREENSHOT=1), so a test run
# never leaves a changed tracked file behind.
SCREENSHOT = ROOT / "docs" / "screenshot.png"


def _running_lab(tmp_path: Path, notebooks: Path, *extra_args: str):
    env = {"JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),          # no other server sees this one
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),  # start with a clean layout
           "WAN_NB_RUNS_DIR": str(tmp_path / "runs")}
    return running_jupyter("lab", notebooks, tmp_path, env,
                           ("--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                            *extra_args))


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab serving a copy of the notebooks; yields (base url, token)."""
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    with _running_lab(tmp_path, notebooks) as server:
        yield server


@pytest.fixture
def lab_without_extension(tmp_path):
    """JupyterLab with wan_nb's server extension switched off (as in a front end without it)."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    with _running_lab(tmp_path, notebooks, "--ServerApp.jpserver_extensions={'wan_nb': False}") as server:
        yield server


def _in_browser(tmp_path: Path, body) -> None:
    """Run ``body(page)`` in headless Chromium; a failure keeps a screenshot and the page's outputs
    (the assertion alone says little)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        try:
            body(page)
        except Exception as exc:
            page.screenshot(path=str(tmp_path / "failure.png"))
            outputs = page.evaluate("() => Array.from(document.querySelectorAll('.jp-OutputArea-output'))"
                                    ".map(e => e.textContent.slice(0, 300))")
            raise AssertionError(f"{exc}\npage outputs: {outputs}\nscreenshot: {tmp_path / 'failure.png'}") from exc
        finally:
            browser.close()


def _open_and_run_all(page, base: str, token: str, ui: str, notebook: str) -> None:
    """Open ``notebook`` in JupyterLab or Notebook 7 and Run > Run All Cells once the kernel is up."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    path = "lab/tree" if ui == "lab" else "notebooks"
    page.goto(f"{base}/{path}/{notebook}?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    if ui == "lab":
        page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
    # Jupyter may still ask which kernel to use (it does when the click beats the session):
    # accept its preselected Python 3.
    try:
        page.locator(".jp-Dialog .jp-mod-accept").click(timeout=3_000)
    except PlaywrightTimeout:
        pass  # no dialog: the cells are already running


@pytest.mark.slow
@pytest.mark.parametrize("ui", ["lab", "notebook7"])
def test_quickstart_renders_panel_chart_and_video(lab, tmp_path, ui):
    base, token = lab
    _in_browser(tmp_path, lambda page: _run_quickstart(page, base, token, ui, tmp_path))


def _run_quickstart(page, base: str, token: str, ui: str, tmp_path: Path) -> None:
    """Open 01_quickstart, run every cell, check panel, chart and video; save the screenshot."""
    _open_and_run_all(page, base, token, ui, "01_quickstart.ipynb")
    overall = page.locator(".wan-nb-panel .wan-nb-overall .progress-bar").first
    overall.wait_for(timeout=60_000)
    page.wait_for_function(
        """() => { const bar = document.querySelector('.wan-nb-panel .wan-nb-overall .progress-bar');
                   return bar && bar.style.width === '100%' && bar.classList.contains('progress-bar-success'); }""",
        timeout=90_000)
    # Each widget is its own model with its own messages: the label and the chart may land a
    # moment after the bar, so wait for them rather than reading them at once.
    page.wait_for_function(
        """() => { const text = document.querySelector('.wan-nb-panel .wan-nb-overall-text');
                   return text && text.textContent.includes('100 %'); }""", timeout=10_000)
    page.wait_for_function(
        """() => { const chart = document.querySelector('.wan-nb-panel .wan-nb-vram');
                   return chart && Number(chart.dataset.points) >= 2
                          && chart.querySelectorAll('polyline').length >= 2; }""", timeout=10_000)
    chart = page.locator(".wan-nb-panel .wan-nb-vram").first
    # textContent, not innerText: JupyterLab skips rendering cells scrolled out of view
    # (content-visibility), and innerText of a skipped element reads as empty.
    title = chart.locator(".wan-nb-vram-title").text_content()
    assert title.startswith(("RAM (no GPU)", "GPU memory")), title  # RAM is never passed off as VRAM

    page.wait_for_function(
        "() => { const v = document.querySelector('.wan-nb-player video'); return v && v.readyState >= 2; }",
        timeout=60_000)
    link = page.locator(".wan-nb-player a.wan-nb-download").first
    assert link.get_attribute("download").endswith(".mp4")
    assert link.get_attribute("href").startswith("blob:")

    # Let every cell finish (the last one displays the generator panel), then photograph the
    # first panel (the README shows it).
    page.wait_for_function(
        "() => document.querySelectorAll('.wan-nb-panel').length >= 3", timeout=90_000)
    if ui != "lab":
        return
    panel = page.locator(".wan-nb-panel").first
    # A finished panel shows no steering buttons (not even greyed out), and its last preview.
    assert panel.locator(".wan-nb-steering").count() == 1
    assert not panel.locator(".wan-nb-steering").is_visible()
    assert panel.locator(".wan-nb-pause").count() == 1 and not panel.locator(".wan-nb-cancel").first.is_visible()
    panel.locator(".wan-nb-preview img, img.wan-nb-preview").first.wait_for(state="visible", timeout=10_000)
    panel.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    target = SCREENSHOT if os.environ.get("WAN_NB_UPDATE_SCREENSHOT") == "1" else tmp_path / "panel.png"
    target.parent.mkdir(exist_ok=True)
    panel.screenshot(path=str(target))
    assert target.stat().st_size > 5_000


LONG_RUN_STEPS = 100_000  # minutes of work: only a working cancel ends the cell within a test


def _start_a_long_foreground_generate(page, base: str, token: str, ui: str, tmp_path: Path) -> None:
    """Open a notebook whose cell runs a blocking ``gen.generate`` and wait until it denoises."""
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import wan_nb\ngen = wan_nb.Generator(model='tiny', previews=False)"),
        nbformat.v4.new_code_cell(f"gen.generate('a fox that never stops', steps={LONG_RUN_STEPS}, height=16,"
                                  " width=16, num_frames=1, seed=0)"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})
    nbformat.write(notebook, tmp_path / "notebooks" / "cancel_foreground.ipynb")
    _open_and_run_all(page, base, token, ui, "cancel_foreground.ipynb")
    # Denoising has started and goes on (the kernel is busy in generate()).
    page.wait_for_function(
        """() => { const t = document.querySelector('.wan-nb-panel .wan-nb-status');
                   const bar = document.querySelector('.wan-nb-panel .wan-nb-steps .progress-bar');
                   return t && t.dataset.status === 'running' && bar && parseFloat(bar.style.width) > 0; }""",
        timeout=90_000)


def _assert_cancelled_early(page, error_name: str, status: str = "cancelled") -> None:
    """The panel ended ``status`` early. ``cancelled`` (the Cancel button) reads "Cancelled" on its
    disabled button; ``stopped`` (a kernel interrupt keeps the steps done) offers Resume instead."""
    page.wait_for_function(
        f"""() => {{ const t = document.querySelector('.wan-nb-panel .wan-nb-status');
                   return t && t.dataset.status === '{status}'; }}""", timeout=20_000)
    # The cell ended with the cancellation (not with a finished video) ...
    page.wait_for_function(
        f"""() => Array.from(document.querySelectorAll('.jp-OutputArea-output'))
                     .some(e => e.textContent.includes('{error_name}'))""", timeout=20_000)
    # ... long before its steps were done, and the button says so.
    steps_text = page.locator(".wan-nb-panel .wan-nb-steps").first.evaluate("e => e.parentElement.textContent")
    done = int(re.search(r"(\d+)/" + str(LONG_RUN_STEPS), steps_text).group(1))
    assert 0 < done < LONG_RUN_STEPS, steps_text
    if status == "cancelled":
        page.wait_for_function(
            """() => { const b = document.querySelector('.wan-nb-panel .wan-nb-cancel button');
                       return b && b.disabled && b.textContent.includes('Cancelled'); }""", timeout=10_000)
    else:
        page.wait_for_function(
            """() => { const b = document.querySelector('.wan-nb-panel .wan-nb-resume-button');
                       return b && !b.disabled && b.offsetParent !== null; }""", timeout=10_000)


@pytest.mark.slow
@pytest.mark.parametrize("ui", ["lab", "notebook7"])
def test_cancel_button_stops_a_foreground_generate(lab, tmp_path, ui):
    """The panel's Cancel stops a blocking ``gen.generate(...)``: the kernel's main thread is busy
    waiting for the video, so the click must reach the task through the Jupyter server."""
    base, token = lab

    def body(page):
        _start_a_long_foreground_generate(page, base, token, ui, tmp_path)
        button = page.locator(".wan-nb-panel .wan-nb-cancel button")
        assert button.is_enabled()
        button.click()
        _assert_cancelled_early(page, "GenerationCancelled")

    _in_browser(tmp_path, body)


@pytest.mark.slow
def test_without_the_extension_cancel_points_to_interrupt_which_cancels(lab_without_extension, tmp_path):
    """No server to relay the click while the kernel is busy: the button says to interrupt, and
    the kernel's interrupt stops the task (within a step, no decode), keeping the steps done: the
    panel reads stopped and offers Resume."""
    base, token = lab_without_extension

    def body(page):
        _start_a_long_foreground_generate(page, base, token, "lab", tmp_path)
        page.locator(".wan-nb-panel .wan-nb-cancel button").click()
        page.wait_for_function(
            """() => { const b = document.querySelector('.wan-nb-panel .wan-nb-cancel button');
                       return b && b.textContent.includes('Interrupt'); }""", timeout=10_000)
        page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").first.click()
        page.locator(".lm-Menu-item[data-command='kernelmenu:interrupt']").click()
        _assert_cancelled_early(page, "KeyboardInterrupt", status="stopped")

    _in_browser(tmp_path, body)
