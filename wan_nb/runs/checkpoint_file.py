"""A run folder's denoising checkpoint, as files: where they are, how they are replaced, what they say.

Two files, both replaced atomically (a reader sees the old one or the new one, never half):

- ``checkpoint.pt``: the state itself (latents, scheduler, RNG, the recipe it belongs to), written
  by ``wan_nb.core.checkpoint`` through :func:`wan_nb.runs.atomic.replace_bytes` (durable). Only the latest is kept.
- ``checkpoint.json``: a few lines about it (step k of N, when, why, the format and version), so
  the history, the server and the CLI can say "stopped at step k/N" without reading tensors.
  It is written after the ``.pt``; a crash between the two leaves it one checkpoint behind,
  never ahead.

Standard library only: the Jupyter server reads the summary through ``runs.history``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wan_nb.runs.atomic import replace_text

__all__ = ["STATE_NAME", "SUMMARY_NAME", "FORMAT", "write_summary", "read_summary",
           "has_checkpoint", "overlay", "RESUMABLE_STATUS"]

STATE_NAME = "checkpoint.pt"
SUMMARY_NAME = "checkpoint.json"
#: bumped whenever the payload's layout changes; a checkpoint of another format is refused by name
FORMAT = 1


def write_summary(folder: Path, summary: dict[str, Any]) -> None:
    replace_text(folder / SUMMARY_NAME, json.dumps(summary, indent=1, sort_keys=True), durable=True)


def read_summary(folder: Path) -> dict[str, Any] | None:
    """The summary of ``folder``'s checkpoint, or None when it has none (or only a torn one)."""
    try:
        found = json.loads((Path(folder) / SUMMARY_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict) or not (Path(folder) / STATE_NAME).is_file():
        return None
    return found


def has_checkpoint(folder: Path) -> bool:
    return (Path(folder) / STATE_NAME).is_file()


#: how a run that ended early with a checkpoint reads: it can still be finished. A failed one
#: (an out-of-memory decode after the last step's checkpoint) stays "failed", with its step.
RESUMABLE_STATUS = {"cancelled": "stopped", "lost": "interrupted", "failed": "failed"}


def overlay(entry: dict[str, Any], runs_dir: Path) -> dict[str, Any]:
    """A history entry as a user should read it: a cancelled or lost run that kept a checkpoint
    is ``stopped`` / ``interrupted`` at ``checkpoint_step`` of ``total_steps`` (a failed one keeps
    its status and gets the step)."""
    status = entry.get("status")
    if status not in RESUMABLE_STATUS:
        return entry
    summary = read_summary(Path(runs_dir) / (entry.get("folder") or entry.get("task_id") or ""))
    if summary is None:
        return entry
    return {**entry, "status": RESUMABLE_STATUS[status], "checkpoint_step": summary.get("step"),
            "total_steps": summary.get("total_steps")}
