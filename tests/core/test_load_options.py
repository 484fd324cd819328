"""``LoadOptions`` carry the weight options the Generator resolved, typed, resolved once.

``Generator(quant=, transformer=)`` is checked and resolved (modes parsed, files found and their
headers checked against the model) when the Generator is made, after ``plan="auto"`` has had its
say; the resulting frozen :class:`~wan_nb.weights.options.WeightOptions` travel in
``LoadOptions.weights`` to the pipeline holder and, pickled, to a Ray worker. Nobody parses them
again.
"""
import pickle

import pytest

from wan_nb import Generator
from wan_nb.core.engine import LoadOptions
from wan_nb.weights.options import WeightOptions

from _weights_helpers import tiny_transformer, write_gguf


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    return write_gguf(tiny_transformer(), tmp_path_factory.mktemp("gguf") / "tiny-Q8_0.gguf")


def test_load_options_carry_the_resolved_weight_options_and_pickle(gguf_file, runs_dir):
    with Generator(model="tiny", quant={"transformer": f"gguf:{gguf_file}", "text_encoder": "fp8"},
                   runs_dir=runs_dir, previews=False) as gen:
        options = gen.load_options
        assert isinstance(options.weights, WeightOptions) and options.weights is gen.weights
        assert dict(options.weights.modes) == {"text_encoder": "fp8", "transformer": "gguf"}
        assert dict(options.weights.files) == {"transformer": gguf_file}
        # Ray pickles what it sends a worker; the cluster engine sends LoadOptions.as_kwargs().
        for copy in (pickle.loads(pickle.dumps(options)), LoadOptions(**options.as_kwargs())):
            assert copy == options and isinstance(copy.weights, WeightOptions)
    with Generator(model="tiny", runs_dir=runs_dir, previews=False) as plain:
        assert not plain.load_options.weights   # the model's weights as it ships them
        assert pickle.loads(pickle.dumps(plain.load_options)) == plain.load_options



def test_the_quant_plan_auto_chooses_is_resolved_with_the_rest_and_a_users_choice_stands(tmp_path, monkeypatch):
    """plan="auto" only plans on a CUDA GPU; this CPU machine says it has a 12 GB one (the planner
    test does the same, with device="cuda": on a CPU-only machine device="auto" refuses a real
    model when the Generator is made). The plan's quant (never one this machine cannot run, such
    as nf4 without bitsandbytes) is resolved with the other weight options, before anything loads;
    a quant= the user gave stands instead of the plan's."""
    from wan_nb.fast import options as fast_path

    monkeypatch.setattr(fast_path, "machine_memory_gb", lambda device="auto": (12.0, 64.0))
    with Generator("wan2.1-t2v-14b", device="cuda", runs_dir=tmp_path, plan="auto", previews=False) as gen:
        best = gen.memory_plan.best
        assert best is not None and best.applicable and best.quant != "nf4"
        planned = set(gen.load_options.weights.modes.values())
        assert planned == ({best.quant.split(":")[0]} if best.quant else set())
        assert gen.load_options.weights is gen.weights
    with Generator("wan2.1-t2v-14b", device="cuda", runs_dir=tmp_path, plan="auto", quant="int8",
                   previews=False) as gen:
        assert set(gen.load_options.weights.modes.values()) == {"int8"} and gen.load_options.weights is gen.weights
        assert gen.pipeline is None   # planned and resolved, nothing loaded
