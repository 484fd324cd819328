"""Every cache mode with ``compile=True``: a bounded set of compiled graphs, none per step."""
import logging

import imageio.v3 as iio
import pytest

import wan_nb
from wan_nb.fast import cache as cache_mod
from wan_nb.fast.cache import CACHE_CHOICES

MODES = [m for m in CACHE_CHOICES if m.count("+") == 0] + ["first-block+text-kv"]
STEPS = 10  # more steps than dynamo's recompile limit (8): a per-step recompile would hit it


class _LimitHits(logging.Handler):
    def __init__(self):
        super().__init__()
        self.hits = []

    def emit(self, record):
        if "recompile_limit" in record.getMessage():
            self.hits.append(record.getMessage())


def _frames(result):
    return iio.imread(result.video_path).tobytes()


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_cache_mode_compiles_once_not_per_step(tmp_path, mode):
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()  # this mode's graphs only
    cache_mod.forget_ratios("tiny")  # mag: the first run measures the curve, the second reuses
    limits = _LimitHits()
    logging.getLogger("torch._dynamo").addHandler(limits)
    reused = []
    try:
        with wan_nb.Generator("tiny", compile=True, previews=False, runs_dir=tmp_path) as gen:
            plain = gen.generate("a fox", seed=0, steps=STEPS, progress=False)
            first = gen.generate("a fox", seed=0, steps=STEPS, cache=mode, progress=False)
            if mode == "mag":  # that run measured the curve (no MagCache hooks yet): one with them
                first = gen.generate("a fox", seed=0, steps=STEPS, cache=mode, progress=False)
            compiled = counters["frames"]["total"]
            off = gen.subscribe(lambda e: reused.append(e.data["step_reused"]) if e.type ==
                                "detailed_generation_progress" and "step_reused" in e.data else None)
            again = gen.generate("a fox", seed=1, steps=STEPS, cache=mode, progress=False)
            gen.bus.drain(timeout=5.0)
            off()
            assert counters["frames"]["total"] == compiled, "the second run of the mode compiled again"
    finally:
        logging.getLogger("torch._dynamo").removeHandler(limits)
    assert limits.hits == []  # no frame fell back to eager after recompiling per step
    assert again.video_path.is_file() and len(reused) == STEPS
    if mode == "text-kv":  # exact: the compiled uncached run, bit for bit, every block computed
        assert _frames(first) == _frames(plain) and not any(reused)
    else:  # the mode's hooks really ran under compile, and the eager counter saw it
        assert any(reused) and _frames(first) != _frames(plain)
