"""Trace each part of a pipeline under ``FakeTensorMode``: its weights, peak activations and FLOPs.

A part is one thing the pipeline runs on the device: a transformer's forward (one of the two
classifier-free-guidance passes: diffusers runs cond and uncond one after the other, batch 1),
the UMT5 encoder on one 512-token prompt, the CLIP image encoder, and the VAE's encode and decode
(with and without tiling). Each runs the real diffusers / transformers module, built from the real
config with fake weights (:mod:`wan_nb.fast.fake_modules`), on inputs of the shapes the pipeline
gives it at the requested height, width and frame count, under a :class:`PeakTracker` (peak bytes)
and torch's ``FlopCounterMode``. Results are cached (:mod:`wan_nb.fast.trace_cache`).

The inputs each pipeline kind gives the transformer (diffusers 0.42): t2v latents of 16 (Wan 2.2
5B: 48) channels; i2v 36 channels (latents + mask + the encoded condition video) and 257 CLIP
tokens; flf2v 514 CLIP tokens (first and last frame); vace 96 control channels; animate one
77-frame segment: 36 channels on one more latent frame (the reference image), 16 pose channels
and the 512 x 512 face crops. Wan 2.2 5B (ti2v) gets one timestep per token.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from wan_nb.fast.fake_modules import build_fake, vae_scale

__all__ = ["PartTrace", "trace_part", "trace_once", "real_call", "parts_of", "TEXT_TOKENS", "CLIP_TOKENS", "ANIMATE_SEGMENT", "FACE_SIZE"]

TEXT_TOKENS = 512        # WanPipeline's max_sequence_length
PROMPT_TOKENS = 32       # a prompt's own tokens; the rest of the 512 are padding
CLIP_TOKENS = 257        # ViT-H/14 at 224 px: 16 x 16 patches + the class token
ANIMATE_SEGMENT = 77     # WanAnimatePipeline's segment_frame_length
FACE_SIZE = 512          # the face crops WanAnimatePipeline gives the transformer
# Pipeline kinds that VAE-encode a whole video before denoising (the i2v condition video is the
# image followed by zero frames; vace encodes its control video; animate its pose video segment).
ENCODES_VIDEO = ("i2v", "flf2v", "vace", "animate")


@dataclass(frozen=True)
class PartTrace:
    weights_bytes: int       # parameters + buffers at the traced dtypes
    activation_bytes: int    # peak of everything else alive during one call (inputs included)
    flops: int               # of that call (torch.utils.flop_counter)
    largest_layer_bytes: int  # the largest single module's own parameters (sequential offload's unit)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def latent_shape(vae_config: dict[str, Any], shape: dict[str, int]) -> tuple[int, int, int]:
    """(latent frames, latent height, latent width) of a clip of ``shape``."""
    spatial, temporal = vae_scale(vae_config)
    frames = (shape["num_frames"] - 1) // temporal + 1
    return frames, shape["height"] // spatial, shape["width"] // spatial


def parts_of(pipeline_kind: str, components: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, tuple[str, str]]:
    """The parts a pipeline of ``pipeline_kind`` runs: part name -> (component name, what runs)."""
    parts: dict[str, tuple[str, str]] = {}
    for name, (kind, _) in components.items():
        if kind == "transformer":
            parts[name] = (name, "forward")
        elif kind == "umt5":
            parts["text_encoder"] = (name, "encode_text")
        elif kind == "clip":
            parts["image_encoder"] = (name, "encode_image")
        elif kind == "vae":
            if pipeline_kind in ENCODES_VIDEO or pipeline_kind == "ti2v":
                parts["vae_encode"] = (name, "encode")
            parts["vae_decode"] = (name, "decode")
    return parts


def _segment(pipeline_kind: str, shape: dict[str, int]) -> dict[str, int]:
    if pipeline_kind == "animate":  # planned per segment
        return dict(shape, num_frames=ANIMATE_SEGMENT)
    return shape


def _transformer_inputs(config: dict[str, Any], pipeline_kind: str, vae: dict[str, Any],
                        shape: dict[str, int], dtype: Any) -> dict[str, Any]:
    import torch

    frames, h, w = latent_shape(vae, shape)
    lead = frames + 1 if pipeline_kind == "animate" else frames
    inputs: dict[str, Any] = {
        "hidden_states": torch.empty(1, config.get("in_channels", 16), lead, h, w, dtype=dtype),
        "encoder_hidden_states": torch.empty(1, TEXT_TOKENS, config.get("text_dim", 4096), dtype=dtype),
        "timestep": torch.zeros(1, dtype=torch.long)}
    if pipeline_kind == "ti2v":  # Wan 2.2 5B: expand_timesteps, one timestep per latent token
        patch = tuple(config.get("patch_size") or (1, 2, 2))
        inputs["timestep"] = torch.zeros(1, frames * (h // patch[1]) * (w // patch[2]), dtype=torch.long)
    if config.get("image_dim"):
        # FLF2V: both images' CLIP tokens, batched; its image embedding joins them (pos_embed_seq_len)
        images = (config.get("pos_embed_seq_len") or CLIP_TOKENS) // CLIP_TOKENS
        inputs["encoder_hidden_states_image"] = torch.empty(images, CLIP_TOKENS, config["image_dim"], dtype=dtype)
    if "vace_layers" in config:
        inputs["control_hidden_states"] = torch.empty(1, config.get("vace_in_channels", 96), frames, h, w, dtype=dtype)
        inputs["control_hidden_states_scale"] = torch.ones(len(config["vace_layers"]), dtype=dtype)
    if pipeline_kind == "animate":
        inputs["pose_hidden_states"] = torch.empty(1, config.get("latent_channels", 16), frames, h, w, dtype=dtype)
        inputs["face_pixel_values"] = torch.empty(1, 3, shape["num_frames"], FACE_SIZE, FACE_SIZE, dtype=dtype)
    return inputs


def _call(model: Any, what: str, config: dict[str, Any], pipeline_kind: str, vae: dict[str, Any],
          shape: dict[str, int], dtype: Any, tiled: bool) -> tuple[Any, dict[str, Any]]:
    """(the callable, its keyword inputs) for one part."""
    import torch

    if what == "forward":
        return model, dict(_transformer_inputs(config, pipeline_kind, vae, shape, dtype), return_dict=False)
    if what == "encode_text":
        ids = torch.zeros(1, TEXT_TOKENS, dtype=torch.long)
        # padded as the pipeline pads a prompt (a real mask has zeros: transformers then builds the
        # 4D mask, which an all-ones mask would let it skip)
        mask = torch.cat([torch.ones(1, PROMPT_TOKENS, dtype=torch.long),
                          torch.zeros(1, TEXT_TOKENS - PROMPT_TOKENS, dtype=torch.long)], dim=1)
        return model, {"input_ids": ids, "attention_mask": mask}
    if what == "encode_image":
        images = 2 if pipeline_kind == "flf2v" else 1
        size = config.get("image_size", 224)
        return model, {"pixel_values": torch.empty(images, 3, size, size), "output_hidden_states": True}
    if tiled:
        model.enable_tiling()
    if what == "encode":
        frames = 1 if pipeline_kind == "ti2v" else shape["num_frames"]
        video = torch.empty(1, 3, frames, shape["height"], shape["width"])  # RGB (Wan 2.2's VAE patchifies it)
        return model.encode, {"x": video, "return_dict": False}
    frames, h, w = latent_shape(vae, shape)
    return model.decode, {"z": torch.empty(1, config.get("z_dim", 16), frames, h, w), "return_dict": False}


def _flop_counter() -> Any:
    """torch's FLOP counter, taught the CPU flash-attention kernel that SDPA picks on CPU tensors
    (its formula is torch's own ``sdpa_flop_count``; CUDA's kernels are already registered)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_flash(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None,
                  **kwargs: Any) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_flash}
    return FlopCounterMode(display=False, custom_mapping=mapping)


