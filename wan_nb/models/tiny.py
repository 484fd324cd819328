"""Built-in tiny Wan models: real diffusers pipelines with random weights, for tests and demos.

Each variant mirrors the structure of a real Wan release at a size that runs on a CPU in about a
second: ``tiny`` (Wan 2.1 text-to-video), ``tiny-i2v`` (Wan 2.1 image-to-video with a CLIP image
encoder), ``tiny-ti2v`` (Wan 2.2 5B style: 48-channel latents, VAE patchify, ``expand_timesteps``,
text- or image-to-video without an image encoder) and ``tiny-a14b`` (Wan 2.2 A14B style: two
transformers switched at ``boundary_ratio``).

A variant is built once, written with ``save_pretrained`` and from then on loaded with
``from_pretrained`` exactly like a downloaded model, so the loading code path is the real one.
Weights come from a fixed seed: every build of a variant is identical.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from wan_nb.models import tiny_pipelines as _more

__all__ = ["VARIANTS", "TINY_VERSION", "build", "components", "make_lora", "transformer_config"]

TINY_VERSION = 1

_COMMON = {"steps": 4, "guidance_scale": 1.0, "fps": 8, "negative_prompt": "", "flow_shift": 3.0}

# name -> (kind, pipeline class, defaults, spatial factor)
VARIANTS: dict[str, dict[str, Any]] = {
    "tiny": {"kind": "t2v", "pipeline_class": "WanPipeline", "spatial_factor": 16,
             "defaults": {"height": 32, "width": 32, "num_frames": 9, **_COMMON}},
    "tiny-i2v": {"kind": "i2v", "pipeline_class": "WanImageToVideoPipeline", "spatial_factor": 16,
                 "defaults": {"height": 32, "width": 32, "num_frames": 9, **_COMMON}},
    "tiny-ti2v": {"kind": "ti2v", "pipeline_class": "WanPipeline", "spatial_factor": 32,
                  "defaults": {"height": 32, "width": 32, "num_frames": 9, **_COMMON}},
    "tiny-a14b": {"kind": "t2v", "pipeline_class": "WanPipeline", "spatial_factor": 16,
                  "experts": ("high_noise", "low_noise"), "boundary_ratio": 0.875,
                  "defaults": {"height": 32, "width": 32, "num_frames": 9, **_COMMON, "steps": 6,
                               "guidance_scale_2": 1.0}},
}
VARIANTS.update(_more.VARIANTS)  # VACE, first-last-frame, Animate: wan_nb.models.tiny_pipelines

_build_lock = threading.Lock()


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # A word-level vocabulary made from letters and common words: deterministic, no download.
    words = ["<pad>", "</s>", "<unk>"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    words += ("a the of and in on with red blue green fox cat dog snow sea sky city night day "
              "running walking flying car bird tree forest mountain river light dark").split()
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=64)


def _text_encoder(vocab_size: int):
    from transformers import UMT5Config, UMT5EncoderModel

    return UMT5EncoderModel(UMT5Config(
        vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)).eval()


def _vae_2_1():
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True]).eval()


_TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=16,
                    out_channels=16, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2, cross_attn_norm=True,
                    qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
# What each variant's transformer changes (Wan 2.1 I2V: image latents and CLIP tokens; TI2V: 48 channels).
_TRANSFORMER_VARIANTS = {"tiny-i2v": dict(in_channels=36, image_dim=16, added_kv_proj_dim=32),
                         "tiny-ti2v": dict(in_channels=48, out_channels=48)}


def transformer_config(name: str) -> dict[str, Any] | None:
    """The ``WanTransformer3DModel`` arguments of tiny variant ``name`` (no torch needed); None for
    the variants whose transformer is another class (VACE, Animate)."""
    if name not in ("tiny", "tiny-a14b", *_TRANSFORMER_VARIANTS):
        return None
    return {**_TRANSFORMER, "image_dim": None, **_TRANSFORMER_VARIANTS.get(name, {})}


def _transformer(**more):
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(**{**_TRANSFORMER, **more}).eval()


def _scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(shift=_COMMON["flow_shift"])


def components(name: str, seed: int = 0) -> dict[str, Any]:
    """The pipeline keyword arguments of tiny variant ``name``, with weights from ``seed``."""
    import torch

    if name not in VARIANTS:
        raise ValueError(f"unknown tiny variant {name!r}; choose one of {', '.join(VARIANTS)}")
    torch.manual_seed(seed)
    tokenizer = _tokenizer()
    parts: dict[str, Any] = {"tokenizer": tokenizer, "text_encoder": _text_encoder(len(tokenizer)),
                             "scheduler": _scheduler()}
    if name in _more.VARIANTS:
        parts.update(_more.components(name, vae=_vae_2_1, transformer=_transformer))
    elif name == "tiny":
        parts.update(vae=_vae_2_1(), transformer=_transformer())
    elif name == "tiny-a14b":
        parts.update(vae=_vae_2_1(), transformer=_transformer(), transformer_2=_transformer(),
                     boundary_ratio=VARIANTS[name]["boundary_ratio"])
    elif name == "tiny-i2v":
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

        # Wan 2.1 I2V: the transformer sees 16 noise + 4 mask + 16 image-latent channels and
        # cross-attends to CLIP's penultimate hidden states (image_dim = CLIP hidden size).
        image_encoder = CLIPVisionModel(CLIPVisionConfig(
            hidden_size=16, intermediate_size=32, projection_dim=16, num_hidden_layers=2,
            num_attention_heads=2, image_size=32, patch_size=8)).eval()
        parts.update(vae=_vae_2_1(), transformer=_transformer(**_TRANSFORMER_VARIANTS[name]),
                     image_encoder=image_encoder,
                     image_processor=CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32}))
    elif name == "tiny-ti2v":
        from diffusers import AutoencoderKLWan

        # Wan 2.2 5B: residual VAE on 2x2-patchified pixels (12 channels), 48 latent channels,
        # spatial factor 16 (8 from the VAE x 2 from its patchify) times transformer patch 2 = 32.
        vae = AutoencoderKLWan(
            base_dim=8, z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2,
            latents_mean=[0.0] * 48, latents_std=[1.0] * 48, dim_mult=[1, 1, 1, 1],
            num_res_blocks=1, scale_factor_spatial=16, scale_factor_temporal=4,
            temperal_downsample=[False, True, True]).eval()
        parts.update(vae=vae, transformer=_transformer(**_TRANSFORMER_VARIANTS[name]),
                     expand_timesteps=True)
    return parts


def _pipeline_class(name: str):
    import diffusers

    return getattr(diffusers, VARIANTS[name]["pipeline_class"])


@contextlib.contextmanager
def _quiet_build():
    """Building is an implementation detail: no "Writing shards" bars, no library chatter
    (a notebook's first run would otherwise show them as stderr)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    bars = [(lib, lib.is_progress_bar_enabled()) for lib in (diffusers_logging, transformers_logging)]
    verbosity = transformers_logging.get_verbosity()
    for lib, _ in bars:
        lib.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        for lib, enabled in bars:
            if enabled:
                lib.enable_progress_bar()


def pipeline(name: str = "tiny", seed: int = 0) -> Any:
    """Tiny variant ``name`` built in memory (random weights, nothing written)."""
    return _pipeline_class(name)(**components(name, seed))


def build(name: str, target: Path) -> Path:
    """Write tiny variant ``name`` to ``target`` with ``save_pretrained`` (once; atomic)."""
    target = Path(target)
    with _build_lock:
        if (target / "model_index.json").is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        try:
            with _quiet_build():
                pipeline(name).save_pretrained(staging)
            # The generation defaults travel with the folder (also when served as a Hub repo).
            (staging / "wan_nb.json").write_text(json.dumps({"defaults": VARIANTS[name]["defaults"]}))
            try:
                staging.rename(target)
            except OSError:  # another process finished first: theirs is identical
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


# Module names of a Wan transformer block in diffusers and in the original Wan / ComfyUI files.
_ORIGINAL_NAMES = {"attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k",
                   "attn1.to_v": "self_attn.v", "attn1.to_out.0": "self_attn.o",
                   "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k",
                   "attn2.to_v": "cross_attn.v", "attn2.to_out.0": "cross_attn.o",
                   "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2"}


def make_lora(transformer: Any, path: str | Path, *, seed: int = 0, rank: int = 4,
              style: str = "diffusers", scale: float = 1.0) -> Path:
    """Write a random LoRA for ``transformer`` to ``path`` (a .safetensors file) and return it.

    ``style="diffusers"`` writes keys like ``transformer.blocks.0.attn1.to_q.lora_A.weight``;
    ``style="comfyui"`` writes the original-Wan / ComfyUI form
    ``diffusion_model.blocks.0.self_attn.q.lora_down.weight`` with ``.alpha`` entries. Both
    hold the same numbers, so they must change a generation identically. peft initialises B
    to zero (a no-op LoRA); here both matrices are random so the LoRA visibly changes output.
    """
    import torch
    from safetensors.torch import save_file

    if style not in ("diffusers", "comfyui"):
        raise ValueError(f"style={style!r}: use 'diffusers' or 'comfyui'")
    gen = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for block in range(len(transformer.blocks)):
        for module, original in _ORIGINAL_NAMES.items():
            layer = transformer.get_submodule(f"blocks.{block}.{module}")
            down = torch.randn(rank, layer.in_features, generator=gen) * scale / layer.in_features ** 0.5
            up = torch.randn(layer.out_features, rank, generator=gen) * scale / rank ** 0.5
            if style == "diffusers":
                prefix = f"transformer.blocks.{block}.{module}"
                tensors[f"{prefix}.lora_A.weight"] = down.contiguous()
                tensors[f"{prefix}.lora_B.weight"] = up.contiguous()
            else:
                prefix = f"diffusion_model.blocks.{block}.{original}"
                tensors[f"{prefix}.lora_down.weight"] = down.contiguous()
                tensors[f"{prefix}.lora_up.weight"] = up.contiguous()
                tensors[f"{prefix}.alpha"] = torch.tensor(float(rank))  # alpha/rank = 1
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


