"""Replays of a task whose journal lost events to a full disk (issue 27, item 4): the live
server fills the journal's holes from memory and announces, on the WebSocket and the per-task
SSE stream, exactly the seqs no source holds; a server started later ends the task as its
``task.json`` recorded (completed), not ``lost``.

The full disk is reproduced with ``RLIMIT_FSIZE`` in a real generating process: once the
journal reaches the limit every append fails (EFBIG, as ENOSPC would), while the small
atomic ``task.json`` and the MP4 still fit, as they did when space came back at saving."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time

import pytest

from _server_helpers import PY, EventSourceClient, isolated_env, start_server, ws_connect, ws_recv_until

pytestmark = pytest.mark.timeout(240)

SCRIPT = textwrap.dedent("""
    import json, resource, signal, sys, time
    from pathlib import Path
    from wan_nb import Generator

    gen = Generator(model="tiny", runs_dir=sys.argv[1], previews=False)
    print("ready", flush=True)
    while not Path(sys.argv[2]).exists():
        time.sleep(0.02)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # a failed write, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (6000, resource.RLIM_INFINITY))
    task = gen.submit("a fox on a full disk", seed=0, height=32, width=32, num_frames=5, steps=40)
    task.result(timeout=200)
    print(json.dumps({"task_id": task.id, "status": task.status}), flush=True)
    time.sleep(0.5)
    gen.close()
""")


def _covered(seqs: list[int], missing: list[list[int]], last: int) -> bool:
    held = set(seqs)
    for first, end in missing:
        held.update(range(first, end + 1))
    return sorted(held) == list(range(1, last + 1)) and not set(seqs) & (held - set(seqs))


def test_holes_are_filled_from_memory_announced_everywhere_and_the_end_is_kept(tmp_path):
    runtime, runs = tmp_path / "runtime", tmp_path / "runs"
    server = start_server(runtime)
    script = tmp_path / "full_disk.py"
    script.write_text(SCRIPT)
    go = tmp_path / "go"
    proc = subprocess.Popen([PY, str(script), str(runs), str(go)], env=isolated_env(runtime),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    later = None
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        deadline = time.monotonic() + 30
        while not any(p.get("pid") == proc.pid for p in _producers(runtime)) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)                 # the server subscribed to the process
        go.touch()
        done = json.loads(proc.stdout.readline())
        assert done["status"] == "completed", proc.stderr.read()
        task_id = done["task_id"]
        journal = (runs / task_id / "events.jsonl").read_text().splitlines()
        snap = server.wait_task(task_id, lambda s: s["status"] == "completed")
        last = snap["last_seq"]
        assert json.loads(journal[-1])["seq"] < last - 5          # the journal lost its end

        ws = ws_connect(server)
        ws.send(json.dumps({"action": "subscribe", "topic": f"task:{task_id}"}))
        got = ws_recv_until(ws, lambda m: m.get("type") == "incomplete", timeout=20)
        ws.close()
        events = [m for m in got if "seq" in m]
        notice = got[-1]["data"]["missing_seqs"]
        assert events[-1]["type"] == "generation_completed" and events[-1]["seq"] == last
        assert notice and _covered([e["seq"] for e in events], notice, last), (notice, [e["seq"] for e in events])

        source = EventSourceClient(server.api(f"progress/{task_id}"), server.headers)
        source.connect()
        seqs = [json.loads(e["data"])["seq"] for e in source.events()]
        source.close()
        # the per-task stream leaves VRAM readings out unless asked (?vram=1)
        assert seqs == [e["seq"] for e in events if e["type"] != "vram_monitoring"] and source.comments >= 1
        assert server.get(f"tasks/{task_id}").json()["missing_seqs"] == notice

        proc.wait(30)
        later = start_server(tmp_path / "runtime-later",
                             extra_args=[f"--WanNbExtension.runs_dirs={runs}"])
        after = later.get(f"tasks/{task_id}").json()
        assert after["status"] == "completed", after
        assert after["output_path"] == str(runs / task_id / "video.mp4")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
        if later is not None:
            later.stop()


def _producers(runtime):
    found = []
    for path in runtime.glob("wan_nb-producer-*.json"):
        try:
            found.append(json.loads(path.read_text()))
        except ValueError:
            pass
    return found
