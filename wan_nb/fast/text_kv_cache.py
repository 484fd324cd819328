"""``cache="text-kv"``: exact reuse of Wan's cross-attention text (and image) K/V projections.

The prompt embeddings are the same tensors at every denoising step, so each block's
``attn2.to_k(text)`` / ``attn2.to_v(text)`` (and for Wan 2.1 I2V the image tokens'
``add_k_proj`` / ``add_v_proj``), and the transformer's ``text_embedder`` / ``image_embedder`` that
feed them, give the same output at every step of one pass. This module computes them once per
pass (conditional and unconditional are different tensors, so each gets its own entry) and hands
back the stored outputs afterwards: the run is bit-for-bit the uncached one.

diffusers 0.42.1's ``TextKVCacheConfig`` hooks only NucleusMoE blocks; this one is written on the
same hook machinery (``ModelHook`` on a ``HookRegistry``) for ``WanTransformer3DModel``:

* one hook on the transformer records which inputs this forward has (the ``encoder_hidden_states``
  and ``encoder_hidden_states_image`` tensors: identity and in-place version, held so that their
  ids cannot be recycled while the entry lives);
* one hook on each projection returns the entry's stored output when the module's weights are as
  they were (parameter storage and version, and a PEFT layer's adapter scales and active adapters:
  a LoRA whose weight changes between steps recomputes, so reuse stays exact); else it computes
  and stores.

The keys' RMS norms (``norm_k``, ``norm_added_k``) are recomputed from the stored projections:
O(tokens x width) against the projections' O(tokens x width^2), and it keeps one stored tensor
per projection. Memory: blocks x 2 x text tokens x width per pass and transformer (Wan 2.1 14B:
~0.4 GB per pass in bf16). :func:`apply` installs the hooks for one run; :meth:`TextKV.close`
removes them and drops every stored tensor.
"""

from __future__ import annotations

import inspect
from typing import Any

from diffusers.hooks import HookRegistry, ModelHook

__all__ = ["TextKV", "apply", "HOOK"]

HOOK = "wan_nb_text_kv"
# The cross-attention modules whose outputs depend only on the prompt/image embeddings (fused or not).
_PROJECTIONS = ("to_k", "to_v", "to_kv", "add_k_proj", "add_v_proj", "to_added_kv")
_EMBEDDERS = ("text_embedder", "image_embedder")


def _fingerprint(module: Any) -> tuple:
    """What the module's output depends on besides its input: its weights and, for PEFT layers
    in it, the adapters in force and their scales."""
    weights = tuple((p.data_ptr(), p._version) for p in module.parameters())
    adapters = tuple((tuple(sorted(m.scaling.items())), tuple(getattr(m, "active_adapters", ()) or ()),
                      tuple(getattr(m, "merged_adapters", ()) or ()), bool(getattr(m, "disable_adapters", False)))
                     for m in module.modules() if isinstance(getattr(m, "scaling", None), dict))
    return weights, adapters


class _Entry:
    """The stored outputs for one set of transformer inputs (one guidance pass of one run)."""

    def __init__(self, sources: tuple[Any, ...]) -> None:
        self.sources = sources  # held: their ids stay theirs while this entry lives
        self.versions = tuple(None if s is None else s._version for s in sources)
        self.outputs: dict[int, tuple[tuple, Any]] = {}

    def matches(self, sources: tuple[Any, ...]) -> bool:
        return all(a is b for a, b in zip(self.sources, sources)) and \
            self.versions == tuple(None if s is None else s._version for s in sources)


class TextKV:
    """The text-kv cache of one transformer for one run: its entries, hit/miss counts, its hooks."""

    def __init__(self, transformer: Any) -> None:
        self.transformer = transformer
        self.entries: dict[tuple, _Entry] = {}
        self.current: _Entry | None = None
        self.hits = 0
        self.misses = 0
        self.modules: list[Any] = []
        self.signature = inspect.signature(type(transformer).forward)

    def enter(self, module: Any, args: tuple, kwargs: dict) -> None:
        bound = self.signature.bind_partial(module, *args, **kwargs).arguments
        sources = (bound.get("encoder_hidden_states"), bound.get("encoder_hidden_states_image"))
        key = tuple(None if s is None else id(s) for s in sources)
        entry = self.entries.get(key)
        if entry is None or not entry.matches(sources):  # a new prompt, or one changed in place
            entry = self.entries[key] = _Entry(sources)
        self.current = entry

    def close(self) -> None:
        """Remove every hook and drop every stored tensor."""
        for module in self.modules:
            registry = getattr(module, "_diffusers_hook", None)
            if registry is not None and registry.get_hook(HOOK) is not None:
                registry.remove_hook(HOOK, recurse=False)
        if self.modules:
            HookRegistry.check_if_exists_or_initialize(self.transformer).invalidate_child_registries_cache()
        self.modules.clear()
        self.entries.clear()
        self.current = None


class _InputsHook(ModelHook):
    """On the transformer: which prompt/image embeddings this forward call has."""

    def __init__(self, cache: TextKV) -> None:
        super().__init__()
        self.cache = cache

    def new_forward(self, module: Any, *args: Any, **kwargs: Any) -> Any:
        self.cache.enter(module, args, kwargs)
        try:
            return self.fn_ref.original_forward(*args, **kwargs)
        finally:
            self.cache.current = None  # a call outside a transformer forward computes as usual


class _ReuseHook(ModelHook):
    """On one projection: the stored output when the entry has it and the weights are unchanged."""

    def __init__(self, cache: TextKV) -> None:
        super().__init__()
        self.cache = cache

    def new_forward(self, module: Any, *args: Any, **kwargs: Any) -> Any:
        entry = self.cache.current
        if entry is None:
            return self.fn_ref.original_forward(*args, **kwargs)
        fingerprint = _fingerprint(module)
        stored = entry.outputs.get(id(module))
        if stored is not None and stored[0] == fingerprint:
            self.cache.hits += 1
            return stored[1]
        output = self.fn_ref.original_forward(*args, **kwargs)
        entry.outputs[id(module)] = (fingerprint, output)
        self.cache.misses += 1
        return output


def cached_modules(transformer: Any) -> list[Any]:
    """The modules whose outputs text-kv stores: every block's cross-attention K/V projections
    and the condition embedder's text/image projections."""
    found = []
    embedder = getattr(transformer, "condition_embedder", None)
    for name in _EMBEDDERS:
        if getattr(embedder, name, None) is not None:
            found.append(getattr(embedder, name))
    for block in transformer.blocks:
        attention = getattr(block, "attn2", None)
        for name in _PROJECTIONS:
            module = getattr(attention, name, None)
            if module is not None:
                found.append(module)
    return found


def apply(transformer: Any) -> TextKV:
    """Install text-kv on ``transformer`` for one run; ``close()`` the result after it."""
    cache = TextKV(transformer)
    try:
        for module in [transformer, *cached_modules(transformer)]:
            hook = _InputsHook(cache) if module is transformer else _ReuseHook(cache)
            HookRegistry.check_if_exists_or_initialize(module).register_hook(hook, HOOK)
            cache.modules.append(module)
        HookRegistry.check_if_exists_or_initialize(transformer).invalidate_child_registries_cache()
    except BaseException:
        cache.close()
        raise
    return cache
