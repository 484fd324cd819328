"""Previews from TAEHV: which decoder a generator picks ("auto" takes a cached file and never
downloads; "taehv" fetches before any run, not between two steps), the events a real run publishes,
a run's own previews= (a grid axis), and the 3 % budget holding with the costlier decoder."""
import pytest

from _taehv_helpers import write_taehv
from wan_nb import Generator
from wan_nb.models.download import ModelNotAvailable
from wan_nb.previews import PreviewChoice, choose
from wan_nb.previews.rate import CostModel
from wan_nb.protocol.errors import CheckpointError

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache of this test (offline: nothing can be fetched)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def put_in_cache(cache, repo="Kijai/WanVideo_comfy", filename="taew2_1.safetensors", channels=16):
    """A TAEHV file where hf_hub_download would have left it (refs/main -> snapshots/<rev>/file)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(REVISION)
    return write_taehv(folder / "snapshots" / REVISION / filename, channels)


def test_auto_takes_the_cached_taehv_else_the_projection(hub_cache):
    assert choose("auto").taehv_file(16) is None            # nothing cached: latent2rgb, no download tried
    assert choose(True) == PreviewChoice("auto") and choose(False).enabled is False
    cached = put_in_cache(hub_cache)
    assert choose("auto").taehv_file(16) == cached
    assert choose("auto").taehv_file(48) is None            # the 5B's file is not here
    assert choose("latent2rgb").taehv_file(16) is None


def test_taehv_is_fetched_at_construction_not_mid_run(hub_cache, tmp_path):
    with pytest.raises(ModelNotAvailable, match="taew2_1.safetensors"):
        Generator(model="tiny", runs_dir=tmp_path / "runs", previews="taehv")   # offline, not cached: refused now
    put_in_cache(hub_cache)
    with Generator(model="tiny", runs_dir=tmp_path / "runs", previews="taehv") as gen:
        assert gen.previews == "taehv"


def test_a_file_for_other_latents_or_of_another_kind_is_refused_at_construction(tmp_path):
    five_b = write_taehv(tmp_path / "taew2_2.safetensors", channels=48, patch=2)
    with pytest.raises(CheckpointError, match="48-channel latents but this model makes 16"):
        Generator(model="tiny", runs_dir=tmp_path / "runs", previews=str(five_b))
    with pytest.raises(ValueError, match="previews=3: give 'auto'"):
        Generator(model="tiny", runs_dir=tmp_path / "runs", previews=3)


def test_a_run_asking_for_taehv_with_none_here_gets_latent2rgb_and_is_told(hub_cache, tmp_path):
    with Generator(model="tiny", runs_dir=tmp_path / "runs", previews="latent2rgb", preview_every=1) as gen:
        events = []
        gen.subscribe(events.append)
        gen.generate("a fox", seed=0, steps=2, num_frames=5, progress=False, previews="taehv")
        gen.generate("a fox", seed=0, steps=2, num_frames=5, progress=False, previews=False)
    previews = [e for e in events if e.type == "preview"]
    assert len({e.task_id for e in previews}) == 1           # the run with previews=False made none
    assert all(e.data["projection"] == "wan2.1" for e in previews)
    assert "Generator(previews='taehv') downloads it once" in previews[0].data["fallback"]


def test_the_budget_holds_with_taehv_previews(tmp_path):
    """TAEHV on this CPU costs far more than a preview projection: the adaptive rate, with the
    decoder's own calibration, keeps previews within the 3 % budget of the denoising time
    (twice that allowed for a prediction that came out low)."""
    import time

    from wan_nb.previews import DEFAULT_BUDGET

    path = write_taehv(tmp_path / "taew2_1.safetensors")
    with Generator(model="tiny", runs_dir=tmp_path / "runs", previews=str(path)) as gen:
        previewer, costs, marks = gen._previewer, [], []
        original = previewer.make_preview

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                costs.append(time.perf_counter() - started)

        previewer.make_preview = timed
        gen.add_step_hook(lambda *a: marks.append(time.perf_counter()))
        gen.generate("a fox", seed=0, steps=6, num_frames=9, progress=False)
        (overhead, per_cell), = [m.calibrate() for m in previewer._taehv_costs.values()]  # TAEHV's own model
        task = gen.tasks[-1]
    assert overhead >= 0 and per_cell > 0
    denoise = (marks[-1] - marks[0]) * len(marks) / (len(marks) - 1)
    assert sum(costs) <= 2 * DEFAULT_BUDGET * denoise
    assert all(e.data["projection"] == "taehv:taew2_1" for e in task.events if e.type == "preview")


def test_a_cost_model_uses_the_calibration_it_is_given():
    model = CostModel(calibrate=lambda: (0.5, 0.001))
    assert model.predict(100) == pytest.approx(CostModel.SAFETY * (0.5 + 0.1))
    model.learn(100, 2.0)
    assert model.predict(50) == pytest.approx(1.0)
