"""Single-file transformer checkpoints: the ``.safetensors`` / ``.gguf`` files users already have.

Wan's authors, ComfyUI (``model.diffusion_model.`` prefix), Kijai and city96 / QuantStack (GGUF)
ship one file per transformer in the original Wan layout (``blocks.0.self_attn.q.weight``), in
bf16, fp16, fp8, or ComfyUI's "fp8_scaled" (each layer's fp8 weight times its ``scale_weight``).
diffusers reads those with ``WanTransformer3DModel.from_single_file``, renaming the tensors; the
model's configuration comes from the matching diffusers folder (a preset's, the tiny model's).

Before anything is loaded, :func:`inspect` reads only the file's header (tensor names and shapes)
and :func:`check` compares its architecture — width, layers, input channels, image
cross-attention — with the model it is meant for, so a 14B file given to a 1.3B preset, or a text
encoder given as a transformer, is refused naming the fix instead of failing after minutes of
reading. :func:`detect` finds the preset a file belongs to (``model="file.safetensors"``).

:func:`original_state_dict` writes a diffusers transformer back in the original layout (how the
tests and benchmarks make files of the kind users download).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from wan_nb.protocol.errors import CheckpointError
from wan_nb.weights.variant_names import (FLF2V_DIFFUSERS, FLF2V_ORIGINAL, VARIANT_NAMES, VARIANT_TENSORS,
                                          animate_original, restore_names)

__all__ = ["Architecture", "CheckpointError", "SUFFIXES", "is_checkpoint", "inspect", "check", "detect",
           "expected", "architecture_of_config", "original_state_dict", "load_transformer", "is_scaled_fp8",
           "unscaled_state_dict", "check_quant_layout", "quant_layer_formats"]

SUFFIXES = (".safetensors", ".gguf")
PREFIXES = ("model.diffusion_model.", "diffusion_model.", "transformer.")


@dataclass(frozen=True)
class Architecture:
    """What decides whether a transformer checkpoint fits a model's configuration."""

    dim: int                 # hidden width (heads x head dim)
    in_channels: int         # 16 text-to-video, 36 image-to-video (noise + mask + image latents), 48 TI2V-5B
    num_layers: int
    ffn_dim: int
    image_embedding: bool    # Wan 2.1 image-to-video: CLIP image tokens, cross-attended
    # The extra weights of the other pipelines' transformers (VARIANT_TENSORS): "vace" (control
    # blocks), "flf2v" (a position per CLIP token of two frames), "animate" (pose, motion and face
    # encoders); None for a plain transformer. Loaded as a plain one, they would be dropped.
    variant: str | None = None

    def describe(self) -> str:
        kind = {16: "text-to-video", 36: "image-to-video", 48: "TI2V (48-channel)"}.get(
            self.in_channels, f"{self.in_channels} input channels")
        return (f"width {self.dim}, {self.num_layers} blocks, {kind}"
                + (", CLIP image embedding" if self.image_embedding else "")
                + (f", {VARIANT_NAMES[self.variant]}" if self.variant else ""))




# The transformers of the released models, from their diffusers configs (heads x 128 = width).
# Wan 2.1 T2V-14B and one Wan 2.2 A14B T2V expert have the same shapes, as have the two I2V 14B
# resolutions: a file alone then picks the first preset listed, and model= names the other.
_WAN_1_3B = Architecture(1536, 16, 30, 8960, False)
_WAN_14B = Architecture(5120, 16, 40, 13824, False)
_WAN_I2V_14B = Architecture(5120, 36, 40, 13824, True)
PRESET_ARCHITECTURES: dict[str, Architecture] = {
    "wan2.1-t2v-1.3b": _WAN_1_3B,
    "wan2.1-t2v-14b": _WAN_14B,
    "wan2.1-i2v-14b-480p": _WAN_I2V_14B,
    "wan2.1-i2v-14b-720p": _WAN_I2V_14B,
    "wan2.2-ti2v-5b": Architecture(3072, 48, 30, 14336, False),
    "wan2.2-t2v-a14b": _WAN_14B,
    "wan2.2-i2v-a14b": Architecture(5120, 36, 40, 13824, False),
    # The other pipelines' transformers (Comfy-Org repackages them as single files too):
    # VACE adds control blocks, FLF2V a position embedding, Animate its encoders, to these shapes.
    "wan2.1-vace-1.3b": Architecture(1536, 16, 30, 8960, False, "vace"),
    "wan2.1-vace-14b": Architecture(5120, 16, 40, 13824, False, "vace"),
    "wan2.1-flf2v-14b-720p": Architecture(5120, 36, 40, 13824, True, "flf2v"),
    "wan2.2-animate-14b": Architecture(5120, 36, 40, 13824, True, "animate"),
}


