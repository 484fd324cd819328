"""The released Wan models' architectures, written out as constructor arguments (pure data).

The memory planner instantiates these on the meta device to count parameters exactly, with no
download. They are the configs of the -Diffusers repos (transformer/config.json,
text_encoder/config.json, vae/config.json, image_encoder/config.json) as diffusers 0.42 and
transformers build them; ``benchmarks/gpu_check.py`` builds the same shapes with random weights.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ARCHS", "arch_for"]

UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                relative_attention_num_buckets=32, relative_attention_max_distance=128,
                feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, dropout_rate=0.0,
                tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
_BLOCK = dict(patch_size=(1, 2, 2), attention_head_dim=128, text_dim=4096, freq_dim=256,
              cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
WAN21_VAE: dict[str, Any] = {}  # AutoencoderKLWan's defaults are the Wan 2.1 VAE
WAN22_VAE = dict(base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                 temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12,
                 patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
                 latents_mean=[0.0] * 48, latents_std=[1.0] * 48)
CLIP_VIT_H = dict(hidden_size=1280, intermediate_size=5120, projection_dim=1024, num_hidden_layers=32,
                  num_attention_heads=16, image_size=224, patch_size=14, hidden_act="gelu")

_T2V_1_3B = dict(_BLOCK, num_attention_heads=12, ffn_dim=8960, num_layers=30, in_channels=16, out_channels=16)
_T2V_14B = dict(_BLOCK, num_attention_heads=40, ffn_dim=13824, num_layers=40, in_channels=16, out_channels=16)
_I2V_14B = dict(_T2V_14B, in_channels=36, image_dim=1280, added_kv_proj_dim=5120)
_TI2V_5B = dict(_BLOCK, num_attention_heads=24, ffn_dim=14336, num_layers=30, in_channels=48, out_channels=48)
# Wan 2.2 I2V A14B: the image latents are concatenated (36 channels in), no CLIP image encoder.
_I2V_A14B = dict(_T2V_14B, in_channels=36)

# Wan 2.1 VACE: the T2V blocks plus a VACE block after every 2nd (1.3B) / 5th (14B) block, fed a
# 96-channel control latent (inactive 16 + reactive 16 + 64 mask channels).
_VACE_1_3B = dict(_T2V_1_3B, vace_layers=list(range(0, 30, 2)), vace_in_channels=96)
_VACE_14B = dict(_T2V_14B, vace_layers=list(range(0, 40, 5)), vace_in_channels=96)
# Wan 2.1 FLF2V: the I2V blocks with a learned position embedding over two images' CLIP tokens.
_FLF2V_14B = dict(_I2V_14B, pos_embed_seq_len=2 * 257)
# Wan 2.2 Animate: the I2V blocks plus a motion encoder and a face encoder/adapter.
_ANIMATE_14B = dict(_I2V_14B, latent_channels=16, motion_encoder_dim=512, face_encoder_hidden_dim=1024,
                    face_encoder_num_heads=4, inject_face_latents_blocks=5)

# preset -> components: name -> (kind, config). Kinds: "transformer", "umt5", "vae", "clip".
ARCHS: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "wan2.1-t2v-1.3b": {"text_encoder": ("umt5", UMT5_XXL), "transformer": ("transformer", _T2V_1_3B),
                        "vae": ("vae", WAN21_VAE)},
    "wan2.1-t2v-14b": {"text_encoder": ("umt5", UMT5_XXL), "transformer": ("transformer", _T2V_14B),
                       "vae": ("vae", WAN21_VAE)},
    "wan2.1-i2v-14b-480p": {"text_encoder": ("umt5", UMT5_XXL), "image_encoder": ("clip", CLIP_VIT_H),
                            "transformer": ("transformer", _I2V_14B), "vae": ("vae", WAN21_VAE)},
    "wan2.1-i2v-14b-720p": {"text_encoder": ("umt5", UMT5_XXL), "image_encoder": ("clip", CLIP_VIT_H),
                            "transformer": ("transformer", _I2V_14B), "vae": ("vae", WAN21_VAE)},
    "wan2.2-ti2v-5b": {"text_encoder": ("umt5", UMT5_XXL), "transformer": ("transformer", _TI2V_5B),
                       "vae": ("vae", WAN22_VAE)},
    "wan2.2-t2v-a14b": {"text_encoder": ("umt5", UMT5_XXL), "transformer": ("transformer", _T2V_14B),
                        "transformer_2": ("transformer", _T2V_14B), "vae": ("vae", WAN21_VAE)},
    "wan2.2-i2v-a14b": {"text_encoder": ("umt5", UMT5_XXL), "transformer": ("transformer", _I2V_A14B),
                        "transformer_2": ("transformer", _I2V_A14B), "vae": ("vae", WAN21_VAE)},
    "wan2.1-vace-1.3b": {"text_encoder": ("umt5", UMT5_XXL), "transformer": ("transformer", _VACE_1_3B),
                         "vae": ("vae", WAN21_VAE)},
    "wan2.1-vace-14b": {"text_encoder": ("umt5", UMT5_XXL), "transformer": ("transformer", _VACE_14B),
                        "vae": ("vae", WAN21_VAE)},
    "wan2.1-flf2v-14b-720p": {"text_encoder": ("umt5", UMT5_XXL), "image_encoder": ("clip", CLIP_VIT_H),
                              "transformer": ("transformer", _FLF2V_14B), "vae": ("vae", WAN21_VAE)},
    "wan2.2-animate-14b": {"text_encoder": ("umt5", UMT5_XXL), "image_encoder": ("clip", CLIP_VIT_H),
                           "transformer": ("transformer", _ANIMATE_14B), "vae": ("vae", WAN21_VAE)},
}


def arch_for(preset: str) -> dict[str, tuple[str, dict[str, Any]]] | None:
    """The components of ``preset`` (a preset name or one of its few-step variants), or None."""
    from wan_nb.models.few_step import base_preset

    return ARCHS.get(base_preset(preset))
