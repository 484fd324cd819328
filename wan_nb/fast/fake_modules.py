"""A model component built from its real config under torch's ``FakeTensorMode``: no weights.

Every parameter is a fake tensor (shape, dtype and device, no storage), so a 14B transformer
costs nothing to build and its forward runs the real diffusers / transformers code while torch
only propagates shapes. The dtypes are the ones the loader gives the real component: the
transformer and UMT5 at the compute dtype with diffusers' ``_keep_in_fp32_modules`` (and
transformers' ``_keep_in_fp32_modules``) in float32, the VAE and CLIP in float32
(:data:`FP32_KINDS`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_fake", "transformer_class", "vae_scale", "FP32_KINDS"]

# Components the loader keeps in float32 (wan_nb.models.loading.FP32_COMPONENTS): the VAE and CLIP.
FP32_KINDS = ("vae", "clip")


def transformer_class(config: dict[str, Any]) -> Any:
    """The diffusers class a transformer config belongs to (VACE and Animate add their inputs)."""
    import diffusers

    if "vace_layers" in config:
        return diffusers.WanVACETransformer3DModel
    if "motion_encoder_dim" in config or "face_encoder_hidden_dim" in config:
        return diffusers.WanAnimateTransformer3DModel
    return diffusers.WanTransformer3DModel


def vae_scale(config: dict[str, Any]) -> tuple[int, int]:
    """(spatial, temporal) downscale of an ``AutoencoderKLWan`` config (diffusers' defaults: 8, 4)."""
    downsample = config.get("temperal_downsample", [False, True, True])
    spatial = config.get("scale_factor_spatial") or 2 ** len(downsample)
    temporal = config.get("scale_factor_temporal") or 2 ** sum(bool(d) for d in downsample)
    return int(spatial), int(temporal)


def _construct(kind: str, config: dict[str, Any]) -> Any:
    config = dict(config)
    if kind == "transformer":
        if isinstance(config.get("patch_size"), list):
            config["patch_size"] = tuple(config["patch_size"])
        return transformer_class(config)(**config)
    if kind == "umt5":
        from transformers import UMT5Config, UMT5EncoderModel

        model = UMT5EncoderModel(UMT5Config(**config))
        model.encoder.embed_tokens = model.shared  # tied, as the released checkpoints store it
        return model
    if kind == "vae":
        from diffusers import AutoencoderKLWan

        return AutoencoderKLWan(**config)
    if kind == "clip":
        from transformers import CLIPVisionConfig, CLIPVisionModel

        return CLIPVisionModel(CLIPVisionConfig(**config))
    raise ValueError(f"unknown component kind {kind!r}")


def _keep_in_fp32(model: Any, dtype: Any) -> None:
    """Give the modules the loader keeps in float32 (``from_pretrained(torch_dtype=...)``) fp32
    parameters: diffusers keeps a model's ``_keep_in_fp32_modules`` at any dtype; transformers only
    under float16 (``_keep_in_fp32_modules``: UMT5's ``wo``) or always (``..._strict``).
    ``Module.to`` cannot convert fake parameters (it swaps tensors, which the fake mode's weak
    references forbid), so each parameter is replaced as loading would leave it."""
    import torch

    keep = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())
    if not type(model).__module__.startswith("diffusers"):
        keep = tuple(getattr(model, "_keep_in_fp32_modules_strict", None) or ()) + \
            (keep if dtype == torch.float16 else ())
    if not keep:
        return
    for name, module in model.named_modules():
        if not any(k in name.split(".") for k in keep):
            continue
        for pname, param in list(module._parameters.items()):
            if param is not None and param.dtype != torch.float32:
                module._parameters[pname] = torch.nn.Parameter(param.to(torch.float32), requires_grad=False)


def build_fake(kind: str, config: dict[str, Any], compute_dtype: Any) -> Any:
    """Component ``kind`` from ``config`` with fake parameters; call inside a ``FakeTensorMode``."""
    import torch

    dtype = torch.float32 if kind in FP32_KINDS else compute_dtype
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in its dtype: no conversion afterwards (see _keep_in_fp32)
    try:
        model = _construct(kind, config)
    finally:
        torch.set_default_dtype(previous)
    if dtype != torch.float32:
        _keep_in_fp32(model, dtype)
    model.requires_grad_(False)
    return model.eval()
