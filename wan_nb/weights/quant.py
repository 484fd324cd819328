"""Quantized weights per component, on diffusers' and transformers' own machinery.

Modes (``Generator(..., quant=...)``):

- ``"fp8"``: layerwise casting (diffusers ``enable_layerwise_casting`` / ``apply_layerwise_casting``):
  weights are stored in ``float8_e4m3fn`` and cast to the compute dtype one layer at a time, just
  before it runs. Needs nothing beyond torch; runs on any GPU and on the CPU. Halves bf16 weights.
- ``"int8"``: torchao weight-only int8 (``TorchAoConfig(Int8WeightOnlyConfig())``), given to
  ``from_pretrained`` so the weights are quantized as they load. Needs ``torchao``; CPU and GPU.
- ``"nf4"``: bitsandbytes 4-bit NormalFloat (``BitsAndBytesConfig``). Needs a CUDA GPU and
  ``bitsandbytes``; refused on a machine without one before anything loads.
- ``"gguf:<file>"``: a GGUF file of the component (see :mod:`wan_nb.weights.gguf`): a transformer
  (city96 / QuantStack Wan files) or the UMT5 text encoder (city96's ``umt5-xxl-encoder-*.gguf``).

A plain string quantizes the big components: the transformer (both experts of Wan 2.2 A14B)
and the UMT5 text encoder. The VAE and the CLIP image encoder are never quantized: they are small
and run in fp32 for a reason (bf16 VAE decoding visibly bands). A dict names components
(``{"transformer": "fp8", "text_encoder": "int8"}``); on a two-expert model a mode given for
``transformer`` applies to ``transformer_2`` too unless that key is given (a GGUF file holds one
expert, so a GGUF pair names both).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Mapping

__all__ = ["MODES", "QUANTIZABLE", "parse", "parse_cli", "check_runnable", "load_kwargs", "after_load", "stored_dtypes",
           "storage_kind", "quantize_int8"]

MODES = ("fp8", "int8", "nf4")
QUANTIZABLE = ("transformer", "transformer_2", "text_encoder")
_OFF = ("none", "off", "bf16", "")
GGUF_PREFIX = "gguf:"

# Kept at the compute dtype under fp8 casting. Transformer: diffusers' own patterns (norms,
# patch/condition embeddings). UMT5: the token embedding (also what transformers reads .dtype
# from), norms, the relative position bias, and ``wo``, which T5's feed-forward casts its input to
# before calling (an fp8 ``wo`` would turn the activations themselves into fp8).
TEXT_ENCODER_KEEP = ("shared", "embed_tokens", "layer_norm", "relative_attention_bias", "wo")


def _fix_for(value: Any) -> str:
    return (f"quant={value!r} is not a mode; use one of {', '.join(repr(m) for m in MODES)}, "
            "'gguf:<file.gguf>', None, or a dict such as {'transformer': 'fp8', 'text_encoder': 'int8'}")


def _one(value: Any, where: str) -> str | None:
    """One mode, normalized: "fp8" | "int8" | "nf4" | "gguf:<absolute path>" | None."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(_fix_for(value) + f" ({where})")
    text = str(value).strip()
    if text.lower() in _OFF:
        return None
    if text.lower().startswith(GGUF_PREFIX):
        file = text[len(GGUF_PREFIX):].strip()
        if not file.lower().endswith(".gguf"):
            raise ValueError(f"{where}: {text!r} names no .gguf file; write 'gguf:/path/to/model-Q8_0.gguf'")
        return GGUF_PREFIX + os.path.abspath(os.path.expanduser(file))
    if text.lower().endswith(".gguf"):
        raise ValueError(f"{where}: to load a GGUF file write quant='gguf:{text}' (or transformer={text!r})")
    if text.lower() not in MODES:
        hint = " (GGUF quant types such as Q8_0 come from a file: 'gguf:<file>')" if text.upper().startswith(
            ("Q", "IQ")) else ""
        raise ValueError(_fix_for(value) + hint)
    return text.lower()


