"""``wan-nb generate PROMPT``: generate from a terminal with live progress or JSON events."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from wan_nb.cli import fast_flags as cli_fast
from wan_nb.core import lora_schedule
from wan_nb.cli import post_flags as cli_post
from wan_nb.cli import guidance_flags as cli_guidance
from wan_nb.cli import resume_command as cli_resume

__all__ = ["main"]


def _lora_arg(text: str) -> tuple[str, Any]:
    # PATH[:WEIGHT] -- but a Windows drive or a URL also has a colon: only a trailing weight counts:
    # a number, a ramp 1.0-0.2, high;low experts 1.0;0.3, or one per step 1.0,0.8,0.5 (wan_nb.core.lora_schedule).
    path, sep, weight = text.rpartition(":")
    if sep and path:
        try:
            return path, lora_schedule.parse_text(weight)
        except ValueError:
            pass
    return text, 1.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wan-nb", description="Wan video generation with live progress.")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="generate a video from a prompt")
    gen.add_argument("prompt", nargs="?", help="the prompt (with --from: replaces the recipe's)")
    gen.add_argument("--from", dest="from_", metavar="FILE.mp4",
                     help="remake a video from its recipe (an MP4 or run folder); other flags override it")
    gen.add_argument("--model", help="'tiny' (default), a preset, a Hub repo id or a local folder "
                     "(with --from: the recipe's)")
    gen.add_argument("--out", type=Path, help="copy the MP4 here (it also stays in the run folder)")
    gen.add_argument("--steps", type=int)
    gen.add_argument("--frames", type=int, dest="num_frames")
    gen.add_argument("--height", type=int)
    gen.add_argument("--width", type=int)
    gen.add_argument("--seed", type=int)
    cli_guidance.add_guidance_flags(gen)  # --guidance NAME|SCALE, --guidance-option K=V, --guidance-scale
    gen.add_argument("--guidance-2", type=float, dest="guidance_scale_2",
                     help="guidance of the low-noise expert (Wan 2.2 A14B only)")
    gen.add_argument("--flow-shift", type=float, dest="flow_shift",
                     help="scheduler flow shift (default: the model's, by resolution: 3.0 at 480p, 5.0 at 720p)")
    gen.add_argument("--negative", dest="negative_prompt")
    gen.add_argument("--fps", type=float)
    gen.add_argument("--image", help="input image for image-to-video models (Animate: the character)")
    gen.add_argument("--video", help="video-to-video source (text-to-video models) or VACE control video")
    gen.add_argument("--strength", type=float, help="video-to-video: how much of --video is repainted (0-1]")
    gen.add_argument("--last-image", dest="last_image", help="first-last-frame models: the last frame")
    gen.add_argument("--reference-image", dest="reference_images", action="append", metavar="IMAGE",
                     help="VACE: a reference picture (repeatable)")
    gen.add_argument("--mask", help="VACE or Animate replace: a mask video or picture (white = generate)")
    gen.add_argument("--pose-video", dest="pose_video", help="Animate: the pose video")
    gen.add_argument("--face-video", dest="face_video", help="Animate: the face video")
    gen.add_argument("--mode", choices=["animate", "replace"], help="Animate: animate the character, or "
                     "replace the person in --background-video")
    gen.add_argument("--background-video", dest="background_video", help="Animate --mode replace: the scene")
    gen.add_argument("--lora", action="append", default=[], metavar="PATH[:WEIGHT]", type=_lora_arg,
                     help="a LoRA file, folder or repo id; on two-expert models it goes into both experts. WEIGHT: "
                     "a number, a ramp over the steps (1.0-0.2), one per step (1.0,0.8,0.5) or high;low experts (1.0;0.3)")
    gen.add_argument("--lora-experts", choices=["both", "high", "low"],
                     help="two-expert models (Wan 2.2 A14B): which expert(s) the --lora files go into")
    gen.add_argument("--device", default="auto")
    gen.add_argument("--dtype", default="auto")
    gen.add_argument("--offload", default="none", choices=["none", "model", "sequential", "group"])
    gen.add_argument("--quant", help="quantized weights: fp8, int8, nf4 (CUDA), gguf:FILE, or per component "
                     "'transformer=fp8,text_encoder=int8' (with --from: the recipe's)")
    gen.add_argument("--transformer", action="append", metavar="FILE",
                     help="the transformer from a single .safetensors/.gguf file (original-Wan or ComfyUI "
                     "layout); two-expert models: give it twice, high noise first")
    gen.add_argument("--vae-tiling", action="store_true", help="decode in tiles (less GPU memory)")
    gen.add_argument("--vae-slicing", action="store_true", help="decode one video at a time")
    gen.add_argument("--runs-dir", type=Path)
    gen.add_argument("--json", action="store_true", help="print one event per line (the WebSocket frame)")
    cli_fast.add_generate_flags(gen)  # --plan --cache --cache-threshold --attention --compile
    cli_post.add_post_flags(gen)  # --previews --decode --interpolate --fps-out --upscale --upscaler
    cli_fast.add_plan_command(commands)
    cli_resume.add_stop_after_flag(gen)
    cli_resume.add_resume_command(commands)  # wan-nb resume ID
    commands.add_parser("presets", help="list model presets")
    info = commands.add_parser("info", help="print the recipe a video was made with")
    info.add_argument("file", help="an MP4 made by wan_nb, or its run folder")
    past = commands.add_parser("history", help="list past runs, newest first")
    past.add_argument("--runs-dir", type=Path, help="default: $WAN_NB_RUNS_DIR or ./wan_nb_runs")
    past.add_argument("--limit", type=int, default=20, help="at most this many (default 20; 0 = all)")
    past.add_argument("--offset", type=int, default=0)
    past.add_argument("--status", help="completed, failed, cancelled, lost or running")
    past.add_argument("--model")
    past.add_argument("--prompt", help="only prompts containing this text")
    past.add_argument("--since", help="a date or ISO-8601 time")
    past.add_argument("--until", help="a date or ISO-8601 time")
    past.add_argument("--json", action="store_true", help="one run per line as JSON")
    return parser


def _fail(message: str, code: int = 1) -> int:
    from wan_nb.cli.console import cli_wording

    print(f"wan-nb: error: {cli_wording(message)}", file=sys.stderr)
    return code


def _weight_args(args: argparse.Namespace, made: dict | None) -> dict:
    """quant= / transformer= from --quant / --transformer, else (with --from) the recipe's."""
    from wan_nb.weights.quant import parse_cli
    from wan_nb.weights.options import generator_args

    out = generator_args(made) if made else {}
    if args.quant is not None:
        out["quant"] = parse_cli(args.quant)
    if args.transformer:
        files = [None if f.lower() in ("none", "-") else f for f in args.transformer]
        out["transformer"] = files[0] if len(files) == 1 else tuple(files)
    return {k: v for k, v in out.items() if v is not None}


