"""A long finished task replayed to clients of a real Jupyter server (issue 27, item 5).

A run folder holds a finished task with ``--events`` events (default 150,000: a ~45 MB journal,
written by the real EventBus and run journal). A server is started with that runs folder. Then,
in this process:

* **baseline** — a client GETs another task's snapshot in a loop for ``--seconds``: p50 / p99;
* **replay** — ``--replays`` WebSocket clients (threads, raw frames) subscribe to the long task
  at once while the same GET loop runs: each replay's time to its last (terminal) event and the
  events it received, and the GET p50 / p99 during the replays, as a ratio to the baseline.

    python benchmarks/long_replay.py                       # 150,000 events, 4 replays
    python benchmarks/long_replay.py --events 20000 --replays 2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from _server_helpers import start_server, ws_connect  # noqa: E402

LONG, OTHER = "long-replay", "short-task"


def write_task(runs: Path, task_id: str, events: int) -> int:
    from wan_nb.core.bus import EventBus
    from wan_nb.runs.journal import Journal, write_task_file

    bus, journal = EventBus(history_per_task=16), Journal()
    bus.add_sink(journal)
    write_task_file(runs / task_id, {"task_id": task_id, "prompt": "a long task"})
    journal.open(task_id, runs / task_id)
    bus.publish(task_id, "generation_started", model_type="bench", params={"steps": events}, estimated_duration=None)
    for step in range(1, events + 1):
        bus.publish(task_id, "detailed_generation_progress", stage="generating", progress=round(100 * step / events, 3),
                    message=f"Step {step}/{events}", estimated_time_remaining=0.0, current_step=step,
                    total_steps=events)
    bus.publish(task_id, "generation_failed", stage="generating", error_type="Bench", error="the end")
    journal.close(task_id)
    return events + 2


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))] if values else float("nan")


def get_loop(server, stop: threading.Event, latencies: list[float]) -> None:
    import requests

    session = requests.Session()
    session.headers.update(server.headers)
    url = server.api(f"tasks/{OTHER}")
    while not stop.is_set():
        started = time.perf_counter()
        session.get(url, timeout=30)
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(0.01)


def replay(server, expected: int, result: dict) -> None:
    started = time.perf_counter()
    ws = ws_connect(server)
    ws.settimeout(300)
    ws.send(json.dumps({"action": "subscribe", "topic": f"task:{LONG}"}))
    received = 0
    try:
        while True:
            message = json.loads(ws.recv())
            if message.get("task_id") == LONG:
                received += 1
                if message.get("type") == "generation_failed":
                    result["time_to_last_s"] = time.perf_counter() - started
                    break
    except Exception as exc:   # a closed replay (the old server's 1013) ends the count
        result["error"] = f"{type(exc).__name__}: {str(exc)[:80]}"
    finally:
        ws.close()
    result["received"] = received
    result["expected"] = expected


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--replays", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0, help="baseline GET loop duration")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="wan_nb_long_replay_") as tmp:
        base = Path(tmp)
        runs = base / "runs"
        started = time.perf_counter()
        expected = write_task(runs, LONG, args.events)
        write_task(runs, OTHER, 10)
        journal_mb = (runs / LONG / "events.jsonl").stat().st_size / 1e6
        print(f"journal of {expected:,} events, {journal_mb:.1f} MB, written in {time.perf_counter() - started:.1f} s")
        server = start_server(base / "runtime", extra_args=["--ServerApp.log_level=WARN",
                                                            f"--WanNbExtension.runs_dirs={runs}"])
        try:
            first = time.perf_counter()
            server.get(f"tasks/{LONG}", timeout=120)      # the first lookup reads the journal once
            server.get(f"tasks/{OTHER}")
            first_lookup_s = time.perf_counter() - first
            stop, baseline = threading.Event(), []
            loop = threading.Thread(target=get_loop, args=(server, stop, baseline))
            loop.start()
            time.sleep(args.seconds)
            stop.set()
            loop.join()
            stop, during = threading.Event(), []
            loop = threading.Thread(target=get_loop, args=(server, stop, during))
            results = [dict() for _ in range(args.replays)]
            threads = [threading.Thread(target=replay, args=(server, expected, r)) for r in results]
            loop.start()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            stop.set()
            loop.join()
        finally:
            server.stop()
    complete = [r for r in results if r.get("received") == expected and "time_to_last_s" in r]
    slowest = max((r["time_to_last_s"] for r in complete), default=float("nan"))
    rows.append({"case": f"{args.replays} WS replays of {expected:,} events ({journal_mb:.0f} MB journal)",
                 "events": expected, "replays": args.replays, "complete_replays": len(complete),
                 "received_min": min(r.get("received", 0) for r in results),
                 "time_to_last_s": round(slowest, 2), "first_lookup_s": round(first_lookup_s, 2),
                 "others_p50_ms": round(statistics.median(during), 2) if during else None,
                 "others_p99_ms": round(percentile(during, 99), 2),
                 "others_max_ms": round(max(during), 2) if during else None,
                 "baseline_p50_ms": round(statistics.median(baseline), 2),
                 "baseline_p99_ms": round(percentile(baseline, 99), 2),
                 "p99_ratio": round(percentile(during, 99) / percentile(baseline, 99), 2),
                 "errors": sorted({r["error"] for r in results if "error" in r})})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, load {load:.2f}")
    for row in rows:
        print(f"{row['case']}: {row['complete_replays']}/{row['replays']} complete (fewest events received "
              f"{row['received_min']:,}), slowest time to last event {row['time_to_last_s']} s; "
              f"others' GET p50/p99/max during {row['others_p50_ms']}/{row['others_p99_ms']}/{row['others_max_ms']} ms "
              f"vs baseline p50/p99 {row['baseline_p50_ms']}/{row['baseline_p99_ms']} ms (p99 x{row['p99_ratio']}); "
              f"first lookup {row['first_lookup_s']} s; errors {row['errors']}")
    if args.json:
        print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()