def parse(quant: Any, *, two_experts: bool) -> dict[str, str]:
    """``quant=`` as {component: mode}; raises ValueError naming the fix for anything else."""
    experts = ("transformer", "transformer_2") if two_experts else ("transformer",)
    if quant is None or isinstance(quant, (str, os.PathLike)):
        mode = _one(quant, "quant")
        if mode is None:
            return {}
        if mode.startswith(GGUF_PREFIX):
            if two_experts:
                raise ValueError("a GGUF file holds one transformer, and this model has two experts: pass "
                                 "transformer=('high_noise.gguf', 'low_noise.gguf') or quant={'transformer': "
                                 "'gguf:high_noise.gguf', 'transformer_2': 'gguf:low_noise.gguf'}")
            return {"transformer": mode}
        return {**{name: mode for name in experts}, "text_encoder": mode}
    if not isinstance(quant, Mapping):
        raise ValueError(_fix_for(quant))
    allowed = experts + ("text_encoder",)
    unknown = [str(k) for k in quant if k not in allowed]
    if unknown:
        why = {"vae": "the VAE stays in fp32 (small; lower precision bands the video)",
               "image_encoder": "the CLIP image encoder stays in fp32 (small)",
               "transformer_2": "this model has one transformer"}
        reasons = "; ".join(f"{k}: {why[k]}" for k in unknown if k in why)
        raise ValueError(f"quant: cannot quantize {', '.join(unknown)}" + (f" ({reasons})" if reasons else "")
                         + f"; the components that can be quantized here are {', '.join(allowed)}")
    out = {name: _one(value, f"quant[{name!r}]") for name, value in quant.items()}
    if two_experts and "transformer" in quant and "transformer_2" not in quant:
        first = out.get("transformer")
        if first is not None and first.startswith(GGUF_PREFIX):
            raise ValueError("quant['transformer'] is a GGUF file of one expert; this model has two: add "
                             "quant['transformer_2'] = 'gguf:<low-noise file>' (or None to load the low-noise "
                             "expert from the model's own files)")
        out["transformer_2"] = first
    return {name: mode for name, mode in out.items() if mode is not None}


def parse_cli(text: str) -> Any:
    """``--quant``: a mode (``fp8``, ``gguf:FILE``) or ``component=mode,component=mode``."""
    if "=" not in text:
        return text
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, mode = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--quant {text!r}: write MODE or COMPONENT=MODE[,COMPONENT=MODE], "
                             "e.g. --quant transformer=fp8,text_encoder=int8")
        out[name.strip()] = mode.strip()
    return out


def _has(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def check_runnable(modes: Mapping[str, str], device: Any) -> None:
    """Refuse, before anything loads, a mode this machine cannot run, naming what would."""
    used = set(modes.values())
    if "int8" in used and not _has("torchao"):
        raise ValueError("quant='int8' uses torchao, which is not installed: pip install 'wan_nb[quant]' "
                         "(or pip install torchao), or use quant='fp8' (needs nothing extra)")
    if "nf4" in used:
        on_cpu = str(device).startswith("cpu")
        if not on_cpu:
            import torch

            on_cpu = not torch.cuda.is_available()
        if on_cpu:
            raise ValueError("quant='nf4' needs a CUDA GPU (bitsandbytes' 4-bit kernels), and this run has "
                             "none; use quant='int8' or 'fp8' here, or a GGUF file (quant='gguf:<file>')")
        if not _has("bitsandbytes"):
            raise ValueError("quant='nf4' uses bitsandbytes, which is not installed: pip install "
                             "'wan_nb[quant]' (or pip install bitsandbytes)")
    if any(m == "gguf" or m.startswith(GGUF_PREFIX) for m in used):
        from wan_nb.weights.gguf import require_gguf

        require_gguf()


def _torchao_int8() -> Any:
    from torchao.quantization import Int8WeightOnlyConfig

    return Int8WeightOnlyConfig()


def quantize_int8(module: Any) -> None:
    """torchao weight-only int8 on an already loaded model (every linear layer), in place."""
    from torchao.quantization import quantize_

    quantize_(module, _torchao_int8())


def load_kwargs(mode: str, library: str, dtype: Any) -> dict[str, Any]:
    """Extra ``from_pretrained`` arguments that quantize while loading (int8, nf4); {} otherwise."""
    if mode == "int8":
        if library == "diffusers":
            from diffusers import TorchAoConfig

            return {"quantization_config": TorchAoConfig(_torchao_int8())}
        from transformers import TorchAoConfig as TransformersTorchAoConfig

        return {"quantization_config": TransformersTorchAoConfig(quant_type=_torchao_int8())}
    if mode == "nf4":
        module = __import__(library)
        config = module.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                           bnb_4bit_compute_dtype=dtype)
        return {"quantization_config": config}
    return {}


