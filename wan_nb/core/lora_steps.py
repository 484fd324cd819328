"""A run's LoRA schedules on the pipeline: the adapters' scales set before each step they change.

The weights come checked from the run's parameters (:mod:`wan_nb.core.lora_schedule`); a run whose
weights are all plain numbers needs none of this (:func:`for_run` answers None) and keeps the
``set_adapters`` floats it always had. Nothing is reloaded or fused: only the scales move.
"""

from __future__ import annotations

from typing import Any, Mapping

from wan_nb.core import lora_schedule as schedules

__all__ = ["LoraSteps", "for_run", "first_weights", "describe"]

describe = schedules.describe

# The expert a transformer is, by the name of its pipeline component (a pair's first value is the high-noise one).
_EXPERT_OF = {component: expert for expert, component in schedules.EXPERTS.items()}
_STEP_EXPERT = {"high_noise": "high", "low_noise": "low"}  # wan_nb.models.specs' names of the experts


class LoraSteps:
    """The weights of one run, step by step, for the adapters each transformer holds."""

    def __init__(self, pipe: Any, weights: Mapping[str, Any], steps: int,
                 components: Mapping[str, list[str]]) -> None:
        self.pipe = pipe
        self.weights = dict(weights)
        self.steps = max(1, int(steps))
        self.components = {c: [n for n in self.weights if n in present] for c, present in components.items()}
        self.last: dict[str, dict[str, float]] | None = None
        self.changes = 0   # how many times the scales were written (once per change, not per step)

    def scales(self, step: int) -> dict[str, dict[str, float]]:
        step %= self.steps  # Animate: each clip counts its steps from 0 again
        return {component: {n: schedules.value_at(self.weights[n], step, self.steps, _EXPERT_OF.get(component, "high"))
                            for n in names}
                for component, names in self.components.items() if names}

    def apply(self, step: int) -> None:
        """Make the scales those of 0-based ``step`` (nothing is written when they do not change)."""
        from wan_nb.models import lora_files

        scales = self.scales(step)
        if scales != self.last:
            lora_files.set_scales(self.pipe, scales)
            self.last = scales
            self.changes += 1

    def in_force(self, step: int, expert: str | None) -> dict[str, float]:
        """The weights step ``step`` ran with, on the expert that ran it (``"high_noise"`` / ``"low_noise"``)."""
        which = _STEP_EXPERT.get(expert or "", "high")
        return {n: round(schedules.value_at(w, step % self.steps, self.steps, which), 6) for n, w in self.weights.items()}


def for_run(pipe: Any, weights: Mapping[str, Any], steps: int, first_step: int = 0) -> LoraSteps | None:
    """The schedule of a run with ``weights`` (after ``activate``), its first step's scales set;
    None when every weight is a plain number."""
    if all(schedules.is_constant(w) for w in weights.values()):
        return None
    from wan_nb.models import lora_files

    run = LoraSteps(pipe, weights, steps, lora_files.per_component(pipe))
    run.apply(first_step)
    return run


def first_weights(weights: Mapping[str, Any], steps: int, first_step: int = 0) -> dict[str, Any]:
    """Plain numbers for ``activate`` (which adapters are on): each weight at the run's first step."""
    return {n: w if schedules.is_constant(w) else schedules.value_at(w, first_step % max(1, steps), max(1, steps))
            for n, w in weights.items()}
