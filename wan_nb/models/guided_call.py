"""A diffusers guider inside a diffusers Wan pipeline's own loop, for one run.

Every Wan pipeline (text-, image-, video-to-video, VACE, Animate, both experts of Wan 2.2) makes
the same two transformer calls a step, conditional first, then, when ``guidance_scale > 1``,
unconditional, and combines them as ``uncond + scale * (cond - uncond)``. diffusers' guiders are
written for the modular pipelines, which exist only for some of these kinds and would bypass our
run machinery (the step callback, checkpoints, cache hooks, twin pipelines). So the pipeline call
stays as it is and the guider is wired around the transformer with two torch hooks:

* the conditional call's output is kept (a copy the run owns);
* after the unconditional call, any extra pass the guider asks for (skip-layer and
  perturbed-attention: the conditional inputs again, with diffusers' layer-skip hooks on the
  chosen blocks, in its own cache context) is run, then ``guider.forward`` combines the
  predictions into ``G``. The kept conditional tensor is overwritten with ``G`` and the call
  returns ``G``, so the pipeline's own line computes ``G + scale * (G - G) = G`` exactly.

The guider sees the protocol the modular pipelines give it: ``set_state`` once a step, then
``prepare_models`` / ``cleanup_models`` around each prediction it asked for, in the order its
``prepare_inputs`` lists them (conditional, unconditional, extra). ``guidance="cfg"`` thus gives
the same latents as the pipeline's classic CFG, bit for bit (tests/models/test_guidance.py).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Mapping

from wan_nb.models.guidance import DEFAULT_LAYER, EXTRA_PASS, build_guider
from wan_nb.protocol.errors import InvalidParameter

__all__ = ["GuidedCall", "guided_call"]

log = logging.getLogger(__name__)

_IDENTIFIER = "__guidance_identifier__"   # diffusers.guiders.BaseGuidance._identifier_key
# MAMBO-G takes torch.norm over every non-batch dim, which torch reads as a matrix norm and refuses
# past two dims: a video's (B, C, F, H, W) goes in as (B, C, F*H*W), the same Frobenius norm.
_FLATTENED = ("magnitude-aware",)


def _transformers(pipe: Any, params: Mapping[str, Any]) -> list[tuple[Any, float]]:
    """Each transformer with the guidance scale of its steps."""
    scale = float(params["guidance_scale"])
    second = params.get("guidance_scale_2")
    found = [(getattr(pipe, "transformer", None), scale),
             (getattr(pipe, "transformer_2", None), scale if second is None else float(second))]
    return [(t, s) for t, s in found if t is not None]


def _default_layers(transformer: Any) -> list[int]:
    count = len(transformer.blocks)
    return [DEFAULT_LAYER] if count > DEFAULT_LAYER else [count // 2]


def _register_wan_attention() -> None:
    """diffusers 0.42 registers the attention-skip metadata under ``WanAttnProcessor2_0``, a
    deprecated alias; Wan's blocks use ``WanAttnProcessor``. Perturbed attention looks the
    processor's class up, so the current class gets the same entry (its skip output: the input)."""
    from diffusers.hooks._helpers import AttentionProcessorRegistry
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor, WanAttnProcessor2_0

    try:
        AttentionProcessorRegistry.get(WanAttnProcessor)
    except ValueError:
        AttentionProcessorRegistry.register(WanAttnProcessor, AttentionProcessorRegistry.get(WanAttnProcessor2_0))


def _check_layers(name: str, transformer: Any, guider: Any) -> None:
    count = len(getattr(transformer, "blocks", ()))
    for config in getattr(guider, "skip_layer_config", ()):
        wrong = [i for i in config.indices if not 0 <= i < count]
        if wrong:
            raise InvalidParameter("guidance_options", {EXTRA_PASS[name]: list(config.indices)},
                                   f"this transformer has blocks 0 to {count - 1}; {wrong} do not exist. "
                                   f"Pick blocks in that range, e.g. [{min(DEFAULT_LAYER, count // 2)}]")


def _check_attention(transformer: Any) -> None:
    """Perturbed attention replaces ``softmax(QK)V`` by ``V`` where torch's scaled_dot_product_attention
    is called; a fused kernel from another backend would be left alone and the guidance do nothing."""
    backend = getattr(transformer.blocks[0].attn1.processor, "_attention_backend", None)
    name = getattr(backend, "value", backend)
    if name is not None and name not in ("native", "_native_math", "_native_efficient", "_native_cudnn",
                                         "_native_flash"):
        raise InvalidParameter("guidance", "perturbed-attention", f"perturbs torch's attention, but this "
                               f"generator runs the {name!r} backend; use Generator(attention='native') (or "
                               "None), or guidance='skip-layer'")


def _prediction(output: Any) -> Any:
    return output[0] if isinstance(output, tuple) else output.sample