def after_load(module: Any, mode: str, dtype: Any) -> None:
    """Quantize an already loaded ``module`` where the mode works that way (fp8 layerwise casting)."""
    if mode != "fp8":
        return
    import torch

    storage, compute = torch.float8_e4m3fn, dtype
    if hasattr(module, "enable_layerwise_casting"):  # a diffusers model: its own skip patterns
        module.enable_layerwise_casting(storage_dtype=storage, compute_dtype=compute)
    else:
        from diffusers.hooks import apply_layerwise_casting

        apply_layerwise_casting(module, storage_dtype=storage, compute_dtype=compute,
                                skip_modules_pattern=TEXT_ENCODER_KEEP)
    # peft creates a LoRA adapter in its base layer's dtype, fp8 here, unless the layer names a
    # ``compute_dtype`` (as bitsandbytes' and GGUF's layers do): LoRA updates then stay in bf16.
    for sub in module.modules():
        registry = getattr(sub, "_diffusers_hook", None)
        if registry is not None and registry.get_hook("layerwise_casting") is not None:
            sub.compute_dtype = compute


def stored_dtypes(module: Any) -> dict[str, int]:
    """Bytes of ``module``'s stored weights by storage kind (``float8_e4m3fn``, ``int8``, ``gguf:Q8_0``,
    ``bfloat16``, ...): what the memory benchmark and the tests read."""
    out: dict[str, int] = {}
    for param in list(module.parameters()) + list(module.buffers()):
        kind, nbytes = storage_kind(param)
        out[kind] = out.get(kind, 0) + nbytes
    return out


def storage_kind(tensor: Any) -> tuple[str, int]:
    """(how ``tensor`` is stored, its bytes): a dtype name, ``int8`` for torchao's int8 tensors,
    ``gguf:<type>`` for GGUF blocks, ``nf4`` for bitsandbytes' 4-bit parameters."""
    quant_type = getattr(tensor, "quant_type", None)
    if quant_type is not None:  # a GGUFParameter: raw blocks as uint8
        return f"gguf:{getattr(quant_type, 'name', quant_type)}", tensor.numel() * tensor.element_size()
    inner = [getattr(tensor, name) for name in ("qdata", "int_data", "tensor_impl") if hasattr(tensor, name)]
    if inner and hasattr(inner[0], "dtype"):  # a torchao tensor subclass: its quantized data + scales
        parts = [getattr(tensor, n) for n in getattr(tensor, "tensor_data_names", ["qdata"]) if hasattr(tensor, n)]
        return str(inner[0].dtype).replace("torch.", ""), sum(p.numel() * p.element_size() for p in parts)
    if type(tensor).__name__ == "Params4bit":
        return "nf4", tensor.numel() * tensor.element_size()
    return str(tensor.dtype).replace("torch.", ""), tensor.numel() * tensor.element_size()

