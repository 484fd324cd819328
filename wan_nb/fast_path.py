"""The Generator's fast-path options: ``plan="auto"``, ``attention=``, ``compile=``.

:func:`configure` runs in ``Generator.__init__`` and checks everything before any download: the
plan is computed and applied to the generator's offload (and, where the generator takes it,
quantization and VAE tiling); a missing attention kernel is refused. :func:`prepare` runs on the
worker once the pipeline exists (loaded or given): the few-step variant's LoRA, the attention
backend and the compiled blocks, each applied once per pipeline.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

__all__ = ["FastOptions", "configure", "prepare", "recipe_fields", "adopt_recipe", "machine_memory_gb"]

log = logging.getLogger(__name__)


@dataclass
class FastOptions:
    plan: Any = None               # the wan_nb.planner.Plan applied, if plan="auto" found one
    attention: str | None = None
    compile: bool = False


def machine_memory_gb(device: str = "auto") -> tuple[float | None, float | None]:
    """(GPU memory of the device in use, host RAM) in GB; the GPU part is None without CUDA."""
    ram = None
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        pass
    if str(device).startswith("cpu"):
        return None, ram
    try:
        import torch

        if not torch.cuda.is_available():
            return None, ram
        index = torch.device(device).index if str(device).startswith("cuda:") else 0
        return torch.cuda.get_device_properties(index or 0).total_memory / 1e9, ram
    except Exception:
        return None, ram


def configure(gen: Any, *, plan: Any = None, attention: Any = None, compile: Any = False) -> FastOptions:
    """Check and apply the fast-path options to ``gen`` (before anything is loaded)."""
    if plan not in (None, "auto"):
        raise ValueError(f"plan={plan!r}: pass plan='auto' (the fastest offload/quantization that fits "
                         "this machine; see wan_nb.plan(model)) or None")
    if not isinstance(compile, bool):
        raise ValueError(f"compile={compile!r}: pass True (compile the repeated transformer blocks) or False")
    from .attention import check_attention

    options = FastOptions(attention=check_attention(attention, device=gen.device_request), compile=compile)
    if plan == "auto":
        if gen.offload != "none":
            raise ValueError(f"plan='auto' chooses the offload itself; drop offload={gen.offload!r}, or drop plan=")
        options.plan = _apply_plan(gen)
    return options


def _apply_plan(gen: Any) -> Any:
    from .planner import plan as make_plan

    gpu_gb, ram_gb = machine_memory_gb(gen.device_request)
    if gpu_gb is None:
        log.info("plan='auto': no CUDA GPU in use, nothing to plan; running as configured")
        return None
    try:
        found = make_plan(gen.spec.name, gpu_gb=gpu_gb, ram_gb=ram_gb or 64.0)
    except ValueError as exc:
        raise ValueError(f"plan='auto': {exc}") from None
    best = found.best
    if best is None:
        raise ValueError(f"plan='auto': no offload x quantization choice fits {gen.spec.name} on this "
                         f"{gpu_gb:.0f} GB GPU with {ram_gb or 0:.0f} GB RAM; print(wan_nb.plan("
                         f"{gen.spec.name!r}, gpu_gb={gpu_gb:.0f})) shows the peaks; lower the resolution "
                         "or frame count, or use a smaller model")
    quant = found.quant_argument(best)
    if quant is not None and not hasattr(gen, "quant"):
        # This build's Generator takes no quant= yet: the best row without quantization instead.
        rows = [r for r in found.rows if r.fits and r.quant is None]
        best = min(rows, key=lambda r: r.speed, default=None)
        if best is None:
            raise ValueError(f"plan='auto': {gen.spec.name} fits this GPU only with quantized weights, "
                             "which this wan_nb cannot load yet; use a smaller model or resolution")
        quant = None
    gen.offload = best.offload
    gen.vae_tiling = gen.vae_tiling or best.vae_tiling
    if quant is not None:
        gen.quant = quant
    log.info("plan='auto': offload=%r quant=%r vae_tiling=%s (peak ~%.1f GB of %.0f GB)", best.offload,
             quant, gen.vae_tiling, best.vram_gb, gpu_gb)
    return found


def prepare(gen: Any, pipe: Any) -> None:
    """Once per pipeline, on the worker: distilled LoRA, attention backend, compiled blocks."""
    from . import fast_presets

    fast_presets.attach_lora(gen, pipe)
    options: FastOptions = getattr(gen, "_fast", None) or FastOptions()
    done = getattr(pipe, "_wan_nb_fast", None)
    wanted = (options.attention, options.compile)
    if done == wanted:
        return
    from .attention import apply_attention, compile_blocks

    # None after a backend was set (a rerun of a recipe made without one): back to PyTorch SDPA
    apply_attention(pipe, options.attention or ("native" if done and done[0] else None))
    if options.compile and not (done or (None, False))[1]:
        compile_blocks(pipe)
    pipe._wan_nb_fast = wanted


def adopt_recipe(gen: Any, recipe: Any) -> None:
    """A rerun makes the video as recorded: the recipe's attention backend and compile on ``gen``
    from its next run (checked first; a compiled pipeline stays compiled: same numbers)."""
    from .attention import check_attention

    options: FastOptions = gen._fast
    attention = check_attention(recipe.get("attention"), device=gen.device_request)
    options.attention = attention
    options.compile = options.compile or bool(recipe.get("compile"))


def recipe_fields(gen: Any, params: Any) -> dict[str, Any]:
    """What a recipe records of the fast path (the run's cache, the generator's attention/compile)."""
    options: FastOptions = getattr(gen, "_fast", None) or FastOptions()
    return {"cache": params.get("cache"), "cache_threshold": params.get("cache_threshold"),
            "attention": options.attention, "compile": options.compile}
