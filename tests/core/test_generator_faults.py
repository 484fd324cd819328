"""Faults on purpose: random exceptions, random cancels, a full disk, fuzzed parameters.

Each run must end with exactly one terminal event, leave the generator ready for the next run,
and leak no threads or file handles.
"""
import os
import random
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wan_nb import GenerationCancelled, GenerationError, Generator, InvalidParameter
from wan_nb.runs.journal import read_events

from _core_helpers import Recorder, stages

SMALL = dict(height=32, width=32, num_frames=5, steps=4)


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    with Generator(model="tiny", runs_dir=tmp_path_factory.mktemp("runs"), previews=False,
                   monitor_interval=0.05) as generator:
        generator.generate("warm up", seed=0, progress=False, **SMALL)
        yield generator


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Fault:
    """Raises once from a real component method of the loaded pipeline, then restores it."""

    PLACES = ("encode", "step", "decode", "save")

    def __init__(self, gen, place, step):
        self.gen, self.place, self.step = gen, place, step
        self.calls = 0

    def __enter__(self):
        pipe = self.gen.pipeline
        target = {"encode": (pipe, "encode_prompt"), "step": (pipe.transformer, "forward"),
                  "decode": (pipe.vae, "decode")}.get(self.place)
        if self.place == "save":
            import wan_nb.models.video_io as video
            target = (video, "write_mp4")
        self.owner, self.name = target
        self.had_attr = self.name in vars(self.owner)
        real = getattr(self.owner, self.name)

        def faulty(*args, **kwargs):
            self.calls += 1
            if self.calls == self.step:
                raise RuntimeError(f"injected fault in {self.place}")
            return real(*args, **kwargs)

        setattr(self.owner, self.name, faulty)
        self.real = real
        return self

    def __exit__(self, *exc):
        if self.had_attr:
            setattr(self.owner, self.name, self.real)
        else:
            delattr(self.owner, self.name)


def test_fifty_runs_with_faults_at_random_places(gen):
    rng = random.Random(1234)
    recorder = Recorder()
    off = gen.subscribe(recorder)
    threads_before, fds_before = threading.active_count(), open_fds()
    expected_stage = {"encode": "preparing_inputs", "step": "generating", "decode": "post_processing",
                      "save": "saving"}
    try:
        for run in range(50):
            place = rng.choice(Fault.PLACES)
            step = rng.randint(1, SMALL["steps"]) if place == "step" else 1
            with Fault(gen, place, step):
                task = gen.submit(f"run {run}", seed=run, **SMALL)
                with pytest.raises(GenerationError) as info:
                    task.result(timeout=60)
            assert info.value.stage == expected_stage[place], (place, step)
            events = recorder.of(task.id)
            assert sum(e.is_terminal for e in events) == 1 and events[-1].type == "generation_failed"
            if run % 10 == 9:  # and the generator still works
                assert gen.generate(f"after {run}", seed=0, progress=False, **SMALL).video_path.exists()
    finally:
        off()
    gen.bus.drain()
    assert threading.active_count() <= threads_before
    assert open_fds() <= fds_before + 2


def test_fifty_cancels_at_random_moments_stop_within_a_step_without_decode(gen):
    rng = random.Random(99)
    recorder = Recorder()
    off = gen.subscribe(recorder)
    decodes = []
    vae = gen.pipeline.vae
    real_decode = vae.decode
    vae.decode = lambda *a, **k: decodes.append(1) or real_decode(*a, **k)
    cancel_at = {}
    unhook = gen.add_step_hook(lambda task, step, *_: task.cancel() if step == cancel_at.get(task.prompt) else None)
    threads_before = threading.active_count()
    try:
        for run in range(50):
            moment = rng.choice(["queued", "step"])
            if moment == "queued":
                task = gen.submit(f"cancel {run}", seed=run, **SMALL)
                task.cancel()  # usually before the worker picks it up; else during the run
            else:
                steps = rng.randint(2, 6)
                cancel_at[f"cancel {run}"] = rng.randint(1, steps - 1)
                task = gen.submit(f"cancel {run}", seed=run, height=32, width=32, num_frames=5, steps=steps)
            with pytest.raises(GenerationCancelled):
                task.result(timeout=60)
            events = recorder.of(task.id)
            assert events[-1].type == "generation_cancelled" and sum(e.is_terminal for e in events) == 1
            assert "post_processing" not in stages(events)
            if task.prompt in cancel_at:
                assert events[-1].data["current_step"] == cancel_at[task.prompt]
    finally:
        unhook()
        off()
        del vae.decode
    assert decodes == []
    assert threading.active_count() <= threads_before
    assert gen.generate("still fine", seed=0, progress=False, **SMALL).video_path.exists()


def test_full_disk_while_saving_fails_clearly_and_keeps_the_journal(gen):
    earlier = gen.generate("an earlier run", seed=5, progress=False, **SMALL)
    earlier_bytes = earlier.video_path.read_bytes()

    def fill_disk(task, step, *_):
        if step == 1:  # the MP4's temporary file now points at a device that is always full
            os.symlink("/dev/full", task.run_dir / "video.mp4.part.mp4")

    unhook = gen.add_step_hook(fill_disk)
    try:
        task = gen.submit("no room", seed=0, **SMALL)
        with pytest.raises(GenerationError) as info:
            task.result(timeout=60)
    finally:
        unhook()
    assert info.value.stage == "saving" and "No space left on device" in str(info.value)
    journal = list(read_events(task.run_dir / "events.jsonl"))
    assert [e.seq for e in journal] == list(range(1, len(journal) + 1))
    assert journal[-1].type == "generation_failed" and journal == gen.bus.history(task.id)
    assert not (task.run_dir / "video.mp4").exists()
    assert earlier.video_path.read_bytes() == earlier_bytes  # nothing else lost
    assert gen.generate("room again", seed=0, progress=False, **SMALL).video_path.exists()


def test_unwritable_runs_dir_is_refused_before_any_work(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    fresh = Generator(model="tiny", runs_dir=blocked, previews=False)
    with pytest.raises(OSError, match="runs_dir"):
        fresh.submit("a fox", **SMALL)
    assert fresh.pipeline is None


values = st.one_of(st.none(), st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.text(max_size=5),
                   st.booleans())


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=st.one_of(st.text(max_size=20), st.none(), st.integers()),
       height=values, width=values, num_frames=values, steps=values, guidance_scale=values, seed=values)
def test_fuzzed_parameters_are_accepted_or_refused_clearly(tmp_path, prompt, height, width, num_frames, steps,
                                                           guidance_scale, seed):
    fresh = Generator(model="tiny", runs_dir=tmp_path / "fuzz", previews=False)
    from wan_nb.core.params import build_params

    kwargs = dict(height=height, width=width, num_frames=num_frames, steps=steps,
                  guidance_scale=guidance_scale, seed=seed)
    try:
        params = build_params(fresh.spec, prompt, kwargs)
    except InvalidParameter as exc:
        assert str(exc).split("=")[0] in ("prompt", *kwargs)
        return
    assert params["height"] % 16 == 0 and params["width"] % 16 == 0 and (params["num_frames"] - 1) % 4 == 0
    assert params["steps"] >= 1 and params["guidance_scale"] >= 0 and isinstance(params["seed"], int)
