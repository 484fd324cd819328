"""The fast path on the command line: ``wan-nb plan MODEL`` and the generate flags
``--plan auto --cache MODE --cache-threshold X --attention NAME --compile``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_generate_flags", "generator_options", "run_options", "add_plan_command", "plan_command"]


def add_generate_flags(gen: argparse.ArgumentParser) -> None:
    from wan_nb.fast.cache import CACHE_CHOICES

    gen.add_argument("--plan", choices=["auto"], help="pick the fastest offload/quantization that fits this "
                     "GPU (see 'wan-nb plan MODEL')")
    gen.add_argument("--cache", choices=CACHE_CHOICES, metavar="MODE", help="cache acceleration for this run: "
                     "reuse transformer work between steps (first-block, mag, taylorseer, faster, pab, sea), "
                     "or text-kv (exact), alone or added to one of them: first-block+text-kv")
    gen.add_argument("--cache-threshold", type=float, help="first-block / mag / sea: higher reuses more (faster, "
                     "less exact)")
    gen.add_argument("--attention", help="diffusers attention backend: native, flash, sage, ...")
    gen.add_argument("--compile", action="store_true", help="compile the repeated transformer blocks "
                     "(torch.compile, regional)")


def generator_options(args: argparse.Namespace, made: dict[str, Any] | None = None) -> dict[str, Any]:
    """Generator keywords; with ``--from``, the recipe's attention backend and compile unless given."""
    made = made or {}
    return {"plan": args.plan, "attention": args.attention or made.get("attention"),
            "compile": bool(args.compile or made.get("compile"))}


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in ("cache", "cache_threshold") if getattr(args, k) is not None}


def add_plan_command(commands: Any) -> None:
    plan = commands.add_parser("plan", help="what fits a GPU and how long it takes: peak memory and minutes "
                               "per offload x quantization")
    plan.add_argument("model", help="a preset (e.g. wan2.1-t2v-14b), its -4step variant, or a tiny model")
    plan.add_argument("--gpu", help='a card by name, e.g. "RTX 4090", "A100 80GB", "H100" (default: this '
                      "machine's GPU)")
    plan.add_argument("--gpu-gb", type=float, help="GPU memory in GB (default: this machine's GPU, else 24)")
    plan.add_argument("--ram-gb", type=float, help="host RAM in GB (default: this machine's, else 64)")
    plan.add_argument("--height", type=int)
    plan.add_argument("--width", type=int)
    plan.add_argument("--frames", type=int, dest="num_frames")
    plan.add_argument("--json", action="store_true", help="one JSON object: model, shape, gpu, plans, best")


def plan_command(args: argparse.Namespace) -> int:
    from wan_nb.fast.options import machine_gpu
    from wan_nb.fast.planner import plan

    here = machine_gpu()
    gpu_gb, gpu = args.gpu_gb, args.gpu
    if gpu is None and gpu_gb is None and here.memory_gb is not None:
        gpu, gpu_gb = here.name, here.memory_gb  # the card it finds
    try:
        if gpu is not None:  # a name the table lacks still plans by its size
            from wan_nb.fast.cards import find_card

            try:
                find_card(gpu)
            except ValueError:
                if args.gpu is not None or gpu_gb is None:
                    raise
                gpu = None
        found = plan(args.model, gpu=gpu, gpu_gb=gpu_gb, ram_gb=args.ram_gb or here.ram_gb or 64,
                     height=args.height, width=args.width, num_frames=args.num_frames, this_gpu=here.name)
    except ValueError as exc:
        print(f"wan-nb: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        import json

        print(json.dumps(found.to_json()))
    else:
        print(found)
    return 0
