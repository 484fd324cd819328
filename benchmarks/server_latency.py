"""Latency from a producer process to clients of a real Jupyter server, over SSE and WebSocket.

A producer process (an EventBus with the run journal and the relay, as a Generator has)
publishes ``detailed_generation_progress`` events at a fixed rate, each carrying its send time.
N clients — spread over client processes, each one selectors loop over raw sockets —
read the task's per-task SSE stream (``/wan-nb/api/progress/{id}``) or the WebSocket
(``task:{id}`` topic). Latency = receive time - send time (same machine clock); lost = events
a client never received.

    python benchmarks/server_latency.py            # 1, 100 and 1000 clients, SSE and WS, 100 events/s
    python benchmarks/server_latency.py --quick    # shorter
    python benchmarks/server_latency.py --clients 1 100 --json
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import re
import selectors
import socket
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
from wan_nb.core.bus import EventBus
from wan_nb.runs.journal import Journal, write_task_file
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
# Each worker process serves its share of the connections from one selectors loop over raw
# non-blocking sockets, reads whatever has arrived in one recv, stamps it with one clock
# reading, and finds each event's seq and send time with a regex instead of a JSON parse: on
# the 2-core machine the clients share the cores with the server, and a client that spends
# more per event than the server does would measure itself.
_SEQ = re.compile(rb'"seq":(\d+)')
_SENT = re.compile(rb'"sent_at":([0-9.eE+-]+)')
_PROGRESS = b'"type":"detailed_generation_progress"'
_SSE_DONE = re.compile(rb'"status":"(?:completed|failed|cancelled)"')
_WS_DONE = b'"type":"generation_completed"'


class _Conn:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.buffer = b""
        self.latencies: list[float] = []
        self.seqs: set[int] = set()
        self.done = False

    def _event(self, payload: bytes, now: float) -> None:
        if _PROGRESS in payload:
            sent, seq = _SENT.search(payload), _SEQ.search(payload)
            if sent and seq:
                self.latencies.append(now - float(sent.group(1)))
                self.seqs.add(int(seq.group(1)))
        elif (_SSE_DONE.search(payload) if self.kind == "sse" else _WS_DONE in payload):
            self.done = True

    def feed(self, data: bytes, now: float) -> None:
        self.buffer += data
        if self.kind == "sse":
            end = self.buffer.rfind(b"\n\n")  # events end with a blank line (chunk framing aside)
            if end < 0:
                return
            complete, self.buffer = self.buffer[:end + 2], self.buffer[end + 2:]
            for line in complete.split(b"\n"):
                if line.startswith(b"data: "):
                    self._event(line, now)
            return
        buffer, offset = self.buffer, 0
        while len(buffer) - offset >= 2:
            opcode, size, head = buffer[offset] & 0x0F, buffer[offset + 1] & 0x7F, 2
            if size == 126:
                if len(buffer) - offset < 4:
                    break
                size, head = struct.unpack_from("!H", buffer, offset + 2)[0], 4
            elif size == 127:
                if len(buffer) - offset < 10:
                    break
                size, head = struct.unpack_from("!Q", buffer, offset + 2)[0], 10
            if len(buffer) - offset < head + size:
                break
            if opcode == 1:
                self._event(buffer[offset + head:offset + head + size], now)
            offset += head + size
        self.buffer = buffer[offset:]


def _read_headers(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(4096)
        if not more:
            raise ConnectionError("server closed the connection during the handshake")
        data += more
    return data.split(b"\r\n\r\n", 1)[1]


def _open(kind: str, port: int, task_id: str) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if kind == "sse":
        sock.sendall((f"GET /wan-nb/api/progress/{task_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      f"Authorization: token {TOKEN}\r\nAccept: text/event-stream\r\n\r\n").encode())
        return sock, _read_headers(sock)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /wan-nb/api/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Authorization: token {TOKEN}\r\n\r\n").encode())
    rest = _read_headers(sock)
    payload = json.dumps({"action": "subscribe", "topic": f"task:{task_id}"}).encode()
    mask = os.urandom(4)
    sock.sendall(bytes((0x81, 0x80 | len(payload))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    while b'"subscribed"' not in rest:  # the subscription is in place before we count as ready
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("server closed the WebSocket before confirming the subscription")
        rest += more
    return sock, rest


def _client_worker(kind, port, task_id, count, ready_counter, queue):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 64:  # one descriptor per connection
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 256), hard))
    selector = selectors.DefaultSelector()
    conns = []
    for _ in range(count):
        sock, early = _open(kind, port, task_id)
        conn = _Conn(kind)
        conn.feed(early, time.time())
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, conn)
        conns.append(conn)
        with ready_counter.get_lock():
            ready_counter.value += 1
    open_count, deadline = count, time.monotonic() + 600
    while open_count and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            conn = key.data
            try:
                data = key.fileobj.recv(1 << 18)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                conn.feed(data, time.time())
            if not data or conn.done:
                selector.unregister(key.fileobj)
                key.fileobj.close()
                open_count -= 1
    queue.put([(conn.latencies, sorted(conn.seqs)) for conn in conns])


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
    import psutil

    server_process = psutil.Process(server.proc.pid)
    cpu_before, wall_before = sum(server_process.cpu_times()[:2]), time.monotonic()
    go.touch()
    latencies, lost = [], 0
    for _ in procs:
        for lat, seqs in queue.get(timeout=events / rate + 120):
            latencies.extend(lat)
            lost += events - len(seqs)
    # The server's own CPU for the whole fan-out: what it would need on a machine where the
    # clients run elsewhere (here they share its two cores).
    server_cpu = sum(server_process.cpu_times()[:2]) - cpu_before
    wall = time.monotonic() - wall_before
    for proc in procs:
        proc.join(30)
    producer.wait(30)
    return {"transport": kind, "clients": clients, "events": events, "rate": rate,
            "p50_ms": round(percentile(latencies, 50) * 1000, 3),
            "p99_ms": round(percentile(latencies, 99) * 1000, 3),
            "max_ms": round(max(latencies) * 1000, 3) if latencies else None,
            "mean_ms": round(statistics.fmean(latencies) * 1000, 3) if latencies else None,
            "lost": lost, "received": len(latencies),
            "server_cpu_s": round(server_cpu, 3), "server_cpu_share": round(server_cpu / wall, 3),
            "server_us_per_delivery": round(server_cpu / max(1, events * clients) * 1e6, 2)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer events and clients")
    parser.add_argument("--clients", type=int, nargs="+", default=None)
    parser.add_argument("--transports", nargs="+", default=["sse", "ws"], choices=["sse", "ws"])
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args(argv)
    clients = args.clients or ([1, 100] if args.quick else [1, 100, 1000])
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
    print(f"{'transport':<10}{'clients':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'lost':>8}"
          f"{'server CPU':>12}{'us/delivery':>13}")
    for row in rows:
        print(f"{row['transport']:<10}{row['clients']:>8}{row['p50_ms']:>10}{row['p99_ms']:>10}"
              f"{row['max_ms']:>10}{row['lost']:>8}{row['server_cpu_share']:>11.0%} {row['server_us_per_delivery']:>12}")
    if args.json:
        print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()
