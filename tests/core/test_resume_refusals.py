"""What cannot be resumed is refused with an error that says what to do, before any model is
loaded, and the run folder is left exactly as it was; a checkpoint that cannot be written fails
that checkpoint, not the run."""
from __future__ import annotations

import threading

import pytest
import torch

from wan_nb import Generator
from wan_nb.protocol.errors import InvalidParameter, ResumeError
from wan_nb.runs import checkpoint_file
from wan_nb.runs.recipe import RecipeError

PROMPT = "a lighthouse in a storm"


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    generator = Generator("tiny", device="cpu", runs_dir=tmp_path_factory.mktemp("refusals"), previews=False,
                          checkpoints=1)
    yield generator
    generator.close()


@pytest.fixture(scope="module")
def stopped(gen):
    return gen.generate(PROMPT, progress=False, seed=3, stop_after=2)


def folder_state(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def refused(gen, source, pattern, error=ResumeError):
    before = folder_state(source) if hasattr(source, "iterdir") else None
    tasks = len(gen.tasks)
    with pytest.raises(error, match=pattern):
        gen.resume_run(source, progress=False)
    assert len(gen.tasks) == tasks  # nothing was queued
    if before is not None:
        assert folder_state(source) == before


def fresh(model, runs_dir):
    """A generator as a new process would have it: nothing loaded yet."""
    return Generator(model, device="cpu", runs_dir=runs_dir, previews=False)


def test_a_completed_run_is_refused(gen):
    done = gen.generate(PROMPT, progress=False, seed=1)
    refused(gen, done.run_dir, r"completed .*nothing to resume.*gen\.rerun")


def test_a_run_without_a_checkpoint_is_refused(gen):
    started = threading.Event()
    off = gen.subscribe(lambda e: started.set() if e.data.get("current_step") == 1 else None)
    task = gen.submit(PROMPT, seed=2, steps=8)
    assert started.wait(120)
    task.cancel()  # without keep=True: the checkpoint goes with it
    task.wait(60)
    off()
    refused(gen, task.run_dir, r"has no checkpoint.*gen\.rerun\(folder\)")


@pytest.mark.parametrize("field,value,pattern", [
    ("wan_nb_version", "0.0.1", r"written by wan_nb 0\.0\.1.*this is wan_nb .*wan_nb==0\.0\.1.*gen\.rerun"),
    ("format", 99, r"format 99.*gen\.rerun")])
def test_a_checkpoint_of_another_wan_nb_is_refused(gen, field, value, pattern):
    stopped = gen.generate(PROMPT, progress=False, seed=4, stop_after=1)
    path = stopped.run_dir / checkpoint_file.STATE_NAME
    payload = torch.load(path, weights_only=True)
    payload[field] = value
    torch.save(payload, path)
    refused(gen, stopped.run_dir, pattern)


def test_a_damaged_checkpoint_is_refused(gen):
    stopped = gen.generate(PROMPT, progress=False, seed=5, stop_after=1)
    path = stopped.run_dir / checkpoint_file.STATE_NAME
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    refused(gen, stopped.run_dir, r"cannot be read.*damaged.*gen\.rerun")


def test_another_model_is_refused_before_loading(stopped):
    other = fresh("tiny-a14b", stopped.run_dir.parent)
    try:
        refused(other, stopped.run_dir, r"model 'tiny'.*this generator runs 'tiny-a14b'", RecipeError)
        assert other.pipeline is None
    finally:
        other.close()


def test_a_changed_lora_file_is_refused_before_loading(gen, tmp_path):
    from wan_nb.models.tiny import make_lora

    path = gen.run_on_worker(lambda pipe: make_lora(pipe.transformer, tmp_path / "look.safetensors", seed=1))
    gen.load_lora(path, name="look", weight=0.5)
    try:
        stopped = gen.generate(PROMPT, progress=False, seed=6, stop_after=1)
    finally:
        gen.unload_lora("look")
    gen.run_on_worker(lambda pipe: make_lora(pipe.transformer, path, seed=2))  # the file changes on disk
    later = fresh("tiny", gen.runs_dir)
    try:
        refused(later, stopped.run_dir, r"LoRA 'look' at .*look\.safetensors has changed", RecipeError)
        assert later.pipeline is None
    finally:
        later.close()


def test_a_changed_input_video_is_refused_before_loading(gen, tmp_path):
    from tests._inputs_helpers import moving_square
    from wan_nb.models.video_io import write_mp4

    source = write_mp4(moving_square(), tmp_path / "source.mp4", 8)
    stopped = gen.generate(PROMPT, progress=False, seed=7, stop_after=1, video=str(source), strength=0.7)
    write_mp4(moving_square()[::-1].copy(), source, 8)   # the user's file is now another video
    later = fresh("tiny", gen.runs_dir)
    try:
        refused(later, stopped.run_dir, r"video input .*source\.mp4 has changed", RecipeError)
        assert later.pipeline is None
    finally:
        later.close()


def test_a_running_task_and_a_bad_source_are_refused(gen, stopped):
    hold = threading.Event()
    off = gen.subscribe(lambda e: hold.set() if e.type == "generation_paused" else None)
    task = gen.submit(PROMPT, seed=8, steps=8)
    task.pause()
    try:
        assert hold.wait(120)
        refused(gen, task.run_dir, r"still paused in this process")
    finally:
        task.cancel()
        task.wait(60)
        off()
    refused(gen, "no-such-task", r"nothing to resume at 'no-such-task'")


@pytest.mark.parametrize("value", [0, 4, 2.5, True])
def test_stop_after_out_of_range_is_refused_before_the_run_folder(gen, value):
    folders = set(gen.runs_dir.iterdir())
    with pytest.raises(InvalidParameter, match=r"stop_after=.*from 1 to 3 \(this run has steps=4\)"):
        gen.submit(PROMPT, stop_after=value)
    assert set(gen.runs_dir.iterdir()) == folders


def test_a_bad_checkpoints_setting_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"checkpoints='often'.*'auto'.*N >= 1.*False"):
        Generator("tiny", runs_dir=tmp_path, checkpoints="often")


def test_a_failing_checkpoint_write_fails_the_checkpoint_not_the_run(gen):
    """A full disk, reproduced by its mechanism: every write of ``checkpoint.pt`` fails with an
    OSError (here a directory stands where the file must be renamed to; a full disk raises ENOSPC
    from the same write). The run completes; each step's event says its checkpoint failed."""
    gen.pause()
    try:
        task = gen.submit(PROMPT, seed=9)
        (task.run_dir / checkpoint_file.STATE_NAME).mkdir()
    finally:
        gen.resume()
    result = task.result()
    assert result.video_path.is_file()
    failed = [e.data["checkpoint"] for e in task.events if "checkpoint" in e.data]
    assert len(failed) == 4 and not any(c["saved"] for c in failed)
    assert all("the run goes on" in c["error"] for c in failed)
    assert not list(task.run_dir.glob(".checkpoint.pt.*.tmp"))  # no temporary file left behind
