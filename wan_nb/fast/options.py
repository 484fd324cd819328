"""The Generator's fast-path options: ``plan="auto"``, ``attention=``, ``compile=``.

:func:`configure` runs in ``Generator.__init__`` before the :class:`~wan_nb.core.engine.LoadOptions`
are made, and checks everything before any download: ``plan="auto"`` is computed and becomes the
offload, the VAE tiling and (:attr:`FastConfig.quant`) a quantization the Generator resolves
with the rest of its weight options, once; a missing
attention kernel is refused. The attention backend and ``compile`` travel in the LoadOptions (so
Ray workers get them too). :func:`prepare` runs on the worker once the pipeline exists (loaded
or given): the few-step variant's LoRA, the attention backend and the compiled blocks, each
applied once per pipeline.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FastConfig", "configure", "prepare", "recipe_fields", "check_recipe", "machine_memory_gb",
           "machine_gpu", "MachineGpu", "first_estimate"]

log = logging.getLogger(__name__)


@dataclass
class FastConfig:
    """What :func:`configure` decided: LoadOptions keywords, and the plan it applied (if any)."""

    load: dict[str, Any] = field(default_factory=dict)
    plan: Any = None               # the wan_nb.fast.planner.Plan applied, if plan="auto" found one
    # The quant= that plan chose, as a user writes it; the Generator resolves it with the rest of
    # its weight options, once (unless quant= or transformer= was given: the user's choice stands).
    quant: Any = None


def machine_memory_gb(device: str = "auto") -> tuple[float | None, float | None]:
    """(GPU memory of the device in use, host RAM) in GB; the GPU part is None without CUDA."""
    ram = None
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        pass
    if str(device).startswith("cpu"):
        return None, ram
    from wan_nb.fast.cards import cuda_present

    if not cuda_present():  # no driver: no GPU, and no torch import to find that out
        return None, ram
    try:
        import torch

        if not torch.cuda.is_available():
            return None, ram
        index = torch.device(device).index if str(device).startswith("cuda:") else 0
        return torch.cuda.get_device_properties(index or 0).total_memory / 1e9, ram
    except Exception:
        return None, ram


@dataclass(frozen=True)
class MachineGpu:
    name: str | None        # torch.cuda.get_device_name, None without CUDA
    memory_gb: float | None
    ram_gb: float | None


def machine_gpu(device: str = "auto") -> MachineGpu:
    """This machine's GPU (name and memory) and RAM, for the planner."""
    gpu_gb, ram_gb = machine_memory_gb(device)
    name = None
    if gpu_gb is not None:
        try:
            import torch

            index = torch.device(device).index if str(device).startswith("cuda:") else 0
            name = torch.cuda.get_device_name(index or 0)
        except Exception:
            name = None
    return MachineGpu(name, gpu_gb, ram_gb)


def configure(spec: Any, *, device: str, offload: str, vae_tiling: bool, plan: Any = None,
              attention: Any = None, compile: Any = False) -> FastConfig:
    """Check the fast-path options (before anything is loaded); the LoadOptions keywords they make."""
    if plan not in (None, "auto"):
        raise ValueError(f"plan={plan!r}: pass plan='auto' (the fastest offload/quantization that fits "
                         "this machine; see wan_nb.plan(model)) or None")
    if not isinstance(compile, bool):
        raise ValueError(f"compile={compile!r}: pass True (compile the repeated transformer blocks) or False")
    from wan_nb.fast.attention import check_attention

    config = FastConfig(load={"offload": offload, "vae_tiling": vae_tiling,
                              "attention": check_attention(attention, device=device), "compile": compile})
    if plan == "auto":
        if offload != "none":
            raise ValueError(f"plan='auto' chooses the offload itself; drop offload={offload!r}, or drop plan=")
        config.plan, config.quant = _apply_plan(spec, device, config.load)
    return config


