"""An output too large to make is refused before any work, with the limit and the nearest sizes that fit."""
import re

import pytest

from wan_nb import Generator
from wan_nb.core import params as params_module
from wan_nb.core.params import InvalidParameter, build_params
from wan_nb.models import specs


def _suggestions(message: str) -> list[dict]:
    """The sizes an error proposes, as keyword arguments."""
    tail = message.split("Nearest that fits: ", 1)[1]
    out = []
    for option in tail.split(" or "):
        out.append({k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", option)})
    return out


def test_a_huge_output_on_the_tiny_model_is_refused_at_once_with_sizes_that_fit(tmp_path):
    """4096x4096x1025 passed validation and died 20 s later allocating 4.3 GB of latents."""
    with Generator("tiny", runs_dir=tmp_path / "runs", previews=False) as gen:
        before = len(gen.tasks)
        with pytest.raises(InvalidParameter, match=r"17,197 M pixel-frames; at most 334 M") as refused:
            gen.submit("a fox", height=4096, width=4096, num_frames=1025)
        assert len(gen.tasks) == before and not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
        proposed = _suggestions(str(refused.value))
        assert proposed == [{"num_frames": 17}, {"height": 560, "width": 560}]
        for option in proposed:   # each suggestion is accepted as it stands
            size = {"height": 4096, "width": 4096, "num_frames": 1025, **option}
            assert size["height"] * size["width"] * size["num_frames"] <= params_module.MAX_PIXEL_FRAMES
            gen.check("a fox", **size)