def _recipe_model(made: dict, source: str) -> str:
    """The model a recipe names, when it is one wan_nb knows by name (a preset or a built-in tiny
    model). Any other name (a Hub repo id, a folder) is refused: a file someone sent must not choose
    what is downloaded or loaded; the user names it with --model."""
    from wan_nb.models import few_step, presets, tiny
    from wan_nb.runs.recipe import RecipeError

    model = made.get("model")
    name = model.get("name") if isinstance(model, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise RecipeError(f"the recipe in {source} names no model; pass --model (a preset, a repo id or a folder)")
    key = name.strip().lower()
    if key in tiny.VARIANTS or key in few_step.FAST_PRESETS or presets.get(key) is not None:
        return name.strip()
    shown = name if len(name) <= 200 else name[:200] + "..."
    raise RecipeError(f"the recipe in {source} was made with model {shown!r}, which is not a preset: wan-nb "
                      "downloads or loads no model that a file names. If you trust it, say so: --model "
                      f"{shown!r} (or the folder you have it in)")


def _generate(args: argparse.Namespace) -> int:
    from wan_nb.cli.console import TextProgress
    from wan_nb.generator import GenerationCancelled, GenerationError, Generator
    from wan_nb.core.params import InvalidParameter
    from wan_nb.models.kinds import INPUT_ARGS

    kwargs = {k: getattr(args, k) for k in ("steps", "num_frames", "height", "width", "seed", "guidance_scale",
                                             "guidance_scale_2", "flow_shift", "negative_prompt", "fps", "image",
                                             *INPUT_ARGS)
              if getattr(args, k) is not None}
    kwargs.update(cli_fast.run_options(args))
    kwargs.update(cli_post.post_run_options(args))
    try:
        kwargs.update(cli_guidance.guidance_options(args))
    except ValueError as exc:
        return _fail(str(exc), 2)
    if args.stop_after is not None:
        kwargs["stop_after"] = args.stop_after
    if args.out is not None and args.out.suffix.lower() != ".mp4":
        return _fail(f"--out {args.out}: the output is an MP4; give a path ending in .mp4", 2)
    if args.prompt is None and args.from_ is None:
        return _fail("give a PROMPT, or --from FILE.mp4 to remake a video from its recipe", 2)
    try:
        made = None
        if args.from_ is not None:
            from wan_nb.runs.recipe import recipe

            made = recipe(args.from_)
        model = args.model or (_recipe_model(made, args.from_) if made else "tiny")
        gen = Generator(model=model, device=args.device, dtype=args.dtype, runs_dir=args.runs_dir,
                        offload=args.offload, vae_tiling=args.vae_tiling, vae_slicing=args.vae_slicing,
                        previews=cli_post.previews_option(args), **_weight_args(args, made),
                        **cli_fast.generator_options(args, made))
        lora_weights = {}
        for path, weight in args.lora:
            lora_weights[gen.load_lora(path, weight=weight, experts=args.lora_experts)] = weight
        if lora_weights:
            kwargs["loras"] = lora_weights
        prompt = args.prompt
        if made is not None:
            from wan_nb.compose.rerun import rerun_args

            prompt, kwargs = rerun_args(gen, made, **kwargs, **({"prompt": prompt} if prompt else {}))
        task = gen.submit(prompt, **kwargs)
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
        off = task.subscribe(TextProgress(sys.stderr, say_errors=False), replay=True)  # _fail says it

    previous = signal.getsignal(signal.SIGINT)

    def interrupt(signum, frame) -> None:  # first Ctrl-C cancels (keeping a checkpoint), a second one kills
        task.cancel(keep=True)
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
    from wan_nb.models.few_step import FAST_PRESETS
    from wan_nb.models.presets import presets

    print(presets())
    print("\nfew-step variants (a preset with its step-distilled LoRA):")
    for name, fast in FAST_PRESETS.items():
        print(f"  {name:<28} {fast.base} + LoRA, {fast.steps} steps")
    return 0


def _info(args: argparse.Namespace) -> int:
    import json

    from wan_nb.runs.recipe import recipe

    try:
        found = recipe(args.file)
    except (ValueError, OSError) as exc:
        return _fail(str(exc), 2)
    print(json.dumps(found, indent=2, ensure_ascii=False))
    return 0


def _history(args: argparse.Namespace) -> int:
    import json

    from wan_nb.runs.history import format_table, history, run_to_dict

    filters = {k: getattr(args, k) for k in ("status", "model", "prompt", "since", "until") if getattr(args, k)}
    try:
        runs = history(args.runs_dir, limit=args.limit or None, offset=args.offset, **filters)
    except (ValueError, TypeError) as exc:
        return _fail(str(exc), 2)
    if args.json:
        for run in runs:
            print(json.dumps(run_to_dict(run), ensure_ascii=False))
    elif runs:
        print(format_table(runs))
    else:
        print(f"no runs in {runs.runs_dir}", file=sys.stderr)
    _say_sources(Path(runs.runs_dir))
    return 0


def _say_sources(read: Path) -> None:
    """Which folder the listing came from, and the other folders the Lab sidebar lists, so the
    two never silently disagree (stderr: --json output stays one run a line)."""
    from wan_nb.runs.sources import remembered_dirs

    others = [d for d in remembered_dirs() if d.resolve() != read.resolve()]
    line = f"runs from {read}"
    if others:
        shown = ", ".join(str(d) for d in others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        line += f"; Jupyter servers also list {shown} (wan-nb history --runs-dir DIR lists one)"
    print(line, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "generate":
        return _generate(args)
    if args.command == "presets":
        return _presets()
    if args.command == "info":
        return _info(args)
    if args.command == "history":
        return _history(args)
    if args.command == "resume":
        return cli_resume.resume_command(args)
    if args.command == "plan":
        return cli_fast.plan_command(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
