"""A gallery card's Rerun that cannot start says why on that card, with a button for the fix
(the error's Python hint ``loras={'ink': 0}`` cannot be typed into a button)."""
import html

import pytest

import wan_nb
from wan_nb import Generator
from wan_nb.models import tiny
from wan_nb.widgets.history import HistoryGallery


@pytest.fixture
def run_with_a_lost_lora(tmp_path):
    runs = tmp_path / "runs"
    gen = Generator(model="tiny", runs_dir=runs, previews=False)
    gen.generate("a plain fox", seed=1, steps=2, progress=False, height=32, width=32, num_frames=5)
    lora = tiny.make_lora(gen.pipeline.transformer, tmp_path / "ink.safetensors", seed=1)
    gen.load_lora(lora, name="ink", weight=0.8)
    gen.generate("an ink fox", seed=0, steps=2, progress=False, height=32, width=32, num_frames=5)
    gen.close()
    lora.unlink()                       # the LoRA file is gone: the recipe cannot be remade as it was
    fresh = Generator(model="tiny", runs_dir=runs, previews=False)   # one that never loaded it
    yield runs, fresh
    fresh.close()


def test_the_error_shows_on_the_clicked_card_with_a_button_that_leaves_the_lora_out(run_with_a_lost_lora):
    runs, gen = run_with_a_lost_lora
    gallery = HistoryGallery(wan_nb.runs.history(runs), generator=gen)
    card = next(c for c in gallery.cards if c.run.prompt == "an ink fox")
    other = next(c for c in gallery.cards if c is not card)
    rerun_button = next(b for b in card.children if getattr(b, "description", "") == "Rerun")
    rerun_button.click()
    assert not gallery.tasks
    error, fix = card.problem.children
    said = html.unescape(error.value)
    assert "'ink'" in said and "ink.safetensors" in said       # which LoRA, where it was looked for
    assert "loras=" not in said and "Rerun without LoRA 'ink'" in said   # the hint names the button
    assert fix.description == "Rerun without LoRA 'ink'"
    assert not other.problem.children            # only the clicked card speaks
    fix.click()
    assert len(gallery.tasks) == 1 and not card.problem.children
    result = gallery.tasks[0].result(timeout=120)
    assert result.params["loras"] == {} or result.params["loras"].get("ink", 0.0) == 0.0
