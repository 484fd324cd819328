"""GGUF files (city96 / QuantStack layouts): read the header, load through diffusers, write them.

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

__all__ = ["ORIG_SHAPE_KEY", "read_header", "state_dict", "load_transformer", "write", "require_gguf",
           "stored_types"]

ORIG_SHAPE_KEY = "comfy.gguf.orig_shape."


def require_gguf() -> None:
    """Refuse clearly when the ``gguf`` package is missing (before any file is read)."""
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise ValueError("GGUF files need the 'gguf' package: pip install 'wan_nb[quant]' (or pip install gguf).")


def _reader(path: Path):
    require_gguf()
    from gguf import GGUFReader

    from .single_file import CheckpointError

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

    from .single_file import CheckpointError

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

    return cls.from_single_file(state_dict(path), config=str(folder), subfolder=component, torch_dtype=dtype,
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
    """Write ``tensors`` (name -> torch tensor, e.g. :func:`wan_nb.single_file.original_state_dict`)
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
