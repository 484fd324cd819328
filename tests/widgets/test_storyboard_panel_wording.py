"""The storyboard panel reads cleanly: a percentage beside the Overall bar, a finished board that
does not say "complete · Storyboard complete!", and scene rows with space between them."""
import html
import re

from wan_nb import Storyboard
from wan_nb.widgets.storyboard_panel import StoryboardPanel, _step_line


def _text(value):
    return html.unescape(re.sub(r"<[^>]+>", "", value))


def test_a_finished_board_shows_100_percent_and_says_it_once(gen):
    board = Storyboard(gen, ["a fox", "a cat"], seed=0, num_frames=5, steps=2)
    panel = StoryboardPanel(board)
    assert _text(panel.overall_text.value) == "0 %"
    board.submit().result(timeout=120)
    gen.bus.drain()
    panel.throttle.flush()
    assert _text(panel.overall_text.value) == "100 %"
    said = _text(panel.message.value)
    assert said.lower().count("complete") == 1, said
    assert not said.strip().endswith("·") and not said.strip().startswith("·")
    assert all(row.layout.margin and row.layout.padding for row in panel.rows)
    panel.close()


def test_step_and_message_are_joined_only_when_both_say_something():
    assert _text(_step_line("scenes", "Scene 2 of 3")) == "scenes · Scene 2 of 3"
    assert _text(_step_line("complete", "Storyboard complete!")) == "Storyboard complete!"
    assert _text(_step_line("stitch", "")) == "stitch"
