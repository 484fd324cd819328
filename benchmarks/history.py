"""History of 10,000 runs: how long ``wan_nb.history()`` takes to list them. Target: under 1 s.

Writes N run folders as the recorder leaves them (task.json with a full recipe, events journal,
a video file), then measures, each in a process of its own where a fresh process is the case:

  rebuild   no index yet: every folder read once and the index written (happens once)
  cold      a new process lists every run from the index (what a server or kernel start pays)
  warm      the same process lists them again (the index is read incrementally)
  filtered  a prompt filter with limit=50 (what a gallery page asks for)
  find_by_key  the lookup a grid cell does before it renders

and then, unless ``--no-server``, the same runs through a real Jupyter server
(``GET wan-nb/api/tasks``, which reads them incrementally on a thread of its own):

  server first GET     the first page (limit 50) right after the server answers at all
  server GET page      repeated first pages, p50 / p95 (what the Lab sidebar asks)
  server GET deep      the page at offset runs - 50, and a status filter, p50 / p95
  server GET all       every run in one answer (no limit), p50
  old listing          the listing as it was (every run re-read, summarised and sorted on
                       every request, on the IOLoop), timed here in this process: the baseline
  event latency        producer -> SSE client, p50 / p95 / max, with no requests, while a
                       client asks for pages back to back, and while every 10th of them asks
                       for everything

    .venv/bin/python benchmarks/history.py [--runs 10000] [--no-server]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from wan_nb.models.presets import WAN_NEGATIVE_PROMPT  # noqa: E402

PROMPTS = ["a red fox running through snow", "an owl at dusk over a frozen lake", "a lantern-lit street in the rain",
           "a paper boat drifting down a gutter", "a hummingbird hovering at a flower"]


def make_runs(folder: Path, count: int) -> None:
    start = 1_790_000_000
    for i in range(count):
        ts = start + i * 7
        task_id = time.strftime("%Y%m%d-%H%M%S-", time.gmtime(ts)) + f"{i:08x}"
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
        params = {"prompt": PROMPTS[i % 5] + f" #{i}", "negative_prompt": WAN_NEGATIVE_PROMPT, "height": 480,
                  "width": 832, "num_frames": 81, "steps": 50, "guidance_scale": 5.0, "guidance_scale_2": None,
                  "seed": i, "image": None, "fps": 16, "loras": {"style": 0.8} if i % 3 == 0 else {}}
        recipe = {"format": "wan_nb.recipe/1", **{k: v for k, v in params.items() if k not in ("image", "loras")},
                  "flow_shift": 3.0, "model": {"name": "wan2.1-t2v-1.3b", "repo_id": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
                                               "revision": "0" * 40, "kind": "t2v"},
                  "dtype": "bfloat16", "loras": [], "image": None, "versions": {"wan_nb": "0.1.0"},
                  "task_id": task_id, "created_at": created}
        status = "failed" if i % 50 == 0 else "completed"
        info = {"task_id": task_id, "model": "wan2.1-t2v-1.3b", "prompt": params["prompt"], "params": params,
                "seed": i, "parent_id": None, "loras": {}, "created_at": created, "pid": 1, "status": status,
                "created_ts": ts, "recipe": recipe, "recipe_key": f"{i:032x}", "finished_at": created,
                "duration_s": 61.5, "video": "video.mp4" if status == "completed" else None,
                "error": "OutOfMemoryError" if status == "failed" else None}
        run = folder / task_id
        run.mkdir()
        (run / "task.json").write_text(json.dumps(info))
        (run / "events.jsonl").write_text('{"type": "generation_started"}\n')
        if status == "completed":
            (run / "video.mp4").write_bytes(b"\0")


CHILD = """
import sys, time
t0 = time.perf_counter()
from wan_nb.runs.history import history, find_by_key
t1 = time.perf_counter()
runs = history(sys.argv[1])
t2 = time.perf_counter()
again = history(sys.argv[1])
t3 = time.perf_counter()
page = history(sys.argv[1], prompt="owl", status="completed", limit=50)
t4 = time.perf_counter()
found = find_by_key(sys.argv[1], "%032x" % 7)
t5 = time.perf_counter()
assert len(runs) == len(again) and len(page) == 50 and found is not None
print(len(runs), t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)
"""


def _child(folder: Path) -> list[float]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder)], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return [float(x) for x in done.stdout.split()]


# A producer publishing progress at a fixed rate, each event carrying its send time.
PRODUCER = r"""
import sys, time
from pathlib import Path
from wan_nb import relay
from wan_nb.core.bus import EventBus
from wan_nb.runs.journal import Journal, write_task_file
runs, task_id, rate, stop = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), Path(sys.argv[4])
bus, journal = EventBus(), Journal()
bus.add_sink(journal)
detach = relay.attach(bus, runs_dir=runs)
write_task_file(runs / task_id, {"task_id": task_id})
journal.open(task_id, runs / task_id)
bus.publish(task_id, "generation_started", model_type="bench", params={"steps": 10**6}, estimated_duration=None)
print("ready", flush=True)
step, start = 0, time.perf_counter()
while not stop.exists():
    step += 1
    while time.perf_counter() < start + step / rate:
        time.sleep(0.001)
    bus.publish(task_id, "detailed_generation_progress", stage="generating", progress=0.0, message="",
                estimated_time_remaining=None, current_step=step, total_steps=10**6, sent_at=time.time())
