"""Run folders made by hand, as an older wan_nb or a process that died leaves them."""

import json


def fake_run(runs_dir, task_id, *, prompt="a fox", status="completed", model="tiny", created_at=None,
             seed=0, pid=None, journal=True):
    """A run folder as an older wan_nb (or a process that died) leaves it: task.json + journal."""
    folder = runs_dir / task_id
    folder.mkdir(parents=True)
    info = {"task_id": task_id, "model": model, "prompt": prompt, "seed": seed,
            "params": {"prompt": prompt, "seed": seed, "steps": 4}, "loras": {},
            "created_at": created_at or "2026-01-01T00:00:00Z", "pid": pid or 999_999_999}
    (folder / "task.json").write_text(json.dumps(info))
    if journal and status != "running":
        kind = {"completed": "generation_completed", "failed": "generation_failed",
                "cancelled": "generation_cancelled"}[status]
        data = {"output_path": str(folder / "video.mp4"), "duration_s": 1.5} if status == "completed" else {}
        lines = [{"type": "generation_started", "seq": 1, "task_id": task_id, "data": {}},
                 {"type": kind, "seq": 2, "task_id": task_id, "data": {**data, "timestamp": "2026-01-01T00:00:02Z"}}]
        (folder / "events.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    if status == "completed":
        (folder / "video.mp4").write_bytes(b"\0")
    return folder
