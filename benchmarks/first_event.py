"""Time from ``Generator.submit()`` to a client of a real Jupyter server receiving that task's
``generation_started`` — over the all-tasks SSE stream (``/wan-nb/api/events``) and the
WebSocket (``generation_progress`` topic).

A real tiny Generator runs in this process (the relay attached, as in a kernel); the clients
run in a separate process (one asyncio loop, raw sockets) and stamp each arrival with the
wall clock, which this process compares with the clock read just before ``submit()``.

Two cases:

* **warm** — the Generator has existed for a while (the server already subscribed to this
  process): ``--submits`` submits, one after the other;
* **new process** — a fresh process creates a Generator and submits at once (``gen =
  Generator(); gen.submit(...)`` in one cell): the server must first discover the process.

    python benchmarks/first_event.py            # 20 warm submits, 5 new processes
    python benchmarks/first_event.py --quick    # 10 and 2
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WAN_NB_CACHE", str(ROOT / ".cache" / "bench"))

from _server_helpers import TOKEN, isolated_env, start_server  # noqa: E402

SHAPE = {"height": 32, "width": 32, "num_frames": 5, "steps": 2}

CLIENTS = r"""
import asyncio, base64, json, os, sys, time
port, token = int(sys.argv[1]), sys.argv[2]

def seen(kind, frame):
    if frame.get("type") == "generation_started":
        print(kind, frame["task_id"], repr(time.time()), flush=True)

async def sse():
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"GET /wan-nb/api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: token {token}\r\n"
                  "Accept: text/event-stream\r\n\r\n").encode())
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    print("ready sse", flush=True)
    while True:
        line = await reader.readline()
        if not line:
            return
        if line.startswith(b"data: "):
            seen("sse", json.loads(line[6:]))

