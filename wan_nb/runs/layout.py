"""Where things are in a runs folder: the one place its file names and its default location live.

A runs folder (``Generator(runs_dir=)``) holds one folder per task and two shared files::

    <runs_dir>/
      index.jsonl             one line per finished run (wan_nb.runs.history)
      queue.json              the tasks a process has queued and not finished (wan_nb.core.queue)
      <task_id>/
        task.json             what was asked, the recipe, the status once it ended
        events.jsonl          every event, one frame a line (wan_nb.runs.journal)
        video.mp4             the result (a storyboard's scenes beside it)
        inputs/               copies of the images and videos the run was given (wan_nb.runs.kept_inputs)
        input.png             the first frame of an image-to-video run, as the model got it

Standard library only: the Jupyter server reads run folders too.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["TASK_FILE", "JOURNAL_NAME", "VIDEO_NAME", "ORIGINAL_NAME", "INPUTS_DIR", "IMAGE_NAME", "INDEX_NAME", "QUEUE_FILE_NAME",
           "RUNS_DIR_ENV", "RUNS_DIR_NAME", "default_runs_dir"]

TASK_FILE = "task.json"
JOURNAL_NAME = "events.jsonl"
VIDEO_NAME = "video.mp4"
ORIGINAL_NAME = "original.mp4"  # the video before interpolation / upscaling, beside the processed one
INPUTS_DIR = "inputs"
IMAGE_NAME = "input.png"
INDEX_NAME = "index.jsonl"
QUEUE_FILE_NAME = "queue.json"

RUNS_DIR_ENV = "WAN_NB_RUNS_DIR"
RUNS_DIR_NAME = "wan_nb_runs"


def default_runs_dir(root: str | os.PathLike | None = None) -> Path:
    """``$WAN_NB_RUNS_DIR`` if set, else ``<root>/wan_nb_runs``.

    ``root`` is the current directory for a Generator, the CLI and ``wan_nb.history()`` (so a
    notebook writes beside itself), and the Jupyter server's ``root_dir`` for the folders the
    server lists: the same folder whenever the notebook runs in the server's root.
    """
    env = os.environ.get(RUNS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(root if root is not None else os.getcwd()).expanduser() / RUNS_DIR_NAME
