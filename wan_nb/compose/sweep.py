"""Parameter sweeps: the cross product of the values given as lists, labelled by what varies.

``expand(prompt=["a fox", "a cat"], seed=[0, 1], steps=20)`` gives four runs; each comes as
``(label, kwargs)`` where ``kwargs`` are the full generation arguments and ``label`` holds only
the parameters that take more than one value (here prompt and seed), for captions and tables.

A list or tuple means "sweep over these values"; anything else (a number, a string, a dict of
LoRA weights, an image) is the same in every run. To sweep over LoRA settings pass a list of
dicts: ``loras=[{}, {"style": 0.5}, {"style": 1.0}]``.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from wan_nb.core.lora_schedule import describe as describe_weight  # a LoRA schedule as a short label

__all__ = ["expand", "label_text", "submit_sweep", "MAX_RUNS"]

MAX_RUNS = 10_000


def expand(**params: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The runs of a sweep, first parameter outermost, in the order the values were given."""
    axes: dict[str, list[Any]] = {}
    for name, value in params.items():
        if isinstance(value, (list, tuple)):
            if not value:
                raise ValueError(f"sweep: {name}=[] has no values; give at least one.")
            axes[name] = list(value)
    count = 1
    for values in axes.values():
        count *= len(values)
    if count > MAX_RUNS:
        raise ValueError(f"sweep: {count} runs ({' x '.join(f'{len(v)} {k}' for k, v in axes.items())}) "
                         f"is more than {MAX_RUNS}; sweep fewer values at a time.")
    varying = [name for name, values in axes.items() if len(values) > 1]
    runs = []
    for combo in itertools.product(*axes.values()):
        chosen = dict(zip(axes, combo))
        # Each run gets its own copy of mutable values (LoRA dicts), so editing one run's
        # arguments can never change another's.
        kwargs = {name: copy.copy(chosen[name]) if name in chosen else params[name] for name in params}
        label = {name: copy.copy(chosen[name]) for name in varying}
        runs.append((label, kwargs))
    return runs


def label_text(label: dict[str, Any], width: int = 40) -> str:
    """A short caption such as ``prompt='a fox', seed=1, loras={style: 0.5}``."""
    parts = []
    for name, value in label.items():
        if isinstance(value, dict):
            shown = "{" + ", ".join(f"{k}: {v:g}" if isinstance(v, (int, float)) else f"{k}: {describe_weight(v)}"
                                    for k, v in value.items()) + "}"
        elif isinstance(value, str):
            shown = repr(value if len(value) <= width else value[:width - 1] + "…")
        else:
            shown = repr(value)
        parts.append(f"{name}={shown}")
    return ", ".join(parts)


def submit_sweep(gen: Any, axes: dict[str, Any], **submit_options: Any) -> Any:
    """``Generator.sweep``: check every run, then queue them all; a :class:`~wan_nb.core.task.Sweep`.

    ``submit_options`` (e.g. ``retries``) go to every ``gen.submit``.
    """
    from wan_nb.core.task import Sweep

    if not any(isinstance(v, (list, tuple)) for v in axes.values()):
        raise ValueError("sweep needs at least one list of values, e.g. seed=[0, 1, 2]")
    if "prompt" not in axes:
        raise ValueError("sweep needs a prompt (a string, or a list of prompts to compare)")
    runs = expand(**axes)
    # Validate every run before queuing any, so a typo costs no generation.
    for _, kwargs in runs:
        args = dict(kwargs)
        gen.check(args.pop("prompt"), **args)
    tasks = []
    for _, kwargs in runs:
        args = dict(kwargs)
        tasks.append(gen.submit(args.pop("prompt"), **submit_options, **args))
    return Sweep(labels=[label for label, _ in runs], tasks=tasks)
