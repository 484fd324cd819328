"""A task's inputs through a real Jupyter server: its snapshot names them, and
``GET wan-nb/api/tasks/{id}/inputs/{file}`` serves exactly the files its ``task.json`` lists —
for a live task (the run folder its producer announced) and for finished runs found on disk.

A real ``Generator(model="tiny")`` runs in a script process. Its runs' inputs (first and last
frame, a control video, reference images) are recorded by the test helper
``_inputs_helpers.InputsSink`` in the run folder format the generator's pipelines write.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest
import requests

from _server_helpers import PY, isolated_env, start_server

pytestmark = pytest.mark.timeout(300)

TESTS = Path(__file__).resolve().parents[1]
SCRIPT = textwrap.dedent(f"""
    import json, sys
    sys.path.insert(0, {str(TESTS)!r})
    from _inputs_helpers import InputsSink, flf2v_and_control
    from wan_nb import Generator

    gen = Generator(model="tiny", runs_dir=sys.argv[1], previews=False)
    gen.add_sink(InputsSink(gen, flf2v_and_control))
    small = dict(height=32, width=32, num_frames=5, seed=0)
    done = gen.generate("a fox between two frames", steps=2, progress=False, **small)
    print(json.dumps({{"done": done.task_id}}), flush=True)
    long = gen.submit("an owl steered by a control video", steps=100000, **small)
    print(json.dumps({{"long": long.id}}), flush=True)
    long.wait(timeout=280)
    print(json.dumps({{"status": long.status}}), flush=True)
    gen.close()
""")
NAMES = ["image", "last_image", "reference_images", "video"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A server, a script whose first run finished and whose second runs until cancelled."""
    base = tmp_path_factory.mktemp("inputs-server")
    runtime, runs = base / "runtime", base / "runs"
    server = start_server(runtime)
    script = base / "make_videos.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([PY, str(script), str(runs)], env=isolated_env(runtime), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        done = json.loads(proc.stdout.readline())["done"]
        long = json.loads(proc.stdout.readline())["long"]
        server.wait_task(long, lambda s: (s["current_step"] or 0) >= 1, timeout=120)
        yield {"server": server, "runs": runs, "done": done, "long": long, "proc": proc, "base": base,
               "runtime": runtime}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()


def _plant_copy(runs: Path, task_id: str) -> str:
    """A copy of a finished run under a new task id (its journal and task.json say the new id)."""
    new_id = "copy-" + uuid.uuid4().hex[:8]
    shutil.copytree(runs / task_id, runs / new_id, symlinks=True)
    for name in ("events.jsonl", "task.json"):
        path = runs / new_id / name
        path.write_text(path.read_text().replace(task_id, new_id))
    return new_id


def _list(folder: Path, name: str, file: str, kind: str = "image") -> None:
    """Make ``folder``'s task.json list ``inputs/<file>`` as input ``name``."""
    task_file = folder / "task.json"
    info = json.loads(task_file.read_text())
    info["inputs"][name] = {"kind": kind, "files": [f"inputs/{file}"], "sha256": "0" * 64}
    task_file.write_text(json.dumps(info))


def test_a_live_tasks_snapshot_names_its_inputs_and_they_are_served(env):
    server, long = env["server"], env["long"]
    snap = server.get(f"tasks/{long}").json()
    assert snap["status"] == "running"
    assert list(snap["inputs"]) == NAMES
    assert snap["inputs"]["video"]["kind"] == "video" and snap["inputs"]["reference_images"]["kind"] == "images"
    assert snap["inputs"]["image"]["urls"] == [f"/wan-nb/api/tasks/{long}/inputs/image.png"]
    folder = env["runs"] / long / "inputs"
    for name, entry in snap["inputs"].items():
        for url in entry["urls"]:
            response = requests.get(server.url.rstrip("/") + url, headers=server.headers, timeout=10)
            assert response.status_code == 200, (name, response.text)
            assert response.content == (folder / url.rsplit("/", 1)[1]).read_bytes()
            expected = "video/mp4" if entry["kind"] == "video" else "image/png"
            assert response.headers["Content-Type"] == expected
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "sandbox" in response.headers["Content-Security-Policy"]
    listed = {s["task_id"]: s for s in server.get("tasks").json()["tasks"]}
    assert listed[long]["inputs"] == snap["inputs"]


def test_a_control_video_is_seekable(env):
    server, long = env["server"], env["long"]
    whole = (env["runs"] / long / "inputs" / "video.mp4").read_bytes()
    response = server.get(f"tasks/{long}/inputs/video.mp4", headers={**server.headers, "Range": "bytes=10-99"})
    assert response.status_code == 206 and response.content == whole[10:100]
    assert response.headers["Content-Range"] == f"bytes 10-99/{len(whole)}"
    head = requests.head(server.api(f"tasks/{long}/inputs/video.mp4"), headers=server.headers, timeout=10)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(whole)) and not head.content
    assert head.headers["Content-Type"] == "video/mp4"


def test_inputs_need_jupyters_authentication(env):
    server, long = env["server"], env["long"]
    assert server.get(f"tasks/{long}/inputs/image.png", headers={}).status_code == 403
    bad = {"Authorization": "token not-the-token"}
    assert server.get(f"tasks/{long}/inputs/image.png", headers=bad).status_code == 403


@pytest.mark.parametrize("file", ["..%2Ftask.json", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd",
                                  "task.json", "events.jsonl", "..%2Fvideo.mp4", "image.png%00.html",
                                  "IMAGE.PNG", "image.png.", "%2E%2E"])
