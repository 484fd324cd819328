"""Finding a finished run with the same full recipe as a grid cell, so the cell reuses its video.

The recipe of a run is everything that determines its video: the model, every parameter (the
seed included), the LoRAs in effect with their files' contents and weights, the input image's
pixels. Two places are searched: this generator's own tasks (queued, running or done — a grid
widened while the first one still runs shares those tasks), and the run folders in its runs dir
(``task.json`` + ``video.mp4``, so runs of earlier processes count too).

:func:`finder` is the one entry point ``wan_nb.grid`` uses; the on-disk lookup is
:func:`_find_on_disk`, kept apart so that it can move to the run history's index
(``wan_nb.history.find_by_key``) without the grid changing.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["finder", "cell_key", "ReusedTask"]

_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


def _file_fingerprint(source: str) -> str:
    """sha256 of a local LoRA file (or of every file of a folder); the text itself for a repo id."""
    path = Path(source)
    if not path.exists():
        return f"ref:{source}"
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        cache_key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
        if cache_key not in _FINGERPRINTS:
            h = hashlib.sha256()
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    h.update(block)
            _FINGERPRINTS[cache_key] = h.hexdigest()
        digest.update(_FINGERPRINTS[cache_key].encode())
    return digest.hexdigest()


def _image_fingerprint(image: Any, height: int, width: int) -> str | None:
    if image is None:
        return None
    from . import models

    picture = models.prepare_image(image, height, width)   # what the run will see
    return hashlib.sha256(picture.tobytes()).hexdigest()


def cell_key(model: str, params: Mapping[str, Any], lora_sources: Mapping[str, str],
             registered: Mapping[str, float], image_fingerprint: str | None = None) -> str | None:
    """A stable hash of a run's full recipe; None where it cannot be known (an image not on record)."""
    loras = dict(params.get("loras") or {}) or dict(registered)   # no weights given: the loaded ones apply
    effective = {}
    for name, weight in sorted(loras.items()):
        source = lora_sources.get(name)
        if source is None:
            return None
        effective[name] = [_file_fingerprint(source), float(weight)]
    recipe = {k: v for k, v in params.items() if k not in ("image", "loras")}
    if params.get("image") is not None:
        if image_fingerprint is None:
            return None
        recipe["image"] = image_fingerprint
    recipe.update(model=model, loras=effective)
    text = json.dumps(recipe, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _lora_sources(generator: Any) -> dict[str, str]:
    return {name: entry["source"] for name, entry in generator._loras.describe().items()}


class ReusedTask:
    """A finished run standing in for a grid cell's task: done, completed, with its Result."""

    status = "completed"
    stage = "completed"
    progress = 100.0
    reused = True

    def __init__(self, result: Any, created_at: float | None = None) -> None:
        self._result = result
        self.id = self.task_id = result.task_id
        self.params = dict(result.params)
        self.seed = result.seed
        self.prompt = self.params.get("prompt", "")
        self.run_dir = result.run_dir
        self.current_step = int(self.params.get("steps") or 0)
        self.created_at = created_at if created_at is not None else time.time()
        self.events: list[Any] = []

    def result(self, timeout: float | None = None) -> Any:
        return self._result

    def wait(self, timeout: float | None = None) -> bool:
        return True

    def done(self) -> bool:
        return True

    def cancel(self) -> bool:
        return False

    def subscribe(self, callback: Callable[[Any], Any], replay: bool = True) -> Callable[[], None]:
        return lambda: None  # nothing more will happen to a finished run

    def __repr__(self) -> str:
        return f"ReusedTask(id={self.id!r}, video_path='{self._result.video_path}')"


def _duration(run_dir: Path) -> float:
    """The run's own duration, from the completion event at the end of its journal."""
    try:
        with open(run_dir / "events.jsonl", "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return 0.0
    for line in reversed(lines):
        if '"generation_completed"' in line:
            try:
                return float(json.loads(line)["data"].get("duration_s") or 0.0)
            except (ValueError, KeyError, TypeError):
                return 0.0
    return 0.0


def _registry_of(run_dir: Path) -> tuple[dict[str, str], dict[str, float]] | None:
    """(sources, weights) of the LoRAs loaded when the run was queued; None if unreadable."""
    try:
        info = json.loads((run_dir / "task.json").read_text())
    except (OSError, ValueError):
        return None
    return _registry(info)


def _registry(info: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, float]]:
    loras = {n: l for n, l in (info.get("loras") or {}).items() if isinstance(l, dict)}
    return ({n: l.get("source") for n, l in loras.items()}, {n: l.get("weight", 1.0) for n, l in loras.items()})


def _disk_index(generator: Any) -> dict[str, Path]:
    """key -> run folder, for every finished run of the same model in the runs dir."""
    index: dict[str, Path] = {}
    runs_dir = Path(generator.runs_dir)
    if not runs_dir.is_dir():
        return index
    for task_file in runs_dir.glob("*/task.json"):
        folder = task_file.parent
        if not (folder / "video.mp4").is_file():
            continue
        try:
            info = json.loads(task_file.read_text())
        except (OSError, ValueError):
            continue
        if info.get("model") != generator.model or not isinstance(info.get("params"), dict):
            continue
        key = cell_key(info["model"], info["params"], *_registry(info))
        if key is not None:
            previous = index.get(key)
            if previous is None or folder.name > previous.name:   # task ids sort by time: the newest
                index[key] = folder
    return index


def _find_on_disk(generator: Any, key: str, index: dict[str, Path]) -> Any:
    folder = index.get(key)
    if folder is None:
        return None
    from .task import Result

    info = json.loads((folder / "task.json").read_text())
    return Result(task_id=info.get("task_id", folder.name), video_path=folder / "video.mp4",
                  params=info["params"], seed=int(info["params"].get("seed", info.get("seed", 0))),
                  model=info["model"], duration_s=_duration(folder), run_dir=folder)


def finder(generator: Any) -> Callable[[dict[str, Any]], tuple[str | None, Any]]:
    """``find(params) -> (key, task or None)`` for cells of ``generator`` (params: build_params output)."""
    sources = _lora_sources(generator)
    registered = dict(generator.loras)
    live: dict[str, Any] = {}
    for task in generator.tasks:
        if task.status in ("failed", "cancelled"):
            continue
        # The LoRAs a run saw are those loaded when it was queued, as its task.json says.
        then = _registry_of(Path(task.run_dir))
        if then is None:
            continue
        image = task.params.get("image")
        fingerprint = hashlib.sha256(image.tobytes()).hexdigest() if hasattr(image, "tobytes") else None
        key = cell_key(generator.model, task.params, then[0], then[1], fingerprint)
        if key is not None:
            live[key] = task
    index: dict[str, Path] | None = None

    def find(params: dict[str, Any]) -> tuple[str | None, Any]:
        nonlocal index
        fingerprint = _image_fingerprint(params.get("image"), params["height"], params["width"])
        key = cell_key(generator.model, params, sources, registered, fingerprint)
        if key is None:
            return None, None
        if key in live:
            return key, live[key]
        if index is None:
            index = _disk_index(generator)
        result = _find_on_disk(generator, key, index)
        return key, (ReusedTask(result) if result is not None else None)

    return find
