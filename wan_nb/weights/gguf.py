"""GGUF files (city96 / QuantStack layouts): read the header, load through diffusers, write them.

Transformers and the UMT5 text encoder (city96's ``umt5-xxl-encoder-*.gguf``: llama.cpp's
``t5encoder`` names, ``enc.blk.0.attn_q.weight``, mapped to transformers' with the ``gguf``
package's own tensor-name map).

A city96 Wan GGUF holds the original-Wan tensor names (``blocks.0.self_attn.q.weight``),
block-quantized weights (Q8_0, Q4_K, ...) and F16/F32 for the small ones. GGUF allows at most four
dimensions, so the 5-D ``patch_embedding.weight`` is stored flattened with its real shape under
``comfy.gguf.orig_shape.<name>`` (ComfyUI-GGUF's convention, which diffusers' own GGUF reader does
not apply). :func:`state_dict` reads the file the way diffusers does (quantized tensors stay
``GGUFParameter``s, dequantized on the fly by ``GGUFLinear`` at compute time) and restores those
shapes; :func:`load_transformer` hands it to ``from_single_file`` with ``GGUFQuantizationConfig``.

:func:`read_header` (names and shapes only, memory-mapped) is what the architecture check reads
before anything is loaded. :func:`write` makes a file of that layout with the ``gguf`` package
(tests and benchmarks).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from wan_nb.protocol.errors import CheckpointError

__all__ = ["ORIG_SHAPE_KEY", "read_header", "state_dict", "load_transformer", "write", "require_gguf",
           "stored_types", "text_encoder_names", "check_text_encoder", "load_text_encoder",
           "text_encoder_state_dict"]

ORIG_SHAPE_KEY = "comfy.gguf.orig_shape."


def require_gguf() -> None:
    """Refuse clearly when the ``gguf`` package is missing (before any file is read)."""
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise ValueError("GGUF files need the 'gguf' package: pip install 'wan_nb[quant]' (or pip install gguf).")


def _reader(path: Path):
    require_gguf()
    from gguf import GGUFReader

    try:
        return GGUFReader(str(path))
    except Exception as exc:  # a truncated or foreign file: the reader raises many kinds
        raise CheckpointError(f"{path} is not a readable GGUF file ({type(exc).__name__}: {exc}); it may be "
                              "damaged or still downloading.") from None


def _field(reader: Any, key: str) -> Any:
    field = reader.get_field(key)
    if field is None:
        return None
    try:
        return field.contents()
    except Exception:
        return None


def _orig_shapes(reader: Any) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for key in reader.fields:
        if key.startswith(ORIG_SHAPE_KEY):
            value = _field(reader, key)
            if value is not None:
                shapes[key[len(ORIG_SHAPE_KEY):]] = tuple(int(v) for v in value)
    return shapes


def read_header(path: str | os.PathLike) -> tuple[dict[str, tuple[int, ...]], dict[str, Any]]:
    """Tensor name -> logical shape in torch order (original shapes restored), and metadata
    (``general.architecture`` when the file says it)."""
    reader = _reader(Path(path))
    restored = _orig_shapes(reader)
    shapes = {t.name: restored.get(t.name, tuple(int(n) for n in reversed(t.shape.tolist())))
              for t in reader.tensors}
    metadata = {"general.architecture": _field(reader, "general.architecture")}
    return shapes, {k: v for k, v in metadata.items() if v is not None}


def stored_types(path: str | os.PathLike) -> dict[str, str]:
    """Tensor name -> GGML type name (``Q8_0``, ``F16``, ...), as stored."""
    return {t.name: t.tensor_type.name for t in _reader(Path(path)).tensors}


def state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """The file's tensors for diffusers: ``GGUFParameter`` for quantized ones, plain tensors else."""
    import gguf
    import torch
    from diffusers.quantizers.gguf.utils import SUPPORTED_GGUF_QUANT_TYPES, GGUFParameter

    reader = _reader(Path(path))
    restored = _orig_shapes(reader)
    plain_types = (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
    out: dict[str, Any] = {}
    for tensor in reader.tensors:
        kind = tensor.tensor_type
        shape = restored.get(tensor.name)
        if kind in plain_types:
            weights = torch.from_numpy(tensor.data.copy())
            out[tensor.name] = weights.reshape(shape) if shape is not None else weights
        elif kind not in SUPPORTED_GGUF_QUANT_TYPES:
            raise CheckpointError(f"{Path(path).name}: tensor {tensor.name} is {kind.name}, which diffusers "
                                  "cannot dequantize; use a Q8_0, Q6_K, Q5_K_M, Q4_K_M (or F16) file.")
        elif shape is not None:
            # A reshaped quantized tensor: its blocks no longer line up with the layer, so it is
            # dequantized here (these are the small 5-D / odd-shaped tensors).
            values = gguf.quants.dequantize(tensor.data, kind)
            out[tensor.name] = torch.from_numpy(values.copy()).reshape(shape)
        else:
            out[tensor.name] = GGUFParameter(torch.from_numpy(tensor.data.copy()), quant_type=kind)
    return out


def load_transformer(path: str | os.PathLike, cls: Any, folder: str | os.PathLike, *, component: str,
                     dtype: Any) -> Any:
    """A diffusers transformer whose linear weights stay GGUF-quantized, its config from ``folder``."""
    from diffusers import GGUFQuantizationConfig

    from wan_nb.weights.variant_names import restore_names

    return cls.from_single_file(restore_names(state_dict(path)), config=str(folder), subfolder=component, torch_dtype=dtype,
                                local_files_only=True,
                                quantization_config=GGUFQuantizationConfig(compute_dtype=dtype))


def _choose_type(name: str, array: Any, qtype: Any) -> Any:
    import gguf

    block = gguf.GGML_QUANT_SIZES[qtype][0]
    # As city96's converter: quantize the big matrices; keep vectors, norms, modulation in F32.
    if array.ndim == 2 and array.shape[-1] % block == 0 and array.size >= 1024 and name.endswith(".weight"):
        return qtype
    return gguf.GGMLQuantizationType.F32


def write(tensors: Mapping[str, Any], path: str | os.PathLike, *, qtype: str = "Q8_0",
          architecture: str = "wan") -> Path:
    """Write ``tensors`` (name -> torch tensor, e.g. :func:`wan_nb.weights.single_file.original_state_dict`)
    as a GGUF file in city96's layout: ``qtype`` for 2-D weights, F32 for the rest, tensors of more
    than four dimensions flattened with their shape under ``comfy.gguf.orig_shape.<name>``."""
    require_gguf()
    import gguf
    import numpy as np

    kind = getattr(gguf.GGMLQuantizationType, qtype)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch=architecture)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, tensor in tensors.items():
        array = tensor.detach().float().cpu().numpy()
        if array.ndim > 4:
            writer.add_array(ORIG_SHAPE_KEY + name, [int(n) for n in array.shape])
            array = array.reshape(-1)
        chosen = _choose_type(name, array, kind)
        if chosen == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))
        else:
            data = gguf.quants.quantize(array.astype(np.float32), chosen)
            writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=chosen)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# ---------------------------------------------------------------------------------------------
