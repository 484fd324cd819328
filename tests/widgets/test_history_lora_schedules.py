"""The history gallery writes a LoRA schedule as the grid labels do, not as its JSON form."""
import pytest

import wan_nb
from wan_nb import Generator
from wan_nb.models import specs as models, tiny
from wan_nb.widgets.history import HistoryGallery


def fade(step, total, expert):
    return 1.0 - step / total


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hist")
    with Generator(model="tiny", runs_dir=folder / "runs", previews=False) as gen:
        transformer = models.load_pipeline(models.resolve("tiny"), device="cpu", dtype="fp32").transformer
        gen.load_lora(tiny.make_lora(transformer, folder / "style.safetensors", seed=1), name="style")
        small = dict(height=32, width=32, num_frames=5, steps=3, seed=0, progress=False)
        gen.generate("a ramp", loras={"style": "1.0-0.2"}, **small)
        gen.generate("a list", loras={"style": [1.0, 0.5, 0.25]}, **small)
        gen.generate("a function", loras={"style": fade}, **small)
        gen.generate("a constant", loras={"style": 0.5}, **small)
        runs = wan_nb.history(folder / "runs")
        yield {card.run.prompt: card.children[1].value for card in HistoryGallery(runs, generator=gen).cards}


@pytest.mark.parametrize("prompt,shown", [
    ("a ramp", "LoRA style=1→0.2"),
    ("a list", "LoRA style=[1, 0.5, 0.25]"),
    ("a function", "LoRA style=callable fade"),
    ("a constant", "LoRA style=0.5"),
])
def test_a_card_shows_the_schedule_as_the_grid_labels_do(gallery, prompt, shown):
    caption = gallery[prompt]
    assert shown in caption, caption
    assert "{" not in caption and "values" not in caption and "1-0.2" not in caption