bus.publish(task_id, "generation_cancelled", stage="generating", current_step=step)
journal.close(task_id)
time.sleep(0.5)
detach()
"""


# Asks for pages back to back until the stop file appears; with "all", every 10th time for every run.
PAGING = r"""
import sys, requests
from pathlib import Path
url, token, stop, every = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4] == "all"
session, n = requests.Session(), 0
while not stop.exists():
    session.get(url, params={} if every and n % 10 == 9 else {"limit": 50},
                headers={"Authorization": f"token {token}"}, timeout=60).raise_for_status()
    n += 1
print(n)
"""


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    return (statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], ordered[-1])


def _start_server(tmp: Path, runs: Path):
    """A real jupyter server with the extension reading ``runs``; ready once /api/status answers
    (not GET tasks: the first listing is one of the things measured)."""
    import requests
    from _server_helpers import TOKEN, Server, free_port, install_config, isolated_env

    runtime = tmp / "runtime"
    runtime.mkdir()
    install_config(tmp / "jupyter_config")
    port = free_port()
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root",
                             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", f"--IdentityProvider.token={TOKEN}",
                             f"--ServerApp.root_dir={tmp}", "--WanNbExtension.scan_interval=0.2"],
                            env=isolated_env(runtime, WAN_NB_RUNS_DIR=str(runs)), stdout=log, stderr=subprocess.STDOUT,
                            cwd=str(tmp))
    server = Server(proc, port, tmp / "server.log")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{server.url}api/status", headers=server.headers, timeout=2).ok:
                return server, runtime
        except requests.RequestException:
            time.sleep(0.05)
    server.stop(kill=True)
    raise RuntimeError((tmp / "server.log").read_text()[-3000:])


def _timed_get(session, server, params: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    response = session.get(server.api("tasks"), params=params, headers=server.headers, timeout=60)
    response.raise_for_status()
    return time.perf_counter() - started, response


def _old_listing_seconds(folder: Path, repeat: int) -> float:
    """What every GET tasks did before: all runs summarised and sorted, then one page cut."""
    from wan_nb.server import runs as server_runs

    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        every = [server_runs.summary(run, "/") for run in server_runs.finished_runs([folder])]
        every.sort(key=lambda s: s.get("created_at") or "", reverse=True)
        every[0:50]
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _event_latency(server, runtime: Path, runs: Path, seconds: float, load) -> list[float]:
    """Latencies (ms) of progress events at 50/s over ``seconds``, while ``load()`` runs (or not)."""
    import threading

    from _server_helpers import EventSourceClient, isolated_env

    task_id = "bench-latency-" + os.urandom(3).hex()
    stop = runs.parent / f"stop-{task_id}"
    producer = subprocess.Popen([sys.executable, "-c", PRODUCER, str(runs), task_id, "50", str(stop)],
                                env=isolated_env(runtime), stdout=subprocess.PIPE, text=True)
    assert producer.stdout.readline().strip() == "ready"
    server.wait_task(task_id, timeout=30)
    client = EventSourceClient(server.api(f"progress/{task_id}"), server.headers)
    client.connect()
    latencies: list[float] = []
    until = time.monotonic() + seconds
    done = threading.Event()
    loader = threading.Thread(target=lambda: load(done), daemon=True)
    loader.start()
    for event in client.events():
        data = json.loads(event["data"])
        sent = (data.get("data") or {}).get("sent_at")
        if sent is not None:
            latencies.append((time.time() - sent) * 1000)
        if time.monotonic() >= until:
            break
    done.set()
    loader.join()
    stop.touch()
    client.close()
    producer.wait(30)
    return latencies


def server_listing(folder: Path, count: int, repeat: int) -> list[dict]:
    import requests
    from _server_helpers import TOKEN

    rows = []
    with tempfile.TemporaryDirectory(prefix="wan_nb-bench-server-") as tmp:
        server, runtime = _start_server(Path(tmp), folder)
        try:
            session = requests.Session()
            first, response = _timed_get(session, server, {"limit": 50})
            assert int(response.headers["X-Total-Count"]) >= count, response.headers
            print(f"server: first GET tasks?limit=50 after start: {first * 1000:.1f} ms")
            rows.append({"case": "server first GET, limit 50", "runs": count, "seconds": round(first, 4)})
            cases = [("server GET page, limit 50", {"limit": 50}),
                     ("server GET deep page", {"limit": 50, "offset": count - 50}),
                     ("server GET status=failed", {"limit": 50, "status": "failed"})]
            for case, params in cases:
                samples = [_timed_get(session, server, params)[0] for _ in range(repeat)]
                p50, p95, worst = _percentiles(samples)
                print(f"server: {case}: p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, max {worst * 1000:.1f} ms")
                rows.append({"case": case, "runs": count, "seconds": round(p95, 4), "p50_s": round(p50, 4)})
            samples = [_timed_get(session, server, {})[0] for _ in range(5)]
            print(f"server: GET all {count:,} runs (no limit): p50 {statistics.median(samples) * 1000:.0f} ms")
            rows.append({"case": "server GET all, no limit", "runs": count, "seconds": round(statistics.median(samples), 4)})
            old = _old_listing_seconds(folder, 3)
            print(f"old listing (every run summarised and sorted per request), in this process: {old * 1000:.0f} ms "
                  f"-> {old / rows[1]['p50_s']:.0f}x the new page's p50")
            rows.append({"case": "old listing per request (baseline)", "runs": count, "seconds": round(old, 4)})

            def idle(done):
                done.wait()

            def paging(what):
                def load(done):
                    # In a process of its own: reading 10 MB answers here would hold this process's
                    # GIL and delay the SSE reader, which would then measure itself.
                    stop = Path(tmp) / f"stop-paging-{what}"
                    loader = subprocess.Popen([sys.executable, "-c", PAGING, server.api("tasks"), TOKEN, str(stop),
                                               what], stdout=subprocess.PIPE, text=True)
                    done.wait()
                    stop.touch()
                    print(f"server: requests answered while measuring: {loader.communicate(timeout=60)[0].strip()}")
                return load

            for case, load in (("event latency, no listing", idle),
                               ("event latency while paging (limit 50)", paging("pages")),
                               ("event latency while paging, every 10th all", paging("all"))):
                p50, p95, worst = _percentiles(_event_latency(server, runtime, folder, 5.0, load))
                print(f"server: {case}: p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {worst:.1f} ms")
                rows.append({"case": case, "runs": count, "seconds": round(p95 / 1000, 4), "p50_s": round(p50 / 1000, 4),
                             "max_s": round(worst / 1000, 4)})
        finally:
            server.stop()
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="new processes to time (the median is reported)")
    parser.add_argument("--requests", type=int, default=50, help="GET tasks requests a server case times")
    parser.add_argument("--no-server", action="store_true", help="skip the Jupyter server's listing")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="wan_nb-bench-history-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        make_runs(folder, args.runs)
        print(f"wrote {args.runs:,} run folders in {time.perf_counter() - started:.1f} s")
        from wan_nb.runs.history import INDEX_NAME, history

        started = time.perf_counter()
        listed = history(folder)
        rebuild = time.perf_counter() - started
        assert len(listed) == args.runs
        size = (folder / INDEX_NAME).stat().st_size
        print(f"rebuild (no index; every task.json read once): {rebuild:.3f} s, index {size / 2**20:.1f} MiB")
        rows.append({"case": "rebuild, no index", "runs": args.runs, "seconds": round(rebuild, 4)})
        samples = sorted((_child(folder) for _ in range(args.repeat)), key=lambda s: s[2])
        n, imported, cold, warm, filtered, found = samples[len(samples) // 2]
        assert int(n) == args.runs
        print(f"new process: import {imported * 1000:.1f} ms; list all {cold:.3f} s (cold), {warm:.3f} s (warm); "
              f"prompt filter + limit 50: {filtered:.3f} s; find_by_key: {found:.3f} s")
        for case, seconds in (("cold, new process", cold), ("warm, same process", warm),
                              ("prompt filter, limit 50", filtered), ("find_by_key", found)):
            rows.append({"case": case, "runs": args.runs, "seconds": round(seconds, 4)})
        if not args.no_server:
            rows += server_listing(folder, args.runs, args.requests)
    print(f"{'case':<28} {'runs':>7} {'seconds':>9}")
    for row in rows:
        print(f"{row['case']:<28} {row['runs']:>7,} {row['seconds']:>9.3f}")
    return rows


if __name__ == "__main__":
    main()
