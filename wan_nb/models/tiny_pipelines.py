"""Tiny random versions of the other Wan pipelines: VACE, first-last-frame, Animate.

Like :mod:`wan_nb.models.tiny` (whose tokenizer, text encoder, VAE and scheduler they share), each is a real
diffusers pipeline with random weights from a fixed seed, written with ``save_pretrained`` and
loaded back with ``from_pretrained``, so the test path is the real loading path:

* ``tiny-vace``: ``WanVACEPipeline`` (Wan 2.1 VACE: control video, mask, reference images).
* ``tiny-flf2v``: ``WanImageToVideoPipeline`` with a transformer that has the position embedding
  of two CLIP images (Wan 2.1 FLF2V: a first and a last frame).
* ``tiny-animate``: ``WanAnimatePipeline`` (Wan 2.2 Animate: a character image, a pose video and
  a face video; mode "animate" or "replace" with a background video and a mask).

Video-to-video needs no model of its own: ``WanVideoToVideoPipeline`` runs on the modules of a
text-to-video model, so ``tiny`` does it (:mod:`wan_nb.models.pipelines`).
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["VARIANTS", "components"]

_COMMON = {"steps": 4, "guidance_scale": 1.0, "fps": 8, "negative_prompt": "", "flow_shift": 3.0}
_SMALL = {"height": 32, "width": 32, "num_frames": 9}

VARIANTS: dict[str, dict[str, Any]] = {
    "tiny-vace": {"kind": "vace", "pipeline_class": "WanVACEPipeline", "spatial_factor": 16,
                  "defaults": {**_SMALL, **_COMMON}},
    "tiny-flf2v": {"kind": "flf2v", "pipeline_class": "WanImageToVideoPipeline", "spatial_factor": 16,
                   "defaults": {**_SMALL, **_COMMON}},
    "tiny-animate": {"kind": "animate", "pipeline_class": "WanAnimatePipeline", "spatial_factor": 16,
                     "defaults": {**_SMALL, **_COMMON, "mode": "animate"}},
}

# The tiny CLIP sees 32x32 pictures in 8x8 patches: 16 patches + the class token = 17 states.
_CLIP_TOKENS = 17
_HIDDEN = 32            # transformer width: 2 heads x 16
_FACE_SIZE = 16         # Animate's motion encoder reads square face crops of this side


def _clip():
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    encoder = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, projection_dim=16, num_hidden_layers=2,
        num_attention_heads=2, image_size=32, patch_size=8)).eval()
    return encoder, CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32})


def _vace_transformer():
    from diffusers import WanVACETransformer3DModel

    # The control branch reads the video latents twice (inactive and reactive parts, 16 + 16
    # channels) and the mask folded into the VAE's 8x8 pixel grid (64 channels): 96 in all.
    return WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=16,
        out_channels=16, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32, vace_layers=[0, 1],
        vace_in_channels=96).eval()


def _animate_transformer():
    from diffusers import WanAnimateTransformer3DModel

    # 36 input channels: 16 noise + 4 mask + 16 reference latents, as in the released model; a
    # motion encoder for 16x16 face crops (one channel width per level of its pyramid).
    return WanAnimateTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=36,
        latent_channels=16, out_channels=16, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", image_dim=16, added_kv_proj_dim=_HIDDEN,
        rope_max_seq_len=32, motion_encoder_channel_sizes={"4": 16, "8": 16, "16": 16},
        motion_encoder_size=_FACE_SIZE, motion_style_dim=16, motion_dim=4, motion_encoder_dim=16,
        face_encoder_hidden_dim=32, face_encoder_num_heads=2, inject_face_latents_blocks=2,
        motion_encoder_batch_size=4).eval()


def components(name: str, vae: Callable[[], Any], transformer: Callable[..., Any]) -> dict[str, Any]:
    """The pipeline keyword arguments of ``name`` beyond the shared tokenizer / text encoder /
    scheduler that :func:`wan_nb.models.tiny.components` adds (the caller seeds torch first). ``vae`` and
    ``transformer`` make the tiny Wan 2.1 VAE and Wan transformer that every variant shares."""
    if name == "tiny-vace":
        return {"vae": vae(), "transformer": _vace_transformer()}
    if name == "tiny-flf2v":
        encoder, processor = _clip()
        # Wan 2.1 FLF2V: the image cross-attention holds both frames' CLIP states, each with its
        # own learned position (pos_embed_seq_len = 2 x the states of one picture).
        return {"vae": vae(), "image_encoder": encoder, "image_processor": processor,
                "transformer": transformer(in_channels=36, image_dim=16, added_kv_proj_dim=_HIDDEN,
                                                 pos_embed_seq_len=2 * _CLIP_TOKENS)}
    if name == "tiny-animate":
        encoder, processor = _clip()
        return {"vae": vae(), "image_encoder": encoder, "image_processor": processor,
                "transformer": _animate_transformer()}
    raise ValueError(f"unknown tiny variant {name!r}; choose one of {', '.join(VARIANTS)}")