def run_traced(model: Any, call: Any, kwargs: dict[str, Any]) -> PartTrace:
    """Run ``call(**kwargs)`` (``model``'s method) under the tracker and FLOP counter; works on
    fake and on real tensors alike."""
    import torch
    from torch.utils._pytree import tree_leaves

    from wan_nb.fast.peak_tracker import PeakTracker  # torch at import: only when tracing

    tracker = PeakTracker()
    weights = tracker.known([*model.parameters(), *model.buffers()])
    largest = max((sum(p.numel() * p.element_size() for p in m.parameters(recurse=False)) for m in model.modules()),
                  default=0)
    for leaf in tree_leaves(kwargs):
        if isinstance(leaf, torch.Tensor):
            tracker.add(leaf)
    counter = _flop_counter()
    with torch.no_grad(), counter, tracker:
        out = call(**kwargs)
    del out
    return PartTrace(weights_bytes=int(weights), activation_bytes=int(tracker.peak),
                     flops=int(counter.get_total_flops()), largest_layer_bytes=int(largest))


def trace_part(kind: str, config: dict[str, Any], what: str, pipeline_kind: str, vae: dict[str, Any],
               shape: dict[str, int], dtype_name: str = "bfloat16", tiled: bool = False) -> PartTrace:
    """Trace one part (uncached; :func:`wan_nb.fast.trace_cache.cached_trace` caches it).

    The VAE runs its frames in a loop (causal: one latent frame, four video frames, at a time,
    through a cache of fixed size) and keeps what each frame makes, so its peak and FLOPs grow by
    the same amount every latent frame once the loop is under way. A long clip is therefore traced
    at 3 and 4 latent frames and extended along that line: the same answer as tracing every frame, in seconds instead of
    minutes for tiled decodes (``tests/fast/test_planner_tracing.py`` checks the line against a
    full trace)."""
    shape = _segment(pipeline_kind, shape)
    _, temporal = vae_scale(vae)
    frames = (shape["num_frames"] - 1) // temporal + 1
    if kind == "vae" and frames > 4 and not (what == "encode" and pipeline_kind == "ti2v"):
        three, four = (_trace_once(kind, config, what, pipeline_kind, vae,
                                  dict(shape, num_frames=(n - 1) * temporal + 1), dtype_name, tiled) for n in (3, 4))
        grow = frames - 3
        return PartTrace(weights_bytes=three.weights_bytes,
                         activation_bytes=three.activation_bytes + (four.activation_bytes - three.activation_bytes) * grow,
                         flops=three.flops + (four.flops - three.flops) * grow, largest_layer_bytes=three.largest_layer_bytes)
    return _trace_once(kind, config, what, pipeline_kind, vae, shape, dtype_name, tiled)


