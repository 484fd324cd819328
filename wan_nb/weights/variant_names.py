"""The tensors that tell a VACE, FLF2V or Animate transformer file from a plain Wan one, and the
one name diffusers' single-file converter does not know.

Comfy-Org repackages every Wan transformer as one file (``wan2.1_vace_14B_fp16.safetensors``,
``wan2.1_flf2v_720p_14B_fp16.safetensors``, ``wan2.2_animate_14B_bf16.safetensors``); their base
shapes are those of T2V-14B / I2V-14B, so only these extra tensors say which model they belong to.
"""

from __future__ import annotations

from typing import Any, Mapping, MutableMapping

__all__ = ["VARIANT_TENSORS", "VARIANT_NAMES", "FLF2V_ORIGINAL", "FLF2V_DIFFUSERS", "restore_names",
           "animate_original"]

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


# Wan 2.2 Animate's encoders in the original layout (the inverse of what diffusers' single-file
# converter reads): the motion encoder's convolutions numbered as in the authors' code (its last
# one at index 8, where the released model has it), biases of its activations as (1, C, 1, 1),
# and each face adapter block's key and value projections stored as one stacked matrix.
_MOTION_LAST_CONV = 8
_FACE_ADAPTER_NAMES = {"to_q": "linear1_q", "to_out": "linear2", "norm_q": "q_norm", "norm_k": "k_norm"}


def _animate_name(name: str) -> str | None:
    """The original name of an Animate encoder tensor (None: not one, or one of a stacked pair)."""
    parts = name.split(".")
    if name.startswith("motion_encoder."):
        rest = ".".join(parts[1:])
        fixed = {"motion_synthesis_weight": "dec.direction.weight", "conv_in.weight": "enc.net_app.convs.0.0.weight",
                 "conv_in.act_fn.bias": "enc.net_app.convs.0.1.bias",
                 "conv_out.weight": f"enc.net_app.convs.{_MOTION_LAST_CONV}.weight"}
        if rest in fixed:
            return "motion_encoder." + fixed[rest]
        if parts[1] == "res_blocks":
            conv = f"motion_encoder.enc.net_app.convs.{int(parts[2]) + 1}."
            leaf = ".".join(parts[3:])
            return conv + {"conv1.weight": "conv1.0.weight", "conv1.act_fn.bias": "conv1.1.bias",
                           "conv2.weight": "conv2.1.weight", "conv2.act_fn.bias": "conv2.2.bias",
                           "conv_skip.weight": "skip.1.weight"}[leaf]
        if parts[1] == "motion_network":
            return "motion_encoder.enc.fc." + ".".join(parts[2:])
    if name.startswith("face_adapter.") and parts[2] in _FACE_ADAPTER_NAMES:
        return f"face_adapter.fuser_blocks.{parts[1]}.{_FACE_ADAPTER_NAMES[parts[2]]}." + ".".join(parts[3:])
    if name.startswith("face_encoder.") and parts[1] in ("conv1_local", "conv2", "conv3"):
        return f"face_encoder.{parts[1]}.conv." + ".".join(parts[2:])
    if name.startswith(("face_encoder.", "pose_patch_embedding.")):
        return name
    return None


def animate_original(state: Mapping[str, Any]) -> dict[str, Any]:
    """The Animate encoder tensors of a diffusers ``state`` under their original names and shapes."""
    import torch

    out: dict[str, Any] = {}
    for name, tensor in state.items():
        parts = name.split(".")
        if name.startswith("face_adapter.") and parts[2] == "to_k":
            partner = state[name.replace(".to_k.", ".to_v.")]
            out[f"face_adapter.fuser_blocks.{parts[1]}.linear1_kv." + ".".join(parts[3:])] = torch.cat([tensor, partner])
            continue
        original = _animate_name(name)
        if original is None:
            continue
        if original.startswith("motion_encoder.enc.net_app.convs.") and original.endswith(".bias") and tensor.ndim == 1:
            tensor = tensor.reshape(1, -1, 1, 1)
        out[original] = tensor
    return out
