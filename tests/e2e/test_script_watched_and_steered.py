"""End to end: a real ``Generator(model="tiny")`` in a script process, watched, paused,
resumed and cancelled through a real Jupyter server."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time

import pytest

from _server_helpers import PY, EventSourceClient, isolated_env, start_server

pytestmark = pytest.mark.timeout(180)

SCRIPT = textwrap.dedent("""
    import json, sys
    from wan_nb import Generator

    gen = Generator(model="tiny", runs_dir=sys.argv[1])
    small = dict(height=32, width=32, num_frames=5, seed=0)
    done = gen.generate("a red fox running through snow", steps=2, progress=False, **small)
    print(json.dumps({"done": done.task_id}), flush=True)
    long = gen.submit("a red fox running through snow", steps=5000, **small)
    print(json.dumps({"long": long.id}), flush=True)
    long.wait(timeout=120)
    print(json.dumps({"status": long.status}), flush=True)
    gen.close()
""")


def test_real_generator_in_a_script_is_watched_and_cancelled_from_the_server(tmp_path):
    runtime, runs = tmp_path / "runtime", tmp_path / "runs"
    server = start_server(runtime)
    script = tmp_path / "make_video.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([PY, str(script), str(runs)], env=isolated_env(runtime), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        done_id = json.loads(proc.stdout.readline())["done"]
        snap = server.wait_task(done_id, lambda s: s["status"] == "completed")
        assert snap["model_type"] == "tiny" and snap["progress"] == 100
        video = server.get(f"tasks/{done_id}/video")
        assert video.status_code == 200 and video.content[4:8] == b"ftyp"  # a real MP4
        source = EventSourceClient(server.api(f"progress/{done_id}"), server.headers)
        source.connect()
        updates = [json.loads(e["data"]) for e in source.events()]
        assert updates[-1]["step"] == "complete" and updates[-1]["data"]["video_url"].endswith("/video")

        long_id = json.loads(proc.stdout.readline())["long"]
        server.wait_task(long_id, lambda s: (s["current_step"] or 0) >= 2)
        assert server.post(f"tasks/{long_id}/pause").status_code == 202      # Generator.steer
        paused = server.wait_task(long_id, lambda s: s["status"] == "paused")
        time.sleep(0.5)
        assert server.get(f"tasks/{long_id}").json()["current_step"] == paused["current_step"]  # held
        assert server.post(f"tasks/{long_id}/resume").status_code == 202
        server.wait_task(long_id, lambda s: s["status"] == "running"
                         and (s["current_step"] or 0) > paused["current_step"])
        assert server.post(f"tasks/{long_id}/move", json={"index": 0}).status_code == 409  # not queued
        assert server.post(f"tasks/{long_id}/cancel").status_code == 202
        snap = server.wait_task(long_id, lambda s: s["status"] in ("cancelled", "completed", "failed"))
        assert snap["status"] == "cancelled" and snap["current_step"] < 1000
        assert json.loads(proc.stdout.readline()) == {"status": "cancelled"}
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
