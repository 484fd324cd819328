"""Grids whose prompts are long or hold markup: the labelled MP4 and the HTML page still come out whole."""
import json
import os
from pathlib import Path

import pytest

from wan_nb.compose import grid_film

TINY = dict(height=16, width=16, num_frames=1, steps=1)
# Linux refuses one command-line argument longer than this (MAX_ARG_STRLEN, 32 pages).
ONE_ARGUMENT_LIMIT = 128 * 1024


def test_a_grid_whose_recipe_is_longer_than_one_command_line_argument_becomes_an_mp4(gen, tmp_path):
    """The grid's recipe repeats every cell's prompt; 16 cells of ~9,000 characters are ~150 KB.
    Written as ``-metadata comment=...`` that failed with ``Argument list too long`` after every
    cell had rendered; written through an ffmetadata file it travels whole."""
    prompt = "a red fox in the snow," + " very detailed fur;" * 470
    grid = gen.grid(prompt=prompt, x=("seed", "0-3"), y=("prompt_sr", ["fox", "owl", "cat", "elk"]), **TINY)
    assert len(json.dumps(grid.recipe())) > ONE_ARGUMENT_LIMIT
    path = grid.to_mp4(tmp_path / "long.mp4")
    recipe = grid_film.read_recipe(path)
    assert recipe is not None and recipe["prompt"] == prompt
    assert [c["prompt"] for c in recipe["cells"]][15] == prompt.replace("fox", "elk", 1)
    assert grid_film.probe(path)["frames"] == 1


def test_metadata_with_ffmetadata_escapes_round_trips(tmp_path):
    """Characters the ffmetadata format escapes (``= ; # \\`` and newlines) come back as written."""
    import numpy as np

    from wan_nb.models.video_io import write_mp4
    from wan_nb.runs.recipe import embed, read_mp4

    path = write_mp4(np.zeros((2, 16, 16, 3), np.uint8), tmp_path / "v.mp4", fps=8,
                     metadata={"title": "a=b;c#d\\e\nf"})
    recipe = {"format": "wan_nb.recipe/1", "prompt": "x=1; #2 \\ back\nslash " + "p" * 200_000}
    embed(path, recipe)
    assert read_mp4(path) == recipe
    import subprocess

    import imageio_ffmpeg

    from wan_nb.runs.recipe import parse_ffmetadata

    tags = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(path), "-f", "ffmetadata",
                           "-"], capture_output=True).stdout.decode()

    assert parse_ffmetadata(tags)["title"] == "a=b;c#d\\e\nf"   # the video's own tags are kept by embed


HOSTILE = 'a fox <!--<script> in the snow </script><b>bold</b>'


def _chromium_page_videos(html: Path) -> int:
    """How many <video> elements the lockstep player made in real Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(html.as_uri())
            try:
                page.wait_for_function("() => document.querySelectorAll('video').length > 0", timeout=15_000)
            except Exception:
                pass   # none came: counted below as 0
            return page.evaluate("() => document.querySelectorAll('video').length")
        finally:
            browser.close()


@pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="needs /usr/bin/chromium")
def test_a_prompt_holding_comment_and_script_markup_leaves_the_html_page_whole(gen, tmp_path):
    """``<!--<script>`` inside a script element makes the HTML parser ignore the next ``</script>``,
    so the embedded JSON swallowed the rest of the page and no video showed."""
    grid = gen.grid(prompt=HOSTILE, x=("seed", [0, 1]), **TINY)
    page = grid.to_html(tmp_path / "grid.html")
    text = page.read_text()
    embedded = text.split('id="wan-nb-grid-state">', 1)[1].split("</script>", 1)[0]
    assert _chromium_page_videos(page) == 2
    assert "<" not in embedded
    assert HOSTILE in json.dumps(json.loads(embedded), ensure_ascii=False)
