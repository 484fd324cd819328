"""Grid axes: which names can vary, how their values are written, how each is labelled.

An axis is ``(name, values)``. ``values`` is a list, or a string in the range syntax of
A1111's X/Y/Z plot, items separated by commas:

* ``"1-5"`` every whole number from 1 to 5; ``"1-5 (+2)"`` 1, 3, 5; ``"10-1 (-3)"`` 10, 7, 4, 1
* ``"0.0-1.0 [5]"`` five evenly spaced values, ends included (whole numbers for an integer axis:
  ``"1-10 [5]"`` is 1, 3, 6, 8, 10, rounded half up)
* ``"0, 2, 5-7"`` items mixed freely

A string for a text axis (``prompt``, ``prompt_sr``, ``negative_prompt``) is split at commas
like a CSV line (quote an item that holds a comma). Everything is checked here, before any
task is queued, and an error names the axis, the value and what to write instead.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["Axis", "parse_axis", "parse_range", "AxisError", "INT_AXES", "FLOAT_AXES", "TEXT_AXES",
           "LIST_AXES", "GUIDANCE_AXES", "MAX_VALUES"]

INT_AXES = ("seed", "steps", "num_frames", "height", "width")
FLOAT_AXES = ("guidance_scale", "guidance_scale_2", "flow_shift", "fps", "strength", "cache_threshold")
TEXT_AXES = ("prompt", "prompt_sr", "negative_prompt", "mode")
# Only as a list: no text form says "an image" (cache: None too). The inputs of wan_nb.models.pipelines are axes too.
LIST_AXES = ("image", "loras", "cache", "video", "last_image", "reference_images", "mask", "pose_video",
             "face_video", "background_video")
# Post-processing and previews (wan_nb.post.options): values as a list or a comma string ("1, 2", "vae, taehv").
POST_AXES = ("previews", "decode", "interpolate", "fps_out", "interpolator", "upscale", "upscaler")
# Guidance (wan_nb.models.guidance): method names as a list or a comma string ("cfg, apg"; "none":
# the pipeline's classic CFG); guidance_options as a list of dicts.
GUIDANCE_AXES = ("guidance", "guidance_options")
MAX_VALUES = 1000

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*-\s*({_NUMBER})\s*"
                    rf"(?:\(\s*({_NUMBER})\s*\)|\[\s*({_NUMBER})\s*\])?\s*$")
_SINGLE = re.compile(rf"^\s*({_NUMBER})\s*$")


class AxisError(ValueError):
    """A grid axis cannot be used as given; the message says what to write instead."""


@dataclass(frozen=True)
class Axis:
    """One axis of a grid: its name, its values in order, and a short text for each value."""

    name: str
    values: tuple[Any, ...]
    labels: tuple[str, ...]

    @property
    def lora(self) -> str | None:
        """The adapter name of a ``lora:<name>`` axis."""
        return self.name.split(":", 1)[1] if self.name.startswith("lora:") else None

    def __len__(self) -> int:
        return len(self.values)


def _kind(name: str) -> str:
    if name.startswith("lora:"):
        return "float"
    if name in INT_AXES:
        return "int"
    if name in FLOAT_AXES:
        return "float"
    if name in TEXT_AXES:
        return "text"
    if name in LIST_AXES:
        return "list"
    if name in POST_AXES or name == "guidance":
        return "choice"
    if name == "guidance_options":
        return "list"
    valid = ", ".join(INT_AXES + FLOAT_AXES + TEXT_AXES + LIST_AXES + POST_AXES + GUIDANCE_AXES + ("lora:<name>",))
    raise AxisError(f"axis {name!r} is not something a grid can vary; choose one of: {valid}")


def parse_range(text: str, integer: bool = False, name: str = "value") -> list[float | int]:
    """The numbers a range string stands for (see the module docstring)."""
    if not isinstance(text, str) or not text.strip():
        raise AxisError(f"{name}: {text!r} is empty; write values such as '1-5 (+2)', '0.0-1.0 [5]' or '1, 2, 3'")
    out: list[float | int] = []
    for item in text.split(","):
        out += _parse_item(item, integer, name, text)
        if len(out) > MAX_VALUES:
            raise AxisError(f"{name}: {text!r} gives more than {MAX_VALUES} values; use a coarser step")
    return out


def _number(token: str, integer: bool, name: str, text: str) -> float | int:
    value = float(token)
    if integer:
        if not value.is_integer():
            raise AxisError(f"{name}: {token.strip()!r} in {text!r} is not a whole number; "
                            f"{name} takes whole numbers, e.g. '{math.floor(value)}'")
        return int(value)
    return value


def _parse_item(item: str, integer: bool, name: str, text: str) -> list[float | int]:
    single = _SINGLE.match(item)
    if single:
        return [_number(single.group(1), integer, name, text)]
    match = _RANGE.match(item)
    if not match:
        raise AxisError(f"{name}: cannot read {item.strip()!r} in {text!r}; write a number, a range 'a-b', "
                        "a range with a step 'a-b (+s)', or a range with a count 'a-b [n]'")
    start, stop = (_number(g, integer, name, text) for g in match.group(1, 2))
    step_text, count_text = match.group(3), match.group(4)
    if count_text is not None:
        count = float(count_text)
        if not count.is_integer() or count < 1:
            raise AxisError(f"{name}: [{count_text}] in {text!r} must be a whole count >= 1, e.g. [5]")
        count = int(count)
        if count == 1:
            return [start]
        values = [start + (stop - start) * i / (count - 1) for i in range(count)]
        if integer:
            whole = [int(math.floor(v + 0.5)) for v in values]
            if len(set(whole)) < count:
                raise AxisError(f"{name}: {item.strip()!r} asks for {count} whole numbers between {start} and "
                                f"{stop}, but only {abs(stop - start) + 1} exist; use a smaller count")
            return whole
        return [round(v, 10) for v in values]
    step = _number(step_text, integer, name, text) if step_text is not None else (1 if stop >= start else -1)
    if step == 0:
        raise AxisError(f"{name}: the step in {item.strip()!r} is 0; give a step such as (+1)")
    if (stop - start) * step < 0:
        raise AxisError(f"{name}: the step {step:+g} in {item.strip()!r} moves away from {stop:g}; "
                        f"use ({'+' if stop > start else '-'}{abs(step):g})")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    if count > MAX_VALUES:
        raise AxisError(f"{name}: {item.strip()!r} gives {count} values, more than {MAX_VALUES}; use a coarser step")
    values = [start + i * step for i in range(count)]
    return values if integer else [round(float(v), 10) for v in values]


def _split_text(text: str) -> list[str]:
    return [item.strip() for item in next(csv.reader([text], skipinitialspace=True))]


def _check_number(name: str, value: Any, integer: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AxisError(f"axis {name}: {value!r} is not a number")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise AxisError(f"axis {name}: {value!r} is not a whole number; {name} takes whole numbers")
        return int(value)
    return float(value)


def _choice(text: str) -> Any:
    """A post-processing value written as text: a number stays a number, "false" turns previews off."""
    text = text.strip()
    if text.lower() in ("false", "off", "none"):
        return False if text.lower() == "false" else None
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() else number


def _lora_weight(name: str, value: Any) -> Any:
    """One value of a ``lora:<name>`` axis: a number as before, or a schedule (wan_nb.core.lora_schedule),
    checked here for its form; its length and the model's experts are checked per cell."""
    from wan_nb.core import lora_schedule

    try:
        weight = lora_schedule.check(value, name=name.split(":", 1)[1])
    except lora_schedule.ScheduleError as exc:
        raise AxisError(f"axis {name}: {exc}") from None
    return weight


