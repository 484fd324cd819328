"""The storyboard panel against real tiny storyboards (widget state checked in Python; outside a
kernel ipywidgets still builds the real widget models a browser would be sent)."""
import io

import pytest

from wan_nb import Generator, Scene, Storyboard
from wan_nb.storyboard import StoryboardCancelled
from wan_nb.widgets.storyboard_panel import StoryboardPanel, show_storyboard
from wan_nb.widgets.video import VideoPlayer


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    with Generator(model="tiny", runs_dir=tmp_path_factory.mktemp("runs"), previews=False) as generator:
        yield generator


def test_panel_opened_before_the_run_shows_every_scene_then_the_final_video(gen):
    board = Storyboard(gen, ["a fox", Scene("a cat", num_frames=9), "a dog"], seed=0, num_frames=5, steps=2)
    panel = StoryboardPanel(board)
    assert [row.state for row in panel.rows] == ["pending"] * 3
    board.submit().result(timeout=120)
    gen.bus.drain()
    assert panel.status == "completed" and panel.overall.value == 100.0
    assert panel.overall.bar_style == "success"
    assert [row.state for row in panel.rows] == ["completed"] * 3
    assert all(row.bar.value == 100.0 for row in panel.rows)
    for index, row in enumerate(panel.rows, 1):
        player = row.player_box.children[0]
        assert isinstance(player, VideoPlayer)
        assert player.value == board.scene_path(index).read_bytes()
    final = panel.final_box.children[1]
    assert isinstance(final, VideoPlayer) and final.value == board.final_path.read_bytes()
    assert "complete" in panel.message.value
    # a panel opened afterwards replays to the same picture
    late = StoryboardPanel(board.current)
    gen.bus.drain()
    assert late.status == "completed" and [row.state for row in late.rows] == ["completed"] * 3
    panel.close()
    late.close()


def test_cancel_button_stops_the_storyboard_and_the_rows_say_where(gen):
    board = Storyboard(gen, ["one", "two", "three"], seed=1, num_frames=5, steps=8)
    panel = StoryboardPanel(board)
    clicked = []

    def click_in_scene_2(task, step, *_):
        if task.parent_id == board.id and task.prompt == "two" and step == 1 and not clicked:
            clicked.append(step)
            panel.cancel_button.click()

    off = gen.add_step_hook(click_in_scene_2)
    try:
        with pytest.raises(StoryboardCancelled):
            board.submit().result(timeout=120)
    finally:
        off()
    gen.bus.drain()
    assert panel.status == "cancelled" and panel.overall.bar_style == "warning"
    assert [row.state for row in panel.rows] == ["completed", "cancelled", "pending"]
    assert panel.rows[0].player_box.children and not panel.rows[1].player_box.children
    assert not panel.final_box.children
    panel.close()


def test_text_summary_outside_jupyter(gen):
    board = Storyboard(gen, ["a fox", "a cat"], seed=2, num_frames=1, steps=1)
    out = io.StringIO()
    show_storyboard(board, stream=out)
    assert "scene 1: pending" in out.getvalue() and "a cat" in out.getvalue()
    board.run(progress=False)
    out = io.StringIO()
    show_storyboard(board.current, stream=out)
    assert "scene 2: completed" in out.getvalue() and "completed: 100%" in out.getvalue()


def test_an_event_arriving_during_a_timed_redraw_does_not_deadlock(gen):
    """The throttle's timer thread holds the throttle's lock while it redraws (which takes the
    panel's lock); an event handled meanwhile must not take the two the other way round."""
    import threading
    import time

    from wan_nb.protocol.events import Event, utc_now

    board = Storyboard(gen, ["one"], seed=0, num_frames=5, steps=2)
    panel = StoryboardPanel(board)
    original, entered = panel._render, threading.Event()

    def slow_render():
        entered.set()
        time.sleep(0.3)  # an event arrives while the timer thread is here
        original()

    panel.throttle._render = slow_render
    panel.throttle._last = time.monotonic()  # just drew: the next request arms the timer
    panel._on_event(Event("storyboard_progress", board.id, 1, utc_now(),
                          {"step": "scene_1", "status": "in_progress", "progress": 10.0, "message": "go",
                           "data": {}}))
    assert entered.wait(5)
    handled = threading.Event()
    end = Event("storyboard_progress", board.id, 2, utc_now(),
                {"step": "scene_1", "status": "cancelled", "progress": 10.0, "message": "stop", "data": {}})
    threading.Thread(target=lambda: (panel._on_event(end), handled.set()), daemon=True).start()
    assert handled.wait(5), "the subscriber thread and the throttle's timer deadlocked"
    assert panel.status == "cancelled"
    panel.close()