def is_checkpoint(value: Any) -> bool:
    """Whether ``value`` names a single-file checkpoint (by its suffix; it need not exist)."""
    return isinstance(value, (str, os.PathLike)) and str(value).lower().endswith(SUFFIXES)


def _strip(name: str) -> str:
    for prefix in PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _shapes(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, Any]]:
    """Tensor name -> shape (torch order), and the file's metadata; reads the header only."""
    if path.suffix.lower() == ".gguf":
        from wan_nb.weights.gguf import read_header

        return read_header(path)
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 2 <= size <= 100 << 20:
                raise ValueError("bad header size")
            header = json.loads(handle.read(size))
        return _header_shapes(header)
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested thousands deep
        raise CheckpointError(f"{path} is not a readable .safetensors file ({exc}); it may be damaged or "
                              "still downloading.") from None


# A dimension beyond this is no real tensor (and would overflow int64 in torch).
_MAX_DIMENSION = 1 << 62


def _header_shapes(header: Any) -> tuple[dict[str, tuple[int, ...]], dict[str, Any]]:
    """Shapes and metadata of a parsed safetensors header, every field checked: the JSON can be
    valid and still the wrong shape (a list, a shape of strings, a float dimension), and each
    of those must read as "not a readable file", never as a TypeError deep in the shape checks."""
    if not isinstance(header, dict):
        raise ValueError(f"the header is a JSON {type(header).__name__}, not an object of tensors")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise ValueError(f"__metadata__ is a JSON {type(metadata).__name__}, not an object")
    shapes: dict[str, tuple[int, ...]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(
                type(n) is int and 0 <= n <= _MAX_DIMENSION for n in shape):
            raise ValueError(f"tensor {name[:80]!r} has no valid shape (a list of non-negative integers)")
        if not isinstance(entry.get("dtype"), str):
            raise ValueError(f"tensor {name[:80]!r} has no dtype")
        shapes[name] = tuple(shape)
    return shapes, metadata


def _guess_other(names: list[str]) -> str:
    joined = " ".join(names[:400])
    if "enc.blk." in joined or "encoder.block." in joined or "token_embd" in joined:
        return ("a text encoder (UMT5/T5); pass it as quant={'text_encoder': 'gguf:FILE'}"
                if any(n.startswith("enc.blk.") for n in names) else "a text encoder (UMT5/T5)")
    if "decoder.middle." in joined or "decoder.up_blocks" in joined:
        return "a VAE"
    if "lora_down" in joined or "lora_A" in joined or "lora_up" in joined:
        return "a LoRA; load it with gen.load_lora(FILE)"
    if "double_blocks." in joined or "joint_blocks." in joined or "transformer_blocks." in joined:
        return "the transformer of another model family (not Wan)"
    return "not a Wan transformer"


def architecture_of_shapes(shapes: Mapping[str, tuple[int, ...]]) -> Architecture | None:
    """The architecture of a Wan transformer from its tensor shapes (original or diffusers layout)."""
    plain = {_strip(k): v for k, v in shapes.items()}
    patch = plain.get("patch_embedding.weight")
    if patch is None or len(patch) != 5:
        return None
    blocks = {int(m.group(1)) for k in plain if (m := re.match(r"blocks\.(\d+)\.", k))}
    ffn = plain.get("blocks.0.ffn.0.weight") or plain.get("blocks.0.ffn.net.0.proj.weight")
    if not blocks or not ffn:
        return None
    image = any(k.startswith(("img_emb.", "condition_embedder.image_embedder.")) for k in plain)
    variant = next((v for v, prefixes in VARIANT_TENSORS.items() if any(k.startswith(prefixes) for k in plain)), None)
    return Architecture(dim=int(patch[0]), in_channels=int(patch[1]), num_layers=max(blocks) + 1,
                        ffn_dim=int(ffn[0]), image_embedding=image, variant=variant)


def architecture_of_config(config: Mapping[str, Any]) -> Architecture:
    """The architecture a diffusers ``WanTransformer3DModel`` config describes."""
    variant = ("vace" if config.get("vace_layers") else "animate" if config.get("motion_encoder_size")
               else "flf2v" if config.get("pos_embed_seq_len") else None)
    return Architecture(dim=int(config["num_attention_heads"]) * int(config["attention_head_dim"]),
                        in_channels=int(config["in_channels"]), num_layers=int(config["num_layers"]),
                        ffn_dim=int(config["ffn_dim"]), image_embedding=config.get("image_dim") is not None,
                        variant=variant)


def inspect(path: str | os.PathLike) -> Architecture:
    """The Wan transformer architecture stored in ``path``; refuses anything else, naming what it is."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file. Pass the path of a Wan transformer checkpoint "
                              "(.safetensors or .gguf).")
    if path.suffix.lower() not in SUFFIXES:
        raise CheckpointError(f"{path}: single-file checkpoints are .safetensors or .gguf files.")
    shapes, metadata = _shapes(path)
    check_quant_layout(path, shapes, metadata)
    declared = metadata.get("general.architecture")
    found = architecture_of_shapes(shapes)
    if found is None or (declared not in (None, "wan")):
        what = f"its GGUF architecture is {declared!r}, " if declared not in (None, "wan") else ""
        raise CheckpointError(f"{path.name} is {what}{_guess_other(sorted(shapes))}, not a Wan transformer "
                              "(no patch_embedding / blocks.N tensors). Pass a Wan 2.1/2.2 transformer file "
                              "(e.g. wan2.1_t2v_1.3B_fp16.safetensors, Wan2.1-T2V-1.3B-Q8_0.gguf).")
    return found


def expected(spec: Any, folder: str | os.PathLike | None = None, component: str = "transformer") -> Architecture | None:
    """The architecture ``spec``'s transformer has: from the folder's config if there is one, the
    tiny model's or the preset's otherwise; None when not known before the download."""
    config_file = Path(folder) / component / "config.json" if folder is not None else None
    if config_file is None and getattr(spec, "is_local", False):
        # a tiny model once built has its folder too (the only record of a VACE / Animate one's shape)
        config_file = Path(spec.source) / component / "config.json"
    if config_file is not None and config_file.is_file():
        return architecture_of_config(json.loads(config_file.read_text()))
    if getattr(spec, "builder", None):
        from wan_nb.models.tiny import transformer_config

        config = transformer_config(spec.builder)
        return architecture_of_config(config) if config is not None else None
    return PRESET_ARCHITECTURES.get(getattr(spec, "preset", None) or "")


def check(path: str | os.PathLike, spec: Any, *, folder: str | os.PathLike | None = None,
          component: str = "transformer") -> Architecture:
    """``path``'s architecture, refused (naming the right model) unless it fits ``spec``'s ``component``."""
    found = inspect(path)
    want = expected(spec, folder, component)
    if want is not None and found != want:
        fits = [name for name, arch in PRESET_ARCHITECTURES.items() if arch == found]
        hint = (f"it fits {' / '.join(fits)}: use model={fits[0]!r}" if fits
                else "no preset has this architecture: pass the diffusers folder it belongs to as model=")
        raise CheckpointError(f"{Path(path).name} does not fit {spec.name} {component}: the file has "
                              f"{found.describe()}, the model has {want.describe()}; {hint}.")
    return found


def detect(path: str | os.PathLike) -> str:
    """The model a checkpoint belongs to (a tiny variant or a preset), for ``model="file"``."""
    found = inspect(path)
    from wan_nb.models.tiny import VARIANTS, transformer_config

    for name in VARIANTS:
        config = transformer_config(name) if name != "tiny-a14b" else None
        if config is not None and architecture_of_config(config) == found:
            return name
    for name, arch in PRESET_ARCHITECTURES.items():
        if arch == found and name != "wan2.2-i2v-a14b":   # one expert alone: refused below
            return name
    if found == PRESET_ARCHITECTURES["wan2.2-i2v-a14b"]:
        raise CheckpointError(f"{Path(path).name} is one expert of Wan 2.2 I2V A14B; that model needs both: "
                              "Generator(model='wan2.2-i2v-a14b', transformer=(HIGH_NOISE_FILE, LOW_NOISE_FILE)).")
    raise CheckpointError(f"{Path(path).name} ({found.describe()}) matches no preset; pass the diffusers "
                          "folder it belongs to as model= and the file as transformer=.")


# diffusers name piece -> original Wan name piece, applied in order (the inverse of diffusers'
# convert_wan_transformer_to_diffusers). norm2/norm3 swap places between the two layouts.
_TO_ORIGINAL = (
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("condition_embedder.image_embedder.norm1", "img_emb.proj.0"),
    ("condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"),
    ("condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"),
    ("condition_embedder.image_embedder.norm2", "img_emb.proj.4"),
    ("attn1", "self_attn"), ("attn2", "cross_attn"),
    (".to_out.0.", ".o."), (".to_q.", ".q."), (".to_k.", ".k."), (".to_v.", ".v."),
    (".add_k_proj.", ".k_img."), (".add_v_proj.", ".v_img."), (".norm_added_k.", ".norm_k_img."),
    ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
    (".norm2.", ".norm__swap."), (".norm3.", ".norm2."), (".norm__swap.", ".norm3."),
    ("proj_out", "head.head"),
)


def original_name(name: str) -> str:
    """A diffusers Wan transformer tensor name in the original Wan layout."""
    if name == FLF2V_DIFFUSERS:
        return FLF2V_ORIGINAL
    if name.startswith("vace_blocks."):   # a VACE block's in/out projections (before its generic names)
        name = name.replace(".proj_in.", ".before_proj.").replace(".proj_out.", ".after_proj.")
    if name == "scale_shift_table":
        return "head.modulation"
    if name.endswith(".scale_shift_table"):
        return name[: -len("scale_shift_table")] + "modulation"
    for old, new in _TO_ORIGINAL:
        name = name.replace(old, new)
    return name


def original_state_dict(transformer: Any, prefix: str = "") -> dict[str, Any]:
    """``transformer``'s weights under original-Wan names (``prefix="model.diffusion_model."``:
    ComfyUI's), as contiguous CPU tensors ready for ``safetensors.torch.save_file``."""
    state = transformer.state_dict()
    encoders = animate_original(state)   # Wan Animate's motion / face encoders: names and shapes of their own
    named = {original_name(name): tensor for name, tensor in state.items()
             if not name.startswith(VARIANT_TENSORS["animate"]) or name.startswith("pose_patch_embedding.")}
    named.update(encoders)
    return {prefix + name: tensor.detach().to("cpu").contiguous() for name, tensor in named.items()}


# ComfyUI's two scaled-fp8 layouts. The first ("fp8_scaled"): a ``scaled_fp8`` marker tensor and a
# ``<layer>.scale_weight`` (+ ``scale_input``) per layer. The current one (comfy/quant_ops.py): a
# ``<layer>.weight_scale`` (+ ``input_scale``, and in some files a ``<layer>.comfy_quant`` JSON tensor)
# per quantized layer, and which layer has which format in ``_quantization_metadata`` (a JSON string
# in the safetensors metadata). Either way each fp8 weight is to be multiplied by its scale; read
# as plain fp8 every layer is off by its own factor.
WEIGHT_SCALES = (".scale_weight", ".weight_scale")
SCALE_SUFFIXES = WEIGHT_SCALES + (".scale_input", ".input_scale", ".comfy_quant")
QUANT_METADATA = "_quantization_metadata"
# Layer formats whose weights are fp8 numbers times one scale: the ones read here.
FP8_FORMATS = ("float8_e4m3fn", "float8_e5m2")
# Scales that mean a format read otherwise (NVFP4's double scaling, AWQ-style smoothing).
_OTHER_SCALES = (".weight_scale_2", ".pre_quant_scale")


def _is_scale(name: str) -> bool:
    return _strip(name) == "scaled_fp8" or name.endswith(SCALE_SUFFIXES)


def quant_layer_formats(metadata: Mapping[str, Any], path: Path | None = None) -> dict[str, str]:
    """Layer -> format from ComfyUI's ``_quantization_metadata`` ({} when there is none)."""
    raw = metadata.get(QUANT_METADATA)
    if raw is None:
        return {}
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else raw
        layers = parsed.get("layers", {}) if isinstance(parsed, dict) else None
        if not isinstance(layers, dict):
            raise ValueError("no 'layers' object")
        return {str(name): str(entry.get("format")) if isinstance(entry, dict) else "?"
                for name, entry in layers.items()}
    except (ValueError, RecursionError, AttributeError) as exc:
        where = path.name if path is not None else "this file"
        raise CheckpointError(f"{where}: its {QUANT_METADATA} is not readable ({exc}); it may be damaged") from None


def check_quant_layout(path: Path, shapes: Mapping[str, tuple[int, ...]], metadata: Mapping[str, Any]) -> None:
    """Refuse, by name, a ComfyUI quantized layout whose numbers are not fp8 times one scale."""
    others = sorted({f for f in quant_layer_formats(metadata, path).values() if f not in FP8_FORMATS})
    extra = sorted(n for n in shapes if n.endswith(_OTHER_SCALES))
    if others or extra:
        what = ", ".join(others) if others else f"double-scaled ({extra[0]})"
        raise CheckpointError(f"{path.name} is ComfyUI's quantized layout with {what} layers, which wan_nb "
                              f"cannot read (it reads {' / '.join(FP8_FORMATS)} with weight_scale); use the "
                              "file's bf16/fp16 or fp8_scaled release, or a GGUF, with quant= for wan_nb's own "
                              "fp8 / int8 / nf4.")


def is_scaled_fp8(path: str | os.PathLike) -> bool:
    """Either of ComfyUI's scaled-fp8 layouts (see :data:`WEIGHT_SCALES`)."""
    shapes, metadata = _shapes(Path(path).expanduser())
    return QUANT_METADATA in metadata or any(_is_scale(name) for name in shapes)


def unscaled_state_dict(path: str | os.PathLike, dtype: Any) -> dict[str, Any]:
    """A scaled-fp8 file's weights times their scales, in ``dtype`` (diffusers would read the
    fp8 numbers as they are, each layer off by its scale)."""
    import torch
    from safetensors import safe_open

    path = Path(path).expanduser()
    shapes, metadata = _shapes(path)
    check_quant_layout(path, shapes, metadata)
    formats = quant_layer_formats(metadata, path)
    out: dict[str, Any] = {}
    with safe_open(str(path), framework="pt") as handle:
        for name in handle.keys():
            if _is_scale(name):
                continue
            tensor = handle.get_tensor(name)
            layer = name[: -len(".weight")] if name.endswith(".weight") else None
            scale_name = next((layer + s for s in WEIGHT_SCALES if layer and layer + s in shapes), None)
            if scale_name is not None and tensor.dtype == torch.uint8:
                # fp8 bytes in a uint8 container: the layer's format says which fp8
                fmt = formats.get(layer) or formats.get(_strip(layer)) or FP8_FORMATS[0]
                tensor = tensor.view(getattr(torch, fmt))
            if scale_name is None:
                out[name] = tensor.to(dtype) if tensor.is_floating_point() else tensor
            else:
                out[name] = (tensor.float() * handle.get_tensor(scale_name).float()).to(dtype)
    return out


def load_transformer(path: str | os.PathLike, cls: Any, folder: str | os.PathLike, *, component: str,
                     dtype: Any, quantization_config: Any = None) -> Any:
    """Load one transformer from a single file, its configuration from ``folder/component``."""
    kwargs: dict[str, Any] = {"config": str(folder), "subfolder": component, "torch_dtype": dtype,
                              "local_files_only": True}
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    source: Any = str(Path(path).expanduser())
    if is_scaled_fp8(path):
        source = unscaled_state_dict(path, dtype)
    elif any(_strip(name) == FLF2V_ORIGINAL for name in _shapes(Path(source))[0]):
        from safetensors.torch import load_file

        source = load_file(source)   # as from_single_file would read it, then one name restored
    if isinstance(source, dict):
        source = restore_names(source)
    return cls.from_single_file(source, **kwargs)
