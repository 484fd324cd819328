"""Live previews: projection, encoding, rate limiting, and the events a real run publishes."""
import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from wan_nb import Generator, previews
from wan_nb.models import specs as models
from wan_nb.protocol.events import validate
from wan_nb.previews import WAN21, WAN22, RateLimiter


class Clock:
    """A settable clock for the rate limiter (time in seconds)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def open_preview(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# -- projection ------------------------------------------------------------------------------------
@pytest.mark.parametrize("projection, video", [(WAN21, (480, 832)), (WAN22, (704, 1280))])
def test_projection_shape_and_range_on_both_layouts(projection, video):
    latents = torch.randn(1, projection.channels, 5, 12, 20, generator=torch.Generator().manual_seed(0)) * 3
    frames = previews.project(latents, projection, size=video)
    height, width = previews.preview_size(*video)
    assert max(height, width) == 256 and abs(width / height - video[1] / video[0]) < 0.02
    assert frames.shape == (5, height, width, 3) and frames.dtype == np.uint8
    assert frames.min() == 0 and frames.max() == 255  # strong latents saturate, clamped not wrapped


def test_projection_values_follow_the_published_factors():
    zero = torch.zeros(16, 2, 4, 4)
    frames = previews.project(zero, WAN21)  # zero latents -> the bias colour everywhere
    expected = np.round((np.array(WAN21.bias) + 1) * 127.5).astype(np.uint8)
    assert frames.shape == (2, 4, 4, 3)
    assert (frames == expected).all()
    one_hot = torch.zeros(48, 1, 2, 2)
    one_hot[39] = 1.0  # the strongest (darkening) channel of the Wan 2.2 factors
    dark = previews.project(one_hot, WAN22)[0, 0, 0]
    bias = previews.project(torch.zeros(48, 1, 2, 2), WAN22)[0, 0, 0]
    assert (dark.astype(int) < bias.astype(int)).all()


def test_projection_rejects_a_layout_mismatch():
    with pytest.raises(ValueError, match="16-channel latents but the wan2.2 projection expects 48"):
        previews.project(torch.zeros(1, 16, 2, 4, 4), WAN22)
    assert previews.projection_for(channels=16) is WAN21
    assert previews.projection_for(channels=48) is WAN22
    with pytest.raises(ValueError, match="pass the pipeline"):
        previews.projection_for(channels=12)


def test_projection_fitted_for_other_channel_counts_is_cached(tmp_path, monkeypatch):
    from diffusers import AutoencoderKLWan

    monkeypatch.setenv("WAN_NB_CACHE", str(tmp_path))
    monkeypatch.setattr(previews.projection, "_fitted", {})
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=8, z_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True], latents_mean=[0.0] * 8,
                           latents_std=[1.0] * 8).eval()
    fitted = previews.projection_for(vae, model="my/model")
    assert fitted.name == "fitted" and fitted.channels == 8
    cached = tmp_path / "previews" / "my_model-8ch.json"
    assert cached.exists()
    monkeypatch.setattr(previews.projection, "_fitted", {})
    assert previews.projection_for(SimpleNamespace(vae=vae), model="my/model") == fitted  # from the file

    # On clips it was not fitted on, the projection's colours follow the real ones.
    clips = torch.from_numpy(previews.projection._synthetic_clips(2, 9, 64, seed=5))
    with torch.no_grad():
        latents = vae.encode(clips).latent_dist.mode()
    predicted = previews.project(latents[0], fitted).astype(float) / 127.5 - 1
    groups = [clips[:1, :, :1], clips[:1, :, 1:5], clips[:1, :, 5:9]]
    target = torch.cat([g.mean(2, keepdim=True) for g in groups], 2)
    target = torch.nn.functional.adaptive_avg_pool3d(target, (3, *latents.shape[-2:]))[0]
    correlation = np.corrcoef(predicted.ravel(), target.permute(1, 2, 3, 0).numpy().ravel())[0, 1]
    assert correlation > 0.2


def test_clean_estimate_is_exact_for_the_euler_flow_sampler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.set_timesteps(6)
    gen = torch.Generator().manual_seed(1)
    clean, noise = torch.randn(1, 16, 2, 4, 4, generator=gen), torch.randn(1, 16, 2, 4, 4, generator=gen)
    pipe = SimpleNamespace(scheduler=scheduler)
    latents = noise.clone()
    for t in scheduler.timesteps[:3]:
        previous = latents
        latents = scheduler.step(noise - clean, t, latents, return_dict=False)[0]  # the true velocity
    estimate = previews.estimate_clean(latents, previous, pipe)
    assert torch.allclose(estimate, clean, atol=1e-4)
    assert not torch.allclose(latents, clean, atol=0.1)  # the latents themselves are still noisy
    assert previews.estimate_clean(latents, None, pipe) is latents  # no history: raw latents


# -- encoding --------------------------------------------------------------------------------------
def test_encoded_preview_decodes_to_every_frame():
    # A denoised latent is smooth, like this (pure noise would be shrunk to fit MAX_BYTES).
    smooth = torch.nn.functional.interpolate(torch.randn(1, 16 * 21, 8, 13, generator=torch.Generator().manual_seed(0)),
                                             size=(60, 104), mode="bicubic").view(1, 16, 21, 60, 104)
    frames = previews.project(smooth, WAN21, size=(480, 832))
    durations = previews.frame_durations(len(frames), fps=16)
    data, mime, (height, width) = previews.encode(frames, durations)
    assert mime == ("image/webp" if previews.webp_supported() else "image/gif")
    image = open_preview(data)
    assert image.n_frames == 21 and image.size == (width, height) == (256, 148)
    assert len(data) <= previews.MAX_BYTES
    assert durations[0] == 62 and durations[1] == 250  # a latent frame stands for 4 video frames


def test_gif_fallback_and_the_size_limit():
    noise = np.random.default_rng(0).integers(0, 256, (6, 128, 128, 3), dtype=np.uint8)
    data, mime, _ = previews.encode(noise, 100, fmt="GIF")
    assert mime == "image/gif" and open_preview(data).n_frames == 6
    data, _, (height, width) = previews.encode(noise, 100, max_bytes=20_000)
    assert len(data) <= 20_000 and open_preview(data).n_frames == 6 and width < 128
    with pytest.raises(ValueError, match="uint8"):
        previews.encode(noise.astype(np.float32))


# -- rate ------------------------------------------------------------------------------------------
def run_limiter(limiter: RateLimiter, clock: Clock, total: int, step_s: float, cost_s: float) -> list[int]:
    made = []
    for step in range(1, total + 1):
        clock.now += step_s
        if limiter.due(step, total, cost_s):
            clock.now += cost_s
            limiter.spent(cost_s)
            made.append(step)
    return made


def test_rate_every_n_steps_plus_the_last():
    clock = Clock()
    assert run_limiter(RateLimiter(3, clock=clock), clock, 10, 0.1, 0.5) == [3, 6, 9, 10]


def test_rate_every_n_seconds_plus_the_last():
    clock = Clock()
    # Steps of 0.4 s, a preview at most every 1.0 s (timed from the end of step 1).
    assert run_limiter(RateLimiter(1.0, clock=clock), clock, 10, 0.4, 0.0) == [4, 7, 10]


def test_rate_adaptive_keeps_one_a_second_and_three_percent():
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    made = run_limiter(limiter, clock, 50, 2.0, 0.15)  # 2 s steps: budget 0.06 s a step
    assert made[0] >= 2 and made[-1] == 50
    total_time = 50 * 2.0 + limiter.spent_s
    assert limiter.spent_s <= 0.03 * 50 * 2.0 + 1e-9
    assert limiter.spent_s / total_time > 0.02  # and it uses the budget it has
    gaps = [b - a for a, b in zip(made, made[1:])]
    assert min(gaps) >= 2 and 2.3 <= sum(gaps) / len(gaps) <= 2.7  # 0.15 s costs 2.5 steps of budget

    clock = Clock()
    fast = run_limiter(RateLimiter(clock=clock), clock, 100, 0.05, 0.0001)  # cheap previews, fast steps
    gaps = [b - a for a, b in zip(fast, fast[1:-1])]
    assert fast and min(gaps) >= 20  # about one a second: 20 steps of 50 ms

    clock = Clock()
    assert run_limiter(RateLimiter(clock=clock), clock, 10, 0.01, 1.0) == []  # never affordable


def test_bad_preview_every_is_refused_before_any_work(runs_dir):
    for bad in (0, -2, 0.0, float("nan"), "2", True):
        with pytest.raises(ValueError, match="preview_every"):
            Generator("tiny", runs_dir=runs_dir, preview_every=bad)


# -- real runs -------------------------------------------------------------------------------------
def run_recording_previews(gen, prompt, **kwargs):
    """Run a task and return it with every preview it published (history keeps only the newest)."""
    seen = []
    off = gen.subscribe(seen.append, types=["preview"])
    task = gen.submit(prompt, **kwargs)
    task.result(timeout=120)
    gen.bus.drain()
    off()
    return task, [e for e in seen if e.task_id == task.id]


def test_tiny_run_publishes_valid_previews_of_the_whole_clip(runs_dir):
    gen = Generator("tiny", runs_dir=runs_dir, preview_every=1)
    task, events = run_recording_previews(gen, "a red fox running through snow", seed=0, steps=4, height=64,
                                          width=96, num_frames=9)
    assert [e for e in task.events if e.type == "preview"] == events[-1:]  # history: the newest only
    assert [e.data["step"] for e in events] == [1, 2, 3, 4]
    types = [e.type for e in task.events]
    stages = [e.data.get("stage") for e in task.events if e.type == "generation_stage"]
    assert stages.index("generating") < stages.index("post_processing")
    first_preview = types.index("preview")
    assert all(e.type != "generation_completed" for e in task.events[:first_preview])
    for event in events:
        validate(event)
        data = event.data
        assert data["total_steps"] == 4 and data["projection"] == "wan2.1"
        image = open_preview(previews.preview_bytes(event))
        assert image.n_frames == data["frames"] == 3  # 9 video frames -> 3 latent frames
        assert image.size == (data["width"], data["height"]) == (96, 64)
        assert len(previews.preview_bytes(event)) == data["bytes"] <= previews.MAX_BYTES
    assert previews.latest_preview(task) == dict(events[-1].data)


def test_previews_false_emits_none(runs_dir):
    gen = Generator("tiny", runs_dir=runs_dir, previews=False, preview_every=1)
    task = gen.submit("a cat", seed=0, steps=2)
    task.result(timeout=120)
    assert [e for e in task.events if e.type == "preview"] == [] and previews.latest_preview(task) is None
    assert task.status == "completed"


def test_48_channel_model_previews_with_the_wan22_projection(runs_dir):
    try:
        models.resolve("tiny-ti2v")
    except ValueError:
        pytest.skip("the tiny-ti2v model is not available in this build")
    gen = Generator("tiny-ti2v", runs_dir=runs_dir, preview_every=2)
    task, events = run_recording_previews(gen, "a cat", seed=0, steps=4)
    assert [e.data["step"] for e in events] == [2, 4]
    for event in events:
        validate(event)
        assert event.data["projection"] == "wan2.2"
        assert open_preview(previews.preview_bytes(event)).n_frames == event.data["frames"]


def test_importing_previews_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, wan_nb, wan_nb.previews; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
