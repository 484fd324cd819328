"""The history gallery (widget state checked in Python, as a browser would be sent it)."""
import datetime as dt
import io

import numpy as np
import pytest

import wan_nb
from wan_nb import Generator
from wan_nb.runs.history import RunList
from wan_nb.models.video_io import read_frames
from wan_nb.widgets.history import HistoryGallery, show_history
from wan_nb.widgets.video import VideoPlayer


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    gen = Generator(model="tiny", runs_dir=runs, previews=False)
    results = [gen.generate(p, seed=s, progress=False, steps=2)
               for p, s in (("a red fox", 1), ("an owl at dusk", 2), ("a fox cub", 3))]
    yield runs, gen, results
    gen.close()


def test_history_displays_as_a_gallery_of_its_runs(made):
    runs, gen, results = made
    listed = wan_nb.history(runs)
    assert isinstance(listed, RunList) and hasattr(listed, "_ipython_display_")
    gallery = HistoryGallery(listed, generator=gen)
    assert [card.run.task_id for card in gallery.cards] == [r.task_id for r in reversed(results)]
    assert all(isinstance(card.children[0], VideoPlayer) for card in gallery.cards)
    assert gallery.cards[0].children[0].value == results[-1].video_path.read_bytes()
    assert "a fox cub" in gallery.cards[0].children[1].value and "seed 3" in gallery.cards[0].children[1].value
    assert gallery.model.options == ("all", "tiny")


def test_filters_query_the_runs_folder_again(made):
    runs, gen, results = made
    gallery = HistoryGallery(wan_nb.history(runs), generator=gen)
    gallery.prompt.value = "FOX"
    assert [c.run.seed for c in gallery.cards] == [3, 1]
    gallery.status.value = "failed"
    assert gallery.cards == [] and "0 run(s)" in gallery.count.value
    gallery.status.value = "all"
    gallery.until.value = dt.date(2000, 1, 1)
    assert gallery.cards == []
    gallery.until.value = None
    gallery.since.value = dt.date.today() - dt.timedelta(days=1)
    assert len(gallery.cards) == 2
    # Started from a filtered history, the gallery shows (and keeps) that filter.
    owl = HistoryGallery(wan_nb.history(runs, prompt="owl"), generator=gen)
    assert owl.prompt.value == "owl" and [c.run.seed for c in owl.cards] == [2]


def test_pages(made):
    runs, gen, results = made
    gallery = HistoryGallery(wan_nb.history(runs), generator=gen, page_size=2)
    assert len(gallery.cards) == 2 and gallery.previous.disabled and not gallery.next.disabled
    gallery.next.click()
    assert [c.run.seed for c in gallery.cards] == [1] and gallery.next.disabled
    assert "page 2/2" in gallery.count.value


def test_rerun_from_a_card_makes_the_same_video(made):
    runs, gen, results = made
    gallery = HistoryGallery(wan_nb.history(runs, prompt="owl"), generator=gen)
    gallery.cards[0].children[2].click()
    assert len(gallery.tasks) == 1
    again = gallery.tasks[0].result(timeout=120)
    assert np.array_equal(read_frames(again.video_path), read_frames(results[1].video_path))
    assert gallery.output.children and type(gallery.output.children[0]).__name__ == "ProgressPanel"


def test_a_rerun_that_cannot_run_says_why_in_the_gallery(made, tmp_path):
    runs, gen, results = made
    gallery = HistoryGallery(wan_nb.history(runs), generator=gen)
    card = gallery.cards[0]
    (card.run.run_dir / "task.json").write_text("{}")   # recipe gone from both places
    card.run.video_path.unlink()
    assert gallery.rerun(card.run) is None
    assert "holds no wan_nb recipe" in gallery.output.children[0].value


def test_outside_a_notebook_history_prints_a_table(made):
    runs, gen, results = made
    out = io.StringIO()
    show_history(wan_nb.history(runs, limit=2), stream=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("created") and "tiny" in lines[1]
