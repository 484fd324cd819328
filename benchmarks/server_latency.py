"""Latency from a producer process to clients of a real Jupyter server, over SSE and WebSocket.

A producer process (an EventBus with the run journal and the relay, as a Generator has)
publishes ``detailed_generation_progress`` events at a fixed rate, each carrying its send time.
N clients — spread over several client processes, each an asyncio loop with raw sockets —
read the task's per-task SSE stream (``/wan-nb/api/progress/{id}``) or the WebSocket
(``task:{id}`` topic). Latency = receive time - send time (same machine clock); lost = events
a client never received.

    python benchmarks/server_latency.py            # 1 and 1000 clients, SSE and WS, 100 events/s
    python benchmarks/server_latency.py --quick    # shorter
    python benchmarks/server_latency.py --clients 1 100 --json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from _server_helpers import TOKEN, isolated_env, start_server  # noqa: E402

PRODUCER = r"""
import sys, time, json
from pathlib import Path
from wan_nb import relay
from wan_nb.bus import EventBus
from wan_nb.journal import Journal, write_task_file
runs, task_id, count, rate, go = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), Path(sys.argv[5])
bus, journal = EventBus(), Journal()
bus.add_sink(journal)
detach = relay.attach(bus, runs_dir=runs)
write_task_file(runs / task_id, {"task_id": task_id})
journal.open(task_id, runs / task_id)
bus.publish(task_id, "generation_started", model_type="bench", params={"steps": count}, estimated_duration=None)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
period, start = 1.0 / rate, time.perf_counter()
for step in range(1, count + 1):
    target = start + step * period
    while time.perf_counter() < target:
        time.sleep(max(0.0, min(0.001, target - time.perf_counter())))
    bus.publish(task_id, "detailed_generation_progress", stage="generating", progress=100.0 * step / count,
                message=f"Step {step}/{count}", estimated_time_remaining=None, current_step=step,
                total_steps=count, sent_at=time.time())
bus.publish(task_id, "generation_completed", output_path=str(runs / task_id / "video.mp4"), duration_s=1.0,
            params={}, seed=0)
