"""Time-remaining accuracy: the estimate at 25 %, 50 %, 75 % of the steps against the truth.

The truth is the time from that event to the task's completion event (both stamped by the
producer). The first run of a shape has no history for decode/save; the second has. Target:
within 10 % from 25 % on.

    .venv/bin/python benchmarks/eta_accuracy.py [--steps 80 --height 48 --width 48 --frames 9]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WAN_NB_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "bench"))


def _t(event) -> float:
    return dt.datetime.strptime(event.timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def measure(gen, steps: int, shape: dict, seed: int) -> dict[int, tuple[float, float]]:
    task = gen.submit("a red fox running through snow", seed=seed, steps=steps, **shape)
    task.result()
    events = task.events
    end = _t(events[-1])
    out = {}
    for quarter in (25, 50, 75):
        step = max(1, round(steps * quarter / 100))
        event = next(e for e in events if e.type == "detailed_generation_progress"
                     and e.data["stage"] == "generating" and e.data["current_step"] == step)
        out[quarter] = (event.data["estimated_time_remaining"], end - _t(event))
    return out


def estimate_cost(steps: int = 10_000) -> dict:
    """Microseconds a step for recording the step and estimating the rest, early and late in a
    long two-expert run (it must stay flat: an estimate that grows with the run would slow the
    run's last steps)."""
    from wan_nb.core.eta import StepClock

    clock = StepClock(steps, 1.0, ["high_noise"] * (steps // 2) + ["low_noise"] * (steps - steps // 2))
    per_step = []
    for step in range(1, steps + 1):
        started = time.perf_counter()
        clock.record(step, 0.01)
        clock.remaining()
        per_step.append(time.perf_counter() - started)
    return {"steps": steps, "us_first_100": round(sum(per_step[:100]) / 100 * 1e6, 2),
            "us_last_100": round(sum(per_step[-100:]) / 100 * 1e6, 2)}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser()
    # Step-dominated, as real models are, and a few seconds long: at a few tenths of a second
    # the scheduling jitter of a shared 2-core machine is itself 5-10 % of what is left.
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--frames", type=int, default=17)
    args = parser.parse_args(argv)
    from wan_nb import Generator

    shape = dict(height=args.height, width=args.width, num_frames=args.frames)
    rows = []
    previous_cache = os.environ.get("WAN_NB_CACHE")
    with tempfile.TemporaryDirectory() as tmp:
        # A fresh cache: no timing history, so the first run really is the first of its shape
        # (the tiny model is rebuilt there in a second).
        os.environ["WAN_NB_CACHE"] = str(Path(tmp) / "cache")
        try:
            gen = Generator(model="tiny", runs_dir=Path(tmp) / "runs", previews=False)
            gen.generate("warm up", seed=0, progress=False, steps=2, height=32, width=32, num_frames=5)
            for label in ("first run of this shape", "with history"):
                for quarter, (estimate, actual) in measure(gen, args.steps, shape, seed=1).items():
                    error = abs(estimate - actual) / actual * 100
                    rows.append({"run": label, "at": f"{quarter}%", "estimate_s": round(estimate, 3),
                                 "actual_s": round(actual, 3), "error_pct": round(error, 1)})
            gen.close()
        finally:
            if previous_cache is None:
                os.environ.pop("WAN_NB_CACHE", None)
            else:
                os.environ["WAN_NB_CACHE"] = previous_cache
    cost = estimate_cost()
    print(f"time-remaining accuracy ({args.height}x{args.width}x{args.frames}, {args.steps} steps, target within 10%)")
    print(f"  estimate cost: {cost['us_first_100']:.1f} us a step over the first 100 steps, "
          f"{cost['us_last_100']:.1f} us over the last 100 of {cost['steps']:,} (constant: no growth with the run)")
    rows.append({"run": "cost", **cost})
    for row in rows[:-1]:
        print(f"  {row['run']:<24} at {row['at']:>4}: estimate {row['estimate_s']:.3f}s  actual {row['actual_s']:.3f}s"
              f"  error {row['error_pct']:.1f}%")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
