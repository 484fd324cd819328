"""The traced parts of one model at one shape, placed per format, timed per card.

:func:`trace_plan_parts` resolves the model (a preset, its few-step variant, its repo id, or a
tiny model), lists the parts its pipeline runs (:func:`wan_nb.fast.tracing.parts_of`) and traces
each at the plan's shape, the VAE's also tiled (cached: :mod:`wan_nb.fast.trace_cache`).
:class:`PartTraces` then answers per format and offload: the parts as placed (weights at that
format, activations plus the layer a quantized format dequantizes), the seconds of a step and of
a clip on a card, and the efficiency to time them with.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

from wan_nb.fast.cards import Card
from wan_nb.fast.offload_peaks import PlacedPart
from wan_nb.fast.planner_counts import ComponentCount, count_components, tiny_components
from wan_nb.fast.quant_bytes import component_bytes, quantized
from wan_nb.fast.trace_cache import cached_trace
from wan_nb.fast.tracing import PartTrace, parts_of
from wan_nb.fast import timing

__all__ = ["PartTraces", "trace_plan_parts", "placed_parts", "needs_for"]

# T4 and V100 have no bf16: wan_nb's dtype="auto" runs them in float16 (UMT5's ``wo`` then stays
# float32, as transformers keeps it).
FP16_CARDS = ("Tesla T4", "Tesla V100")


def needs_for(quant: str | None) -> str:
    """What this machine lacks to run ``quant`` ("" if nothing): the planner never recommends it."""
    if quant == "int8" and importlib.util.find_spec("torchao") is None:
        return "torchao (pip install 'wan_nb[quant]')"
    if quant == "nf4":
        missing = []
        if importlib.util.find_spec("bitsandbytes") is None:
            missing.append("bitsandbytes (pip install 'wan_nb[quant]')")
        from wan_nb.fast.cards import cuda_present

        if not cuda_present():
            missing.append("a CUDA GPU here")
        return " and ".join(missing)
    if quant and quant.startswith("gguf:") and importlib.util.find_spec("gguf") is None:
        return "the gguf package (pip install gguf)"
    return ""


@dataclass
class PartTraces:
    name: str
    pipeline_kind: str
    shape: dict[str, int]
    steps: int
    passes: int                                   # transformer passes a step (2 with guidance)
    components: list[ComponentCount]
    part_component: dict[str, str]                # part -> component name
    traces: dict[tuple[str, bool], PartTrace] = field(default_factory=dict)  # (part, tiled)
    to_trace: dict[str, tuple[str, dict[str, Any], str]] = field(default_factory=dict)  # part -> kind, config, what
    vae_config: dict[str, Any] = field(default_factory=dict)
    dtype: str = "bfloat16"

    def trace(self, part: str, tiled: bool) -> PartTrace:
        """The part's trace; tiled VAE traces are made only when a plan needs tiling (the slow ones)."""
        key = (part, tiled and part.startswith("vae_"))
        if key not in self.traces:
            kind, config, what = self.to_trace[part]
            self.traces[key] = cached_trace(kind, config, what, self.pipeline_kind, self.vae_config, self.shape,
                                            self.dtype, tiled=key[1])
        return self.traces[key]

    def _component(self, name: str) -> ComponentCount:
        return next(c for c in self.components if c.name == name)

    def weights(self, component: ComponentCount, quant: str | None) -> float:
        """Bytes of ``component`` at ``quant``: the traced bytes (fp32-kept modules included),
        less what the format saves."""
        traced = next(t.weights_bytes for (part, _), t in self.traces.items()
                      if self.part_component[part] == component.name)
        return traced + component_bytes(component, quant) - component_bytes(component, None)

    def all_weights(self, quant: str | None) -> float:
        return sum(self.weights(c, quant) for c in self.components)

    def _dequantized_layer(self, c: ComponentCount, quant: str | None) -> float:
        q = quantized(c, quant)
        if q is None:
            return 0.0
        return 2.0 * (c.largest_cast if q == "fp8" and c.largest_cast else c.largest_module)

    def placed(self, quant: str | None, tiled: bool) -> list[PlacedPart]:
        parts = []
        for part, name in self.part_component.items():
            c = self._component(name)
            trace = self.trace(part, tiled)
            weights = self.weights(c, quant)
            share = (c.outside + 2 * c.block) / c.params if c.block and c.params else 1.0
            parts.append(PlacedPart(part=part, component=name, weights=weights,
                                    activations=trace.activation_bytes + self._dequantized_layer(c, quant),
                                    group_resident=weights * min(share, 1.0),
                                    largest_module=weights * c.largest_module / max(c.params, 1),
                                    grouped=c.kind != "vae"))
        return parts

    def _denoisers(self) -> list[str]:
        return [p for p in self.part_component if p.startswith("transformer")]

    def step_seconds(self, card: Card, efficiency: float, offload: str, quant: str | None) -> float:
        """Mean seconds of a step over the experts (each step runs one)."""
        times = []
        for part in self._denoisers():
            c = self._component(self.part_component[part])
            times.append(timing.step_seconds(
                card, efficiency, flops_per_pass=self.traces[(part, False)].flops, passes=self.passes,
                offload=offload, quant=quantized(c, quant), transformer_bytes=self.weights(c, quant),
                quantized_bf16_bytes=2.0 * c.quantizable))
        return sum(times) / len(times)

    def clip_seconds(self, card: Card, efficiency: float, offload: str, quant: str | None, step: float) -> float:
        bf16 = fp32 = 0.0
        for part in self.part_component:
            if part in self._denoisers():
                continue
            flops = self.traces[(part, False)].flops
            if part.startswith("vae_"):
                fp32 += flops
            else:  # the text encoder runs once per prompt: twice with guidance
                bf16 += flops * (self.passes if part == "text_encoder" else 1)
        return timing.clip_seconds(card, efficiency, steps=self.steps, step=step, bf16_flops=bf16, fp32_flops=fp32,
                                   offload=offload, component_bytes=self.all_weights(quant))

    def efficiency(self, card: Card, this_gpu: str | None) -> timing.Efficiency:
        from wan_nb.models.specs import cache_dir

        def predict(height: int, width: int, num_frames: int) -> float:
            shape = {"height": height, "width": width, "num_frames": num_frames}
            part = self._denoisers()[0]
            kind, config = "transformer", self._component(self.part_component[part]).config
            vae = next(c.config for c in self.components if c.kind == "vae")
            flops = cached_trace(kind, config, "forward", self.pipeline_kind, vae, shape).flops
            return self.passes * flops / (card.bf16_tflops * 1e12)

        return timing.fitted_efficiency(self.name, card, predict, cache_dir() / "timings.json", this_gpu)