def test_no_request_path_reaches_the_file_system(env, file):
    server, done = env["server"], env["done"]
    response = server.get(f"tasks/{done}/inputs/{file}")
    assert response.status_code == 404, (file, response.status_code)
    assert response.headers["Content-Type"].startswith("application/json")
    assert b"{" in response.content[:1] and b"root:" not in response.content


def test_a_file_in_inputs_that_task_json_does_not_list_is_not_served(env):
    server, runs, done = env["server"], env["runs"], env["done"]
    (runs / done / "inputs" / "unlisted.png").write_bytes((runs / done / "inputs" / "image.png").read_bytes())
    assert server.get(f"tasks/{done}/inputs/image.png").status_code == 200
    assert server.get(f"tasks/{done}/inputs/unlisted.png").status_code == 404
    # nor one another task lists: the file is looked up in *this* task's list
    other = _plant_copy(runs, done)
    _list(runs / other, "mask", "unlisted.png")
    assert server.get(f"tasks/{other}/inputs/unlisted.png").status_code == 200
    assert server.get(f"tasks/{done}/inputs/unlisted.png").status_code == 404


def test_a_listed_symlink_out_of_the_inputs_folder_is_not_served(env, tmp_path):
    server, runs, done = env["server"], env["runs"], env["done"]
    task_id = _plant_copy(runs, done)
    inputs = runs / task_id / "inputs"
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\nsecret")
    (inputs / "outside.png").symlink_to(secret)
    (inputs / "result.mp4").symlink_to(runs / task_id / "video.mp4")   # the run folder, not inputs/
    (inputs / "inside.png").symlink_to(inputs / "image.png")            # stays inside: fine
    _list(runs / task_id, "mask", "outside.png")
    _list(runs / task_id, "pose_video", "result.mp4", kind="video")
    _list(runs / task_id, "face_video", "inside.png")
    assert server.get(f"tasks/{task_id}/inputs/outside.png").status_code == 404
    assert server.get(f"tasks/{task_id}/inputs/result.mp4").status_code == 404
    assert server.get(f"tasks/{task_id}/inputs/inside.png").status_code == 200


def test_a_symlinked_inputs_folder_leading_out_of_the_run_folder_is_not_served(env, tmp_path):
    """Issue 27, item 13: the files were checked inside the resolved ``inputs/``, but ``inputs/``
    itself could lead anywhere this user owns."""
    server, runs, done = env["server"], env["runs"], env["done"]
    task_id = _plant_copy(runs, done)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(runs / task_id / "inputs", elsewhere)
    (elsewhere / "image.png").write_bytes(b"\x89PNG\r\n\x1a\nnot this run's frame")
    shutil.rmtree(runs / task_id / "inputs")
    (runs / task_id / "inputs").symlink_to(elsewhere)
    assert server.get(f"tasks/{task_id}/inputs/image.png").status_code == 404
    inside = _plant_copy(runs, done)                  # a link that stays inside the run: fine
    (runs / inside / "inputs").rename(runs / inside / "kept")
    (runs / inside / "inputs").symlink_to(runs / inside / "kept")
    response = server.get(f"tasks/{inside}/inputs/image.png")
    assert response.status_code == 200 and response.content == (runs / inside / "kept" / "image.png").read_bytes()


def test_inputs_of_a_folder_others_can_write_or_own_are_not_served(env):
    server, runs, done = env["server"], env["runs"], env["done"]
    writable = _plant_copy(runs, done)
    os.chmod(runs / writable / "inputs", 0o777)
    assert server.get(f"tasks/{writable}/inputs/image.png").status_code == 404
    planted = _plant_copy(runs, done)
    os.chmod(runs / planted / "inputs" / "image.png", 0o666)
    assert server.get(f"tasks/{planted}/inputs/image.png").status_code == 404
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    others = _plant_copy(runs, done)
    os.chown(runs / others / "inputs" / "image.png", 4321, 4321)   # another user's file
    assert server.get(f"tasks/{others}/inputs/image.png").status_code == 404
    assert server.get(f"tasks/{others}/inputs/video.mp4").status_code == 200
    os.chown(runs / others / "task.json", 4321, 4321)                # another user's listing
    snap = server.get(f"tasks/{others}").json()
    assert snap["inputs"] == {}
    assert server.get(f"tasks/{others}/inputs/video.mp4").status_code == 404


def test_finished_runs_found_on_disk_name_and_serve_their_inputs(env):
    """After the producer is gone, a new server lists the runs from the runs folder."""
    server, runs, done, long = env["server"], env["runs"], env["done"], env["long"]
    assert server.post(f"tasks/{long}/cancel").status_code == 202
    proc = env["proc"]
    proc.stdout.readline()
    assert proc.wait(60) == 0, proc.stderr.read()
    fresh = start_server(env["base"] / "runtime2",
                         extra_args=[f"--WanNbExtension.runs_dirs={runs}"])  # a List trait: one --flag per folder
    try:
        listed = {s["task_id"]: s for s in fresh.get("tasks").json()["tasks"]}
        assert listed[done].get("on_disk") and listed[long]["status"] == "cancelled"
        for task_id in (done, long):
            assert list(listed[task_id]["inputs"]) == NAMES
            assert listed[task_id]["inputs"]["last_image"]["urls"] == [
                f"/wan-nb/api/tasks/{task_id}/inputs/last_image.png"]
        snap = fresh.get(f"tasks/{done}").json()
        assert snap["inputs"] == listed[done]["inputs"]
        response = fresh.get(f"tasks/{done}/inputs/reference_images_01.png")
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
        assert response.content == (runs / done / "inputs" / "reference_images_01.png").read_bytes()
    finally:
        fresh.stop()
