"""decode="taehv" fetches its file right after the model loads: offline with nothing cached, the run fails
before the denoising (not after minutes of it), with the offline fix named; the generator goes on."""
import pytest

from wan_nb import GenerationError


@pytest.fixture
def offline_empty_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_a_missing_taehv_fails_the_run_before_denoising(gen, offline_empty_cache):
    task = gen.submit("a fox", seed=0, steps=1, num_frames=5, decode="taehv")
    with pytest.raises(GenerationError, match="taew2_1.safetensors"):
        task.result(timeout=600)
    stages = [e.data["stage"] for e in task.events if e.type == "generation_stage"]
    assert "generating" not in stages and stages[-1] == "failed"
    assert [e.type for e in task.events].count("generation_failed") == 1
    assert gen.generate("a fox", seed=0, steps=1, num_frames=5, progress=False).video_path.is_file()
