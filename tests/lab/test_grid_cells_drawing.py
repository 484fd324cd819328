"""The grid player's cells and play control as Chromium draws them: a waiting cell reads
"queued" (no dangling "queued ·"), and Play/Pause are drawn icons with words, not the ⏸
character, which renders as an empty box where no emoji font is installed (as here)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _widget_page import chromium_page, draw_widget  # noqa: E402

from wan_nb.widgets.lockstep import LockstepGrid  # noqa: E402

SMALL = dict(height=32, width=32, num_frames=5, steps=2)


def test_queued_cells_and_the_play_control(gen):
    gen.pause()                       # every cell waits in the queue while the page is drawn
    try:
        grid = gen.grid(prompt="a red fox", x=("seed", [0, 1]), **SMALL)
        player = LockstepGrid(grid)
        with chromium_page() as page:
            draw_widget(page, player)
            lines = page.locator(".wan-nb-ls-message").all_text_contents()
            assert lines == ["queued", "queued"], lines
            play = page.locator(".wan-nb-ls-play")
            assert play.text_content().strip() == "Play" and play.locator("svg").count() == 1
            play.click()
            assert play.text_content().strip() == "Pause" and play.locator("svg").count() == 1
            assert "⏸" not in page.locator(".wan-nb-lockstep").text_content()
    finally:
        gen.resume()
    grid.results(timeout=120)
