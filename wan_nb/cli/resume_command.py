"""``wan-nb resume ID``: finish a stopped or interrupted run from its last checkpoint.

ID is a task id of the runs folder, a run folder or the MP4 of a ``--stop-after`` run. The model
is the run's own (from its recipe); the continuation is a new run linked to the old one
(``resumed_from``), its progress on stderr, or one event a line with ``--json``. Ctrl-C stops
it again, keeping the checkpoint, so the same command goes on later.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_resume_command", "resume_command", "add_stop_after_flag"]


def add_resume_command(commands: Any) -> None:
    resume = commands.add_parser("resume", help="finish a stopped or interrupted run from its last checkpoint")
    resume.add_argument("id", help="a task id (of --runs-dir), a run folder, or the MP4 of a stopped run")
    resume.add_argument("--runs-dir", type=Path, help="default: $WAN_NB_RUNS_DIR or ./wan_nb_runs")
    resume.add_argument("--device", default="auto")
    resume.add_argument("--dtype", default="auto")
    resume.add_argument("--offload", default="none", choices=["none", "model", "sequential", "group"])
    resume.add_argument("--out", type=Path, help="copy the MP4 here (it also stays in the new run folder)")
    resume.add_argument("--json", action="store_true", help="print one event per line (the WebSocket frame)")


def add_stop_after_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stop-after", type=int, dest="stop_after", metavar="K",
                        help="stop after K steps, keeping a checkpoint and an x0 preview (wan-nb resume finishes it)")


def _fail(message: str, code: int) -> int:
    print(f"wan-nb: error: {message}", file=sys.stderr)
    return code


def _where(args: argparse.Namespace) -> tuple[Path, str]:
    """(runs folder, source) of ID: a path names its own folder; a bare id is looked up in --runs-dir."""
    from wan_nb.runs.layout import TASK_FILE, default_runs_dir

    path = Path(args.id).expanduser()
    if path.is_dir():
        return path.parent, str(path)
    if path.is_file():
        return (path.parent.parent if (path.parent / TASK_FILE).is_file() else args.runs_dir or default_runs_dir(),
                str(path))
    return args.runs_dir or default_runs_dir(), args.id


def resume_command(args: argparse.Namespace) -> int:
    import signal

    from wan_nb.cli.console import TextProgress
    from wan_nb.generator import GenerationCancelled, GenerationError, Generator
    from wan_nb.runs.recipe import recipe

    runs_dir, source = _where(args)
    folder = Path(source) if Path(source).exists() else runs_dir / source
    if not folder.exists():
        return _fail(f"nothing to resume at {args.id!r}: no such run in {runs_dir}; pass a task id of --runs-dir, "
                     "a run folder or the MP4 of a stopped run (wan-nb history --status stopped lists them)", 2)
    try:
        found = recipe(folder if folder.is_dir() else source)
        gen = Generator(model=(found.get("model") or {}).get("name") or "tiny", device=args.device,
                        dtype=args.dtype, runs_dir=runs_dir, offload=args.offload, previews=False)
        task = gen.submit_resume(source)
    except (ValueError, TypeError, OSError) as exc:  # ResumeError, RecipeError, InvalidParameter
        return _fail(str(exc), 2)
    if args.json:
        off = task.subscribe(lambda event: (sys.stdout.write(event.to_json() + "\n"), sys.stdout.flush()),
                             replay=True)
    else:
        off = task.subscribe(TextProgress(sys.stderr), replay=True)
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: task.cancel(keep=True))
    try:
        result = task.result()
    except GenerationCancelled as exc:
        return _fail(f"{exc}; its checkpoint is kept: run `wan-nb resume {task.id}` to go on", 130)
    except GenerationError as exc:
        return _fail(str(exc), 1)
    finally:
        signal.signal(signal.SIGINT, previous)
        gen.bus.drain(timeout=2.0)
        off()
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.video_path, args.out)
    if not args.json:
        print(json.dumps({"task_id": result.task_id, "video_path": str(result.video_path),
                          "resumed_from": task.resume_point.task_id}), file=sys.stderr)
    gen.close()
    return 0
