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


def test_where_the_planner_knows_the_model_its_estimate_sets_the_limit(monkeypatch):
    """With the largest card taken as 12 GB, the planner's leanest plan for Wan 2.1 14B at 720p x
    161 frames does not fit; fewer frames or a smaller size that the planner says fit are proposed."""
    monkeypatch.setattr(params_module, "LARGEST_CARD_GB", 12.0)
    spec = specs.resolve("wan2.1-t2v-14b")
    with pytest.raises(InvalidParameter, match=r"the planner estimates .* GB of GPU memory with its leanest plan, "
                                               r"more than the largest card \(12 GB\)") as refused:
        build_params(spec, "a fox", {"height": 720, "width": 1280, "num_frames": 161})
    for option in _suggestions(str(refused.value)):
        size = {"height": 720, "width": 1280, "num_frames": 161, **option}
        assert params_module.planned_peak_gb(spec, size["height"], size["width"], size["num_frames"]) <= 12.0
    assert build_params(spec, "a fox", {})["num_frames"] == 81   # the default size is never planned: no cost
