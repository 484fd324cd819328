"""The Lab player shows a run's inputs beside its video, in a real JupyterLab and headless Chromium.

A real ``Generator(model="tiny")`` run in a script of its own; its inputs (first and last frame,
reference images, a control video) are recorded by the test helper ``_inputs_helpers.InputsSink``
in the run folder format the generator's pipelines write. The Lab lists the finished run from the
runs folder; Play opens the main-area player with the inputs loaded from the server's inputs
route, and the control video plays and seeks with the result.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_quickstart_pages import _in_browser, _open_and_run_all  # noqa: E402
from test_sidebar import _lab, _lab_env, _open_lab, _open_sidebar, _row  # noqa: E402

TESTS = Path(__file__).resolve().parents[1]
SCRIPT = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(TESTS)!r})
    from _inputs_helpers import InputsSink, flf2v_and_control
    from wan_nb import Generator

    with Generator(model="tiny", runs_dir=sys.argv[1], previews=False) as gen:
        gen.add_sink(InputsSink(gen, flf2v_and_control))
        done = gen.generate("a fox between two frames", steps=2, height=32, width=32, num_frames=9,
                            seed=0, progress=False)
        print(done.task_id, flush=True)
""")
PLAYER = ".jp-MainAreaWidget:not(.lm-mod-hidden) .wan-nb-Player"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_the_lab_player_shows_the_inputs_beside_the_video(tmp_path):
    runs = tmp_path / "root" / "wan_nb_runs"
    script = tmp_path / "make_video.py"
    script.write_text(SCRIPT)
    env = {**os.environ, **_lab_env(tmp_path)}
    made = subprocess.run([sys.executable, str(script), str(runs)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    task_id = made.stdout.split()[-1]
    with _lab(tmp_path) as (base, token):
        _in_browser(tmp_path, lambda page: _check_player(page, base, token, task_id, runs / task_id))


def _check_player(page, base: str, token: str, task_id: str, run_dir: Path) -> None:
    _open_lab(page, base, token)
    _open_sidebar(page)
    row = _row(page, task_id)
    row.wait_for(timeout=30_000)
    row.get_by_role("button", name="Play").click()
    player = page.locator(PLAYER).last
    player.wait_for(timeout=10_000)
    inputs = player.locator(".wan-nb-Player-inputs")
    inputs.wait_for(state="visible", timeout=10_000)
    figures = inputs.locator(".wan-nb-Player-input")
    assert [figures.nth(i).get_attribute("data-input") for i in range(figures.count())] == \
        ["image", "last_image", "reference_images", "video"]
    assert inputs.locator("figcaption").all_text_contents() == \
        ["first frame", "last frame", "reference images", "control video"]

    # Every picture decoded (served as image/png through the inputs route, with the login cookie).
    images = inputs.locator("img")
    assert images.count() == 4
    for i in range(images.count()):
        page.wait_for_function("img => img.complete && img.naturalWidth === 32", arg=images.nth(i).element_handle(),
                               timeout=10_000)
    assert "/inputs/image.png" in images.first.get_attribute("src")

    # The control video loads and plays; it follows the result when that is paused and seeked.
    control = inputs.locator("figure[data-input='video'] video")
    page.wait_for_function("v => v.readyState >= 2 && v.duration > 0 && !v.paused", arg=control.element_handle(),
                           timeout=20_000)
    result = player.locator(".wan-nb-Player-stage > video")
    page.wait_for_function("v => v.readyState >= 2 && v.duration > 0", arg=result.element_handle(), timeout=20_000)
    result.evaluate("v => { v.muted = true; return v.play(); }")   # muted: no user gesture needed
    page.wait_for_function("v => !v.paused && v.currentTime > 0", arg=result.element_handle(), timeout=10_000)
    result.evaluate("v => v.pause()")
    page.wait_for_function("v => v.paused", arg=control.element_handle(), timeout=5_000)
    result.evaluate("v => { v.currentTime = v.duration / 2; }")
    page.wait_for_function("([r, c]) => Math.abs(c.currentTime - r.currentTime) < 0.05 && r.currentTime > 0",
                           arg=[result.element_handle(), control.element_handle()], timeout=5_000)
    shot = run_dir.parent.parent.parent / "lab-player-inputs.png"
    page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")


def test_the_notebook_result_and_panel_show_the_inputs(tmp_path):
    """In a notebook: the progress panel and the result view of a run with inputs draw them (the
    pictures as images, the control video as a playing player), as a browser renders the widgets."""
    import nbformat

    root = tmp_path / "root"
    root.mkdir()
    cells = [f"import sys\nsys.path.insert(0, {str(TESTS)!r})\n"
             "from _inputs_helpers import InputsSink, flf2v_and_control\nfrom wan_nb import Generator\n"
             "gen = Generator(model='tiny', runs_dir='runs', previews=False)\n"
             "gen.add_sink(InputsSink(gen, flf2v_and_control))",
             "gen.generate('a fox between two frames', steps=2, height=32, width=32, num_frames=9, seed=0)"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})
    nbformat.write(notebook, root / "inputs.ipynb")
    with _lab(tmp_path) as (base, token):
        _in_browser(tmp_path, lambda page: _check_notebook(page, base, token))


def _check_notebook(page, base: str, token: str) -> None:
    _open_and_run_all(page, base, token, "lab", "inputs.ipynb")
    result = page.locator(".wan-nb-result")
    result.wait_for(timeout=180_000)
    strip = result.locator(".wan-nb-inputs")
    strip.wait_for(state="visible", timeout=20_000)
    labels = strip.locator(".wan-nb-input-label").all_text_contents()
    assert labels == ["first frame", "last frame", "reference images", "control video"], labels
    page.wait_for_function("""() => { const imgs = document.querySelectorAll('.wan-nb-result .wan-nb-inputs img');
                                      return imgs.length === 4 && [...imgs].every(i => i.complete && i.naturalWidth === 32); }""",
                           timeout=20_000)
    result.scroll_into_view_if_needed()   # Chromium holds muted autoplay videos that are out of view
    page.wait_for_function("""() => { const v = document.querySelector('.wan-nb-result .wan-nb-inputs video');
                                      return v && v.readyState >= 2 && !v.paused; }""", timeout=20_000)
    # The result's own video comes after its inputs, and the panel above showed them too.
    order = page.evaluate("""() => [...document.querySelector('.wan-nb-result').children]
                                   .map(c => c.classList.contains('wan-nb-inputs') ? 'inputs' : c.querySelector('video') ? 'video' : 'other')""")
    assert order[:2] == ["inputs", "video"], order
    page.wait_for_function("() => document.querySelectorAll('.wan-nb-panel .wan-nb-inputs img').length === 4",
                           timeout=20_000)