def placed_parts(traces: PartTraces, quant: str | None, tiled: bool) -> list[PlacedPart]:
    return traces.placed(quant, tiled)


def _resolve(model: str) -> tuple[str, str, dict[str, tuple[str, dict[str, Any]]], dict[str, Any]]:
    """(name, pipeline kind, components name -> (kind, config), defaults) of ``model``."""
    from wan_nb.models import specs as models
    from wan_nb.fast.arch_configs import arch_for

    spec = models.resolve(model)
    defaults = dict(spec.defaults, spatial_factor=spec.spatial_factor, temporal_factor=spec.temporal_factor)
    if spec.builder:
        return spec.name, spec.kind, tiny_components(spec.builder), defaults
    from wan_nb.models.presets import PRESETS

    by_repo = {p.repo_id.lower(): p.name for p in PRESETS.values()}  # a preset's repo id plans as the preset
    arch = arch_for(spec.preset or by_repo.get(str(spec.source).lower(), spec.name))
    if arch is None:
        from wan_nb.fast.arch_configs import ARCHS

        raise ValueError(f"plan({model!r}): the planner knows the presets ({', '.join(ARCHS)}), their "
                         "-4step variants and the tiny models; for another folder or repo, plan the preset of "
                         "the same architecture (e.g. wan_nb.plan('wan2.1-t2v-14b'))")
    return spec.name, spec.kind, arch, defaults


def _check_shape(name: str, shape: dict[str, int], spatial: int, temporal: int) -> None:
    """Refuse a shape the pipeline would refuse, before any tracing, naming the nearest good one."""
    for key in ("height", "width"):
        value = shape[key]
        if value <= 0 or value % spatial:
            near = max(spatial, round(value / spatial) * spatial)
            raise ValueError(f"{key}={value}: {name} needs a multiple of {spatial}; try {key}={near}")
    frames = shape["num_frames"]
    if frames <= 0 or (frames - 1) % temporal:
        near = max(1, round((frames - 1) / temporal)) * temporal + 1
        raise ValueError(f"num_frames={frames}: {name} needs {temporal} x k + 1 frames; try num_frames={near}")


def trace_plan_parts(model: str, card: Card, *, height: int | None = None, width: int | None = None,
                     num_frames: int | None = None) -> PartTraces:
    """Resolve ``model`` and trace its parts at the shape (the preset's unless given)."""
    name, kind, components, defaults = _resolve(model)
    shape = {"height": int(height or defaults.get("height", 480)), "width": int(width or defaults.get("width", 832)),
             "num_frames": int(num_frames or defaults.get("num_frames", 81))}
    _check_shape(name, shape, defaults["spatial_factor"], defaults["temporal_factor"])
    guided = float(defaults.get("guidance_scale", 5.0)) > 1.0
    found = PartTraces(name=name, pipeline_kind=kind, shape=shape, steps=int(defaults.get("steps", 50)),
                       passes=2 if guided else 1, components=count_components(components),
                       part_component={part: comp for part, (comp, _) in parts_of(kind, components).items()})
    found.dtype = "float16" if card.name in FP16_CARDS else "bfloat16"
    found.vae_config = next((config for kind_, config in components.values() if kind_ == "vae"), {})
    for part, (comp, what) in parts_of(kind, components).items():
        found.to_trace[part] = (*components[comp], what)
        found.trace(part, tiled=False)
    return found
