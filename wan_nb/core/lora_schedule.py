"""LoRA weights that change over a run: reading them, checking them, and the weight at each step.

A LoRA weight (``loras={name: weight}``, ``load_lora(weight=)``, a ``lora:<name>`` grid axis) may be

* a number: the same weight at every step (any finite number, as before);
* a ``(high, low)`` tuple on a two-expert model (Wan 2.2 A14B): one weight per expert; each may
  itself be any of the forms below but a pair;
* a list: one weight per denoising step;
* a ramp string ``"1.0-0.2"``: linear from the first to the last step (both included);
* a callable ``f(step, total, expert) -> float`` (``step`` 0-based, ``expert`` ``"high"`` /
  ``"low"`` on two-expert models, else ``None``), evaluated once per step when the run is checked.

:func:`check` turns any of them into its JSON form, the one a run's parameters, events and recipe
hold and that :func:`check` reads back unchanged (so a rerun gets the same weights): a float, a
ramp string, a list, ``{"high": ..., "low": ...}``, and for a callable its values
``{"values": [...], "from": "callable <name>"}`` (``{"high": [...], "low": [...], "from": ...}``
on two-expert models). Standard library only: the facade checks weights before any model work.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Callable, Mapping, Sequence

__all__ = ["ScheduleError", "EXPERTS", "check", "is_constant", "value_at", "per_step", "peak", "describe",
           "parse_text", "key"]

#: the experts a ``(high, low)`` pair names, in its order; the transformer each runs on
EXPERTS = {"high": "transformer", "low": "transformer_2"}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_RAMP = re.compile(rf"^\s*({_NUMBER})\s*-\s*({_NUMBER})\s*$")
_FIX = ("give a number (0.8), a (high, low) pair on two-expert models ((1.0, 0.3)), a list with one value per "
        "step ([1.0, 0.8, 0.5]), a ramp string ('1.0-0.2') or a function f(step, total, expert)")


class ScheduleError(ValueError):
    """A LoRA weight that cannot be used as given; the message says what to write instead."""


def _number(value: Any, where: str, *, schedule: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScheduleError(f"{where} is {value!r}, not a finite number; {_FIX}")
    if schedule and value < 0:
        # In a schedule a negative value is a typo ("1.0--0.2", a sign flipped by a formula): the
        # strength fades to 0, it does not turn the style around. A constant keeps its old range.
        raise ScheduleError(f"{where} is {value:g}; the weights of a schedule are >= 0 (0 turns the LoRA off)")
    return float(value)


def _ramp(text: str, where: str) -> str:
    match = _RAMP.match(text)
    if not match:
        raise ScheduleError(f"{where} {text!r} is not a ramp; write 'start-end' with two numbers >= 0, e.g. "
                            "'1.0-0.2' (linear from the first step to the last)")
    start, end = (float(g) for g in match.groups())
    return f"{start:g}-{end:g}"


def _values(values: Sequence[Any], where: str, steps: int | None) -> list[float]:
    out = [_number(v, f"{where}[{i}]", schedule=True) for i, v in enumerate(values)]
    if not out:
        raise ScheduleError(f"{where} is an empty list; give one weight per step")
    if steps is not None and len(out) != steps:
        raise ScheduleError(f"{where} has {len(out)} values for a run of {steps} steps; give exactly {steps} "
                            f"(one per step), or a ramp string such as '{out[0]:g}-{out[-1]:g}' that fits any "
                            "number of steps")
    return out


def _callable(f: Callable[..., Any], where: str, steps: int, expert: str | None) -> list[float]:
    out = []
    for step in range(steps):
        try:
            value = f(step, steps, expert)
        except Exception as exc:
            raise ScheduleError(f"{where}: the weight function raised at step {step} of {steps} (expert "
                                f"{expert!r}): {type(exc).__name__}: {exc}; it is called as f(step, total, "
                                "expert) with step 0-based") from exc
        out.append(_number(value, f"{where}: f({step}, {steps}, {expert!r})", schedule=True))
    return out


def _one(value: Any, where: str, steps: int | None) -> Any:
    """Any form but a pair, checked."""
    if isinstance(value, str):
        try:
            return _number(float(value), where, schedule=False)   # "0.8": a number written as text
        except ValueError:
            return _ramp(value, where)
    if isinstance(value, list):
        return _values(value, where, steps)
    if isinstance(value, (tuple, Mapping)):
        raise ScheduleError(f"{where} is a pair inside a (high, low) pair; give each expert a number, a list or a "
                            "ramp string")
    return _number(value, where, schedule=False)


def check(weight: Any, *, name: str = "lora", steps: int | None = None, experts: int | None = None) -> Any:
    """The JSON form of ``weight`` (see the module docstring), checked for a run of ``steps`` steps on a
    model with ``experts`` transformers. ``steps=None`` (``load_lora``, a grid axis): the length of a
    list is checked later, per run, and a callable is returned as it is; ``experts=None``: a pair is
    checked later too."""
    where = f"the weight of {name!r}"
    two = experts is not None and experts >= 2
    if callable(weight):
        if steps is None:
            return weight
        label = f"callable {getattr(weight, '__qualname__', None) or type(weight).__name__}"
        if two:
            return {**{expert: _callable(weight, where, steps, expert) for expert in EXPERTS}, "from": label}
        return {"values": _callable(weight, where, steps, None), "from": label}
    origin = None
    if isinstance(weight, Mapping):
        keys = set(weight) - {"from"}
        if keys == {"values"}:
            out: dict[str, Any] = {"values": _values(weight["values"], where, steps)}
            return {**out, "from": str(weight["from"])} if "from" in weight else out
        if keys != set(EXPERTS):
            raise ScheduleError(f"{where} is a dict with keys {sorted(map(str, weight))}; a per-expert weight is "
                                "{'high': ..., 'low': ...} (or the pair (high, low))")
        origin = weight.get("from")
        weight = tuple(weight[e] for e in EXPERTS)
    if isinstance(weight, tuple):
        if len(weight) != 2:
            raise ScheduleError(f"{where} is a tuple of {len(weight)}; a tuple is a (high, low) pair for the two "
                                "experts; for one weight per step pass a list")
        if experts is not None and not two:
            raise ScheduleError(f"{where} is a (high, low) pair, but this model has one transformer; give one "
                                f"weight, e.g. {weight[0]!r} (pairs are for two-expert models such as Wan 2.2 A14B)")
        out = {e: _one(v, f"{where}[{e!r}]", steps) for e, v in zip(EXPERTS, weight)}
        return {**out, "from": str(origin)} if origin is not None else out
    return _one(weight, where, steps)


def is_constant(form: Any) -> bool:
    """True for a plain number: the weight is set once, as before schedules."""
    return isinstance(form, (int, float)) and not isinstance(form, bool)


def value_at(form: Any, step: int, steps: int, expert: str | None = None) -> float:
    """The weight at 0-based ``step`` of ``steps`` for ``expert`` ("high", "low" or None: the first)."""
    if isinstance(form, Mapping):
        if "values" in form:
            return float(form["values"][step])
        return value_at(form[expert or "high"], step, steps, expert)
    if isinstance(form, str):
        start, end = (float(part) for part in _RAMP.match(form).groups())
        return start if steps <= 1 else round(start + (end - start) * step / (steps - 1), 10)
    if isinstance(form, list):
        return float(form[step])
    return float(form)


def per_step(form: Any, steps: int, expert: str | None = None) -> list[float]:
    return [value_at(form, step, steps, expert) for step in range(steps)]


def peak(form: Any) -> float:
    """The largest weight a checked schedule reaches (0: the LoRA changes nothing)."""
    if isinstance(form, Mapping):
        return max(peak(v) for k, v in form.items() if k != "from")
    if isinstance(form, str):
        return max(float(part) for part in _RAMP.match(form).groups())
    if isinstance(form, list):
        return max(map(float, form))
    return float(form)


def describe(form: Any) -> str:
    """A short label: ``0.8``, ``1→0.2``, ``high 1 / low 0.3``, ``[1, 0.8, 0.5]``, ``callable fade``."""
    if callable(form):
        return f"callable {getattr(form, '__name__', type(form).__name__)}"
    if isinstance(form, tuple) and len(form) == 2:
        form = dict(zip(EXPERTS, form))
    if isinstance(form, Mapping):
        if "from" in form and str(form["from"]).startswith("callable"):
            return str(form["from"])
        if "values" in form:
            return describe(list(form["values"]))
        return " / ".join(f"{e} {describe(form.get(e))}" for e in EXPERTS)
    if isinstance(form, str):
        return form.replace("-", "→") if _RAMP.match(form) else form
    if isinstance(form, list):
        shown = ", ".join(f"{v:g}" for v in form[:4])
        return f"[{shown}{', …' if len(form) > 4 else ''}]"
    return f"{form:g}" if isinstance(form, float) else str(form)


def parse_text(text: str) -> Any:
    """A weight as a command line writes it: ``0.8``, ``1.0-0.2`` (ramp), ``1.0;0.3`` (high;low, as
    Wan2GP writes it), ``1.0,0.8,0.5`` (one per step). Raises :class:`ScheduleError`."""
    text = text.strip()
    if ";" in text:
        parts = text.split(";")
        if len(parts) != 2:
            raise ScheduleError(f"LoRA weight {text!r}: 'a;b' is the high- and low-noise experts' weights; "
                                "give exactly two")
        return tuple(parse_text(part) for part in parts)
    if "," in text:
        try:
            return [float(part) for part in text.split(",")]
        except ValueError:
            raise ScheduleError(f"LoRA weight {text!r}: a list is numbers separated by commas, e.g. 1.0,0.8,0.5") from None
    try:
        return float(text)
    except ValueError:
        return _ramp(text, "LoRA weight")


def key(form: Any) -> str:
    """A hashable, stable text for a weight (grid run order, a worker's LoRA set)."""
    if callable(form):
        return f"callable:{id(form)}"
    return json.dumps(form if not isinstance(form, tuple) else list(form), sort_keys=True)
