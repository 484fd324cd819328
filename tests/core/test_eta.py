import time

from wan_nb.core.eta import ProgressScale, StepClock, TimingStore, shape_key


def test_progress_never_decreases_and_reaches_100_only_on_completion():
    scale = ProgressScale()
    values = [scale.at("initializing"), scale.at("loading_model", 0.5), scale.at("generating", 0.5),
              scale.at("preparing_inputs"), scale.at("post_processing", 1.0), scale.at("saving", 1.0)]
    assert values == sorted(values) and values[-1] < 100
    assert scale.complete() == 100


def test_step_clock_is_none_before_a_step_then_extrapolates():
    clock = StepClock(total_steps=10, tail_seconds=1.0)
    assert clock.remaining() is None
    clock.start()
    for step in range(1, 4):
        time.sleep(0.01)
        clock.step_done(step)
    remaining = clock.remaining()
    assert 1.0 + 7 * 0.008 < remaining < 1.0 + 7 * 0.05


def test_unseen_expert_uses_the_seen_rate_and_each_expert_its_own():
    clock = StepClock(total_steps=4, tail_seconds=0.0, experts=["high_noise", "high_noise", "low_noise", "low_noise"])
    clock.record(1, 1.0)
    clock.record(2, 1.0)
    assert clock.remaining() == 2.0   # the two low-noise steps at the high-noise rate
    clock.record(3, 3.0)
    assert clock.remaining() == 3.0   # the last low-noise step at the low-noise rate


def test_long_two_expert_runs_are_estimated_step_by_step():
    """20,000 steps, estimated after each (the estimate is O(1) a step: benchmarks/eta_accuracy.py
    prints its cost)."""
    steps = 20_000
    clock = StepClock(total_steps=steps, tail_seconds=0.0,
                      experts=["high_noise"] * (steps // 2) + ["low_noise"] * (steps // 2))
    for step in range(1, steps + 1):
        clock.record(step, 0.5 if step <= steps // 2 else 0.25)
        clock.remaining()
        if step == steps // 2:
            assert clock.remaining() == (steps // 2) * 0.5  # unseen expert: the seen rate
    assert clock.remaining() == 0.0


def test_timing_store_learns_tails_and_scales_them_to_new_shapes(tmp_path):
    store = TimingStore(tmp_path / "timings.json")
    small = shape_key("tiny", {"height": 32, "width": 32, "num_frames": 9})
    big = shape_key("tiny", {"height": 64, "width": 64, "num_frames": 9})
    assert store.tail_seconds(small) is None
    store.record(small, {"post_processing": 1.0, "saving": 0.5, "step": 0.1})
    assert store.tail_seconds(small) == 1.5
    assert abs(store.tail_seconds(big) - 6.0) < 1e-9  # one shape known: proportional to the pixels
    assert TimingStore(tmp_path / "timings.json").tail_seconds(small) == 1.5  # persisted
    assert TimingStore(tmp_path / "timings.json").tail_seconds(shape_key("other", {"height": 32, "width": 32, "num_frames": 9})) is None


def test_two_known_shapes_separate_the_fixed_cost_from_the_per_pixel_cost(tmp_path):
    store = TimingStore(None)
    key = lambda h: shape_key("m", {"height": h, "width": 100, "num_frames": 10})  # noqa: E731
    store.record(key(100), {"post_processing": 1.5, "saving": 0.5})   # 0.1 Mvox: 2 s
    store.record(key(200), {"post_processing": 2.5, "saving": 0.5})   # 0.2 Mvox: 3 s
    assert abs(store.tail_seconds(key(400)) - 5.0) < 1e-9             # 1 s fixed + 10 s per Mvox
    assert abs(store.tail_seconds(key(50)) - 1.5) < 1e-9


def test_a_new_shape_scales_the_nearest_shapes_tail_by_its_own_step_time(tmp_path):
    store = TimingStore(tmp_path / "timings.json")
    small = shape_key("tiny", {"height": 32, "width": 32, "num_frames": 5})
    medium = shape_key("tiny", {"height": 64, "width": 64, "num_frames": 9})
    new = shape_key("tiny", {"height": 64, "width": 64, "num_frames": 17})
    assert store.reference(new) is None                      # nothing measured yet
    store.record(small, {"post_processing": 0.5, "saving": 0.1, "step": 0.01, "step_unit": 0.01})
    store.record(medium, {"post_processing": 1.0, "saving": 0.2, "step": 0.04, "step_unit": 0.02})
    tail, step, volume_ratio = store.reference(new)          # the nearest in volume
    assert (tail, step) == (1.2, 0.02) and abs(volume_ratio - 17 / 9) < 1e-9
    assert store.reference(medium) is None                   # its own history wins
    store.record(shape_key("other", {"height": 8, "width": 8, "num_frames": 1}),
                 {"post_processing": 9.0, "saving": 9.0, "step": 9.0, "step_unit": 9.0})
    assert store.reference(new)[:2] == (1.2, 0.02)            # other models never count

    def tail_after(step_seconds, reference, passes=1):
        clock = StepClock(total_steps=4, tail_seconds=None, tail_reference=reference, passes=passes)
        for n in (1, 2, 3):
            clock.record(n, step_seconds)
        assert abs(clock.remaining() - (step_seconds + clock.tail())) < 1e-9
        return clock.tail()

    assert abs(tail_after(0.03, (1.2, 0.02, 2.0)) - 1.8) < 1e-9           # steps 1.5x slower
    assert abs(tail_after(0.06, (1.2, 0.02, 2.0), passes=2) - 1.8) < 1e-9  # one decode per step, 2 passes
    # The decode grows at most with the volume however much faster the steps grow (attention) ...
    assert abs(tail_after(0.10, (1.2, 0.02, 2.0)) - 2.4) < 1e-9
    # ... and a shape twice as large never gets a smaller decode; a smaller one never a larger.
    assert abs(tail_after(0.01, (1.2, 0.02, 2.0)) - 1.2) < 1e-9
    assert abs(tail_after(0.03, (1.2, 0.02, 0.5)) - 1.2) < 1e-9
    assert abs(tail_after(0.005, (1.2, 0.02, 0.5)) - 0.6) < 1e-9


def test_timings_written_before_step_units_still_predict_by_volume(tmp_path):
    store = TimingStore(tmp_path / "timings.json")
    small = shape_key("tiny", {"height": 32, "width": 32, "num_frames": 9})
    store.record(small, {"post_processing": 1.0, "saving": 0.5, "step": 0.1})  # an older cache
    big = shape_key("tiny", {"height": 64, "width": 64, "num_frames": 9})
    assert store.reference(big) is None
    clock = StepClock(total_steps=2, tail_seconds=store.tail_seconds(big), tail_reference=store.reference(big))
    clock.record(1, 0.2)
    assert abs(clock.tail() - 6.0) < 1e-9