# The UMT5 text encoder
# ---------------------------------------------------------------------------------------------
# UMT5-XXL as Wan uses it: what a preset's text encoder file must match before its repo is here.
UMT5_XXL = {"vocab_size": 256384, "d_model": 4096, "num_layers": 24, "d_ff": 10240}
_ENCODER_PARTS = ("layer.0.SelfAttention.q", "layer.0.SelfAttention.k", "layer.0.SelfAttention.v",
                  "layer.0.SelfAttention.o", "layer.0.SelfAttention.relative_attention_bias", "layer.0.layer_norm",
                  "layer.1.DenseReluDense.wi_0", "layer.1.DenseReluDense.wi_1", "layer.1.DenseReluDense.wo",
                  "layer.1.layer_norm")


def text_encoder_names(num_layers: int) -> dict[str, str]:
    """GGUF tensor name -> transformers UMT5 encoder name, from the gguf package's T5 encoder map."""
    require_gguf()
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.T5ENCODER, num_layers)
    ours = ["shared", "encoder.final_layer_norm"] + [f"encoder.block.{i}.{part}" for i in range(num_layers)
                                                      for part in _ENCODER_PARTS]
    return {f"{names.get_name(name)}.weight": f"{name}.weight" for name in ours}


def _encoder_signature(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int] | None:
    embedding, ffn = shapes.get("token_embd.weight"), shapes.get("enc.blk.0.ffn_gate.weight")
    if embedding is None or ffn is None:
        return None
    blocks = {int(n.split(".")[2]) for n in shapes if n.startswith("enc.blk.")}
    return {"vocab_size": int(embedding[0]), "d_model": int(embedding[1]), "num_layers": max(blocks) + 1,
            "d_ff": int(ffn[0])}


