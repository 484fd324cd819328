"""Guidance on the command line: ``--guidance NAME`` (a method: cfg, cfg-zero-star, apg, ...),
``--guidance-option KEY=VALUE`` (repeatable) and ``--guidance-scale X``.

``--guidance`` has set the guidance *scale* since the first CLI (``--guidance 5``); it still does
when given a number, and names a method otherwise (wan_nb.models.guidance.GUIDERS), so old
command lines keep working.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_guidance_flags", "guidance_options"]


def _number_or_name(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: write KEY=VALUE, e.g. --guidance-option eta=0.5")
    try:
        parsed = json.loads(value)   # 0.5, true, [9, 10], {"indices": [9]}
    except ValueError:
        parsed = value               # text as written
    return key.strip(), parsed


def add_guidance_flags(gen: argparse.ArgumentParser) -> None:
    from wan_nb.models.guidance import GUIDERS

    gen.add_argument("--guidance", type=_number_or_name, dest="guidance_choice", metavar="NAME|SCALE",
                     help=f"a guidance method ({', '.join(GUIDERS)}), or a number: the guidance scale")
    gen.add_argument("--guidance-scale", type=float, dest="guidance_scale",
                     help="classifier-free guidance scale (1 turns the unconditional pass off)")
    gen.add_argument("--guidance-option", type=_option, action="append", dest="guidance_option",
                     metavar="KEY=VALUE", help="an option of the --guidance method (repeatable), e.g. eta=0.5")


def guidance_options(args: argparse.Namespace) -> dict[str, Any]:
    """The generation arguments the guidance flags give (``guidance_scale`` included)."""
    choice = getattr(args, "guidance_choice", None)
    out: dict[str, Any] = {}
    if isinstance(choice, float):
        if getattr(args, "guidance_scale", None) is not None:
            raise ValueError("--guidance with a number is the guidance scale, given twice with --guidance-scale; "
                             "drop one, or name a method with --guidance NAME")
        out["guidance_scale"] = choice
    elif choice is not None:
        out["guidance"] = choice
    if getattr(args, "guidance_option", None):
        out["guidance_options"] = dict(args.guidance_option)
    return out
