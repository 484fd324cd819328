"""`wan-nb generate --stop-after K` then `wan-nb resume ID`, as a user runs them (real subprocesses)."""
import json

from wan_nb.models.video_io import frame_count
from wan_nb.protocol.events import validate

from test_generate_command import run_cli  # the CLI as a user runs it: a subprocess with its own runs dir


def test_stop_after_then_resume_by_id_and_the_errors_say_what_to_do(tmp_path):
    stopped = run_cli("generate", "a fox", "--model", "tiny", "--steps", "4", "--stop-after", "2", "--seed", "3",
                      "--json", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    frames = [json.loads(line) for line in stopped.stdout.splitlines()]
    for frame in frames:
        validate(frame)
    end = frames[-1]
    assert end["type"] == "generation_cancelled" and end["data"]["stopped_after"] == 2
    assert end["data"]["resumable"] is True and frame_count(end["data"]["preview_path"]) > 0
    old_id = end["task_id"]

    listed = run_cli("history", "--json", "--status", "stopped", cwd=tmp_path)
    assert [(r["task_id"], r["checkpoint_step"]) for r in map(json.loads, listed.stdout.splitlines())] == [(old_id, 2)]

    out = tmp_path / "done.mp4"
    resumed = run_cli("resume", old_id, "--json", "--out", str(out), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    frames = [json.loads(line) for line in resumed.stdout.splitlines()]
    for frame in frames:
        validate(frame)
    assert frames[0]["type"] == "generation_started" and frames[0]["data"]["resumed_from"] == old_id
    steps = [f["data"]["current_step"] for f in frames if f["type"] == "detailed_generation_progress"
             and f["data"]["stage"] == "generating" and f["data"]["current_step"]]
    assert min(steps) == 3 and frames[-1]["type"] == "generation_completed" and frame_count(out) > 0

    again = run_cli("resume", frames[-1]["task_id"], cwd=tmp_path)
    assert again.returncode == 2 and "completed" in again.stderr and "gen.rerun" in again.stderr
    missing = run_cli("resume", "nope", cwd=tmp_path)
    assert missing.returncode == 2 and "nothing to resume at 'nope'" in missing.stderr
