"""The model features seen through the Generator's events: downloads, components, experts, images."""
import numpy as np
import pytest

from wan_nb import Generator
from wan_nb.models import specs as models
from wan_nb.models import tiny
from wan_nb.core.params import InvalidParameter
from _hub_server import HubServer


def run(model, runs_dir, device="auto", **kwargs):
    gen = Generator(model=model, runs_dir=runs_dir, device=device)
    events = []
    gen.subscribe(events.append)
    try:
        result = gen.generate("a red fox", seed=0, progress=False, **kwargs)
    finally:
        gen.close()
    return result, events


def of_type(events, kind):
    return [e.data for e in events if e.type == kind]


def test_two_expert_runs_name_the_expert_and_announce_the_switch(runs_dir):
    result, events = run("tiny-a14b", runs_dir, steps=6)
    steps = [d for d in of_type(events, "detailed_generation_progress") if d.get("expert")]
    assert [d["expert"] for d in steps] == models.expert_schedule(
        models.load_pipeline(models.resolve("tiny-a14b"), device="cpu"), 6)
    switches = [d["message"] for d in steps if "Switched" in d["message"]]
    assert switches == ["Switched to the low-noise expert at step 3/6"]
    assert result.video_path.is_file()


@pytest.mark.parametrize("model", ["tiny-i2v", "tiny-ti2v"])
def test_image_to_video_through_generate(model, runs_dir):
    picture = np.random.default_rng(1).integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
    result, events = run(model, runs_dir, image=picture, num_frames=5, steps=2)
    assert result.video_path.is_file()
    loaded = {d.get("component") for d in of_type(events, "model_loading_progress")}
    assert ("image_encoder" in loaded) == (model == "tiny-i2v")


def test_text_only_models_refuse_an_image_before_any_work(runs_dir):
    gen = Generator(model="tiny", runs_dir=runs_dir)
    try:
        with pytest.raises(InvalidParameter, match="image"):
            gen.submit("a red fox", image=np.zeros((32, 32, 3), dtype=np.uint8))
    finally:
        gen.close()


def test_first_run_of_a_hub_model_shows_download_bytes(runs_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants

    folder = tiny.build("tiny", models.cache_dir() / "models" / "tiny-served")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with HubServer({"wan-nb/tiny-wan": folder}, chunk_delay=0.02) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        # A repo not yet downloaded counts as a real model: device="cpu" insists on the CPU.
        _, events = run("wan-nb/tiny-wan", runs_dir, device="cpu", height=32, width=32, num_frames=5, steps=2)
        stages = [d["stage"] for d in of_type(events, "generation_stage")]
        assert stages.index("downloading_model") < stages.index("loading_model")
        downloads = [d for d in of_type(events, "model_loading_progress") if "bytes_total" in d]
        assert downloads[-1]["bytes_downloaded"] == downloads[-1]["bytes_total"] == hub.total_bytes("wan-nb/tiny-wan")
        _, again = run("wan-nb/tiny-wan", runs_dir, height=32, width=32, num_frames=5, steps=2)
        assert "downloading_model" not in [d["stage"] for d in of_type(again, "generation_stage")]
