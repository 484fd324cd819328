"""The generator's LoRA registry: adapters by name, read once, attached once the model is loaded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from wan_nb.core import lora_schedule


# Adapter names become keys in every LoRA layer (peft's per-adapter dicts) and travel in each run's
# recipe; a 10 MB name cost 42 s before failing at saving. File names stay well below this.
MAX_ADAPTER_NAME = 128


@dataclass
class _Lora:
    source: str
    weight: Any        # a number or a schedule (wan_nb.core.lora_schedule), checked; a callable as given
    state: Any
    attached: bool = False


class LoraRegistry:
    """The generator's LoRAs by adapter name; attached to the pipeline once it is loaded."""

    def __init__(self) -> None:
        self.entries: dict[str, _Lora] = {}

    def __bool__(self) -> bool:
        return bool(self.entries)

    def weights(self) -> dict[str, Any]:
        return {n: entry.weight for n, entry in self.entries.items()}

    def describe(self) -> dict[str, dict[str, Any]]:
        """JSON-safe: a callable weight is named, not embedded (its values are in each run's parameters)."""
        return {n: {"source": entry.source,
                    "weight": lora_schedule.describe(entry.weight) if callable(entry.weight) else entry.weight}
                for n, entry in self.entries.items()}

    def load(self, path_or_repo: Any, name: str | None, weight: float, pipe: Any, *,
             experts: str | None = None, model_experts: tuple[str, ...] = ()) -> str:
        from wan_nb.models import lora_files as lora

        try:  # a number, a (high, low) pair, a list, a ramp or a callable: wan_nb.core.lora_schedule
            weight = lora_schedule.check(weight, name=name or "lora", experts=len(model_experts))
        except lora_schedule.ScheduleError as exc:
            raise ValueError(f"weight={weight!r}: {exc}") from None
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValueError(f"name={name!r}: give a non-empty adapter name, or leave it out to use the file's")
        if name is not None and len(name) > MAX_ADAPTER_NAME:
            raise ValueError(f"name='{name[:40]}...' is {len(name):,} characters long; an adapter name may have at "
                             f"most {MAX_ADAPTER_NAME} (it is a key in every layer the LoRA touches, and in the "
                             "recipe); give a short one, e.g. name='style'")
        pair = isinstance(path_or_repo, (tuple, list))
        name = name or lora.default_name(path_or_repo[0] if pair and path_or_repo else path_or_repo)[:MAX_ADAPTER_NAME]
        if name in self.entries:
            raise ValueError(f"a LoRA named {name!r} is already loaded; unload_lora({name!r}) first or "
                             "pass another name=")
        # state: {component: LoraState}, one per expert the adapter goes into (lora.read_for_experts)
        entry = _Lora(source=" + ".join(map(str, path_or_repo)) if pair else str(path_or_repo),
                      weight=weight, state=lora.read_for_experts(path_or_repo, experts, model_experts))
        if pipe is not None:
            lora.attach_targets(pipe, name, entry.state)
            entry.attached = True
        self.entries[name] = entry
        return name

    def unload(self, name: str | None, pipe: Any) -> None:
        from wan_nb.models import lora_files as lora

        names = list(self.entries) if name is None else [name]
        for n in names:
            if n not in self.entries:
                raise KeyError(f"no LoRA named {n!r} is loaded (loaded: {sorted(self.entries) or 'none'})")
        for n in names:
            entry = self.entries.pop(n)
            if entry.attached and pipe is not None:
                lora.detach(pipe, n)

    def activate(self, pipe: Any, weights: Mapping[str, float]) -> None:
        """Attach what is not attached yet, then set this run's weights."""
        from wan_nb.models import lora_files as lora

        for name, entry in list(self.entries.items()):
            if not entry.attached:
                try:
                    lora.attach_targets(pipe, name, entry.state)
                except Exception:
                    self.entries.pop(name, None)  # a LoRA that cannot attach must not break later runs
                    raise
                entry.attached = True
        lora.activate(pipe, dict(weights))