async def ws():
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /wan-nb/api/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Authorization: token {token}\r\n\r\n").encode())
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    payload = json.dumps({"action": "subscribe", "topic": "generation_progress"}).encode()
    mask = os.urandom(4)
    writer.write(bytes((0x81, 0x80 | len(payload))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    while True:
        head = await reader.readexactly(2)
        size = head[1] & 0x7F
        if size == 126:
            size = int.from_bytes(await reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await reader.readexactly(8), "big")
        body = await reader.readexactly(size)
        if head[0] & 0x0F != 1:
            continue  # ping/pong
        frame = json.loads(body)
        if frame.get("type") == "subscribed":
            print("ready ws", flush=True)
        seen("ws", frame)

async def main():
    await asyncio.gather(sse(), ws())

asyncio.run(main())
"""

NEW_PROCESS = r"""
import json, sys, time
from wan_nb import Generator
shape = json.loads(sys.argv[2])
gen = Generator(model="tiny", runs_dir=sys.argv[1], previews=False)
sent = time.time()
task = gen.submit("a red fox running through snow", seed=0, **shape)
print(json.dumps({"task_id": task.id, "sent": sent}), flush=True)
task.result(timeout=300)
gen.close()
"""


class Arrivals:
    """Reads the client process's lines: ``<kind> <task_id> <time>``."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.ready: set[str] = set()
        self.times: dict[tuple[str, str], float] = {}
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            parts = line.split()
            with self.changed:
                if parts[0] == "ready":
                    self.ready.add(parts[1])
                elif len(parts) == 3:
                    self.times[(parts[0], parts[1])] = float(parts[2])
                self.changed.notify_all()

    def wait(self, predicate, timeout: float = 60.0) -> None:
        with self.changed:
            if not self.changed.wait_for(predicate, timeout):
                raise TimeoutError("the clients did not receive the event")

    def latency_ms(self, task_id: str, sent: float, timeout: float = 60.0) -> dict[str, float]:
        keys = [("sse", task_id), ("ws", task_id)]
        self.wait(lambda: all(k in self.times for k in keys), timeout)
        return {kind: (self.times[(kind, tid)] - sent) * 1000 for kind, tid in keys}


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def summarize(case: str, transport: str, values: list[float], scan_interval: float) -> dict:
    return {"case": f"{transport}, {case}", "transport": transport, "submits": len(values),
            "p50_ms": round(statistics.median(values), 2), "p95_ms": round(percentile(values, 95), 2),
            "max_ms": round(max(values), 2), "scan_interval_s": scan_interval}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer submits and new processes")
    parser.add_argument("--submits", type=int, default=None, help="warm submits (default 20, quick 10)")
    parser.add_argument("--new-processes", type=int, default=None, help="default 5, quick 2")
    parser.add_argument("--scan-interval", type=float, default=0.5,
                        help="the server's producer scan interval (its default: 0.5 s)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    submits = args.submits or (10 if args.quick else 20)
    fresh = args.new_processes if args.new_processes is not None else (2 if args.quick else 5)

    from wan_nb import Generator

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="wan_nb_first_event_") as tmp:
        base = Path(tmp)
        runtime, runs = base / "runtime", base / "runs"
        server = start_server(runtime, extra_args=["--ServerApp.log_level=WARN",
                                                   f"--WanNbExtension.scan_interval={args.scan_interval}"])
        clients = subprocess.Popen([sys.executable, "-c", CLIENTS, str(server.port), TOKEN],
                                   stdout=subprocess.PIPE, text=True)
        previous = os.environ.get("JUPYTER_RUNTIME_DIR")
        os.environ["JUPYTER_RUNTIME_DIR"] = str(runtime)  # this process's relay advertises there
        gen = None
        try:
            arrivals = Arrivals(clients)
            arrivals.wait(lambda: arrivals.ready >= {"sse", "ws"})
            gen = Generator(model="tiny", runs_dir=runs, previews=False)
            warm_up = gen.submit("warm up", seed=0, **SHAPE)  # loads the model; server subscribes
            warm_up.result(timeout=300)
            arrivals.latency_ms(warm_up.id, 0.0)
            warm: dict[str, list[float]] = {"sse": [], "ws": []}
            for index in range(submits):
                sent = time.time()
                task = gen.submit("a red fox running through snow", seed=index, **SHAPE)
                for kind, value in arrivals.latency_ms(task.id, sent).items():
                    warm[kind].append(value)
                task.result(timeout=300)
            for kind, label in (("sse", "SSE all tasks"), ("ws", "WebSocket")):
                rows.append(summarize("warm", label, warm[kind], args.scan_interval))
            cold: dict[str, list[float]] = {"sse": [], "ws": []}
            for _ in range(fresh):
                proc = subprocess.Popen([sys.executable, "-c", NEW_PROCESS, str(runs), json.dumps(SHAPE)],
                                        env=isolated_env(runtime, WAN_NB_CACHE=os.environ["WAN_NB_CACHE"]),
                                        stdout=subprocess.PIPE, text=True)
                first = json.loads(proc.stdout.readline())
                for kind, value in arrivals.latency_ms(first["task_id"], first["sent"]).items():
                    cold[kind].append(value)
                proc.wait(300)
            if fresh:
                for kind, label in (("sse", "SSE all tasks"), ("ws", "WebSocket")):
                    rows.append(summarize("new process", label, cold[kind], args.scan_interval))
        finally:
            if gen is not None:
                gen.close()
            if previous is None:
                os.environ.pop("JUPYTER_RUNTIME_DIR", None)
            else:
                os.environ["JUPYTER_RUNTIME_DIR"] = previous
            clients.kill()
            clients.wait()
            server.stop()
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else ["?"]
    print(f"submit() -> generation_started at a client, {os.cpu_count()} CPUs, load {' '.join(load)}, "
          f"server scan interval {args.scan_interval:g} s")
    print(f"{'case':<32}{'n':>4}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for row in rows:
        print(f"{row['case']:<32}{row['submits']:>4}{row['p50_ms']:>10}{row['p95_ms']:>10}{row['max_ms']:>10}")
    if args.json:
        print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()
