"""The Generator end to end on the built-in tiny model: events, cancel, failure, run folder."""
import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from wan_nb import GenerationCancelled, GenerationError, Generator, InvalidParameter
from wan_nb.protocol.events import validate
from wan_nb.runs.journal import read_events
from wan_nb.models.video_io import frame_count, read_frames

from _core_helpers import Recorder, stages

SMALL = dict(height=32, width=32, num_frames=9, steps=4)


def test_generate_emits_every_stage_in_order_with_valid_events(gen, recorder):
    result = gen.generate("a red fox running through snow", seed=0, progress=False, **SMALL)
    events = recorder.of(result.task_id)
    for event in events:
        validate(event)
    assert events[0].type == "generation_started"
    assert events[0].data["model_type"] == "tiny" and events[0].data["params"]["seed"] == 0
    assert events[-1].type == "generation_completed"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    observed = stages(events)
    expected = ["initializing", "preparing_inputs", "generating", "post_processing", "saving", "completed"]
    if "loading_model" in observed:  # only the generator's first run loads the model
        expected.insert(1, "loading_model")
    assert observed == expected
    steps = [e.data["current_step"] for e in events
             if e.type == "detailed_generation_progress" and e.data["stage"] == "generating"]
    assert [s for s in steps if s] == [1, 2, 3, 4]
    progress = [e.data["progress"] for e in events if e.type == "detailed_generation_progress"]
    assert progress == sorted(progress) and progress[-1] == 100
    assert all(p < 100 for p in progress[:-1])
    terminal = [e for e in events if e.is_terminal]
    assert terminal == [events[-1]]
    assert events[-1].data["output_path"] == str(result.video_path)
    assert frame_count(result.video_path) == 9


def test_eta_is_null_until_measured_then_counts_down(gen, recorder):
    gen.generate("a fox", seed=1, progress=False, height=32, width=32, num_frames=9, steps=6)
    task = gen.tasks[-1]
    gen_steps = [e.data for e in recorder.of(task.id)
                 if e.type == "detailed_generation_progress" and e.data["stage"] == "generating"]
    assert gen_steps[0]["current_step"] == 0 and gen_steps[0]["estimated_time_remaining"] is None
    remaining = [d["estimated_time_remaining"] for d in gen_steps[1:]]
    assert all(r is not None and r >= 0 for r in remaining)
    assert remaining[-1] <= remaining[0]


def test_memory_samples_while_running_and_none_after_the_end(gen, recorder):
    result = gen.generate("a fox", seed=2, progress=False, height=64, width=64, num_frames=17, steps=8)
    events = recorder.of(result.task_id)
    samples = [e for e in events if e.type == "vram_monitoring"]
    assert samples, "the sampler published nothing during a run"
    assert samples[0].data["device_name"] == "cpu" and samples[0].data["total_mb"] > 0
    last_index = max(i for i, e in enumerate(events) if e.type == "vram_monitoring")
    assert last_index < len(events) - 1 and events[-1].type == "generation_completed"
    time.sleep(0.2)
    assert len(gen.bus.history(result.task_id)) == len(events)  # the sampler stopped


