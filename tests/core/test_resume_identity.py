"""A resumed run computes exactly what the uninterrupted one did (CPU, same seed): bit-identical
final latents, for each scheduler the presets use, across the A14B expert switch, for
image-to-video and video-to-video, with a LoRA; ``stop_after=k`` then ``resume_run``,
``cancel(keep=True)`` then ``resume_run``, and a pause that checkpoints.

Real tiny diffusers pipelines on the CPU; the resumed part runs in this process here (the
SIGKILL test, ``test_resume_after_kill.py``, resumes in a new one).
"""
from __future__ import annotations

import json
import threading

import pytest
import torch

from wan_nb import Generator
from wan_nb.runs import checkpoint_file

PROMPT = "a red fox running through snow"


class LastLatents:
    """A step hook keeping each task's latents after its last step (what the VAE decodes)."""

    def __init__(self) -> None:
        self.by_task: dict[str, torch.Tensor] = {}
        self.steps: dict[str, list[int]] = {}

    def __call__(self, task, step, timestep, latents, pipe) -> None:
        self.steps.setdefault(task.id, []).append(step)
        if step == task.params["steps"]:
            self.by_task[task.id] = latents.detach().clone()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("resume-runs")


def _generator(model, runs):
    gen = Generator(model=model, device="cpu", runs_dir=runs, previews=False)
    last = LastLatents()
    gen.add_step_hook(last)
    return gen, last


@pytest.fixture(scope="module")
def tiny(runs):
    gen, last = _generator("tiny", runs)
    yield gen, last
    gen.close()


def stop_then_resume(gen, last, stop, **kwargs):
    """(uninterrupted Result, stopped Result, resumed Result), the final latents compared."""
    full = gen.generate(PROMPT, progress=False, **kwargs)
    stopped = gen.generate(PROMPT, progress=False, stop_after=stop, **kwargs)
    assert stopped.stopped_at == stop and stopped.video_path.name == "preview.mp4"
    resumed = gen.resume_run(stopped.video_path, progress=False)   # the stopped run's MP4 names it
    assert last.steps[resumed.task_id] == list(range(stop + 1, kwargs.get("steps", 4) + 1))
    assert torch.equal(last.by_task[full.task_id], last.by_task[resumed.task_id])
    return full, stopped, resumed


def _scheduler(name):
    import diffusers

    flow = dict(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    return {"UniPCMultistepScheduler": lambda: diffusers.UniPCMultistepScheduler(**flow),
            "DPMSolverMultistepScheduler": lambda: diffusers.DPMSolverMultistepScheduler(**flow),
            "FlowMatchEulerDiscreteScheduler": lambda: diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)}[name]()


@pytest.mark.parametrize("scheduler", ["FlowMatchEulerDiscreteScheduler", "UniPCMultistepScheduler",
                                       "DPMSolverMultistepScheduler"])
def test_every_scheduler_resumes_bit_identical(tiny, scheduler):
    """Euler (the tiny models), UniPC (every Wan preset's repo ships it) and DPM-Solver: the multistep
    solvers' history (model_outputs, last_sample, lower_order_nums) must come back exactly."""
    gen, last = tiny
    gen.run_on_worker(lambda pipe: setattr(pipe, "scheduler", _scheduler(scheduler)))
    try:
        full, stopped, resumed = stop_then_resume(gen, last, 3, seed=5, steps=6)
    finally:
        gen.run_on_worker(lambda pipe: setattr(pipe, "scheduler", _scheduler("FlowMatchEulerDiscreteScheduler")))
    saved = torch.load(stopped.run_dir / checkpoint_file.STATE_NAME, weights_only=True)
    assert saved["scheduler"]["class"] == scheduler and saved["step"] == 3
    if scheduler != "FlowMatchEulerDiscreteScheduler":  # a multistep history was really kept
        assert [o for o in saved["scheduler"]["state"]["model_outputs"] if o is not None]
    info = json.loads((resumed.run_dir / "task.json").read_text())
    assert info["resumed_from"] == stopped.task_id and info["resume_step"] == 3
    started = next(e for e in gen.task(resumed.task_id).events if e.type == "generation_started")
    assert started.data["resumed_from"] == stopped.task_id
    # The resumed run's own checkpoint is gone once its video is saved; the stopped one keeps its own.
    assert not checkpoint_file.has_checkpoint(resumed.run_dir) and checkpoint_file.has_checkpoint(stopped.run_dir)


def test_a14b_resumes_across_the_expert_switch(runs):
    gen, last = _generator("tiny-a14b", runs)
    try:
        full, stopped, resumed = stop_then_resume(gen, last, 1, seed=2, steps=6)
        saved = json.loads((stopped.run_dir / checkpoint_file.SUMMARY_NAME).read_text())
        assert saved["expert"] == "high_noise"
        experts = [e.data.get("expert") for e in gen.task(resumed.task_id).events
                   if e.type == "detailed_generation_progress" and e.data.get("current_step", 0) > 1
                   and "expert" in e.data]
        assert "high_noise" in experts and experts[-1] == "low_noise"  # the switch happened after resuming
    finally:
        gen.close()


