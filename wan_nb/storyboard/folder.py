"""A storyboard's run folder, ``<gen.runs_dir>/<storyboard_id>/``::

    task.json  events.jsonl  storyboard.json   what was asked and what happened
    scenes/scene_01.mp4 (+ scene_01.json)      each scene, as soon as it is done
    scenes/scene_01.tasks.json                 the tasks that rendered scene 1, newest last
    final.mp4                                  the stitched video
    original.mp4                               the stitched film before interpolate= / upscale= (if asked)

A scene's sidecar JSON records the parameters it was made with, so ``resume()`` can tell a
scene it may keep from one it must make again. The tasks file is written as each render of a
scene starts (before any step), so a scene stopped or killed mid-way is found by ``resume()``
through its task's run folder and continued from that folder's checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from wan_nb.protocol.events import dumps
from wan_nb.core.params import public_params
from wan_nb.runs.layout import ORIGINAL_NAME

__all__ = ["video_url", "scene_url", "scene_path", "final_path", "original_path", "note_scene_task",
           "scene_checkpoints"]


def video_url(storyboard_id: str) -> str:
    """The final video's URL relative to the Jupyter server's base URL."""
    return f"wan-nb/api/tasks/{storyboard_id}/video"


def scene_url(storyboard_id: str, index: int) -> str:
    """Scene ``index`` (1-based) of a storyboard, relative to the server's base URL."""
    return f"wan-nb/api/tasks/{storyboard_id}/video/scenes/{index}"


def scene_path(folder: Path, index: int) -> Path:
    return folder / "scenes" / f"scene_{index:02d}.mp4"


def final_path(folder: Path) -> Path:
    return folder / "final.mp4"


def original_path(folder: Path) -> Path:
    """The stitched film before its interpolation / upscaling (only when the storyboard asks for them)."""
    return folder / ORIGINAL_NAME


def task_info(board: Any) -> dict[str, Any]:
    """The storyboard's ``task.json``: what was asked."""
    return {"task_id": board.id, "kind": "storyboard", "model": board.gen.model,
            "prompt": board.story or " / ".join(s.prompt for s in board.scenes),
            "params": {"transition": board.transition, "crossfade": board.crossfade, "fps": board.fps,
                       "continuity": board.continuity, "seed": board.seed, "scenes": board.plan()},
            "seed": board.seed, "parent_id": None,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def reusable_scenes(board: Any) -> list[bool]:
    """Which scene videos on disk were made with exactly the parameters asked for now."""
    from wan_nb.models.video_io import frame_count

    reusable = []
    for index, params in enumerate(board.scene_params, 1):
        path = board.scene_path(index)
        sidecar = path.with_suffix(".json")
        ok = False
        if path.is_file() and sidecar.is_file():
            try:
                saved = json.loads(sidecar.read_text())
                ok = (saved.get("params") == json.loads(dumps(public_params(params)))
                      and frame_count(path) == params["num_frames"])
            except (OSError, ValueError, RuntimeError):
                ok = False  # unreadable: render it again
        reusable.append(ok)
    return reusable


def keep_scene(board: Any, index: int, source: Path, task_id: str | None) -> Path:
    """Put a finished scene's video (and its sidecar) in the storyboard folder."""
    target = board.scene_path(index)
    _link_or_copy(source, target)
    sidecar = {"index": index, "task_id": task_id, "params": public_params(board.scene_params[index - 1]),
               "source": str(source)}
    target.with_suffix(".json").write_text(dumps(sidecar))
    return target


def _tasks_file(board: Any, index: int) -> Path:
    return board.scene_path(index).with_suffix(".tasks.json")


def _scene_tasks(board: Any, index: int) -> list[str]:
    try:
        found = json.loads(_tasks_file(board, index).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    tasks = found.get("tasks") if isinstance(found, dict) else None
    return [t for t in tasks if isinstance(t, str) and t and "/" not in t and t not in (".", "..")] \
        if isinstance(tasks, list) else []


def note_scene_task(board: Any, index: int, task_id: str) -> None:
    """As a render of scene ``index`` starts: remember its task (its run folder keeps its checkpoints)."""
    from wan_nb.runs.atomic import replace_text

    tasks = [t for t in _scene_tasks(board, index) if t != task_id][-7:] + [task_id]  # the last few suffice
    try:
        replace_text(_tasks_file(board, index), json.dumps({"index": index, "tasks": tasks}), durable=True)
    except OSError:
        pass  # a full disk: resume() then renders this scene from its start, as before


def scene_checkpoints(board: Any, index: int) -> list[Path]:
    """Run folders of earlier renders of scene ``index`` that kept a checkpoint, newest first."""
    from wan_nb.runs import checkpoint_file

    runs_dir = Path(board.gen.runs_dir)
    return [runs_dir / t for t in reversed(_scene_tasks(board, index)) if checkpoint_file.has_checkpoint(runs_dir / t)]


def write_state(run: Any) -> None:
    """storyboard.json: the plan and the outcome, for people and tools reading the folder."""
    board = run.board
    scenes = [{"index": i, "prompt": s.prompt, "params": p, "status": st, "task_id": t,
               "video": str(board.scene_path(i)) if st in ("completed", "reused") else None}
              for i, (s, p, st, t) in enumerate(zip(board.scenes, board.plan(), run.scene_status,
                                                    run.scene_task_ids), 1)]
    state = {"storyboard_id": run.id, "status": run.status, "story": board.story,
             "transition": board.transition, "crossfade": board.crossfade, "fps": board.fps,
             "continuity": board.continuity, "seed": board.seed, "scenes": scenes,
             "final_video_path": str(board.final_path) if run.status == "completed" else None}
    try:
        (board.folder / "storyboard.json").write_text(json.dumps(json.loads(dumps(state)), indent=1))
    except OSError:
        pass  # the folder is gone or full: the events journal still tells what happened


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link when the disk allows (no second copy of the video), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:
        shutil.copy2(source, partial)
    partial.replace(target)
