"""Cache acceleration per run: diffusers' cache hooks on the transformer(s), on for one run only.

``gen.generate(..., cache="first-block")`` (or ``"mag"``, ``"taylorseer"``, ``"faster"``,
``"pab"``, ``"sea"``; ``cache_threshold=`` for the three adaptive ones) enables the matching
diffusers hook (``FirstBlockCacheConfig``, ``MagCacheConfig``, ``TaylorSeerCacheConfig``,
``FasterCacheConfig``, ``PyramidAttentionBroadcastConfig``, ``SeaCacheConfig``) right before the
denoising loop and disables it right after, also when the run fails or is cancelled, so the next
run (another grid cell) starts clean.

``cache="text-kv"`` is exact (:mod:`wan_nb.fast.text_kv_cache`: the cross-attention's text K/V
projections computed once per pass); it combines with one of the others as
``"first-block+text-kv"`` (or the pair ``("first-block", "text-kv")``, recorded as the string).

SeaCache needs the scheduler's step and sigma from the denoising loop; of diffusers' Wan
pipelines only ``WanPipeline`` (text-to-video) passes them, so ``"sea"`` is refused for runs with
an image or a video input, and for image-to-video, VACE and Animate models.

Whether a step was computed or reused is counted, not guessed: a forward hook on each block's
self-attention query projection counts the blocks whose attention really ran; a step with fewer
than (blocks x transformer passes) reused some of its work (``step_reused`` in its progress event;
the step clock keeps computed and reused steps apart, so the time left stays honest).

MagCache needs the model's magnitude-ratio curve. diffusers ships none for Wan, so the first
``cache="mag"`` run of a model measures it (every step computed, the curve kept in
``<cache>/mag_ratios.json``) and later runs use it; the first run's message says so.

PAB and FasterCache keep one state per attention layer, which Wan's separate conditional and
unconditional passes would share (the unconditional pass reusing the conditional attention):
here each pass gets its own state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import numbers
import threading
from typing import Any, Mapping

from wan_nb.runs.atomic import replace_text
from wan_nb.protocol.errors import InvalidParameter
from wan_nb.models.specs import cache_dir
from wan_nb.fast.attention import blocks_compiled, hooks_outside_compile

__all__ = ["CACHE_MODES", "LOSSY_MODES", "TEXT_KV", "CACHE_CHOICES", "split_mode", "check_cache", "RunCache", "cache_for_run", "forget_ratios"]

log = logging.getLogger(__name__)

LOSSY_MODES = ("first-block", "mag", "taylorseer", "faster", "pab", "sea")
TEXT_KV = "text-kv"
CACHE_MODES = (*LOSSY_MODES, TEXT_KV)
# Every string cache= takes: one mode, or a reusing mode with the exact text-kv ("first-block+text-kv").
CACHE_CHOICES = (*CACHE_MODES, *(f"{mode}+{TEXT_KV}" for mode in LOSSY_MODES))
# SeaCache reads the step index, sigma and step count the denoising loop passes to cache_context:
# among diffusers' Wan pipelines only this one passes them.
SEA_PIPELINE = "WanPipeline"
# Thresholds of the adaptive modes: ParaAttention's first-block cache skips the other blocks while
# the first block's residual changes less than this (relative L1); MagCache while the accumulated
# magnitude-ratio error stays below it (its paper's default 0.06); SeaCache while the accumulated
# relative change of its spectral indicator stays below it (diffusers' default 0.25).
DEFAULT_THRESHOLDS = {"first-block": 0.08, "mag": 0.06, "sea": 0.25}
THRESHOLD_RANGE = (1e-4, 1.0)
_RATIOS_FILE = "mag_ratios.json"
_ratios_lock = threading.Lock()


# ---------------------------------------------------------------------------------------------
# checking, at submit
# ---------------------------------------------------------------------------------------------
def split_mode(mode: Any) -> tuple[str | None, bool]:
    """``(the reusing mode or None, whether text-kv is on)`` of a cache= value already checked."""
    parts = mode.split("+") if mode else []
    return next((m for m in parts if m != TEXT_KV), None), TEXT_KV in parts


def _canonical(mode: Any) -> str:
    """One string for a mode, a "+"-joined pair or a (mode, "text-kv") pair; raises on anything else."""
    parts = list(mode) if isinstance(mode, (list, tuple)) else mode.split("+") if isinstance(mode, str) else None
    choices = f"choose one of {', '.join(map(repr, CACHE_MODES))} or None (e.g. cache='first-block'), " \
              f"or a reusing mode with the exact {TEXT_KV!r} (cache='first-block+{TEXT_KV}')"
    if not parts or not all(isinstance(p, str) and p.strip().lower() in CACHE_MODES for p in parts):
        raise InvalidParameter("cache", mode, choices)
    parts = [p.strip().lower() for p in parts]
    lossy = [p for p in parts if p != TEXT_KV]
    if len(lossy) > 1 or len(parts) - len(lossy) > 1:
        raise InvalidParameter("cache", mode, f"takes at most one reusing mode ({', '.join(LOSSY_MODES)}) "
                               f"plus {TEXT_KV!r}; e.g. cache='{lossy[0] if lossy else 'first-block'}+{TEXT_KV}'")
    return "+".join(lossy + [TEXT_KV] * (len(parts) - len(lossy)))


def check_cache(mode: Any, threshold: Any, *, two_experts: bool = False, pipeline: Any = None,
                pipeline_class: str | None = None, inputs: Mapping[str, Any] | None = None,
                ) -> tuple[str | None, float | None]:
    """``(mode, threshold)`` validated before anything is loaded; raises ``InvalidParameter``.
    ``pipeline_class`` and ``inputs`` (the run's parameters) say which diffusers pipeline will run."""
    if mode is None or mode is False or mode == "none":
        if threshold is not None:
            raise InvalidParameter("cache_threshold", threshold, "applies to a cache mode; pass "
                                   "cache='first-block' or cache='mag' with it, or drop it")
        return None, None
    mode = _canonical(mode)
    lossy, _ = split_mode(mode)
    if threshold is not None:
        if lossy not in DEFAULT_THRESHOLDS:
            raise InvalidParameter("cache_threshold", threshold, f"cache={mode!r} reuses on a fixed "
                                   "schedule or is exact, and takes no threshold; drop cache_threshold, or use "
                                   "cache='first-block', 'mag' or 'sea' to tune one")
        low, high = THRESHOLD_RANGE
        if not isinstance(threshold, numbers.Real) or isinstance(threshold, bool) or not math.isfinite(threshold) \
                or not low <= threshold <= high:
            raise InvalidParameter("cache_threshold", threshold, f"must be a number from {low:g} to {high:g}; "
                                   f"the default for {lossy!r} is {DEFAULT_THRESHOLDS[lossy]}")
        threshold = float(threshold)
    if lossy == "sea":
        _check_sea(mode, pipeline_class, inputs or {})
    if lossy == "mag" and two_experts:
        raise InvalidParameter("cache", mode, "MagCache's ratio curve is per transformer and the two "
                               "experts split the steps between them; use cache='first-block' or "
                               "'taylorseer' on two-expert models")
    if pipeline is not None:
        transformer = getattr(pipeline, "transformer", None) or getattr(pipeline, "transformer_2", None)
        if transformer is None or not hasattr(transformer, "enable_cache"):
            raise InvalidParameter("cache", mode, f"this pipeline's transformer ({type(transformer).__name__}) "
                                   "has no diffusers cache hooks (CacheMixin); drop cache=, or use a "
                                   "diffusers WanTransformer3DModel")
        if lossy in ("faster", "pab") and not hasattr(pipeline, "current_timestep"):
            raise InvalidParameter("cache", mode, f"{type(pipeline).__name__} does not expose "
                                   "current_timestep, which PAB and FasterCache need; use "
                                   "cache='first-block'")
    return mode, threshold


def _check_sea(mode: str, pipeline_class: str | None, inputs: Mapping[str, Any]) -> None:
    """SeaCache gates on the step index and sigma the denoising loop hands ``cache_context``;
    a pipeline that does not hand them over would silently compute every step."""
    runs = pipeline_class
    if pipeline_class == SEA_PIPELINE and inputs.get("image") is not None:
        runs = "WanImageToVideoPipeline"
    elif pipeline_class == SEA_PIPELINE and inputs.get("video") is not None:
        runs = "WanVideoToVideoPipeline"
    if runs is not None and runs != SEA_PIPELINE:
        raise InvalidParameter("cache", mode, f"SeaCache needs the scheduler step and sigma from the "
                               f"denoising loop, which only diffusers' {SEA_PIPELINE} (text-to-video) passes; "
                               f"this run goes through {runs}. Use cache='first-block' or 'taylorseer' "
                               f"(each may add '+{TEXT_KV}'), or drop the image/video input")


# ---------------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------------
def _transformers(pipe: Any) -> list[Any]:
    return [t for t in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if t is not None]


def _config(mode: str, threshold: float | None, pipe: Any, steps: int, ratios: list[float] | None) -> Any:
    import torch
    from diffusers.hooks import (FasterCacheConfig, FirstBlockCacheConfig, MagCacheConfig,
                                 PyramidAttentionBroadcastConfig, SeaCacheConfig, TaylorSeerCacheConfig)

    timestep = lambda: pipe.current_timestep  # noqa: E731 (read at every layer call)
    if mode == "first-block":
        return FirstBlockCacheConfig(threshold=threshold or DEFAULT_THRESHOLDS[mode])
    if mode == "sea":
        # diffusers' defaults (first and last step computed, at most 2 reuses in a row, first-order
        # residual prediction); its own Wan text-to-video adapter reads the latents.
        return SeaCacheConfig(threshold=threshold or DEFAULT_THRESHOLDS[mode])
    if mode == "mag":
        return MagCacheConfig(threshold=threshold or DEFAULT_THRESHOLDS[mode], num_inference_steps=steps,
                              mag_ratios=list(ratios))
    if mode == "taylorseer":
        # diffusers' default patterns ("^blocks.*attn") match no Wan module name in full, so the
        # attention and feed-forward layers are named here; first-order prediction, refresh every 3.
        return TaylorSeerCacheConfig(cache_interval=3, disable_cache_before_step=3, max_order=1,
                                     taylor_factors_dtype=torch.float32,
                                     cache_identifiers=[r"blocks\.\d+\.(attn1|attn2|ffn)"])
    if mode == "faster":
        # Wan runs its two guidance passes separately (batch 1), so FasterCache's batched
        # unconditional-branch skip does not apply: attention reuse only.
        return FasterCacheConfig(spatial_attention_block_skip_range=2, current_timestep_callback=timestep,
                                 attention_weight_callback=lambda _: 0.5, is_guidance_distilled=True,
                                 tensor_format="BCFHW")
    return PyramidAttentionBroadcastConfig(spatial_attention_block_skip_range=2,
                                           spatial_attention_timestep_skip_range=(100, 900),
                                           current_timestep_callback=timestep)


def _eager(hook: Any) -> Any:
    """``hook`` run outside any compiled graph (a graph break where a compiled block calls it)."""
    import torch

    return torch.compiler.disable(hook)


class _PerPassStates:
    """Give each guidance pass ("cond", "uncond") its own PAB / FasterCache layer states."""

    _HOOKS = ("pyramid_attention_broadcast", "faster_cache_block", "faster_cache_denoiser")

    def __init__(self, transformer: Any) -> None:
        self.transformer = transformer
        self.hooks = [registry.hooks[name] for module in transformer.modules()
                      for registry in [getattr(module, "_diffusers_hook", None)] if registry is not None
                      for name in self._HOOKS if name in registry.hooks and hasattr(registry.hooks[name], "state")]
        self.saved: dict[str, list[Any]] = {}
        self.current: str | None = None
        original = transformer.cache_context

        @contextlib.contextmanager
        def cache_context(name: str, **kwargs: Any):
            self.switch(name)
            with original(name, **kwargs):
                yield

        transformer.cache_context = cache_context  # the instance attribute shadows the method

    def switch(self, name: str) -> None:
        if name == self.current:
            return
        if self.current is not None:
            self.saved[self.current] = [hook.state for hook in self.hooks]
        fresh = self.saved.get(name)
        for index, hook in enumerate(self.hooks):
            hook.state = fresh[index] if fresh is not None else type(hook.state)() if self.current else hook.state
        self.current = name

    def close(self) -> None:
        self.transformer.__dict__.pop("cache_context", None)


class RunCache:
    """The cache of one run: enabled on construction, counting per step, :meth:`close` disables it."""

    def __init__(self, pipe: Any, mode: str, threshold: float | None, *, steps: int, passes: int,
                 model: str) -> None:
        self.mode, self.passes, self.model, self.steps = mode, passes, model, steps
        lossy, text_kv = split_mode(mode)
        self.transformers = _transformers(pipe)
        self.full = max(len(t.blocks) for t in self.transformers) * passes
        self.count = 0
        self.reused_steps = 0
        self._handles: list[Any] = []
        self._passes: list[_PerPassStates] = []
        self._enabled: list[Any] = []
        self._undo_compile: list[Any] = []
        self.text_kv: list[Any] = []  # wan_nb.fast.text_kv_cache.TextKV, one per transformer
        self.calibrating = lossy == "mag" and _load_ratios(model) is None
        self._calibration: list[float] = []
        self._residual: list[Any] = [None, None, 0]  # block-0 input, previous residual, passes this step
        if lossy == "sea" and type(pipe).__name__ != SEA_PIPELINE:  # submit refuses this; a given pipeline may not
            _check_sea(mode, type(pipe).__name__, {})
        try:
            for transformer in self.transformers:
                compiled = blocks_compiled(transformer)
                # Under compile=True the counter stays out of the graph: traced, its int is a
                # guard that fails at every block call (a recompile per step).
                counted = _eager(self._counted) if compiled else self._counted
                for block in transformer.blocks:
                    self._handles.append(block.attn1.to_q.register_forward_hook(counted))
                if self.calibrating:
                    self._measure_ratios(transformer, compiled)
                elif lossy is not None:
                    transformer.enable_cache(_config(lossy, threshold, pipe, steps, _load_ratios(model)))
                    self._enabled.append(transformer)
                    if lossy in ("faster", "pab"):
                        self._passes.append(_PerPassStates(transformer))
                if text_kv:  # after the reusing mode's hooks: diffusers unhooks cleanly only the last one first
                    from wan_nb.fast import text_kv_cache

                    self.text_kv.append(text_kv_cache.apply(transformer))
                if compiled:  # after every hook of this run is in
                    self._undo_compile.append(hooks_outside_compile(transformer))
        except BaseException:
            self.close()
            raise

    @property
    def message(self) -> str:
        if self.calibrating:
            return (f"MagCache: measuring {self.model}'s magnitude ratios on this run (every step computed); "
                    "later cache='mag' runs reuse steps")
        return f"cache={self.mode!r}"

    def _counted(self, module: Any, args: Any, output: Any) -> None:
        self.count += 1

    def step_end(self) -> bool:
        """True if the step that just ended reused part of its transformer work."""
        reused = self.count < self.full
        self.count = 0
        self.reused_steps += reused
        self._residual[2] = 0
        return reused

    # -- MagCache calibration ----------------------------------------------------------------
    def _measure_ratios(self, transformer: Any, compiled: bool = False) -> None:
        """Record mean(|residual_t| / |residual_t-1|) per step on the first (conditional) pass, as
        MagCache's calibration defines it; residual = last block's output - first block's input."""
        import torch

        state = self._residual

        def before(module: Any, args: Any) -> None:
            state[2] += 1
            state[0] = args[0] if state[2] == 1 else None

        def after(module: Any, args: Any, output: Any) -> None:
            if state[0] is None:
                return
            residual = (output - state[0]).float()
            previous = state[1]
            ratio = 1.0 if previous is None else float(
                (torch.linalg.norm(residual, dim=-1) / (torch.linalg.norm(previous, dim=-1) + 1e-8)).mean())
            self._calibration.append(ratio)
            state[1], state[0] = residual, None

        eager = _eager if compiled else (lambda hook: hook)
        self._handles.append(transformer.blocks[0].register_forward_pre_hook(eager(before)))
        self._handles.append(transformer.blocks[-1].register_forward_hook(eager(after)))

    @property
    def text_kv_counts(self) -> tuple[int, int]:
        """(projections reused, projections computed) by text-kv so far in this run."""
        return sum(c.hits for c in self.text_kv), sum(c.misses for c in self.text_kv)

    def close(self, completed: bool = False) -> None:
        for undo in self._undo_compile:  # first: diffusers unhooks the forwards it installed
            undo()
        self._undo_compile.clear()
        for text_kv in self.text_kv:  # first: the last hooks in, the first out
            text_kv.close()
        self.text_kv.clear()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for per_pass in self._passes:
            per_pass.close()
        self._passes.clear()
        for transformer in self._enabled:
            try:
                transformer.disable_cache()
            except Exception:  # never leave a run's failure hidden behind the cleanup's
                log.debug("disable_cache failed", exc_info=True)
        self._enabled.clear()
        if completed and self.calibrating and len(self._calibration) == self.steps:
            _save_ratios(self.model, self._calibration)


@contextlib.contextmanager
def cache_for_run(pipe: Any, params: Mapping[str, Any], model: str):
    """``with cache_for_run(pipe, params, model) as run_cache:`` around the denoising call; yields
    None when the run has no cache mode."""
    mode = params.get("cache")
    if not mode:
        yield None
        return
    passes = 2 if params["guidance_scale"] > 1.0 else 1
    run_cache = RunCache(pipe, mode, params.get("cache_threshold"), steps=params["steps"], passes=passes,
                         model=model)
    completed = False
    try:
        yield run_cache
        completed = True
    finally:
        run_cache.close(completed=completed)


# ---------------------------------------------------------------------------------------------
# MagCache ratio curves, per model
# ---------------------------------------------------------------------------------------------
def _ratios_path():
    return cache_dir() / _RATIOS_FILE


def _load_ratios(model: str) -> list[float] | None:
    try:
        curve = json.loads(_ratios_path().read_text()).get(model)
    except (OSError, ValueError):
        return None
    return [float(x) for x in curve] if isinstance(curve, list) and len(curve) >= 2 else None


def forget_ratios(model: str) -> None:
    """Drop ``model``'s MagCache curve: its next ``cache="mag"`` run measures it again."""
    with _ratios_lock:
        try:
            known = json.loads(_ratios_path().read_text())
        except (OSError, ValueError):
            return
        if known.pop(model, None) is not None:
            replace_text(_ratios_path(), json.dumps(known))


def _save_ratios(model: str, ratios: list[float]) -> None:
    with _ratios_lock:
        path = _ratios_path()
        try:
            known = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            known = {}
        known[model] = [round(r, 5) for r in ratios]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            replace_text(path, json.dumps(known))
        except OSError:
            log.debug("could not save MagCache ratios", exc_info=True)
