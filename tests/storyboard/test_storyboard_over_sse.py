"""A real storyboard rendered by a script, watched through a real Jupyter server the way a browser
page watches it: ``EventSource(wan-nb/api/progress/<id>)``, then the video players."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from _server_helpers import EventSourceClient, isolated_env, start_server

pytestmark = pytest.mark.timeout(300)

HELPER = Path(__file__).resolve().parents[1] / "_storyboard_helpers.py"


@pytest.fixture
def server(tmp_path):
    server = start_server(tmp_path / "runtime")
    yield server
    server.stop()


def test_seed_client_follows_a_storyboard_to_the_end_and_plays_every_video(server, tmp_path):
    runs = tmp_path / "runs"
    storyboard_id = "sb-" + uuid.uuid4().hex[:8]
    proc = subprocess.Popen([sys.executable, str(HELPER), "produce", "--runs-dir", str(runs),
                             "--id", storyboard_id], env=isolated_env(tmp_path / "runtime"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "started", proc.stderr.read()
        source = EventSourceClient(server.api(f"progress/{storyboard_id}"), server.headers)
        assert source.connect().status_code == 200
        updates = []
        for event in source.events():  # the server ends the stream after the final event
            assert event["event"] == "message"  # unnamed: EventSource.onmessage sees it
            update = json.loads(event["data"])
            assert event["id"] == str(update["seq"])
            updates.append(update)
            if update["step"] == "complete":  # what the seed's client does
                break
        source.close()
        assert proc.wait(120) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    steps = list(dict.fromkeys(u["step"] for u in updates))
    assert steps == ["init", "story", "scenes", "video_params", "videos", "stitch", "complete"]
    progress = [u["progress"] for u in updates]
    assert progress == sorted(progress)
    videos = [u for u in updates if u["step"] == "videos"]
    assert len({u["progress"] for u in videos}) >= 6  # the bar moves while the scenes render
    assert all(u["status"] in ("in_progress", "completed") for u in updates[:-1])

    # each scene is announced with its path as soon as it is done
    announced = [u for u in updates if "scene_video" in u["data"]]
    assert [u["data"]["scene_index"] for u in announced] == [1, 2, 3]
    assert announced[0]["seq"] < next(u["seq"] for u in updates if u["data"].get("scene_index") == 2)

    last = updates[-1]
    assert (last["step"], last["status"], last["progress"]) == ("complete", "completed", 100)
    folder = runs / storyboard_id
    assert last["data"]["final_video_path"] == str(folder / "final.mp4")
    assert last["data"]["scene_videos"] == [str(folder / "scenes" / f"scene_0{n}.mp4") for n in (1, 2, 3)]
    assert last["data"]["video_url"].endswith(f"wan-nb/api/tasks/{storyboard_id}/video")

    # the players: the final video and each scene, byte for byte, with Range for seeking
    final = requests.get(server.url.rstrip("/") + last["data"]["video_url"], headers=server.headers, timeout=10)
    assert final.status_code == 200 and final.content == (folder / "final.mp4").read_bytes()
    for n in (1, 2, 3):
        scene = server.get(f"tasks/{storyboard_id}/video/scenes/{n}")
        assert scene.status_code == 200
        assert scene.content == (folder / "scenes" / f"scene_0{n}.mp4").read_bytes()
    ranged = server.get(f"tasks/{storyboard_id}/video/scenes/2", headers={**server.headers, "Range": "bytes=0-99"})
    assert ranged.status_code == 206 and len(ranged.content) == 100
    assert server.get(f"tasks/{storyboard_id}/video/scenes/4").status_code == 404

    snapshot = server.get(f"tasks/{storyboard_id}").json()
    assert snapshot["kind"] == "storyboard" and snapshot["status"] == "completed"
    # EventSource reconnects after the end: nothing new, so 204 and it stops
    again = EventSourceClient(server.api(f"progress/{storyboard_id}"), server.headers)
    again.last_event_id = str(last["seq"])
    assert again.connect().status_code == 204
    again.close()


def test_a_storyboard_is_cancelled_through_the_server(server, tmp_path):
    """The route the panel's Cancel button posts (a foreground board.run() keeps the kernel busy)."""
    import time

    runs = tmp_path / "runs"
    storyboard_id = "sb-" + uuid.uuid4().hex[:8]
    proc = subprocess.Popen([sys.executable, str(HELPER), "produce", "--runs-dir", str(runs),
                             "--id", storyboard_id, "--steps", "100000"],
                            env=isolated_env(tmp_path / "runtime"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started", proc.stderr.read()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the server knows it and a scene is denoising
            snap = server.get(f"tasks/{storyboard_id}")
            if snap.status_code == 200 and snap.json().get("progress", 0) > 0:
                break
            time.sleep(0.1)
        assert server.post(f"tasks/{storyboard_id}/cancel").status_code == 202
        assert proc.stdout.readline().strip() == "cancelled"
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    snap = server.wait_task(storyboard_id, lambda s: s["status"] != "running")
    assert snap["status"] == "cancelled"
    assert not (runs / storyboard_id / "final.mp4").exists()
