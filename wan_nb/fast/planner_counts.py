"""Exact parameter counts of a model's components, from their real configs on the meta device.

No weights are made and nothing is downloaded: each component is instantiated under accelerate's
``init_empty_weights`` (parameters on "meta"), then counted. Counted per component: all
parameters, the ones a weight quantizer stores in fewer bits (the ``nn.Linear`` weights: fp8
layerwise casting, torchao, bitsandbytes and GGUF files all quantize those), the largest repeated
block (what group offload keeps on the GPU at once), everything outside the blocks (onloaded
together with each block) and the largest single module (sequential offload's unit). The fp8
size is counted by applying wan_nb's own fp8 casting (:func:`wan_nb.weights.quant.after_load`:
diffusers' layerwise casting with its skip patterns, and for UMT5 ``TEXT_ENCODER_KEEP``) to the
meta model and adding up the bytes of every parameter as it is then stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["ComponentCount", "count_components", "FP32_KINDS"]

from wan_nb.fast.fake_modules import FP32_KINDS, transformer_class


@dataclass(frozen=True)
class ComponentCount:
    name: str           # pipeline attribute: transformer, transformer_2, text_encoder, vae, image_encoder
    kind: str           # transformer | umt5 | vae | clip
    params: int         # every parameter, tied ones once
    quantizable: int    # nn.Linear weights
    block: int          # the largest repeated block (0: no block list)
    outside: int        # parameters outside the repeated blocks
    largest_module: int  # the largest module holding parameters directly (sequential offload's unit)
    config: dict        # the constructor arguments (for the traces)
    fp8_bytes: int = 0  # bytes stored under wan_nb's fp8 casting (0: never cast, e.g. the VAE)
    largest_cast: int = 0  # the largest module fp8 casting upcasts at once (parameters)

    @property
    def fp32(self) -> bool:
        return self.kind in FP32_KINDS


def _build(kind: str, config: dict[str, Any]) -> tuple[Any, Any]:
    """(module, its repeated blocks or None) on the meta device."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        if kind == "transformer":
            model = transformer_class(config)(**config)
            return model, model.blocks
        if kind == "umt5":
            from transformers import UMT5Config, UMT5EncoderModel

            model = UMT5EncoderModel(UMT5Config(**config))
            # As the released checkpoints store it, the encoder's input embedding is ``shared``
            # itself (created on meta it is a second 1 B-parameter table until tied).
            model.encoder.embed_tokens = model.shared
            return model, model.encoder.block
        if kind == "vae":
            from diffusers import AutoencoderKLWan

            return AutoencoderKLWan(**config), None
        if kind == "clip":
            from transformers import CLIPVisionConfig, CLIPVisionModel

            model = CLIPVisionModel(CLIPVisionConfig(**config))
            return model, _longest_module_list(model)
    raise ValueError(f"unknown component kind {kind!r}")


def _longest_module_list(model: Any) -> Any:
    import torch

    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    return max(lists, key=len) if lists else None


def _unique(params) -> int:
    seen: dict[int, int] = {}
    for p in params:
        seen[id(p)] = p.numel()
    return sum(seen.values())


def _fp8_counts(kind: str, model: Any) -> tuple[int, int]:
    """(bytes under wan_nb's fp8 casting, parameters of the largest module it casts) of a meta model."""
    import torch

    if kind not in ("transformer", "umt5"):
        return 0, 0
    from wan_nb.weights.quant import after_load

    import logging

    quiet = logging.getLogger("diffusers.models.modeling_utils")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its advice on _keep_in_fp32_modules is about loading real weights
    try:
        model.to(torch.bfloat16)
    finally:
        quiet.setLevel(level)
    after_load(model, "fp8", torch.bfloat16)
    stored = sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())
    cast = max((sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules()
                if any(p.dtype == torch.float8_e4m3fn for p in m.parameters(recurse=False))), default=0)
    return int(stored), int(cast)


@lru_cache(maxsize=64)
def _count(kind: str, config_json: str) -> tuple[int, int, int, int, int, int, int]:
    import torch

    config = json.loads(config_json)
    if "patch_size" in config and isinstance(config["patch_size"], list) and kind == "transformer":
        config["patch_size"] = tuple(config["patch_size"])
    model, blocks = _build(kind, config)
    total = _unique(model.parameters())
    linear = _unique(m.weight for m in model.modules() if isinstance(m, torch.nn.Linear))
    block = max((_unique(b.parameters()) for b in blocks), default=0) if blocks is not None else 0
    inside = _unique(p for b in blocks for p in b.parameters()) if blocks is not None else 0
    largest = max((_unique(m.parameters(recurse=False)) for m in model.modules()), default=0)
    return (total, linear, block, total - inside, largest, *_fp8_counts(kind, model))


def _stored_count(kind: str, config_json: str) -> tuple[int, ...]:
    """:func:`_count`, kept beside the traces (a warm plan then imports neither torch nor diffusers)."""
    from wan_nb.fast.trace_cache import read_cached, write_cached

    fields = {"count": kind, "config": json.loads(config_json)}
    found = read_cached(fields)
    if found is not None and len(found.get("count", ())) == 7:
        return tuple(found["count"])
    counted = _count(kind, config_json)
    write_cached(fields, {"count": list(counted)})
    return counted


def count_components(components: dict[str, tuple[str, dict[str, Any]]]) -> list[ComponentCount]:
    """Count every ``name -> (kind, config)`` component (cached per config, on disk too)."""
    out = []
    for name, (kind, config) in components.items():
        total, linear, block, outside, largest, fp8, cast = _stored_count(kind, json.dumps(config, sort_keys=True))
        out.append(ComponentCount(name, kind, total, linear, block, outside, largest, dict(config), fp8, cast))
    return out


def tiny_components(variant: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """The tiny built-in ``variant``'s components as ``name -> (kind, config)`` (built in memory, small)."""
    from wan_nb.models import tiny

    parts = tiny.components(variant)
    kinds = {"transformer": "transformer", "transformer_2": "transformer", "text_encoder": "umt5",
             "vae": "vae", "image_encoder": "clip"}
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, kind in kinds.items():
        module = parts.get(name)
        if module is None:
            continue
        config = module.config.to_dict() if hasattr(module.config, "to_dict") else dict(module.config)
        config = {k: v for k, v in config.items() if not k.startswith("_")}
        if kind in ("umt5", "clip"):
            config = {k: v for k, v in config.items() if k not in ("architectures", "transformers_version",
                                                                    "model_type", "dtype", "torch_dtype")}
        out[name] = (kind, json.loads(json.dumps(config, default=list)))
    return out
