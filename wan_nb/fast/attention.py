"""Attention backend (diffusers' dispatcher) and regional compilation of the repeated blocks.

``Generator(..., attention="flash")`` sets ``transformer.set_attention_backend("flash")`` on every
transformer once the model is loaded; a backend whose kernel is missing (the package, the GPU or
the ``kernels`` Hub loader) is refused when the Generator is made, before any download, with the
install command diffusers names. ``compile=True`` compiles each repeated transformer block once
(``compile_repeated_blocks``: one compiled block reused 30-40 times, seconds instead of the minutes
a whole-model ``torch.compile`` takes).

A run's cache hooks sit inside those compiled blocks. Traced by dynamo, a hook that reads or
bumps per-step Python state (a counter, diffusers' PAB/FasterCache ``iteration``, TaylorSeer's
step, text-kv's stored outputs) becomes a guard that fails at the next step: a recompile per step
until dynamo's limit, then those frames run uncompiled. :func:`hooks_outside_compile` keeps the
hooked sub-modules out of the compiled graph (a graph break around each, the hook itself eager),
so a cached compiled run compiles a bounded set of graphs, once.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["check_attention", "apply_attention", "compile_blocks", "blocks_compiled", "hooks_outside_compile",
           "COMMON_BACKENDS", "GPU_BACKENDS"]

COMMON_BACKENDS = ("native", "flash", "flash_hub", "_flash_3", "sage", "sage_hub", "flex", "xformers",
                   "_native_cudnn", "_native_flash", "_native_efficient", "_native_math")
# Kernels that exist only for CUDA GPUs (no CPU fallback in diffusers' dispatcher).
GPU_BACKENDS = ("flash", "flash_varlen", "flash_hub", "flash_varlen_hub", "flash_4_hub", "_flash_3",
                "_flash_varlen_3", "_flash_3_hub", "_flash_3_varlen_hub", "sage", "sage_hub",
                "sage_blackwell_hub", "sage_varlen", "xformers", "_native_cudnn", "_native_flash",
                "_native_efficient", "aiter_fa2_hub")


def check_attention(name: Any, *, device: str = "auto") -> str | None:
    """The backend name, validated: known to diffusers, its kernel importable, a GPU where it needs
    one. Raises ValueError naming the fix."""
    if name is None:
        return None
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"attention={name!r}: give a backend name such as 'native', 'flash' or 'sage' (or None)")
    from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

    key = name.strip().lower()
    try:
        backend = AttentionBackendName(key)
    except ValueError:
        known = sorted(b.value for b in AttentionBackendName)
        raise ValueError(f"attention={name!r} is not a diffusers attention backend; choose one of "
                         f"{', '.join(known)} (common: 'native', 'flash', 'sage')") from None
    if key in GPU_BACKENDS and not _cuda_ready(device):
        raise ValueError(f"attention={name!r} runs only on a CUDA GPU and none is in use here "
                         f"(device={device!r}); use attention='native' (PyTorch SDPA) or None")
    try:
        _check_attention_backend_requirements(backend)
    except (RuntimeError, ImportError) as exc:
        raise ValueError(f"attention={name!r}: its kernel is not available: {exc} Or use "
                         "attention='native'.") from None
    return key


def _cuda_ready(device: str) -> bool:
    if str(device).startswith("cpu"):
        return False
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def _transformers(pipe: Any) -> list[Any]:
    return [t for t in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if t is not None]


def apply_attention(pipe: Any, name: str | None) -> None:
    """Route every transformer's attention through backend ``name`` (None: leave as loaded)."""
    if name is None:
        return
    for transformer in _transformers(pipe):
        transformer.set_attention_backend(name)


def compile_blocks(pipe: Any) -> int:
    """Compile each transformer's repeated block in place; returns how many transformers."""
    count = 0
    for transformer in _transformers(pipe):
        if hasattr(transformer, "compile_repeated_blocks") and getattr(transformer, "_repeated_blocks", None):
            transformer.compile_repeated_blocks(fullgraph=False, dynamic=False)
        else:  # an older diffusers: compile each block the same way
            for block in transformer.blocks:
                block.compile(fullgraph=False, dynamic=False)
        count += 1
    return count


# diffusers block hooks whose tail instance records per-step Python state after the block ran.
_HISTORY_BLOCK_HOOKS = ("sea_cache_block",)


def blocks_compiled(transformer: Any) -> bool:
    """Whether :func:`compile_blocks` compiled this transformer's blocks (``Module.compile`` in place)."""
    return any(getattr(block, "_compiled_call_impl", None) is not None for block in getattr(transformer, "blocks", ()))


def hooks_outside_compile(transformer: Any) -> Callable[[], None]:
    """Run every diffusers-hooked module *inside* a compiled block uncompiled (``torch.compiler.disable``
    on its hooked ``forward``); returns the undo, to call before the hooks are removed.

    The blocks' own hooks (first-block, MagCache, SeaCache) stay traced: diffusers already keeps
    their per-step decision out of the graph, and disabling them would leave the whole block eager;
    except SeaCache's tail block, whose hook appends the step's residual to a Python history after
    the block ran (a guard per step): that one block runs eager."""
    import torch

    wrapped = []
    for block in transformer.blocks:
        for module in block.modules():
            registry = getattr(module, "_diffusers_hook", None)
            forward = module.__dict__.get("forward")  # the hook chain diffusers put on the instance
            if registry is None or not registry.hooks or forward is None:
                continue
            if module is block and not any(getattr(registry.hooks.get(name), "is_tail", False)
                                           for name in _HISTORY_BLOCK_HOOKS):
                continue
            module.forward = torch.compiler.disable(forward)
            wrapped.append((module, forward))

    def undo() -> None:
        for module, forward in reversed(wrapped):
            module.forward = forward
        wrapped.clear()

    return undo