def _apply_plan(spec: Any, device: str, load: dict[str, Any]) -> tuple[Any, Any]:
    """(the plan, its quant=) after putting its offload and VAE tiling into ``load``."""
    from wan_nb.fast.planner import plan as make_plan

    gpu_gb, ram_gb = machine_memory_gb(device)
    if gpu_gb is None:
        log.info("plan='auto': no CUDA GPU in use, nothing to plan; running as configured")
        return None, None
    name = machine_gpu(device).name
    try:
        found = make_plan(spec.name, gpu_gb=gpu_gb, ram_gb=ram_gb or 64.0, gpu=_known_card(name), this_gpu=name)
    except ValueError as exc:
        raise ValueError(f"plan='auto': {exc}") from None
    best = found.best
    if best is None:
        raise ValueError(f"plan='auto': no offload x quantization choice fits {spec.name} on this "
                         f"{gpu_gb:.0f} GB GPU with {ram_gb or 0:.0f} GB RAM; print(wan_nb.plan("
                         f"{spec.name!r}, gpu_gb={gpu_gb:.0f})) shows the peaks; lower the resolution "
                         "or frame count, or use a smaller model")
    quant = found.quant_argument(best)
    load.update(offload=best.offload, vae_tiling=load["vae_tiling"] or best.vae_tiling)
    log.info("plan='auto': offload=%r quant=%r vae_tiling=%s (peak ~%.1f GB of %.0f GB)", best.offload,
             quant, load["vae_tiling"], best.vram_gb, gpu_gb)
    return found, quant


def first_estimate(found: Any) -> Any:
    """A run's seconds before any run was timed: the applied plan's estimate at the plan's shape
    (other shapes: None, the ETA then waits for the first steps)."""
    def estimate(params: dict[str, Any]) -> float | None:
        if found is None or any(params.get(k) != v for k, v in found.shape.items()):
            return None
        return found.estimated_seconds(params.get("steps"))

    return estimate


def _known_card(name: str | None) -> str | None:
    """``name`` if the planner's card table knows it (its speed then times the plan), else None."""
    if name is None:
        return None
    from wan_nb.fast.cards import find_card

    try:
        return find_card(name).name
    except ValueError:
        return None


def prepare(ctx: Any, pipe: Any) -> None:
    """Once per pipeline, on the worker (``ctx``: the run's RunContext): distilled LoRA, attention
    backend, compiled blocks."""
    from wan_nb.models import few_step as fast_presets
    from wan_nb.models.specs import cache_dir

    fast_presets.attach_lora(ctx.model, ctx.loras, pipe, ctx.holder.spec.experts, cache=cache_dir())
    options = ctx.holder.options
    wanted = (getattr(options, "attention", None), bool(getattr(options, "compile", False)))
    done = getattr(pipe, "_wan_nb_fast", None)
    if done == wanted:
        return
    from wan_nb.fast.attention import apply_attention, compile_blocks

    # None after a backend was set on this pipeline: back to PyTorch SDPA
    apply_attention(pipe, wanted[0] or ("native" if done and done[0] else None))
    if wanted[1] and not (done or (None, False))[1]:
        compile_blocks(pipe)
    pipe._wan_nb_fast = wanted


def check_recipe(generator: Any, recipe: Any) -> None:
    """A rerun must compute as the recipe did: refuse another attention backend, naming the fix."""
    recorded = recipe.get("attention")
    have = getattr(getattr(generator, "load_options", None), "attention", None)
    if recorded != have:
        raise ValueError(f"this recipe was made with attention={recorded!r}; this generator uses "
                         f"attention={have!r}. Use Generator({generator.model!r}, attention={recorded!r}).rerun(...)")


def recipe_fields(generator: Any, params: Any) -> dict[str, Any]:
    """What a recipe records of the fast path (the run's cache, the generator's attention/compile)."""
    options = getattr(generator, "load_options", None)
    return {"cache": params.get("cache"), "cache_threshold": params.get("cache_threshold"),
            "attention": getattr(options, "attention", None), "compile": bool(getattr(options, "compile", False))}