def check_text_encoder(path: str | os.PathLike, want: Mapping[str, Any] | None) -> dict[str, int]:
    """Refuse (naming what the file is) a GGUF that is no UMT5 encoder of ``want``'s shape."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file. Pass a UMT5 encoder GGUF (e.g. umt5-xxl-encoder-Q8_0.gguf).")
    shapes, metadata = read_header(path)
    found = _encoder_signature(shapes)
    declared = metadata.get("general.architecture")
    if found is None or declared not in (None, "t5encoder", "t5"):
        what = "a Wan transformer; pass it as transformer= or quant='gguf:FILE'" if "head.modulation" in " ".join(
            shapes) else f"architecture {declared!r}"
        raise CheckpointError(f"{path.name} is {what}, not a UMT5 text encoder (no token_embd / enc.blk.N tensors).")
    if want is not None:
        expected = {k: int(want[k]) for k in found if k in want}
        if any(found[k] != v for k, v in expected.items()):
            hint = " (vocab 32128: a T5 v1.1 / Flux encoder; Wan needs UMT5-XXL, vocab 256384)" if found[
                "vocab_size"] == 32128 else ""
            raise CheckpointError(f"{path.name} does not fit this model's text encoder: the file has {found}, "
                                  f"the model {expected}{hint}.")
    return found


def load_text_encoder(path: str | os.PathLike, cls: Any, folder: str | os.PathLike, *, component: str,
                      dtype: Any) -> Any:
    """A transformers UMT5 encoder whose linear weights stay GGUF-quantized (diffusers' GGUFLinear).

    ``wo`` is dequantized: T5's feed-forward casts its input to ``wo.weight.dtype`` before the call,
    which for GGUF blocks would be uint8. So is the token embedding (a lookup, no GGUF kernel).
    Under float16 ``wo`` stays float32, as transformers keeps it (``_keep_in_fp32_modules``): UMT5-XXL's
    feed-forward outputs exceed float16's 65504 and saturate (what ``dtype="auto"`` picks on a T4 / V100).
    """
    import torch
    from accelerate import init_empty_weights
    from diffusers.quantizers.gguf.utils import (GGUFLinear, GGUFParameter, _replace_with_gguf_linear,
                                                 dequantize_gguf_tensor)

    config = cls.config_class.from_pretrained(folder, subfolder=component)
    check_text_encoder(path, config.to_dict())
    names = text_encoder_names(config.num_layers)
    raw = state_dict(path)
    missing = sorted(set(names) - set(raw))
    if missing:
        raise CheckpointError(f"{Path(path).name} lacks {len(missing)} text encoder tensors (e.g. {missing[0]}); "
                              "is it a complete UMT5 encoder file?")
    weights = {names[k]: v for k, v in raw.items() if k in names}
    with init_empty_weights():
        model = cls(config)
    _replace_with_gguf_linear(model, dtype, weights, modules_to_not_convert=["wo"])
    for name, value in weights.items():
        owner, _, leaf = name.rpartition(".")
        module = model.get_submodule(owner)
        if isinstance(value, GGUFParameter) and isinstance(module, GGUFLinear):
            module._parameters[leaf] = value
            continue
        if isinstance(value, GGUFParameter):
            value = dequantize_gguf_tensor(value)
        module._parameters[leaf] = torch.nn.Parameter(value.to(_stored_dtype(cls, name, dtype)),
                                                      requires_grad=False)
    model.encoder.embed_tokens = model.shared
    return model.eval()


def _stored_dtype(cls: Any, name: str, dtype: Any) -> Any:
    """The dtype transformers' ``from_pretrained`` gives parameter ``name`` of ``cls`` at ``dtype``:
    ``_keep_in_fp32_modules`` stay float32 under float16, ``_keep_in_fp32_modules_strict`` under
    float16 and bfloat16 (transformers' ``_get_dtype_plan``)."""
    import torch

    keep = set(getattr(cls, "_keep_in_fp32_modules", None) or ()) if dtype == torch.float16 else set()
    if dtype in (torch.float16, torch.bfloat16):
        keep |= set(getattr(cls, "_keep_in_fp32_modules_strict", None) or ())
    return torch.float32 if keep.intersection(name.split(".")) else dtype


def text_encoder_state_dict(encoder: Any) -> dict[str, Any]:
    """A transformers UMT5 encoder's weights under GGUF (llama.cpp ``t5encoder``) names, for :func:`write`."""
    names = {ours: theirs for theirs, ours in text_encoder_names(encoder.config.num_layers).items()}
    return {names[name]: tensor.detach().cpu().contiguous() for name, tensor in encoder.state_dict().items()
            if name in names}
