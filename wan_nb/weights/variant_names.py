"""The tensors that tell a VACE, FLF2V or Animate transformer file from a plain Wan one, and the
one name diffusers' single-file converter does not know.

Comfy-Org repackages every Wan transformer as one file (``wan2.1_vace_14B_fp16.safetensors``,
``wan2.1_flf2v_720p_14B_fp16.safetensors``, ``wan2.2_animate_14B_bf16.safetensors``); their base
shapes are those of T2V-14B / I2V-14B, so only these extra tensors say which model they belong to.
"""

from __future__ import annotations

from typing import Any, MutableMapping

__all__ = ["VARIANT_TENSORS", "VARIANT_NAMES", "FLF2V_ORIGINAL", "FLF2V_DIFFUSERS", "restore_names"]

# Tensors only a VACE / FLF2V / Animate transformer has, in the original (Wan, ComfyUI, GGUF) and
# the diffusers layouts. FLF2V's is one tensor: img_emb.emb_pos (1, 514, 1280), diffusers' pos_embed.
VARIANT_TENSORS = {
    "vace": ("vace_blocks.", "vace_patch_embedding."),
    "animate": ("motion_encoder.", "face_encoder.", "face_adapter.", "pose_patch_embedding."),
    "flf2v": ("img_emb.emb_pos", "condition_embedder.image_embedder.pos_embed"),
}
VARIANT_NAMES = {"vace": "VACE control blocks", "animate": "Animate pose/motion/face encoders",
                 "flf2v": "first-last-frame position embedding"}
# diffusers' single-file converter (convert_wan_transformer_to_diffusers, 0.42) has no name for
# FLF2V's position embedding: it is renamed before the converter sees it, or it would be dropped.
FLF2V_ORIGINAL, FLF2V_DIFFUSERS = "img_emb.emb_pos", "condition_embedder.image_embedder.pos_embed"


def restore_names(state: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """``state`` (original layout, any prefix) with FLF2V's position embedding under diffusers' name."""
    for name in [n for n in state if n == FLF2V_ORIGINAL or n.endswith("." + FLF2V_ORIGINAL)]:
        state[FLF2V_DIFFUSERS] = state.pop(name)
    return state