def test_image_to_video_resumes_bit_identical(runs, tmp_path):
    from PIL import Image

    from tests._inputs_helpers import gradient

    picture = tmp_path / "first.png"
    Image.fromarray(gradient()).save(picture)
    gen, last = _generator("tiny-i2v", runs)
    try:
        stop_then_resume(gen, last, 2, seed=4, image=str(picture))
    finally:
        gen.close()


def test_video_to_video_resumes_bit_identical(tiny, tmp_path):
    from tests._inputs_helpers import moving_square
    from wan_nb.models.video_io import write_mp4

    source = write_mp4(moving_square(), tmp_path / "source.mp4", 8)
    gen, last = tiny
    stop_then_resume(gen, last, 2, seed=6, steps=5, video=str(source), strength=0.8)


def test_a_run_with_a_lora_resumes_bit_identical(tiny, tmp_path):
    from wan_nb.models.tiny import make_lora

    gen, last = tiny
    path = gen.run_on_worker(lambda pipe: make_lora(pipe.transformer, tmp_path / "style.safetensors", seed=3))
    gen.load_lora(path, name="style", weight=0.7)
    try:
        full, stopped, resumed = stop_then_resume(gen, last, 2, seed=8)
        assert json.loads((resumed.run_dir / "task.json").read_text())["recipe"]["loras"][0]["name"] == "style"
        import hashlib

        kept = checkpoint_file.read_summary(stopped.run_dir)["hashes"]   # what the checkpoint depends on
        assert kept["loras"] == {"style": hashlib.sha256(path.read_bytes()).hexdigest()} and kept["model"]
    finally:
        gen.unload_lora("style")


def test_cancel_keep_then_resume_and_pause_checkpoints(tiny):
    """cancel(keep=True) keeps the last step done; a pause writes a checkpoint as it holds."""
    gen, last = tiny
    full = gen.generate(PROMPT, progress=False, seed=9, steps=6)
    held = threading.Event()
    off = gen.subscribe(lambda e: held.set() if e.type == "generation_paused" else None)
    task = gen.submit(PROMPT, seed=9, steps=6)
    task.pause(release_memory=True)
    assert held.wait(120)
    summary = checkpoint_file.read_summary(task.run_dir)
    assert summary["reason"] == "pause" and summary["step"] == task.current_step
    task.cancel(keep=True)
    task.wait(60)
    off()
    ended = task.events[-1]
    assert ended.type == "generation_cancelled" and ended.data["resumable"] is True
    assert ended.data["checkpoint_step"] == summary["step"]
    import wan_nb

    listed = {run.task_id: run for run in wan_nb.history(gen.runs_dir)}[task.id]
    assert (listed.status, listed.checkpoint_step) == ("stopped", summary["step"])
    resumed = gen.resume_run(task, progress=False)
    assert torch.equal(last.by_task[full.task_id], last.by_task[resumed.task_id])


def test_a_plain_cancel_leaves_no_checkpoint(tiny):
    gen, _ = tiny
    started = threading.Event()
    off = gen.subscribe(lambda e: started.set() if e.data.get("current_step") == 1 else None)
    task = gen.submit(PROMPT, seed=1, steps=6)
    assert started.wait(120)
    task.cancel()
    task.wait(60)
    off()
    assert task.status == "cancelled" and not checkpoint_file.has_checkpoint(task.run_dir)


def test_cache_modes_pab_resumes_exactly_the_adaptive_ones_restart_their_cache(tiny):
    """The cache's own state is not in the checkpoint (docs/resume.md). PAB reuses on a schedule
    of timesteps, so the resumed run reuses the same steps and is bit-identical; first-block (like
    TaylorSeer, FasterCache and MagCache) starts its cache again: the first resumed step is
    computed in full, so the result may differ slightly from the uninterrupted run."""
    gen, last = tiny

    def reused(task_id):
        return [e.data["step_reused"] for e in gen.task(task_id).events
                if e.type == "detailed_generation_progress" and "step_reused" in e.data]

    full, stopped, resumed = stop_then_resume(gen, last, 4, seed=3, steps=8, cache="pab")
    assert reused(resumed.task_id) == reused(full.task_id)[4:]

    kwargs = dict(seed=3, steps=8, cache="first-block", cache_threshold=0.5)
    full = gen.generate(PROMPT, progress=False, **kwargs)
    stopped = gen.generate(PROMPT, progress=False, stop_after=4, **kwargs)
    resumed = gen.resume_run(stopped.run_dir, progress=False)
    assert reused(resumed.task_id)[0] is False and last.steps[resumed.task_id] == [5, 6, 7, 8]
    assert torch.allclose(last.by_task[full.task_id], last.by_task[resumed.task_id], atol=0.2)
