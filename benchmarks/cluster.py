"""Scale-out on Ray: sweep throughput on 1 vs 2 workers, per-task cost of the Ray path, driver event rate.

Starts its own Ray cluster on 127.0.0.1 (the tests' helper; stopped by pid at the end), then:

- ``throughput``: a 16-task tiny sweep on a cluster Generator with 1 worker, then with 2
  (each warmed by one task per worker first, so model loading is not timed): tasks a second and
  the ratio. **Caveat:** on a 2-core machine two CPU workers share the two cores with the driver
  and Ray's own daemons; a ratio well below 2 here says nothing about GPUs, where each worker has
  a device of its own.
- ``overhead``: the same small task one after another, ``generate`` on a 1-worker cluster against a
  local ``generate`` in this process limited to one torch thread (what a CPU worker gets): the
  difference of the medians is what the Ray path costs a task (dispatch, event batches, the
  video's bytes back, the journal and relay on the driver).
- ``events``: events a second the driver absorbs: an actor streams batches of progress frames as
  fast as Ray carries them; the driver turns each into an Event and publishes it, seq kept, on a
  bus with the run journal and the relay attached (the path every remote event takes).

    .venv/bin/python benchmarks/cluster.py [--tasks 16] [--runs 6] [--events 50000]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WAN_NB_CACHE", str(ROOT / ".cache" / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
from _cluster_helpers import local_ray  # noqa: E402  (sets Ray's loopback switch before Ray loads)

SHAPE = dict(height=32, width=32, num_frames=9, steps=4)
PROMPT = "a red fox running through snow"


def throughput(address: str, runs_dir: Path, tasks: int, workers: int) -> dict:
    from wan_nb import Generator

    with Generator(model="tiny", cluster=address, workers=workers, runs_dir=runs_dir, previews=False) as gen:
        gen.sweep(prompt=PROMPT, seed=list(range(workers)), **SHAPE).results(timeout=600)  # load everywhere
        started = time.perf_counter()
        sweep = gen.sweep(prompt=PROMPT, seed=list(range(tasks)), **SHAPE)
        sweep.results(timeout=1200)
        elapsed = time.perf_counter() - started
        used = {t.worker["id"] for t in sweep.tasks}
    return {"workers": workers, "tasks": tasks, "seconds": round(elapsed, 3),
            "tasks_per_s": round(tasks / elapsed, 3), "workers_used": len(used)}


def overhead(address: str, runs_dir: Path, runs: int) -> dict:
    import torch

    from wan_nb import Generator

    remote, local = [], []
    with Generator(model="tiny", cluster=address, workers=1, runs_dir=runs_dir, previews=False) as gen, \
            Generator(model="tiny", runs_dir=runs_dir, previews=False) as here:
        here.run_on_worker(lambda pipe: torch.set_num_threads(1))  # what Ray gives a 1-CPU worker
        for arm in (gen, here):
            arm.generate(PROMPT, seed=0, progress=False, **SHAPE)  # warm: model loaded, caches hot
        for seed in range(runs):  # alternating, so drift in machine load hits both arms alike
            for arm, times in ((gen, remote), (here, local)):
                started = time.perf_counter()
                arm.generate(PROMPT, seed=seed, progress=False, **SHAPE)
                times.append(time.perf_counter() - started)
    return {"runs": runs, "ray_ms": round(statistics.median(remote) * 1000, 1),
            "local_ms": round(statistics.median(local) * 1000, 1),
            "overhead_ms": round((statistics.median(remote) - statistics.median(local)) * 1000, 1)}


class _Flood:
    """Streams ``count`` progress frames of one task in batches of ``batch``."""

    def frames(self, count: int, batch: int):
        from wan_nb.bus import EventBus

        bus = EventBus()
        out = []
        bus.add_sink(lambda event: out.append(event.to_frame()))
        for step in range(1, count + 1):
            bus.publish("flood", "detailed_generation_progress", stage="generating", progress=step * 100 / count,
                        message=f"Step {step}/{count}", estimated_time_remaining=None, current_step=step,
                        total_steps=count)
            if len(out) >= batch:
                yield out
                out = []
        if out:
            yield out


def events_rate(count: int, batch: int, runs_dir: Path) -> dict:
    import ray

    from wan_nb import journal, relay
    from wan_nb.bus import EventBus
    from wan_nb.events import Event

    bus = EventBus()
    sink = journal.Journal()
    bus.add_sink(sink)
    sink.open("flood", runs_dir / "flood")
    detach = relay.attach(bus, runs_dir=runs_dir)
    flood = ray.remote(num_cpus=1)(_Flood).remote()
    try:
        started = time.perf_counter()
        calls = 0
        for ref in flood.frames.options(num_returns="streaming").remote(count, batch):
            for frame in ray.get(ref):
                bus.publish_event(Event.from_frame(frame))
            calls += 1
        elapsed = time.perf_counter() - started
    finally:
        sink.close("flood")
        detach()
        ray.kill(flood)
    assert bus.last_seq("flood") == count
    return {"events": count, "batch": batch, "ray_objects": calls, "seconds": round(elapsed, 3),
            "events_per_s": round(count / elapsed)}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--runs", type=int, default=6, help="generate calls per arm for the overhead")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500, help="frames per Ray object in the event flood")
    args = parser.parse_args(argv)

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="wan_nb-bench-cluster-") as tmp:
        work = Path(tmp)
        os.environ["JUPYTER_RUNTIME_DIR"] = str(work / "runtime")  # no server of the user's hears it
        started = time.perf_counter()
        with local_ray(work, num_cpus=2) as address:
            import ray

            ray.init(address=address, log_to_driver=False)
            print(f"Ray cluster on {address} up in {time.perf_counter() - started:.1f} s (2 CPUs, no GPU)")
            one = throughput(address, work / "runs", args.tasks, 1)
            two = throughput(address, work / "runs", args.tasks, 2)
            ratio = round(two["tasks_per_s"] / one["tasks_per_s"], 3)
            for row in (one, two):
                print(f"{row['tasks']}-task sweep on {row['workers']} worker(s): {row['seconds']:.2f} s, "
                      f"{row['tasks_per_s']:.2f} tasks/s ({row['workers_used']} worker(s) used)")
            print(f"throughput 2 / 1 workers: {ratio:.2f}x  (2-core machine: both workers, the driver and "
                  "Ray's daemons share two cores; on GPUs each worker has its own device)")
            rows.append({"case": "throughput", "one_worker_tasks_per_s": one["tasks_per_s"],
                         "two_workers_tasks_per_s": two["tasks_per_s"], "ratio": ratio, "tasks": args.tasks})

            cost = overhead(address, work / "runs", args.runs)
            print(f"one task {SHAPE}: Ray path {cost['ray_ms']:.0f} ms, local (1 torch thread) "
                  f"{cost['local_ms']:.0f} ms, overhead {cost['overhead_ms']:.0f} ms (medians of {cost['runs']})")
            rows.append({"case": "overhead", **cost})

            rate = events_rate(args.events, args.batch, work)
            print(f"driver absorbs {rate['events_per_s']:,} events/s ({rate['events']:,} events in "
                  f"{rate['ray_objects']} Ray objects of {rate['batch']})")
            rows.append({"case": "events", **rate})
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
