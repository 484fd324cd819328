"""Steering while one producer is frozen (issue 27, item 3's attack), on a real Jupyter server.

Two producer processes run long tasks. Producer A is stopped (SIGSTOP) and ``--requests``
cancels for A's task are posted at once from threads; then a pause for healthy producer B's
task is posted and timed, and the time until every request to A has been answered. With the
baseline (B's pause with nothing frozen) measured in the same run, the ratio shows what A costs B.

    python benchmarks/frozen_producer.py                 # 40 and 64 cancels to the frozen producer
    python benchmarks/frozen_producer.py --requests 40 --json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from _server_helpers import start_producer, stop_producers, start_server, wait_producer_ready  # noqa: E402


def post(server, path: str, out: list) -> None:
    import requests

    started = time.perf_counter()
    response = requests.post(server.api(path), headers=server.headers, timeout=300)
    out.append((time.perf_counter() - started, response.status_code))


def one_round(server, frozen_id: str, healthy_id: str, count: int) -> dict:
    baseline: list = []
    post(server, f"tasks/{healthy_id}/pause", baseline)
    to_frozen: list = []
    threads = [threading.Thread(target=post, args=(server, f"tasks/{frozen_id}/cancel", to_frozen))
               for _ in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    healthy: list = []
    post(server, f"tasks/{healthy_id}/resume", healthy)
    for thread in threads:
        thread.join()
    statuses: dict[int, int] = {}
    for _, status in to_frozen:
        statuses[status] = statuses.get(status, 0) + 1
    return {"case": f"{count} cancels to a frozen producer", "requests": count,
            "healthy_ms": round(healthy[0][0] * 1000, 1), "healthy_status": healthy[0][1],
            "baseline_ms": round(baseline[0][0] * 1000, 1),
            "frozen_all_answered_s": round(time.perf_counter() - started, 2), "frozen_statuses": statuses}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, nargs="+", default=[40, 64])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="wan_nb_frozen_") as tmp:
        runtime, runs = Path(tmp) / "runtime", Path(tmp) / "runs"
        server = start_server(runtime, extra_args=["--ServerApp.log_level=WARN"])
        frozen = start_producer(runtime, runs, "frozen", steps=10**6, interval=0.05, steer=True)
        healthy = start_producer(runtime, runs, "healthy", steps=10**6, interval=0.05, steer=True)
        try:
            for proc, task_id in ((frozen, "frozen"), (healthy, "healthy")):
                wait_producer_ready(proc)
                server.wait_task(task_id, lambda s: (s["current_step"] or 0) >= 1, timeout=60)
            os.kill(frozen.pid, signal.SIGSTOP)
            for count in args.requests:
                rows.append(one_round(server, "frozen", "healthy", count))
        finally:
            stop_producers(frozen, healthy)
            server.stop()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, load {load:.2f}")
    for row in rows:
        print(f"{row['case']}: healthy producer's request {row['healthy_ms']} ms (HTTP {row['healthy_status']}; "
              f"baseline {row['baseline_ms']} ms); all requests to the frozen one answered after "
              f"{row['frozen_all_answered_s']} s, statuses {row['frozen_statuses']}")
    if args.json:
        print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()