def test_same_seed_same_video_and_other_seed_differs(gen):
    a = read_frames(gen.generate("a blue car", seed=7, progress=False, **SMALL).video_path)
    b = read_frames(gen.generate("a blue car", seed=7, progress=False, **SMALL).video_path)
    c = read_frames(gen.generate("a blue car", seed=8, progress=False, **SMALL).video_path)
    assert a.shape == (9, 32, 32, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_pipeline_is_loaded_once(gen, recorder):
    gen.generate("a cat", seed=0, progress=False, **SMALL)
    pipe = gen.pipeline
    result = gen.generate("a dog", seed=0, progress=False, **SMALL)
    assert gen.pipeline is pipe
    assert "loading_model" not in stages(recorder.of(result.task_id))


def test_run_folder_holds_params_journal_and_video(gen):
    result = gen.generate("a bird in the sky", seed=3, progress=False, **SMALL)
    folder = result.run_dir
    info = json.loads((folder / "task.json").read_text())
    assert info["prompt"] == "a bird in the sky" and info["seed"] == 3 and info["model"] == "tiny"
    assert info["params"]["steps"] == 4
    journal = list(read_events(folder / "events.jsonl"))
    assert [e.seq for e in journal] == list(range(1, len(journal) + 1))
    assert journal == gen.bus.history(result.task_id)
    assert journal[-1].type == "generation_completed"
    assert (folder / "video.mp4").stat().st_size > 0 and result.video_path == folder / "video.mp4"


def test_cancel_stops_within_one_step_and_skips_the_decode(gen, recorder):
    decodes = []
    vae = gen.pipeline.vae
    real_decode = vae.decode
    vae.decode = lambda *a, **k: decodes.append(1) or real_decode(*a, **k)  # a counting spy
    off = gen.add_step_hook(lambda task, step, *_: task.cancel() if step == 2 else None)
    try:
        task = gen.submit("a slow river", seed=0, height=32, width=32, num_frames=9, steps=10)
        with pytest.raises(GenerationCancelled):
            task.result(timeout=60)
    finally:
        off()
        del vae.decode
    events = recorder.of(task.id)
    assert task.status == "cancelled" and decodes == []
    assert events[-1].type == "generation_cancelled"
    assert events[-1].data == {"stage": "generating", "current_step": 2}
    assert "post_processing" not in stages(events)
    # the generator is ready for the next task
    assert gen.generate("a fast river", seed=0, progress=False, **SMALL).video_path.exists()


def test_cancel_while_queued(gen, recorder):
    blocker = threading.Event()
    off = gen.add_step_hook(lambda task, step, *_: blocker.wait(10))
    try:
        first = gen.submit("first", seed=0, **SMALL)
        second = gen.submit("second", seed=0, **SMALL)
        assert second.status == "queued"
        second.cancel()
        blocker.set()
        first.result(timeout=60)
        with pytest.raises(GenerationCancelled):
            second.result(timeout=60)
    finally:
        blocker.set()
        off()
    assert recorder.types(second.id)[-1] == "generation_cancelled"
    assert "generating" not in stages(recorder.of(second.id))


def test_failure_at_a_chosen_step_is_reported_and_the_next_run_works(gen, recorder):
    transformer = gen.pipeline.transformer
    real_forward = transformer.forward
    calls = []

    def failing_forward(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected fault at step 3")
        return real_forward(*args, **kwargs)

    transformer.forward = failing_forward
    try:
        task = gen.submit("a storm", seed=0, **SMALL)
        with pytest.raises(GenerationError) as info:
            task.result(timeout=60)
    finally:
        del transformer.forward
    assert info.value.stage == "generating" and info.value.error_type == "RuntimeError"
    events = recorder.of(task.id)
    assert events[-1].type == "generation_failed"
    assert events[-1].data["error"] == "injected fault at step 3"
    assert sum(e.is_terminal for e in events) == 1
    assert task.status == "failed"
    assert gen.generate("calm after the storm", seed=0, progress=False, **SMALL).video_path.exists()


def test_raising_subscriber_does_not_stop_generation(gen):
    def broken(event):
        raise ValueError("broken widget")

    off = gen.subscribe(broken)
    try:
        assert gen.generate("a tree", seed=0, progress=False, **SMALL).video_path.exists()
    finally:
        off()


def test_tasks_run_one_after_another_in_submission_order(gen):
    finished = []
    off = gen.subscribe(lambda e: finished.append(e.task_id), types=["generation_completed"])
    tasks = [gen.submit(f"scene {i}", seed=i, **SMALL) for i in range(3)]
    for task in tasks:
        task.result(timeout=120)
    gen.bus.drain()
    off()
    assert finished == [t.id for t in tasks]


@pytest.mark.parametrize("kwargs, name, nearest", [
    (dict(height=30), "height", "32"),
    (dict(width=100), "width", "96"),
    (dict(num_frames=10), "num_frames", "9"),
    (dict(num_frames=0), "num_frames", "1"),
    (dict(steps=0), "steps", "1"),
    (dict(steps=2.5), "steps", "2"),
    (dict(guidance_scale=-1), "guidance_scale", "0.0"),
    (dict(seed=1.5), "seed", "seed=1"),
    (dict(seed="abc"), "seed", "integer"),
])
def test_bad_input_names_argument_value_and_nearest_valid(tmp_path, kwargs, name, nearest):
    fresh = Generator(model="tiny", runs_dir=tmp_path, previews=False)
    with pytest.raises(InvalidParameter) as info:
        fresh.submit("a fox", **kwargs)
    message = str(info.value)
    assert message.startswith(f"{name}=") and repr(kwargs[name]) in message and nearest in message
    assert fresh.pipeline is None and fresh.tasks == []  # rejected before any model work
    assert list(tmp_path.iterdir()) == []


def test_bad_prompt_unknown_argument_model_and_image(tmp_path):
    fresh = Generator(model="tiny", runs_dir=tmp_path, previews=False)
    for prompt in ("", "   ", None):
        with pytest.raises(InvalidParameter, match="prompt"):
            fresh.submit(prompt)
    with pytest.raises(TypeError, match="num_steps"):
        fresh.submit("a fox", num_steps=3)
    with pytest.raises(InvalidParameter, match="image-to-video"):
        fresh.submit("a fox", image=np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(InvalidParameter, match="load_lora"):
        fresh.submit("a fox", loras={"nope": 1.0})
    with pytest.raises(ValueError, match="no such folder"):
        Generator(model="/no/such/model-folder")
    with pytest.raises(ValueError, match="offload"):
        Generator(model="tiny", offload="disk")


def test_import_is_light():
    code = "import sys, wan_nb; bad = [m for m in ('torch', 'diffusers', 'transformers', 'ipywidgets') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_sweep_queues_the_cross_product_labelled_by_what_varies(gen):
    sweep = gen.sweep(prompt=["a fox", "a cat"], seed=[0, 1], **SMALL)
    assert sweep.labels == [{"prompt": "a fox", "seed": 0}, {"prompt": "a fox", "seed": 1},
                            {"prompt": "a cat", "seed": 0}, {"prompt": "a cat", "seed": 1}]
    results = sweep.results(timeout=120)
    assert [(r.params["prompt"], r.seed) for r in results] == [("a fox", 0), ("a fox", 1), ("a cat", 0), ("a cat", 1)]
    assert all(r.video_path.exists() for r in results)


def test_sweep_with_one_bad_value_queues_nothing(gen):
    before = len(gen.tasks)
    with pytest.raises(InvalidParameter, match="num_frames=10"):
        gen.sweep(prompt="a fox", num_frames=[9, 10], height=32, width=32, steps=2)
    assert len(gen.tasks) == before


def test_a_pipeline_built_in_code_runs_through_from_pipeline(tmp_path):
    from wan_nb.models import tiny

    pipe = tiny.pipeline("tiny")
    gen = Generator.from_pipeline(pipe, "my-wan", defaults=dict(SMALL, fps=8), runs_dir=tmp_path, previews=False)
    assert gen.pipeline is pipe and gen.spec.spatial_factor == 16 and gen.spec.kind == "t2v"
    rec = Recorder()
    gen.subscribe(rec)
    result = gen.generate("a fox", seed=0, progress=False)
    assert "loading_model" not in stages(rec.of(result.task_id))
    assert rec.of(result.task_id)[0].data["model_type"] == "my-wan"
    assert frame_count(result.video_path) == 9


def test_from_pipeline_applies_vae_tiling_when_asked(tmp_path):
    from wan_nb.models import tiny

    pipe = tiny.pipeline("tiny")
    Generator.from_pipeline(pipe, vae_tiling=True, runs_dir=tmp_path, previews=False)
    assert pipe.vae.use_tiling


def test_run_on_worker_runs_between_tasks_on_the_generators_thread(gen):
    task = gen.submit("queued first", seed=1, steps=3, height=16, width=16, num_frames=1)
    seen = gen.run_on_worker(lambda pipe: (threading.current_thread().name, task.done(), pipe))
    name, first_done, pipe = seen
    assert name.startswith("wan_nb-generator-")   # the thread that runs the pipeline
    assert first_done                             # queued after the task: ran after it
    assert pipe is gen.pipeline and pipe is not None

    def broken(_pipe):
        raise ValueError("a caller's bug")

    with pytest.raises(ValueError, match="a caller's bug"):
        gen.run_on_worker(broken)
    # The worker survived and serves the next task.
    assert gen.generate("after", seed=2, steps=2, height=16, width=16, num_frames=1, progress=False).video_path.exists()