journal.close(task_id)
time.sleep(1.0)
detach()
"""


# -- clients (run in worker processes) -----------------------------------------------------------
async def _sse_client(port, task_id, ready, results):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"GET /wan-nb/api/progress/{task_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  f"Authorization: token {TOKEN}\r\nAccept: text/event-stream\r\n\r\n").encode())
    await writer.drain()
    while (await reader.readline()) not in (b"\r\n", b""):
        pass  # response headers
    ready()
    latencies, seqs = [], set()
    while True:
        line = await reader.readline()
        if not line:
            break
        if line.startswith(b"data: "):
            now = time.time()
            update = json.loads(line[6:])
            if update["type"] == "detailed_generation_progress":
                latencies.append(now - update["data"]["sent_at"])
                seqs.add(update["seq"])
            elif update["status"] != "in_progress":
                break
    writer.close()
    results.append((latencies, seqs))


async def _ws_client(port, task_id, ready, results):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /wan-nb/api/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Authorization: token {TOKEN}\r\n\r\n").encode())
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    payload = json.dumps({"action": "subscribe", "topic": f"task:{task_id}"}).encode()
    mask = os.urandom(4)
    writer.write(bytes((0x81, 0x80 | len(payload))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    await writer.drain()
    latencies, seqs, announced = [], set(), False
    while True:
        head = await reader.readexactly(2)
        size = head[1] & 0x7F
        if size == 126:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await reader.readexactly(8))[0]
        body = await reader.readexactly(size)
        if head[0] & 0x0F != 1:
            continue  # ping/pong
        now = time.time()
        message = json.loads(body)
        if message["type"] == "subscribed" and not announced:
            announced = True
            ready()
        elif message["type"] == "detailed_generation_progress":
            latencies.append(now - message["data"]["sent_at"])
            seqs.add(message["seq"])
        elif message["type"] == "generation_completed":
            break
    writer.close()
    results.append((latencies, seqs))


def _client_worker(kind, port, task_id, count, ready_counter, queue):
    async def main():
        results = []
        make = _sse_client if kind == "sse" else _ws_client

        def ready():
            with ready_counter.get_lock():
                ready_counter.value += 1

        await asyncio.wait_for(asyncio.gather(*(make(port, task_id, ready, results) for _ in range(count))),
                               timeout=600)
        return results

    results = asyncio.run(main())
    queue.put([(lat, sorted(seqs)) for lat, seqs in results])


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))] if values else float("nan")


def run_case(server, runtime, runs, kind, clients, events, rate):
    task_id = "bench-" + uuid.uuid4().hex[:8]
    go = runs.parent / f"go-{task_id}"
    producer = subprocess.Popen([sys.executable, "-c", PRODUCER, str(runs), task_id, str(events), str(rate), str(go)],
                                env=isolated_env(runtime), stdout=subprocess.PIPE, text=True)
    assert producer.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 30
    while server.get(f"tasks/{task_id}").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = max(1, min(clients, (os.cpu_count() or 2) - 2, 8))
    ready_counter = multiprocessing.Value("i", 0)
    queue = multiprocessing.Queue()
    procs = []
    for index in range(workers):
        share = clients // workers + (1 if index < clients % workers else 0)
        proc = multiprocessing.Process(target=_client_worker,
                                       args=(kind, server.port, task_id, share, ready_counter, queue))
        proc.start()
        procs.append(proc)
    while ready_counter.value < clients and time.monotonic() < deadline + 60:
        time.sleep(0.05)
    time.sleep(0.3)
    go.touch()
    latencies, lost = [], 0
    for _ in procs:
        for lat, seqs in queue.get(timeout=events / rate + 120):
            latencies.extend(lat)
            lost += events - len(seqs)
    for proc in procs:
        proc.join(30)
    producer.wait(30)
    return {"transport": kind, "clients": clients, "events": events, "rate": rate,
            "p50_ms": round(percentile(latencies, 50) * 1000, 3),
            "p99_ms": round(percentile(latencies, 99) * 1000, 3),
            "max_ms": round(max(latencies) * 1000, 3) if latencies else None,
            "mean_ms": round(statistics.fmean(latencies) * 1000, 3) if latencies else None,
            "lost": lost, "received": len(latencies)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer events and clients")
    parser.add_argument("--clients", type=int, nargs="+", default=None)
    parser.add_argument("--transports", nargs="+", default=["sse", "ws"], choices=["sse", "ws"])
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args(argv)
    clients = args.clients or ([1, 100] if args.quick else [1, 1000])
    events = args.events or (200 if args.quick else 1000)
    rows = []
    with tempfile.TemporaryDirectory(prefix="wan_nb_bench_") as tmp:
        base = Path(tmp)
        runtime, runs = base / "runtime", base / "runs"
        server = start_server(runtime, extra_args=["--ServerApp.log_level=WARN"])
        try:
            for kind in args.transports:
                for count in clients:
                    rows.append(run_case(server, runtime, runs, kind, count, events, args.rate))
                    print(f"  {kind} x{count}: p50 {rows[-1]['p50_ms']} ms, p99 {rows[-1]['p99_ms']} ms, "
                          f"lost {rows[-1]['lost']}", file=sys.stderr, flush=True)
        finally:
            server.stop()
    print(f"producer -> client latency, {events} events at {args.rate:g}/s, {os.cpu_count()} CPUs")
    print(f"{'transport':<10}{'clients':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'lost':>8}")
    for row in rows:
        print(f"{row['transport']:<10}{row['clients']:>8}{row['p50_ms']:>10}{row['p99_ms']:>10}"
              f"{row['max_ms']:>10}{row['lost']:>8}")
    if args.json:
        print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()
