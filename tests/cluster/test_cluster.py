"""Generator(cluster=...) on a real local Ray cluster: two CPU workers running the tiny model.

One cluster (started by this module on 127.0.0.1, stopped by its pids) and one cluster
Generator serve every test, so the workers load the tiny pipeline once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _cluster_helpers import local_ray, start_driver  # noqa: E402  (sets Ray's loopback switch before Ray loads)

pytest.importorskip("ray")

from wan_nb import GenerationCancelled, GenerationError, Generator  # noqa: E402
from wan_nb.protocol.events import validate  # noqa: E402
from wan_nb.runs.journal import JOURNAL_NAME, read_events  # noqa: E402

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("cluster")
    runtime = work / "runtime"
    runtime.mkdir()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JUPYTER_RUNTIME_DIR", str(runtime))  # the driver's relay announces itself here
        # Three CPU slots on two cores: the shared Generator's two workers, and one for the worker of
        # the separate driver process that test_a_driver_that_dies_takes_its_work_with_it kills.
        with local_ray(work, num_cpus=3) as address:
            gen = Generator(model="tiny", cluster=address, workers=2, runs_dir=work / "runs")
            try:
                yield SimpleNamespace(gen=gen, work=work, runtime=runtime, address=address)
            finally:
                gen.close()


def journal_of(task) -> list:
    return list(read_events(task.run_dir / JOURNAL_NAME))


def worker_of(events) -> dict:
    """The worker that ran a task: its first stage on a worker ("Starting") names it."""
    return next(e.data["worker"] for e in events if e.type == "generation_stage" and e.data.get("worker"))


def assert_one_clean_stream(events, terminal: str) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in events if e.is_terminal] == [terminal]
    assert events[-1].type == terminal and events[0].type == "generation_started"
    for event in events:
        if event.type != "preview":  # the journal keeps previews without their image
            validate(event)


def wait_for_step(task, step: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while task.current_step < step:
        assert not task.done(), f"{task} ended before step {step}"
        assert time.monotonic() < deadline, f"{task} never reached step {step}"
        time.sleep(0.02)


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.02)


def test_a_sweep_runs_on_two_workers_and_its_videos_come_back(cluster):
    sweep = cluster.gen.sweep(prompt="a red fox running through snow", seed=[0, 1, 2, 3], steps=4)
    results = sweep.results(timeout=300)

    workers = set()
    for task, result in zip(sweep.tasks, results):
        assert result.video_path == task.run_dir / "video.mp4" and result.video_path.stat().st_size > 0
        events = journal_of(task)
        assert_one_clean_stream(events, "generation_completed")
        assert events[-1].data["output_path"] == str(result.video_path)
        # Announced and queued on the driver before any worker had it; the worker's start names it.
        assert [e.type for e in events[:2]] == ["generation_started", "generation_queued"]
        assert events[0].data["worker"] is None
        worker = worker_of(events)
        assert set(worker) == {"id", "host", "pid", "device"} and worker["device"] == "cpu"
        assert worker["pid"] != os.getpid()
        workers.add(worker["id"])
        # The driver's bus saw the same stream the journal kept.
        assert [e.seq for e in cluster.gen.bus.history(task.id) if e.type != "preview"] == \
               [e.seq for e in events if e.type != "preview"]
    assert len(workers) == 2


def test_the_same_seed_makes_the_same_frames_as_a_local_run(cluster, tmp_path):
    import numpy as np

    from wan_nb.models.video_io import read_frames

    args = dict(seed=7, steps=3, progress=False)
    remote = cluster.gen.generate("an owl at dusk", **args)
    with Generator(model="tiny", runs_dir=tmp_path, previews=False) as local:
        here = local.generate("an owl at dusk", **args)
    a, b = read_frames(remote.video_path), read_frames(here.video_path)
    assert a.shape == b.shape
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_cancel_stops_a_long_task_on_its_worker(cluster):
    task = cluster.gen.submit("a very long shot", steps=400, seed=1)
    wait_for_step(task, 3)
    assert task.cancel()
    with pytest.raises(GenerationCancelled):
        task.result(timeout=120)
    events = journal_of(task)
    assert_one_clean_stream(events, "generation_cancelled")
    assert events[-1].data["stage"] == "generating" and 3 <= events[-1].data["current_step"] < 400
    assert "post_processing" not in {e.data.get("stage") for e in events}  # no decode of a cancelled run
    assert task.status == "cancelled"


def test_pause_and_resume_reach_the_worker(cluster):
    task = cluster.gen.submit("a slow pan over the hills", steps=400, seed=4)
    wait_for_step(task, 2)
    assert task.pause()
    wait_until(lambda: task.status == "paused")
    held = task.current_step
    assert task.resume()
    wait_until(lambda: task.status == "running" and task.current_step > held)
    task.cancel()
    with pytest.raises(GenerationCancelled):
        task.result(timeout=120)
    events = journal_of(task)
    assert_one_clean_stream(events, "generation_cancelled")
    assert [e.type for e in events if e.type in ("generation_paused", "generation_resumed")] == \
           ["generation_paused", "generation_resumed"]


def test_a_lora_loaded_on_the_driver_reaches_the_workers(cluster, tmp_path):
    import numpy as np

    from _models_helpers import load
    from wan_nb.models import tiny
    from wan_nb.models.video_io import read_frames

    gen = cluster.gen
    path = tiny.make_lora(load("tiny").transformer, tmp_path / "ink.safetensors", seed=1)
    args = dict(seed=9, steps=2, progress=False)
    gen.load_lora(path, name="ink")
    try:
        inked = gen.generate("a fox drawn in ink", loras={"ink": 1.0}, **args)
        off = gen.generate("a fox drawn in ink", loras={"ink": 0.0}, **args)
    finally:
        gen.unload_lora("ink")
    plain = gen.generate("a fox drawn in ink", **args)  # unloaded on every worker too
    inked, off, plain = (np.asarray(read_frames(r.video_path)) for r in (inked, off, plain))
    assert not np.array_equal(inked, off)
    assert np.array_equal(off, plain)


def test_a_killed_worker_fails_only_its_task_and_is_replaced(cluster):
    gen = cluster.gen
    task = gen.submit("a doomed shot", steps=400, seed=2)
    wait_for_step(task, 2)
    os.kill(task.worker["pid"], signal.SIGKILL)
    with pytest.raises(GenerationError) as failure:
        task.result(timeout=120)
    assert failure.value.error_type == "WorkerLost"
    events = journal_of(task)
    assert_one_clean_stream(events, "generation_failed")
    assert events[-1].data["error_type"] == "WorkerLost"
    assert task.worker["host"] in events[-1].data["error"]

    after = gen.sweep(prompt="the next morning", seed=[10, 11], steps=2)
    assert all(r.video_path.is_file() for r in after.results(timeout=300))
    pids = {worker_of(journal_of(t))["pid"] for t in after.tasks}
    assert task.worker["pid"] not in pids


def test_retries_rerun_a_sweep_cell_whose_worker_died(cluster):
    sweep = cluster.gen.sweep(prompt="a lighthouse in a storm", seed=[20, 21], steps=40, retries=1)
    doomed = sweep.tasks[0]
    wait_for_step(doomed, 2)
    os.kill(doomed.worker["pid"], signal.SIGKILL)
    results = sweep.results(timeout=300)
    assert doomed.status == "failed" and doomed.retry is not None
    assert results[0].task_id == doomed.retry.id and results[0].video_path.is_file()
    lost = journal_of(doomed)
    assert lost[-1].data["error_type"] == "WorkerLost" and lost[-1].data["retry_task_id"] == doomed.retry.id
    assert_one_clean_stream(journal_of(doomed.retry), "generation_completed")
    assert doomed.retry.seed == doomed.seed == 20


def test_a_jupyter_server_sharing_the_runtime_dir_lists_cluster_tasks(cluster):
    from _server_helpers import start_server

    server = start_server(cluster.runtime, extra_args=["--ServerApp.log_level=WARN"])
    try:
        result = cluster.gen.generate("a heron in the reeds", seed=3, steps=2, progress=False)
        snapshot = server.wait_task(result.task_id, lambda s: s["status"] == "completed", timeout=60)
        assert snapshot["output_path"] == str(result.video_path)
        video = server.get(f"tasks/{result.task_id}/video")
        assert video.status_code == 200 and video.content == result.video_path.read_bytes()
        listed = {t["task_id"]: t for t in server.get("tasks").json()["tasks"]}
        assert result.task_id in listed
        finished_before = [t for t in cluster.gen.tasks if t.status == "completed" and t.id != result.task_id]
        assert finished_before and all(t.id in listed for t in finished_before)
    finally:
        server.stop()


def test_a_storyboard_renders_its_scenes_in_parallel(cluster):
    from wan_nb import Storyboard

    board = Storyboard(cluster.gen, ["a fox wakes in the snow", "the fox runs to the river"], steps=24, seed=5)
    result = board.run(progress=False)
    assert result.final_video_path.is_file() and [p.name for p in result.scene_videos] == ["scene_01.mp4",
                                                                                          "scene_02.mp4"]
    scenes = [list(read_events(r.run_dir / JOURNAL_NAME)) for r in result.scene_results]
    for events in scenes:
        assert_one_clean_stream(events, "generation_completed")
    assert len({worker_of(events)["id"] for events in scenes}) == 2

    own = list(read_events(board.folder / JOURNAL_NAME))
    assert [e.seq for e in own] == list(range(1, len(own) + 1))
    assert [e.data["step"] for e in own if e.is_terminal] == ["complete"]
    # Both scenes were under way before either was done (one after another, scene 2 starts after 1 is done).
    messages = [e.data["message"] for e in own]
    first_done = min(messages.index("Scene 1/2 done"), messages.index("Scene 2/2 done"))
    assert messages.index("Scene 2/2: starting") < first_done


def test_a_real_model_on_a_cluster_without_gpus_is_refused_up_front(cluster, tmp_path):
    from wan_nb.cluster import ClusterUnavailable

    with pytest.raises(ClusterUnavailable, match="needs a GPU"):
        Generator(model="wan2.1-t2v-1.3b", cluster=cluster.address, runs_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_driver_that_dies_takes_its_work_with_it(cluster, tmp_path):
    import json

    import psutil

    driver = start_driver(cluster.address, tmp_path, {"JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")})
    try:
        worker = json.loads(driver.stdout.readline())
        assert psutil.pid_exists(worker["pid"])
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    deadline = time.monotonic() + 60
    while psutil.pid_exists(worker["pid"]) and psutil.Process(worker["pid"]).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the dead driver's worker kept running its task"
        time.sleep(0.2)


def test_import_wan_nb_does_not_load_ray():
    import subprocess

    code = "import sys, wan_nb; wan_nb.Generator; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_worker_runs_the_drivers_task_under_its_id_and_numbers_on_from_the_drivers_seq(tmp_path):
    """The actor class itself, called in this process (no Ray needed): what the driver relies on."""
    from wan_nb.cluster.worker import PipelineWorker

    worker = PipelineWorker("w7", "tiny", {"load": {"device": "cpu"}, "previews": False})
    spec = {"task_id": "driver-task", "prompt": "a fox", "parent_id": None, "loras": {}, "batch_interval": 0.05,
            "kwargs": {"seed": 0, "steps": 2, "height": 16, "width": 16, "num_frames": 1},
            "seq_after": 2}  # the driver published generation_started and generation_queued
    batches = list(worker.run(spec))
    frames = [frame for batch in batches for frame in batch["events"]]
    assert {f["task_id"] for f in frames} == {"driver-task"}
    assert [f["seq"] for f in frames] == list(range(3, 3 + len(frames)))
    first = frames[0]
    assert (first["type"], first["data"]["stage"], first["data"]["stage_message"]) == \
           ("generation_stage", "initializing", "Starting")
    assert first["data"]["worker"]["id"] == "w7" and first["data"]["worker"]["pid"] == os.getpid()
    assert frames[-1]["type"] == "generation_completed" and batches[-1]["video"][4:8] == b"ftyp"
    for frame in frames:
        validate(frame)
    assert worker.describe()["loaded"] is True
