"""Scale-out on Ray: sweep throughput on 1 vs 2 workers, per-task cost of the Ray path, driver event rate.

Starts its own Ray cluster on 127.0.0.1 (the tests' helper; stopped by pid at the end), then:

- ``throughput``: a 16-task tiny sweep on a cluster Generator with 1 worker and on one with 2,
  both alive at once and taking turns (ABBA, median of ``--rounds``), each warmed by one task per
  worker first so model loading is not timed: tasks a second and the ratio. **Caveat:** on a 2-core machine two CPU workers share the two cores with the driver
  and Ray's own daemons; a ratio well below 2 here says nothing about GPUs, where each worker has
  a device of its own.
- ``overhead``: what the Ray path costs a task (dispatch, event batches, the video's bytes back):
  its time on the driver less its time on the worker, and, for comparison, the wall time against a
  local ``generate`` limited to one torch thread (what a CPU worker gets).
- ``events``: events a second the driver absorbs: an actor streams batches of progress frames as
  fast as Ray carries them; the driver turns each into an Event and publishes it, seq kept, on a
  bus with the run journal and the relay attached (the path every remote event takes).

    .venv/bin/python benchmarks/cluster.py [--tasks 16] [--rounds 3] [--runs 8] [--events 50000]
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


def _sweep_seconds(gen, tasks: int, first_seed: int) -> tuple[float, int]:
    started = time.perf_counter()
    sweep = gen.sweep(prompt=PROMPT, seed=list(range(first_seed, first_seed + tasks)), **SHAPE)
    sweep.results(timeout=1200)
    return time.perf_counter() - started, len({t.worker["id"] for t in sweep.tasks})


def throughput(address: str, runs_dir: Path, tasks: int, rounds: int) -> dict:
    """1-worker and 2-worker Generators side by side (3 actors), sweeps alternating between them."""
    from wan_nb import Generator

    seconds: dict[int, list[float]] = {1: [], 2: []}
    used: dict[int, int] = {}
    with Generator(model="tiny", cluster=address, workers=1, runs_dir=runs_dir, previews=False) as one, \
            Generator(model="tiny", cluster=address, workers=2, runs_dir=runs_dir, previews=False) as two:
        arms = {1: one, 2: two}
        for count, gen in arms.items():  # load the model on every worker first
            gen.sweep(prompt=PROMPT, seed=list(range(count)), **SHAPE).results(timeout=600)
        for round_ in range(rounds):
            order = (1, 2) if round_ % 2 == 0 else (2, 1)  # ABBA: drift in machine load hits both
            for count in order:
                elapsed, used[count] = _sweep_seconds(arms[count], tasks, 1000 * round_)
                seconds[count].append(elapsed)
    one_s, two_s = statistics.median(seconds[1]), statistics.median(seconds[2])
    return {"tasks": tasks, "rounds": rounds, "one_worker_s": round(one_s, 3), "two_workers_s": round(two_s, 3),
            "one_worker_tasks_per_s": round(tasks / one_s, 3), "two_workers_tasks_per_s": round(tasks / two_s, 3),
            "ratio": round(one_s / two_s, 3), "workers_used": used}


def _stamp(text: str) -> float:
    import datetime as dt

    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc).timestamp()


def overhead(address: str, runs_dir: Path, runs: int) -> dict:
    """Two views of one task's cost on the Ray path.

    ``path_ms``: the task's time on the driver (submit -> result) less its time on the worker (its
    first event -> its last), so what the worker computes, however loaded the machine, cancels out.
    ``ray_ms`` / ``local_ms``: wall time of the same task against a local generate limited to one
    torch thread (what a CPU worker gets), alternating; noisy on a busy machine.
    """
    import torch

    from wan_nb import Generator

    remote, local, path = [], [], []
    with Generator(model="tiny", cluster=address, workers=1, runs_dir=runs_dir, previews=False) as gen, \
            Generator(model="tiny", runs_dir=runs_dir, previews=False) as here:
        here.run_on_worker(lambda pipe: torch.set_num_threads(1))
        for arm in (gen, here):
            arm.generate(PROMPT, seed=0, progress=False, **SHAPE)  # warm: model loaded, caches hot
        for seed in range(runs):
            started = time.time()
            task = gen.submit(PROMPT, seed=seed, **SHAPE)
            task.result()
            ended = time.time()
            events = gen.bus.history(task.id)
            path.append((ended - started) - (_stamp(events[-1].timestamp) - _stamp(events[0].timestamp)))
            remote.append(ended - started)
            started = time.perf_counter()
            here.generate(PROMPT, seed=seed, progress=False, **SHAPE)
            local.append(time.perf_counter() - started)
    return {"runs": runs, "path_ms": round(statistics.median(path) * 1000, 1),
            "ray_ms": round(statistics.median(remote) * 1000, 1),
            "local_ms": round(statistics.median(local) * 1000, 1)}


class _Flood:
    """Streams ``count`` progress frames of one task in batches of ``batch``."""

    def frames(self, count: int, batch: int):
        from wan_nb.core.bus import EventBus

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

    from wan_nb import relay
    from wan_nb.runs import journal
    from wan_nb.core.bus import EventBus
    from wan_nb.protocol.events import Event

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
    parser.add_argument("--rounds", type=int, default=3, help="sweeps per worker count (median)")
    parser.add_argument("--runs", type=int, default=8, help="tasks per arm for the overhead")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500, help="frames per Ray object in the event flood")
    args = parser.parse_args(argv)

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="wan_nb-bench-cluster-") as tmp:
        work = Path(tmp)
        os.environ["JUPYTER_RUNTIME_DIR"] = str(work / "runtime")  # no server of the user's hears it
        started = time.perf_counter()
        # Three CPU slots (a 1-worker and a 2-worker Generator at once) on however many cores there are.
        with local_ray(work, num_cpus=3) as address:
            import ray

            ray.init(address=address, log_to_driver=False)
            print(f"Ray cluster on {address} up in {time.perf_counter() - started:.1f} s "
                  f"({os.cpu_count()} cores, no GPU; load average {os.getloadavg()[0]:.1f})")
            t = throughput(address, work / "runs", args.tasks, args.rounds)
            print(f"{t['tasks']}-task sweep, median of {t['rounds']}: 1 worker {t['one_worker_s']:.2f} s "
                  f"({t['one_worker_tasks_per_s']:.2f} tasks/s), 2 workers {t['two_workers_s']:.2f} s "
                  f"({t['two_workers_tasks_per_s']:.2f} tasks/s; workers used {t['workers_used']})")
            print(f"throughput 2 / 1 workers: {t['ratio']:.2f}x  (caveat: on a 2-core machine both CPU workers, "
                  "the driver and Ray's daemons share two cores; on GPUs each worker has a device of its own)")
            rows.append({"case": "throughput", **t})

            cost = overhead(address, work / "runs", args.runs)
            print(f"one task {SHAPE}: the Ray path adds {cost['path_ms']:.0f} ms (driver time less worker time, "
                  f"median of {cost['runs']}); wall {cost['ray_ms']:.0f} ms vs local generate (1 torch thread) "
                  f"{cost['local_ms']:.0f} ms")
            rows.append({"case": "overhead", **cost})

            rate = events_rate(args.events, args.batch, work)
            print(f"driver absorbs {rate['events_per_s']:,} events/s ({rate['events']:,} events in "
                  f"{rate['ray_objects']} Ray objects of {rate['batch']}; journal and relay attached)")
            rows.append({"case": "events", **rate})
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
