"""``wan-nb generate PROMPT``: generate from a terminal with live progress or JSON events."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

__all__ = ["main"]


def _lora_arg(text: str) -> tuple[str, float]:
    # PATH[:WEIGHT] -- but a Windows drive or a URL also has a colon: only a trailing number counts.
    path, sep, weight = text.rpartition(":")
    if sep and path:
        try:
            return path, float(weight)
        except ValueError:
            pass
    return text, 1.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wan-nb", description="Wan video generation with live progress.")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="generate a video from a prompt")
    gen.add_argument("prompt")
    gen.add_argument("--model", default="tiny", help="'tiny', a preset, a Hub repo id or a local folder")
    gen.add_argument("--out", type=Path, help="copy the MP4 here (it also stays in the run folder)")
    gen.add_argument("--steps", type=int)
    gen.add_argument("--frames", type=int, dest="num_frames")
    gen.add_argument("--height", type=int)
    gen.add_argument("--width", type=int)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--guidance", type=float, dest="guidance_scale")
    gen.add_argument("--negative", dest="negative_prompt")
    gen.add_argument("--fps", type=float)
    gen.add_argument("--image", help="input image for image-to-video models")
    gen.add_argument("--lora", action="append", default=[], metavar="PATH[:WEIGHT]", type=_lora_arg)
    gen.add_argument("--device", default="auto")
    gen.add_argument("--dtype", default="auto")
    gen.add_argument("--offload", default="none", choices=["none", "model", "sequential", "group"])
    gen.add_argument("--runs-dir", type=Path)
    gen.add_argument("--json", action="store_true", help="print one event per line (the WebSocket frame)")
    commands.add_parser("presets", help="list model presets")
    return parser


def _fail(message: str, code: int = 1) -> int:
    print(f"wan-nb: error: {message}", file=sys.stderr)
    return code


def _generate(args: argparse.Namespace) -> int:
    from .console import TextProgress
    from .generator import GenerationCancelled, GenerationError, Generator
    from .params import InvalidParameter

    kwargs = {k: getattr(args, k) for k in ("steps", "num_frames", "height", "width", "seed", "guidance_scale",
                                             "negative_prompt", "fps", "image") if getattr(args, k) is not None}
    if args.out is not None and args.out.suffix.lower() != ".mp4":
        return _fail(f"--out {args.out}: the output is an MP4; give a path ending in .mp4", 2)
    try:
        gen = Generator(model=args.model, device=args.device, dtype=args.dtype, runs_dir=args.runs_dir,
                        offload=args.offload, previews=False)
        lora_weights = {}
        for path, weight in args.lora:
            lora_weights[gen.load_lora(path, weight=weight)] = weight
        if lora_weights:
            kwargs["loras"] = lora_weights
        task = gen.submit(args.prompt, **kwargs)
    except (InvalidParameter, ValueError, TypeError, OSError) as exc:
        return _fail(str(exc), 2)

    lock = threading.Lock()
    if args.json:
        def sink(event) -> None:
            with lock:
                sys.stdout.write(event.to_json() + "\n")
                sys.stdout.flush()
        off = task.subscribe(sink, replay=True)
    else:
        off = task.subscribe(TextProgress(sys.stderr), replay=True)

    previous = signal.getsignal(signal.SIGINT)

    def interrupt(signum, frame) -> None:  # first Ctrl-C cancels cleanly, a second one kills
        task.cancel()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, interrupt)
    try:
        result = task.result()
    except GenerationCancelled as exc:
        off()
        return _fail(str(exc), 130)
    except GenerationError as exc:
        off()
        return _fail(str(exc), 1)
    finally:
        gen.bus.drain(timeout=2.0)
        signal.signal(signal.SIGINT, previous)
    off()
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.video_path, args.out)
        if not args.json:
            print(str(args.out), file=sys.stderr)
    gen.close()
    return 0


def _presets() -> int:
    from .model_presets import presets

    print(presets())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "generate":
        return _generate(args)
    if args.command == "presets":
        return _presets()
    return 2


if __name__ == "__main__":
    sys.exit(main())
