"""The extension as Jupyter loads it (jupyter_server's pytest plugin), its configuration, its
import cost, and the snapshot reducer it applies to every event."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from wan_nb.protocol.events import Event
from wan_nb.protocol.snapshot import TaskSnapshot

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def jp_server_config(tmp_path):
    return {"ServerApp": {"jpserver_extensions": {"wan_nb": True}},
            "WanNbExtension": {"heartbeat_interval": 3.0, "client_buffer": 50,
                               "producer_dir": str(tmp_path / "producers")}}


async def test_extension_loads_with_its_configuration(jp_serverapp, jp_fetch):
    hub = jp_serverapp.web_app.settings["wan_nb_hub"]
    assert (hub.heartbeat_interval, hub.client_buffer) == (3.0, 50)
    assert hub.runtime_dir.name == "producers"
    response = await jp_fetch("wan-nb", "api", "tasks")
    assert json.loads(response.body) == {"tasks": []}


async def test_unknown_task_is_404_and_no_token_is_403(jp_fetch):
    from tornado.httpclient import HTTPClientError

    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("wan-nb", "api", "tasks", "nope")
    assert info.value.code == 404
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("wan-nb", "api", "tasks", headers={"Authorization": "token wrong"})
    assert info.value.code == 403


async def test_websocket_protocol_in_process(jp_ws_fetch):
    ws = await jp_ws_fetch("wan-nb", "api", "ws")
    await ws.write_message(json.dumps({"action": "subscribe", "topic": "generation_progress"}))
    assert json.loads(await ws.read_message()) == {"type": "subscribed", "data": {"topic": "generation_progress"}}
    await ws.write_message("{")
    assert json.loads(await ws.read_message())["type"] == "error"
    ws.close()


def test_heartbeat_interval_is_bounded_by_the_contract():
    from traitlets import TraitError

    from wan_nb.server.app import WanNbExtension

    with pytest.raises(TraitError, match="heartbeat_interval"):
        WanNbExtension(heartbeat_interval=20.0)


def test_extension_is_discovered_from_the_package_and_loads_fast_without_torch():
    code = (
        "import sys, time\n"
        "import jupyter_server.serverapp, jupyter_server.extension.application\n"  # the server's own cost
        "t = time.perf_counter()\n"
        "import wan_nb\n"
        "(point,) = wan_nb._jupyter_server_extension_points()\n"
        "from wan_nb.server.hub import Hub\n"
        "Hub(runtime_dir='.')\n"
        "print(time.perf_counter() - t, point['module'], 'torch' in sys.modules, 'diffusers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, module, torch, diffusers = out.stdout.split()
    assert module == "wan_nb.server.app"
    assert (torch, diffusers) == ("False", "False")
    assert float(seconds) < 0.5


# -- the snapshot reducer ------------------------------------------------------------------------
def event(seq, type_, **data):
    return Event(type=type_, task_id="t1", seq=seq, timestamp=f"2026-01-01T00:00:{seq:02d}.000Z", data=data)


def test_snapshot_follows_a_generation_to_completion():
    snap = TaskSnapshot("t1")
    snap.apply(event(1, "generation_started", model_type="tiny", params={"prompt": "fox", "steps": 4, "seed": 3},
                     estimated_duration=9.0))
    # Started means queued: the worker has not taken it yet (Python's task.status agrees).
    assert (snap.status, snap.prompt, snap.total_steps, snap.estimated_time_remaining) == ("queued", "fox", 4, 9.0)
    snap.apply(event(2, "detailed_generation_progress", stage="generating", progress=60, message="Step 2/4",
                     estimated_time_remaining=2.0, current_step=2, total_steps=4))
    snap.apply(event(3, "detailed_generation_progress", stage="generating", progress=40, message="late",
                     estimated_time_remaining=1.0, current_step=3, total_steps=4))
    assert snap.progress == 60 and snap.current_step == 3  # progress never decreases
    snap.apply(event(4, "generation_completed", output_path="/runs/t1/video.mp4", duration_s=1.5,
                     params={}, seed=3))
    result = snap.to_dict(video_url="/wan-nb/api/tasks/t1/video")
    assert result["status"] == "completed" and result["progress"] == 100
    assert result["video_url"] == "/wan-nb/api/tasks/t1/video"
    assert (result["created_at"], result["updated_at"]) == ("2026-01-01T00:00:01.000Z", "2026-01-01T00:00:04.000Z")
    snap.apply(event(5, "generation_failed", stage="saving", error_type="X", error="late"))
    assert snap.status == "completed"  # nothing after the terminal event changes the outcome


def test_snapshot_marks_lost_and_storyboards():
    lost = TaskSnapshot("t1")
    lost.apply(event(1, "generation_stage", stage="generating", stage_progress=0, stage_message="go"))
    lost.apply(event(2, "generation_failed", stage="generating", error_type="ProducerLost", error="gone"))
    assert lost.status == "lost" and lost.to_dict()["video_url"] is None
    board = TaskSnapshot("t1")
    board.apply(event(1, "storyboard_progress", step="videos", status="in_progress", progress=70,
                      message="Generating scene videos", data={"scene_videos": ["a.mp4"]}))
    board.apply(event(2, "storyboard_progress", step="complete", status="completed", progress=100,
                      message="Done", data={"scene_videos": ["a.mp4", "b.mp4"], "final_video_path": "f.mp4"}))
    assert (board.kind, board.status, board.output_path, board.scene_videos) == \
        ("storyboard", "completed", "f.mp4", ["a.mp4", "b.mp4"])