def _label(name: str, value: Any, index: int) -> str:
    if name.startswith("lora:") and not isinstance(value, float):
        from wan_nb.core.lora_schedule import describe

        return describe(value)
    if name in GUIDANCE_AXES:   # "apg", "classic CFG", "eta=0, start=0.1"
        from wan_nb.models.guidance import describe, options_text

        return describe(value) if name == "guidance" else (options_text(value) or "default options")
    if name in POST_AXES:
        return f"{name} {Path(value).name if isinstance(value, str) and '/' in value else value}"
    if name == "loras":
        from wan_nb.core.lora_schedule import describe

        return ", ".join(f"{n} {describe(w)}" for n, w in value.items()) or "no LoRA"
    if name == "cache":  # a (mode, "text-kv") pair reads as the string it is recorded as
        return "+".join(value) if isinstance(value, (list, tuple)) else value or "no cache"
    if name in LIST_AXES:   # a picture or a video: its file name, else its place on the axis
        if isinstance(value, (str, Path)):
            return Path(value).name
        return f"{name.replace('_', ' ')} {index + 1}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def parse_axis(spec: Any, role: str, loaded_loras: Sequence[str] = ()) -> Axis:
    """Check one axis given as ``(name, values)``; ``role`` ("x", "y", "z") names it in errors."""
    if not (isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str)):
        raise AxisError(f"{role}={spec!r}: give an axis as (name, values), e.g. {role}=('seed', [0, 1, 2]) "
                        f"or {role}=('steps', '4-12 (+4)')")
    name, raw = spec[0].strip(), spec[1]
    kind = _kind(name)
    if name.startswith("lora:"):
        adapter = name.split(":", 1)[1]
        if adapter not in loaded_loras:
            raise AxisError(f"{role}: no LoRA named {adapter!r} is loaded; call gen.load_lora(path, "
                            f"name={adapter!r}) first (loaded: {sorted(loaded_loras) or 'none'})")
    if isinstance(raw, str):
        if kind == "list":
            raise AxisError(f"{role}: axis {name!r} takes a list, e.g. "
                            + {"loras": "[{}, {'style': 1.0}]", "cache": "[None, 'first-block', 'mag']",
                               "guidance_options": "[{}, {'eta': 0.5}]"}.get(
                                name, "['a.png', 'b.png']"))
        if kind == "choice":
            values: list[Any] = [_choice(v) for v in _split_text(raw)]
        else:
            values = _split_text(raw) if kind == "text" else parse_range(raw, kind == "int", name)
    elif isinstance(raw, (list, tuple, range)):
        values = list(raw)
    else:
        raise AxisError(f"{role}: the values of {name!r} must be a list or a range string, not "
                        f"{type(raw).__name__} ({raw!r})")
    if not values:
        raise AxisError(f"{role}: axis {name!r} has no values; give at least one")
    if len(values) > MAX_VALUES:
        raise AxisError(f"{role}: axis {name!r} has {len(values)} values, more than {MAX_VALUES}")
    if name.startswith("lora:") and not isinstance(raw, str):
        values = [_lora_weight(name, v) for v in values]   # numbers, or schedules: ramps, (high, low), lists
    elif kind in ("int", "float"):
        values = [_check_number(name, v, kind == "int") for v in values]
    elif kind == "text":
        for value in values:
            if not isinstance(value, str):
                raise AxisError(f"{role}: axis {name!r} takes text; {value!r} is {type(value).__name__}")
        if name == "prompt_sr" and len(values) < 1:
            raise AxisError(f"{role}: prompt_sr needs the text to search for as its first value")
        if name == "prompt" and not all(v.strip() for v in values):
            raise AxisError(f"{role}: axis 'prompt' holds an empty prompt")
    elif name == "loras":
        for value in values:
            if not isinstance(value, Mapping):
                raise AxisError(f"{role}: each value of 'loras' is a dict of adapter name -> weight, "
                                f"e.g. {{'style': 0.8}}; got {value!r}")
            missing = [n for n in value if n not in loaded_loras]
            if missing:
                raise AxisError(f"{role}: no LoRA named {missing[0]!r} is loaded (loaded: "
                                f"{sorted(loaded_loras) or 'none'})")
        values = [{str(n): _lora_weight(f"lora:{n}", w) for n, w in v.items()} for v in values]
    return Axis(name=name, values=tuple(values), labels=tuple(_label(name, v, i) for i, v in enumerate(values)))
