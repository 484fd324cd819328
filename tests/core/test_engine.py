"""The engine under the Generator: what a waiting task says about its place, and the pipeline
that ``run_on_worker`` gets before any run."""
import threading

import pytest

from wan_nb import Generator
from wan_nb.core.engine import Engine, LoadOptions
from wan_nb.protocol.events import validate
from wan_nb.core.local_engine import LocalEngine

SMALL = dict(steps=2, height=16, width=16, num_frames=1)


def queue_places(events):
    """(queue_position, ahead) of every generation_queued, in order."""
    return [(e.data["queue_position"], e.data["ahead"]) for e in events if e.type == "generation_queued"]


def test_a_generator_runs_on_an_engine_and_takes_its_loading_options_as_one_value(tmp_path):
    with Generator(model="tiny", runs_dir=tmp_path, offload="model", vae_tiling=True, previews=False) as gen:
        assert isinstance(gen.engine, LocalEngine) and isinstance(gen.engine, Engine)
        assert gen.load_options == LoadOptions(offload="model", vae_tiling=True)
        assert (gen.offload, gen.vae_tiling, gen.device_request) == ("model", True, "auto")
    with pytest.raises(ValueError, match="offload='disk': choose 'none', 'model', 'sequential' or 'group'"):
        LoadOptions(offload="disk")


def test_a_waiting_task_is_announced_as_queued_with_its_place_and_told_when_it_changes(gen, recorder):
    gen.pause()
    try:
        a, b, c = (gen.submit(f"shot {name}", seed=0, **SMALL) for name in "abc")
        gen.bus.drain()
        for position, task in enumerate((a, b, c)):
            events = recorder.of(task.id)
            # started, then queued; no stage yet: nothing has started it
            assert [e.type for e in events] == ["generation_started", "generation_queued"]
            assert queue_places(events) == [(position, position)]
            assert task.status == "queued"
        c.move(0)                                    # c, a, b
        gen.bus.drain()
        assert queue_places(recorder.of(c.id))[-1] == (0, 0)
        assert queue_places(recorder.of(a.id))[-1] == (1, 1)
        assert queue_places(recorder.of(b.id))[-1] == (2, 2)
        assert c.cancel()                            # a removal moves the others up: a, b
        gen.bus.drain()
        assert queue_places(recorder.of(a.id))[-1] == (0, 0)
        assert queue_places(recorder.of(b.id))[-1] == (1, 1)
        assert [e.type for e in recorder.of(c.id)][-1] == "generation_cancelled"
    finally:
        gen.resume()
    a.result(timeout=120), b.result(timeout=120)
    gen.bus.drain()
    for task in (a, b):
        events = recorder.of(task.id)
        for event in events:
            validate(event)
        starting = next(i for i, e in enumerate(events) if e.type == "generation_stage")
        assert (events[starting].data["stage"], events[starting].data["stage_message"]) == ("initializing", "Starting")
        # no generation_queued after the task started
        assert all(e.type != "generation_queued" for e in events[starting:])
    # When a started, b moved up to run next behind it: (0, 1) — position 0, a running ahead.
    assert (0, 1) in queue_places(recorder.of(b.id))


def test_run_on_worker_before_any_run_gets_the_loaded_pipeline_and_what_it_sets_is_used(tmp_path):
    from diffusers import UniPCMultistepScheduler

    seen = []
    with Generator(model="tiny", runs_dir=tmp_path, previews=False) as gen:
        off = gen.subscribe(seen.append)
        assert gen.pipeline is None

        def use_unipc(pipe):
            pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
            return threading.current_thread().name

        assert gen.run_on_worker(use_unipc).startswith("wan_nb-generator-")
        assert isinstance(gen.pipeline.scheduler, UniPCMultistepScheduler)
        result = gen.generate("a fox", seed=0, progress=False, **SMALL)
        assert result.video_path.exists() and isinstance(gen.pipeline.scheduler, UniPCMultistepScheduler)
        gen.bus.drain()
        off()
    # The load ran as a task of its own, with a whole, valid stream of events.
    load_id = seen[0].task_id
    load = [e for e in seen if e.task_id == load_id]
    assert load_id != result.task_id
    assert load[0].type == "generation_started" and load[0].data["purpose"] == "load"
    assert "loading_model" in [e.data.get("stage") for e in load if e.type == "generation_stage"]
    assert [e.type for e in load if e.is_terminal] == ["generation_completed"] == [load[-1].type]
    for event in load:
        validate(event)
    # ... and the generation after it loaded nothing.
    assert not any(e.type == "model_loading_progress" for e in seen if e.task_id == result.task_id)


def test_run_on_worker_raises_the_loaders_error_when_the_model_cannot_load(tmp_path, monkeypatch):
    from wan_nb.models import specs as models

    def broken(*args, **kwargs):
        raise OSError("the model files are unreadable")

    monkeypatch.setattr(models, "load_pipeline", broken)
    with Generator(model="tiny", runs_dir=tmp_path, previews=False) as gen:
        seen = []
        off = gen.subscribe(seen.append)
        with pytest.raises(OSError, match="unreadable"):
            gen.run_on_worker(lambda pipe: pipe)
        gen.bus.drain()
        off()
        assert [e.type for e in seen if e.is_terminal] == ["generation_failed"]
        assert seen[-1].data["error_type"] == "OSError"
