"""Server memory after many finished tasks: RSS of a real ``jupyter server`` with the extension,
fresh and after N tasks of M events each have been relayed to it and finished.

Producer processes (an EventBus with the relay, as in a kernel) publish whole tasks as fast
as the server takes them: after each batch a producer waits until the server reports the
batch's last task finished, so nothing is dropped for a full socket queue. "after" is the RSS
once the server has been idle for 3 s (an idle server returns freed memory to the OS, see
``memory_trim_interval``); "peak" is the highest RSS sampled (every 0.5 s) while producing. The run journal is
left out (10,000 x 1,000 events would write ~3 GB); the server holds no journal content in
memory, and a finished task keeps only its snapshot and a few events (the rest of its replay
comes from its journal), so the figure is the same with journals.

    python benchmarks/server_memory.py                  # 10,000 tasks x 1,000 events (10M events)
    python benchmarks/server_memory.py --quick          # 500 x 200 (measured as such)
    python benchmarks/server_memory.py --tasks 2000 --events 500
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from _server_helpers import TOKEN, isolated_env, start_server  # noqa: E402

PRODUCER = r"""
import sys, time, requests
from pathlib import Path
from wan_nb import relay
from wan_nb.core.bus import EventBus
runs, prefix, tasks, events, batch, api, token = (Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]),
                                                  int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7])
bus = EventBus(history_per_task=16, max_tasks=16)
detach = relay.attach(bus, runs_dir=runs)
session = requests.Session()
session.headers["Authorization"] = f"token {token}"
time.sleep(1.0)  # the server subscribes (doorbell)
params = {"prompt": "a red fox running through snow", "steps": events - 6, "seed": 0}

def wait_finished(task_id):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r = session.get(f"{api}tasks/{task_id}", timeout=30)
        if r.status_code == 200 and r.json()["status"] == "completed":
            return
        time.sleep(0.02)
    raise SystemExit(f"server never finished {task_id}")

steps = events - 6
for n in range(tasks):
    task_id = f"{prefix}-{n:06d}"
    bus.publish(task_id, "generation_started", model_type="tiny", params=params, estimated_duration=None)
    bus.publish(task_id, "generation_stage", stage="loading_model", stage_progress=0, stage_message="Loading")
    bus.publish(task_id, "generation_stage", stage="generating", stage_progress=0, stage_message="Denoising")
    for step in range(1, steps + 1):
        bus.publish(task_id, "detailed_generation_progress", stage="generating", progress=round(100 * step / steps, 2),
                    message=f"Step {step}/{steps}", estimated_time_remaining=float(steps - step),
                    current_step=step, total_steps=steps)
    bus.publish(task_id, "generation_stage", stage="saving", stage_progress=0, stage_message="Writing MP4")
    bus.publish(task_id, "generation_stage", stage="completed", stage_progress=100, stage_message="Done")
    bus.publish(task_id, "generation_completed", output_path=str(runs / task_id / "video.mp4"), duration_s=1.0,
                params=params, seed=0)
    if (n + 1) % batch == 0 or n + 1 == tasks:
        wait_finished(task_id)
print("done", flush=True)
detach()
"""


IDLE_SECONDS = 3.0


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 tasks x 200 events")
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--events", type=int, default=None, help="events per task (>= 7)")
    parser.add_argument("--producers", type=int, default=2, help="producer processes")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra jupyter server argument, e.g. --WanNbExtension.max_tasks=500")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    tasks = args.tasks or (500 if args.quick else 10_000)
    events = args.events or (200 if args.quick else 1_000)
    if events < 7:
        parser.error("--events must be >= 7 (a task's stages and terminal event)")
    batch = max(1, 20_000 // events)  # events in flight per producer stay far below the queue limit
    with tempfile.TemporaryDirectory(prefix="wan_nb_memory_") as tmp:
        base = Path(tmp)
        runtime, runs = base / "runtime", base / "runs"
        server = start_server(runtime, extra_args=["--ServerApp.log_level=WARN", *args.server_arg])
        try:
            for _ in range(3):  # warm the request path before the baseline
                server.get("tasks")
                server.get("vram")
            time.sleep(0.5)
            fresh = rss_mb(server.proc.pid)
            started = time.monotonic()
            procs = []
            for index in range(args.producers):
                share = tasks // args.producers + (1 if index < tasks % args.producers else 0)
                procs.append(subprocess.Popen(
                    [sys.executable, "-c", PRODUCER, str(runs), f"m{index}", str(share), str(events), str(batch),
                     server.api(""), TOKEN], env=isolated_env(runtime), stdout=subprocess.PIPE, text=True))
            busy = fresh
            while any(proc.poll() is None for proc in procs):
                busy = max(busy, rss_mb(server.proc.pid))
                time.sleep(0.5)
            if any(proc.returncode != 0 for proc in procs):
                raise RuntimeError("a producer failed")
            elapsed = time.monotonic() - started
            listed = len(server.get("tasks", timeout=60).json()["tasks"])
            time.sleep(1.0)
            at_end = rss_mb(server.proc.pid)
            # An idle server hands freed memory back to the OS (memory_trim_interval, 1 s).
            time.sleep(IDLE_SECONDS)
            after = rss_mb(server.proc.pid)
        finally:
            server.stop()
    growth = after - fresh
    row = {"case": f"{tasks} tasks x {events} events", "tasks": tasks, "events_per_task": events,
           "fresh_mb": round(fresh, 1), "after_mb": round(after, 1), "growth_mb": round(growth, 1),
           "busy_peak_mb": round(busy, 1), "one_s_after_mb": round(at_end, 1),
           "events_per_s": round(tasks * events / elapsed), "tasks_listed": listed}
    if (tasks, events) != (10_000, 1_000):
        # Not extrapolated: growth is not linear in tasks or events (the server's retention is
        # capped: max_tasks, max_tasks_with_events, the all-tasks ring), and the allocator's
        # high-water mark adds a share no formula predicts. The full size is the figure.
        row["case"] += " (smaller than the 10000 x 1000 target size: measured, not extrapolated)"
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else ["?"]
    print(f"server RSS, {os.cpu_count()} CPUs, load {' '.join(load)}")
    print(f"{'case':<60}{'fresh MB':>10}{'peak MB':>10}{'after MB':>10}{'growth MB':>11}{'events/s':>10}")
    print(f"{row['case']:<60}{row['fresh_mb']:>10}{row['busy_peak_mb']:>10}{row['after_mb']:>10}"
          f"{row['growth_mb']:>11}{row['events_per_s']:>10}")
    if args.json:
        print(json.dumps([row]))
    return [row]


if __name__ == "__main__":
    main()