def _with_prediction(output: Any, tensor: Any) -> Any:
    if isinstance(output, tuple):
        return (tensor, *output[1:])
    output.sample = tensor
    return output


class GuidedCall:
    """The hooks of one run: installed on construction, removed by :meth:`close`."""

    def __init__(self, pipe: Any, params: Mapping[str, Any], first_step: int = 0) -> None:
        self.name = params["guidance"]
        self.steps = int(params["steps"])
        self.next_step = first_step
        self.calls = 0
        self.inside = False
        self.wanted: list[str] = []
        self.kept: Any = None
        self.cond_inputs: tuple[Any, dict[str, Any]] = ((), {})
        self.handles: list[Any] = []
        self.guiders: dict[int, Any] = {}
        self.hooked: list[tuple[Any, Any]] = []   # (transformer, its guider)
        self.extra_passes = 0   # how many perturbed passes ran (the tests and the ETA read it)
        if self.name == "perturbed-attention":
            _register_wan_attention()
        try:
            for transformer, scale in _transformers(pipe, params):
                guider = build_guider(self.name, params.get("guidance_options") or {}, scale,
                                      default_layers=_default_layers(transformer))
                _check_layers(self.name, transformer, guider)
                if self.name == "perturbed-attention":
                    _check_attention(transformer)
                self.guiders[id(transformer)] = guider
                self.hooked.append((transformer, guider))
                self.handles.append(transformer.register_forward_pre_hook(self._before, with_kwargs=True))
                self.handles.append(transformer.register_forward_hook(self._after, with_kwargs=True))
        except BaseException:
            self.close()
            raise

    def step_ended(self, index: int) -> None:
        """The pipeline's step ``index`` is done (the run's step callback): the next call is a cond."""
        self.next_step = index + 1
        self.calls = 0

    # -- the hooks -----------------------------------------------------------------------------
    def _before(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        if self.inside:
            return None
        guider = self.guiders[id(module)]
        self.calls += 1
        if self.calls == 1:
            guider.set_state(step=self.next_step % self.steps, num_inference_steps=self.steps,
                             timestep=kwargs.get("timestep"))
            self.wanted = [getattr(batch, _IDENTIFIER) for batch in guider.prepare_inputs({})]
        if self._counts(self.calls):
            guider.prepare_models(module)
        return None

    def _counts(self, call: int) -> bool:
        """Whether the pipeline's call ``call`` (1: cond, 2: uncond) is a prediction the guider asked for."""
        return (call == 1 and "pred_cond" in self.wanted) or (call == 2 and "pred_uncond" in self.wanted)

    def _after(self, module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> Any:
        if self.inside:
            return None
        guider = self.guiders[id(module)]
        if self._counts(self.calls):
            guider.cleanup_models(module)
        prediction = _prediction(output)
        if self.calls == 1:
            self.kept = prediction.clone()   # ours to overwrite: a cache hook may hold the original
            self.cond_inputs = (args, dict(kwargs))
            return _with_prediction(output, self.kept)
        if self.calls != 2:
            return None
        predictions = {"pred_cond": self.kept}
        if "pred_uncond" in self.wanted:
            predictions["pred_uncond"] = prediction
        for identifier in self.wanted:
            if identifier not in predictions:
                predictions[identifier] = self._extra_pass(module, guider, identifier)
        shape = prediction.shape
        if self.name in _FLATTENED:
            predictions = {k: v.flatten(2) for k, v in predictions.items()}
        combined = guider.forward(**predictions).pred.to(prediction.dtype).reshape(shape)
        self.kept.copy_(combined)   # the pipeline's cond tensor: G + scale * (G - G) is G
        self.kept = None
        return _with_prediction(output, combined)

    def _extra_pass(self, module: Any, guider: Any, identifier: str) -> Any:
        args, kwargs = self.cond_inputs
        context = getattr(module, "cache_context", None)
        guider.prepare_models(module)
        self.inside = True
        try:
            with context(identifier) if context is not None else contextlib.nullcontext():
                output = module(*args, **kwargs)
        finally:
            self.inside = False
            guider.cleanup_models(module)
        self.extra_passes += 1
        return _prediction(output)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        # A run that failed inside an extra pass leaves no layer-skip hook behind for the next one.
        for transformer, guider in self.hooked:
            names = getattr(guider, "_skip_layer_hook_names", None)
            if names:
                from diffusers.hooks import HookRegistry

                registry = HookRegistry.check_if_exists_or_initialize(transformer)
                for name in names:
                    registry.remove_hook(name, recurse=True)


@contextlib.contextmanager
def guided_call(pipe: Any, params: Mapping[str, Any], first_step: int = 0):
    """``with guided_call(runner, params) as guided:`` around the denoising call; yields None when
    the run keeps the pipeline's classic CFG (``guidance=None``)."""
    if not params.get("guidance"):
        yield None
        return
    guided = GuidedCall(pipe, params, first_step)
    try:
        yield guided
    finally:
        guided.close()
