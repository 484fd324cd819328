"""The lockstep grid player in real JupyterLab, in headless Chromium: a grid's cells turn from
progress into videos, the one shared control starts all of them, and their ``currentTime`` stays
within one frame of each other after 2 s of playback and after a scrub.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_quickstart_pages import _in_browser, _open_and_run_all, _running_lab  # noqa: E402

FPS = 8
CELLS = 6

TIMES = """() => Array.from(document.querySelectorAll('.wan-nb-lockstep video.wan-nb-ls-video'))
                 .map((v) => ({t: v.currentTime, paused: v.paused, seeking: v.seeking}))"""


@pytest.fixture
def lab_with_grid(tmp_path):
    import nbformat

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import wan_nb\ngen = wan_nb.Generator(model='tiny', previews=False)"),
        nbformat.v4.new_code_cell(
            "grid = gen.grid(prompt='a red fox in the snow', x=('seed', '0-2'), y=('guidance_scale', [1.0, 2.0]),\n"
            f"                height=32, width=32, num_frames=33, fps={FPS}, steps=2)\ngrid"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})
    nbformat.write(notebook, notebooks / "grid.ipynb")
    with _running_lab(tmp_path, notebooks) as server:
        yield server


def _spread(times):
    values = [t["t"] for t in times]
    return max(values) - min(values)


@pytest.mark.slow
def test_the_shared_control_plays_every_cell_in_lockstep(lab_with_grid, tmp_path):
    base, token = lab_with_grid
    frame = 1.0 / FPS

    def body(page):
        _open_and_run_all(page, base, token, "lab", "grid.ipynb")
        page.wait_for_selector(".wan-nb-lockstep .wan-nb-ls-cell", timeout=90_000)
        headers = page.locator(".wan-nb-lockstep th.wan-nb-ls-col").all_text_contents()
        assert headers == ["0", "1", "2"]
        assert page.locator(".wan-nb-lockstep th.wan-nb-ls-row").all_text_contents() == ["1", "2"]
        page.wait_for_function(
            f"""() => {{ const v = document.querySelectorAll('.wan-nb-lockstep video.wan-nb-ls-video');
                       return v.length === {CELLS} && Array.from(v).every((x) => x.readyState >= 2); }}""",
            timeout=180_000)
        times = page.evaluate(TIMES)
        assert all(t["paused"] and t["t"] == 0 for t in times)

        page.click(".wan-nb-lockstep .wan-nb-ls-play")
        page.wait_for_timeout(2_000)
        times = page.evaluate(TIMES)
        assert all(not t["paused"] for t in times), times           # one control started every video
        assert all(t["t"] > 1.0 for t in times), times              # ... and they play
        assert _spread(times) < frame, times                        # within one frame of each other

        page.evaluate("""() => { const s = document.querySelector('.wan-nb-lockstep .wan-nb-ls-scrub');
                                 s.value = '0.5'; s.dispatchEvent(new Event('input')); }""")
        page.wait_for_timeout(600)
        times = page.evaluate(TIMES)
        clock = float(page.locator(".wan-nb-lockstep").get_attribute("data-clock"))
        assert 0.5 <= clock < 2.0 and all(not t["seeking"] for t in times), (clock, times)
        assert _spread(times) < frame, times
        assert all(abs(t["t"] - clock) < frame for t in times), (clock, times)

        page.click(".wan-nb-lockstep .wan-nb-ls-play")              # pause: every video stops together
        page.wait_for_timeout(300)
        times = page.evaluate(TIMES)
        assert all(t["paused"] for t in times) and _spread(times) < frame, times

        page.locator(".wan-nb-lockstep .wan-nb-ls-cell").nth(4).click()   # the cell's recipe
        recipe = page.locator(".wan-nb-lockstep .wan-nb-ls-recipe").text_content()
        assert '"seed": 1' in recipe and '"guidance_scale": 2' in recipe
        page.locator(".wan-nb-lockstep .wan-nb-ls-open").click()
        page.wait_for_function("() => { const v = document.querySelector('.wan-nb-ls-big');"
                               " return v && v.readyState >= 2; }", timeout=20_000)

    _in_browser(tmp_path, body)
