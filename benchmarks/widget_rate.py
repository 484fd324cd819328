"""Widget updates per second while a progress panel is fed 100 steps a second.

Publishes a task's events on a real EventBus at ``--rate`` denoising steps a second (plus a
memory reading a second), with a ProgressPanel subscribed as it is in a notebook, and counts

* renders: the panel's redraw passes (its throttle's log);
* messages: widget state messages that would go to the browser (every ``Widget._send`` of the
  panel's widgets, counted by wrapping that method — outside a kernel they go nowhere).

Target: at most 10 renders in any one-second window, whatever the step rate, and the final
state (100 %, success) drawn. ``--real`` instead runs a tiny-model generation with many steps
(its step rate is whatever this machine manages).

    .venv/bin/python benchmarks/widget_rate.py [--rate 100] [--seconds 5] [--real]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("WAN_NB_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "bench"))


def _count_messages() -> list[float]:
    import ipywidgets

    sent: list[float] = []
    original = ipywidgets.Widget._send
    lock = threading.Lock()

    def counting_send(self, msg, buffers=None):
        if msg.get("method") == "update":
            with lock:
                sent.append(time.monotonic())
        return original(self, msg, buffers)

    ipywidgets.Widget._send = counting_send
    return sent


def _max_per_window(times: list[float], window: float = 1.0) -> int:
    times, best, start = sorted(times), 0, 0
    for end in range(len(times)):
        while times[end] - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def feed_bus(panel, rate: float, seconds: float) -> dict:
    from wan_nb.core.bus import EventBus
    from wan_nb.protocol.events import EventType
    from wan_nb.protocol.monitor import sample

    bus, task_id = EventBus(), "bench-task"
    steps = int(rate * seconds)
    bus.subscribe(panel.handle_event, task_id=task_id)
    params = {"prompt": "benchmark", "steps": steps, "height": 32, "width": 32, "num_frames": 9}
    bus.publish(task_id, EventType.GENERATION_STARTED, model_type="tiny", params=params, estimated_duration=None)
    bus.publish(task_id, EventType.GENERATION_STAGE, stage="generating", stage_progress=0.0, stage_message="Denoising")
    started = time.perf_counter()
    next_reading = started
    for step in range(1, steps + 1):
        bus.publish(task_id, EventType.DETAILED_GENERATION_PROGRESS, stage="generating",
                    progress=11 + 79 * step / steps, message=f"Step {step}/{steps}",
                    estimated_time_remaining=(steps - step) / rate, current_step=step, total_steps=steps)
        now = time.perf_counter()
        if now >= next_reading:
            bus.publish(task_id, EventType.VRAM_MONITORING, **sample())
            next_reading += 1.0
        delay = started + step / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    fed_for = time.perf_counter() - started
    bus.publish(task_id, EventType.GENERATION_STAGE, stage="completed", stage_progress=100.0, stage_message="Done")
    bus.publish(task_id, EventType.GENERATION_COMPLETED, output_path="bench.mp4", duration_s=round(fed_for, 3),
                params=params, seed=0)
    bus.drain(timeout=10)
    return {"source": "bus", "steps": steps, "steps_per_s": round(steps / fed_for, 1), "fed_for_s": round(fed_for, 2)}


def run_real(panel, steps: int) -> dict:
    import tempfile

    import wan_nb

    with tempfile.TemporaryDirectory() as tmp:
        gen = wan_nb.Generator(model="tiny", runs_dir=tmp, previews=False)
        gen.generate("warm up", seed=0, steps=1, height=16, width=16, num_frames=1, progress=False)
        task = gen.submit("benchmark", seed=0, steps=steps, height=16, width=16, num_frames=1)
        panel.follow(task)
        task.result()
        steps_events = [e for e in task.events if e.type == "detailed_generation_progress"
                        and e.data["stage"] == "generating" and e.data["current_step"] > 0]
        from wan_nb.widgets._state import parse_timestamp

        span = parse_timestamp(steps_events[-1].timestamp) - parse_timestamp(steps_events[0].timestamp)
        return {"source": "tiny model", "steps": steps, "steps_per_s": round((len(steps_events) - 1) / max(span, 1e-9), 1),
                "fed_for_s": round(span, 2)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="steps per second to publish")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--real", action="store_true", help="a real tiny-model run instead of synthetic events")
    parser.add_argument("--real-steps", type=int, default=200)
    args = parser.parse_args(argv)

    sent = _count_messages()
    from wan_nb.widgets.panel import ProgressPanel

    panel = ProgressPanel()
    sent.clear()  # building the panel is not an update
    feed = run_real(panel, args.real_steps) if args.real else feed_bus(panel, args.rate, args.seconds)
    renders = panel.throttle.renders
    span = max(renders[-1] - renders[0], 1e-9) if len(renders) > 1 else 1.0
    report = {
        **feed,
        "renders": len(renders),
        "max_renders_in_any_second": panel.throttle.max_per_second(),
        "mean_renders_per_s": round((len(renders) - 1) / span, 2) if len(renders) > 1 else float(len(renders)),
        "update_messages": len(sent),
        "max_messages_in_any_second": _max_per_window(sent),
        "final_drawn": panel.overall.value == 100.0 and panel.overall.bar_style == "success",
    }
    print(json.dumps(report))
    print(f"widget renders: at most {report['max_renders_in_any_second']} per second "
          f"(mean {report['mean_renders_per_s']}/s) at {report['steps_per_s']} steps/s; "
          f"{report['update_messages']} update messages; final state drawn: {report['final_drawn']}",
          file=sys.stderr)
    return report


if __name__ == "__main__":
    result = main()
    sys.exit(0 if result["max_renders_in_any_second"] <= 10 and result["final_drawn"] else 1)