def trace_once(part: tuple[str, dict[str, Any], str, str, dict[str, Any]], shape: dict[str, int],
               dtype_name: str, tiled: bool) -> PartTrace:
    """One trace of every frame (no frame line): ``part`` = (kind, config, what, pipeline kind, vae)."""
    return _trace_once(*part, shape, dtype_name, tiled)


def real_call(model: Any, what: str, config: dict[str, Any], pipeline_kind: str, vae: dict[str, Any],
              shape: dict[str, int], dtype: Any) -> tuple[Any, dict[str, Any]]:
    """(callable, inputs) of a part for a real ``model`` (the comparison runs of the tests)."""
    return _call(model, what, config, pipeline_kind, vae, _segment(pipeline_kind, shape), dtype, tiled=False)


@contextmanager
def priced_attention() -> Iterator[None]:
    """The attention a plan prices: diffusers' native backend calling SDPA's fused kernel (what a
    GPU runs; on CPU tensors the flash kernel), whatever this process chose before. A math backend
    chosen elsewhere (another generator's ``attention=``, a disabled flash kernel) would keep the
    whole attention matrix and price a 1.3B forward at 100 GB instead of 1.6.

    Both choices are process-wide globals that diffusers' own backends save and restore from any
    thread. Entering a save-and-restore context while another thread is inside one can restore
    the other's temporary choice for good (seen in CI: a later real run took the math path), so
    the globals are only touched when they do not already price the fused kernel, which is the
    default and nearly always the case."""
    import torch
    from diffusers.models.attention_dispatch import AttentionBackendName, attention_backend
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry as registry
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with ExitStack() as stack:
        if registry.get_active_backend()[0] != AttentionBackendName.NATIVE:
            stack.enter_context(attention_backend("native"))
        if not torch.backends.cuda.flash_sdp_enabled():
            stack.enter_context(sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                                             SDPBackend.MATH]))
        yield


def _trace_once(kind: str, config: dict[str, Any], what: str, pipeline_kind: str, vae: dict[str, Any],
                shape: dict[str, int], dtype_name: str, tiled: bool) -> PartTrace:
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    dtype = getattr(torch, dtype_name)
    with FakeTensorMode(), priced_attention():
        model = build_fake(kind, config, dtype)
        call, kwargs = _call(model, what, config, pipeline_kind, vae, shape, dtype, tiled)
        return run_traced(model, call, kwargs)
