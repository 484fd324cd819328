"""``…/tasks/{id}/video/original``: the video before interpolation / upscaling, which a run keeps as
``original.mp4`` beside its ``video.mp4``, served under the video's own checks (a task's own folder,
a regular .mp4, credentials), 404 while there is none."""
from __future__ import annotations

import os
import uuid

import pytest
import requests

from _server_helpers import start_producer, start_server, wait_producer_ready
from wan_nb.runs.layout import ORIGINAL_NAME

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("server")
    runtime, runs = base / "runtime", base / "runs"
    server = start_server(runtime)
    yield server, runtime, runs
    server.stop()


@pytest.fixture
def finished_task(env):
    server, runtime, runs = env
    task_id = "t-" + uuid.uuid4().hex[:8]
    proc = start_producer(runtime, runs, task_id, steps=3, interval=0.01)
    try:
        wait_producer_ready(proc)
        server.wait_task(task_id, lambda s: s["status"] in ("completed", "failed", "cancelled", "lost"))
        yield task_id, runs / task_id
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_the_original_is_served_beside_the_processed_video(env, finished_task):
    server = env[0]
    task_id, run_dir = finished_task
    missing = server.get(f"tasks/{task_id}/video/original")
    assert missing.status_code == 404 and "has no original video" in missing.json()["message"]
    original = bytes(reversed(range(256))) * 32
    (run_dir / ORIGINAL_NAME).write_bytes(original)     # as a run that interpolated / upscaled keeps it
    got = server.get(f"tasks/{task_id}/video/original")
    assert got.status_code == 200 and got.content == original
    assert got.headers["Content-Type"] == "video/mp4" and "sandbox" in got.headers["Content-Security-Policy"]
    assert 'filename="original.mp4"' in got.headers["Content-Disposition"]
    part = server.get(f"tasks/{task_id}/video/original", headers={**server.headers, "Range": "bytes=0-1"})
    assert part.status_code == 206 and part.content == bytes([255, 254])
    assert server.get(f"tasks/{task_id}/video").content == bytes(range(256)) * 64   # the processed one, unchanged
    assert requests.get(server.api(f"tasks/{task_id}/video/original"), timeout=10).status_code == 403


def test_an_original_that_is_not_a_plain_file_of_the_folder_is_not_served(env, finished_task, tmp_path):
    server = env[0]
    task_id, run_dir = finished_task
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(b"not this one")
    os.symlink(outside, run_dir / ORIGINAL_NAME)          # a link out of the run folder
    assert server.get(f"tasks/{task_id}/video/original").status_code == 404
    assert server.get("tasks/no-such-task/video/original").status_code == 404
