"""Which model to run and how to load it: tiny built-ins, presets, Hub repos, local folders.

``resolve(name)`` turns what the user typed into a :class:`ModelSpec` (cheap: no torch, no
network). ``load_pipeline(spec, ...)`` returns a ready diffusers pipeline: it builds a tiny model
or downloads a Hub repo if needed (``downloading_model`` stage, byte progress), loads it one
component at a time (``loading_model`` stage, one report per component) and places it on the
device with the chosen offload mode.

Helpers the generator uses while running: :func:`expert_for_step` / :func:`expert_schedule`
(Wan 2.2 A14B's two experts), :func:`prepare_image` (image-to-video input),
:func:`pipeline_for_inputs` (Wan 2.2 TI2V runs image-to-video through the same weights).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from wan_nb.models import few_step as _fast
from wan_nb.models import presets as _presets
from wan_nb.models import kinds as _kinds
from wan_nb.models.presets import flow_shift_for
from wan_nb.models import tiny as _tiny
from wan_nb.models.download import ModelNotAvailable

__all__ = ["ModelSpec", "ModelNotAvailable", "resolve", "load_pipeline", "cache_dir", "build_tiny",
           "resolve_device_dtype", "expert_for_step", "expert_schedule", "experts",
           "prepare_image", "check_image", "size_for_image", "pipeline_for_inputs", "refine",
           "OFFLOAD_MODES"]

TINY_VERSION = _tiny.TINY_VERSION
OFFLOAD_MODES = ("none", "model", "sequential", "group")
HIGH_NOISE, LOW_NOISE = "high_noise", "low_noise"

# report(kind, **fields): kind "stage" (stage=..., message=...) or "loading" (progress=...,
# status=..., component=..., bytes_downloaded=..., bytes_total=..., rate=...).
Report = Callable[..., None]


@dataclass(frozen=True)
class ModelSpec:
    """Everything the generator needs to know about a model before loading it."""

    name: str                      # what the user asked for ("tiny", a preset, a repo id, a path)
    source: str                    # repo id or local folder that is loaded
    pipeline_class: str = "WanPipeline"
    defaults: dict[str, Any] = field(default_factory=dict)
    spatial_factor: int = 16       # height and width must be multiples (VAE factor x patch size)
    temporal_factor: int = 4       # num_frames must be temporal_factor * k + 1
    is_local: bool = False
    kind: str = "t2v"              # "t2v" | "i2v" | "ti2v"
    builder: str | None = None     # tiny variant name for built-in models
    experts: tuple[str, ...] = ()  # ("high_noise", "low_noise") for two-transformer models
    boundary_ratio: float | None = None
    preset: str | None = None      # preset name when resolved from one
    inferred: bool = False         # kind/defaults guessed from a repo name; see refine()
    download_gb: float | None = None
    vram_gb: dict[str, float] = field(default_factory=dict)

    @property
    def accepts_image(self) -> bool:
        return self.kind in ("i2v", "ti2v", "flf2v", "animate")  # animate: the character picture

    @property
    def requires_image(self) -> bool:
        return self.kind in ("i2v", "flf2v", "animate")


# Generic defaults for folders and repos that are not presets (Wan 2.1 at 480p).
# Flow shift as the Wan authors set it: by resolution for Wan 2.1, fixed for Wan 2.2.
_WAN21 = {"height": 480, "width": 832, "num_frames": 81, "fps": 16, "steps": 50,
          "guidance_scale": 5.0, "negative_prompt": _presets.WAN_NEGATIVE_PROMPT,
          "flow_shift": dict(_presets.WAN21_FLOW_SHIFT)}
_WAN22_5B = {**_WAN21, "height": 704, "width": 1280, "num_frames": 121, "fps": 24, "flow_shift": 5.0}
_WAN22_A14B = {**_WAN21, "steps": 40, "guidance_scale": 4.0, "guidance_scale_2": 3.0, "flow_shift": 12.0}


def _base_defaults(two_experts: bool, kind: str) -> dict[str, Any]:
    if two_experts:
        return {**_WAN22_A14B, "flow_shift": 5.0} if kind == "i2v" else dict(_WAN22_A14B)
    return dict(_WAN22_5B if kind == "ti2v" else _WAN21)
DEFAULTS_FILE = "wan_nb.json"   # optional, beside model_index.json: {"defaults": {...}}

TINY_DEFAULTS = dict(_tiny.VARIANTS["tiny"]["defaults"])
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def cache_dir() -> Path:
    """Where wan_nb keeps built-in models and learned timings (``WAN_NB_CACHE`` overrides)."""
    root = os.environ.get("WAN_NB_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wan_nb"


def build_tiny(target: Path, name: str = "tiny") -> Path:
    """Write tiny variant ``name`` to ``target`` (kept for callers of the first version)."""
    return _tiny.build(name, Path(target))


# ---------------------------------------------------------------------------------------------
# resolve
# ---------------------------------------------------------------------------------------------
def resolve(model: str | os.PathLike | ModelSpec) -> ModelSpec:
    """Map a tiny name, preset, repo id or diffusers folder to a :class:`ModelSpec`."""
    if isinstance(model, ModelSpec):
        return model
    if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
        raise ValueError(f"model={model!r}: pass a model name such as 'tiny' or 'wan2.1-t2v-1.3b', "
                         "a Hugging Face repo id, or a local diffusers folder.")
    name = str(model).strip()
    if name.lower() in _tiny.VARIANTS:
        return _tiny_spec(name.lower())
    if name.lower() in _fast.FAST_PRESETS:  # a few-step variant: a preset + its distilled LoRA
        return _fast.variant_spec(name, resolve(_fast.FAST_PRESETS[name.lower()].base))
    preset = _presets.get(name)
    if preset is not None:
        return _preset_spec(preset)
    path = Path(name).expanduser()
    if path.is_dir():
        return _spec_from_folder(name, path, is_local=True)
    if _REPO_ID.match(name) and not name.startswith((".", "~")):
        return _spec_from_repo(name)
    if path.exists() or name.startswith(("/", ".", "~")) or os.sep in name:
        raise ValueError(f"model={name!r}: no such folder ({path.resolve()}). Pass the folder of a "
                         "diffusers model (the one holding model_index.json).")
    raise ValueError(
        f"model={name!r} is not a known model.{_fast.did_you_mean(name, [*_tiny.VARIANTS, *_presets.PRESETS])} Use a built-in tiny model "
        f"({', '.join(_tiny.VARIANTS)}), a preset ({', '.join(_presets.PRESETS)}), a few-step preset "
        f"({', '.join(_fast.FAST_PRESETS)}), a Hugging Face repo id like "
        "'Wan-AI/Wan2.1-T2V-1.3B-Diffusers', or a local diffusers folder. Pass model='tiny' to try "
        "wan_nb without a download.")


def _tiny_spec(name: str) -> ModelSpec:
    variant = _tiny.VARIANTS[name]
    return ModelSpec(
        name=name, source=str(cache_dir() / "models" / f"{name}-v{TINY_VERSION}"),
        pipeline_class=variant["pipeline_class"], defaults=dict(variant["defaults"]),
        spatial_factor=variant["spatial_factor"], temporal_factor=4, is_local=True,
        kind=variant["kind"], builder=name, experts=tuple(variant.get("experts", ())),
        boundary_ratio=variant.get("boundary_ratio"), download_gb=0.0)


def _preset_spec(preset: _presets.Preset) -> ModelSpec:
    return ModelSpec(
        name=preset.name, source=preset.repo_id, pipeline_class=preset.pipeline_class,
        defaults=dict(preset.defaults), spatial_factor=preset.spatial_factor,
        temporal_factor=preset.temporal_factor, kind=preset.kind, experts=preset.experts,
        boundary_ratio=preset.boundary_ratio, preset=preset.name, download_gb=preset.download_gb,
        vram_gb=dict(preset.vram_gb))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _spec_from_folder(name: str, path: Path, *, is_local: bool, source: str | None = None) -> ModelSpec:
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise ValueError(f"model={name!r}: {path} has no model_index.json; point at a diffusers folder "
                         "(the one saved with save_pretrained or downloaded from the Hub).")
    index = _read_json(index_file)
    if not index:
        raise ValueError(f"model={name!r}: {index_file} is not valid JSON.")
    vae = _read_json(path / "vae" / "config.json")
    transformer = _read_json(path / "transformer" / "config.json") or _read_json(
        path / "transformer_2" / "config.json")
    two_experts = bool(index.get("boundary_ratio")) and isinstance(index.get("transformer_2"), list) \
        and bool(index["transformer_2"][0])
    return _spec_from_configs(name, source or str(path), index.get("_class_name", "WanPipeline"), index, vae,
                              transformer, two_experts, _read_json(path / DEFAULTS_FILE).get("defaults", {}),
                              is_local=is_local)


def _spec_from_configs(name: str, source: str, cls: str, index: dict[str, Any], vae: dict[str, Any],
                       transformer: dict[str, Any], two_experts: bool, own_defaults: dict[str, Any], *,
                       is_local: bool) -> ModelSpec:
    """The spec of a Wan pipeline from its pipeline, VAE and transformer configs."""
    z_dim = vae.get("z_dim", 16)
    vae_spatial = vae.get("scale_factor_spatial") or (16 if z_dim == 48 else 8)
    patch = (transformer.get("patch_size") or [1, 2, 2])[1]
    kind = _kinds.kind_from_configs(cls, index, transformer)  # t2v i2v flf2v ti2v vace animate
    base = _base_defaults(two_experts, kind)
    return ModelSpec(
        name=name, source=source, pipeline_class=cls, defaults={**base, **own_defaults},
        spatial_factor=int(vae_spatial) * int(patch),
        temporal_factor=int(vae.get("scale_factor_temporal") or 4), is_local=is_local, kind=kind,
        experts=(HIGH_NOISE, LOW_NOISE) if two_experts else (),
        boundary_ratio=index.get("boundary_ratio") if two_experts else None)


def spec_from_pipeline(pipe: Any, name: str = "custom", defaults: dict[str, Any] | None = None) -> ModelSpec:
    """The spec of an already built pipeline (``Generator.from_pipeline``): read from its configs."""
    transformer = pipe.transformer if getattr(pipe, "transformer", None) is not None else pipe.transformer_2
    two_experts = getattr(pipe, "transformer_2", None) is not None and bool(pipe.config.get("boundary_ratio"))
    # A pipeline built by its owner keeps the scheduler it was given unless defaults say otherwise.
    own = {"flow_shift": None, **(defaults or {})}
    return _spec_from_configs(name, f"<{type(pipe).__name__} object>", type(pipe).__name__, dict(pipe.config),
                              dict(pipe.vae.config), dict(transformer.config), two_experts, own,
                              is_local=True)


def _spec_from_repo(repo_id: str) -> ModelSpec:
    # A repo already in the Hub cache is described exactly, from its own files (no network).
    from wan_nb.models.download import cached_snapshot

    folder = cached_snapshot(repo_id)
    if folder is not None:
        return _spec_from_folder(repo_id, folder, is_local=False, source=repo_id)
    # Not cached: guess from the name now, correct with refine() once downloaded.
    lowered = repo_id.lower()
    two_experts = "a14b" in lowered
    kind = _kinds.kind_from_name(lowered)
    base = _base_defaults(two_experts, kind)
    return ModelSpec(
        name=repo_id, source=repo_id,
        pipeline_class="WanImageToVideoPipeline" if kind in ("i2v", "flf2v") else "WanPipeline",
        defaults=dict(base), spatial_factor=32 if kind == "ti2v" else 16, kind=kind,
        experts=(HIGH_NOISE, LOW_NOISE) if two_experts else (), inferred=True)


def refine(spec: ModelSpec, pipe: Any) -> ModelSpec:
    """``spec`` corrected from the loaded model's own files (for repo ids guessed by name)."""
    folder = getattr(pipe, "_wan_nb_folder", None)
    if not spec.inferred or folder is None:
        return spec
    exact = _spec_from_folder(spec.name, Path(folder), is_local=False, source=spec.source)
    return replace(exact, inferred=False)


# ---------------------------------------------------------------------------------------------
# device, dtype
# ---------------------------------------------------------------------------------------------
def resolve_device_dtype(device: Any = "auto", dtype: Any = "auto", *,
                         real_model: str | None = None) -> tuple[str, Any]:
    """See :func:`wan_nb.models.devices.resolve_device_dtype` (kept here for callers of the first version)."""
    from wan_nb.models.devices import resolve_device_dtype as resolve_

    return resolve_(device, dtype, real_model=real_model)


def release(pipe: Any) -> None:
    """See :func:`wan_nb.models.devices.release`."""
    from wan_nb.models.devices import release as release_

    release_(pipe)


# Below this many transformer parameters a model runs on a CPU in reasonable time (test-sized
# models saved as folders or served as repos); every released Wan model is above 1 B.
SMALL_MODEL_PARAMS = 100e6


def needs_gpu(spec: ModelSpec) -> str | None:
    """The name to refuse a CPU fallback with when ``spec`` is a real model, else None.

    Tiny built-ins never need one; a folder (or an already downloaded repo) is judged by its
    transformer's size; a repo not yet downloaded counts as real, since it is judged before any
    download.
    """
    if spec.builder:
        return None
    folder: Path | None = Path(spec.source) if spec.is_local else None
    if folder is None and not spec.preset:
        from wan_nb.models.download import cached_snapshot

        folder = cached_snapshot(spec.source)
    if folder is not None:
        config = _read_json(folder / "transformer" / "config.json") or _read_json(
            folder / "transformer_2" / "config.json")
        width = int(config.get("num_attention_heads", 0)) * int(config.get("attention_head_dim", 0))
        if config and 12 * int(config.get("num_layers", 0)) * width * width < SMALL_MODEL_PARAMS:
            return None
    return spec.name


# ---------------------------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------------------------
def _noop(*args, **kwargs) -> None:
    pass


def load_pipeline(spec: ModelSpec, *, device: str = "auto", dtype: Any = "auto",
                  report: Report | None = None, offload: str = "none", vae_tiling: bool = False,
                  vae_slicing: bool = False, weights: Any = None) -> Any:
    """Download (if needed), load per component, and place ``spec`` on ``device``; ``weights``:
    quantized / single-file components (:mod:`wan_nb.weights.options`)."""
    import diffusers

    from wan_nb.models import download
    from wan_nb.models import loading

    report = report or _noop
    spec = resolve(spec)
    if offload not in OFFLOAD_MODES:
        raise ValueError(f"offload={offload!r}: choose one of {', '.join(OFFLOAD_MODES)}")
    device, dtype = resolve_device_dtype(device, dtype, real_model=needs_gpu(spec))
    if spec.builder:
        folder = _tiny.build(spec.builder, Path(spec.source))
    elif spec.is_local:
        folder = Path(spec.source)
    else:
        folder = download.fetch_snapshot(spec.source, report, skip=weights.skip_patterns() if weights else ())
    report("stage", stage="loading_model", message=f"Loading {spec.name}")
    index = loading.read_index(folder)
    class_name = spec.pipeline_class if not spec.inferred else index.get("_class_name", spec.pipeline_class)
    pipeline_cls = getattr(diffusers, class_name, None)
    if pipeline_cls is None:
        raise ValueError(f"model {spec.name!r} uses pipeline class {class_name!r}, which diffusers "
                         f"{diffusers.__version__} does not have; upgrade diffusers.")
    # offload="none": each component goes to the device as soon as it is loaded (peak RAM: one).
    components, config = loading.load_components(folder, dtype=dtype, report=report, weights=weights,
                                                 device=device if offload == "none" else None)
    pipe = loading.build_pipeline(pipeline_cls, components, config)
    # The shift at the default size; each run sets its own (set_flow_shift, the flow_shift argument).
    set_flow_shift(pipe, flow_shift_for(spec.defaults.get("flow_shift"), spec.defaults.get("height", 480),
                                        spec.defaults.get("width", 832)))
    loading.place(pipe, device=device, offload=offload, vae_tiling=vae_tiling,
                  vae_slicing=vae_slicing, report=report)
    pipe._wan_nb_folder = str(folder)
    return pipe


def set_flow_shift(pipe: Any, shift: float | None) -> None:
    """Use flow shift ``shift`` from the next run on (None: leave the scheduler as it is)."""
    from wan_nb.models.loading import apply_flow_shift

    apply_flow_shift(pipe, shift)
    twin = getattr(pipe, "_wan_nb_i2v", None)
    if twin is not None and twin.scheduler is not pipe.scheduler:
        twin.scheduler = pipe.scheduler   # TI2V's image-to-video twin shares the scheduler


# ---------------------------------------------------------------------------------------------
# Two experts (Wan 2.2 A14B)
# ---------------------------------------------------------------------------------------------
def _boundary_timestep(pipe: Any) -> float | None:
    ratio = getattr(pipe.config, "boundary_ratio", None) if hasattr(pipe, "config") else None
    if ratio is None or getattr(pipe, "transformer_2", None) is None:
        return None
    return float(ratio) * float(pipe.scheduler.config.num_train_timesteps)


def experts(pipe: Any) -> tuple[str, ...]:
    """("high_noise", "low_noise") for a two-expert pipeline, else ()."""
    return (HIGH_NOISE, LOW_NOISE) if _boundary_timestep(pipe) is not None else ()


def expert_for_step(pipe: Any, t: Any) -> str | None:
    """Which transformer denoises timestep ``t``, by the rule WanPipeline itself applies."""
    boundary = _boundary_timestep(pipe)
    if boundary is None:
        return None
    return HIGH_NOISE if float(t) >= boundary else LOW_NOISE


def expert_schedule(pipe: Any, num_steps: int) -> list[str]:
    """The expert of every step of a ``num_steps`` run; ``[]`` for one-transformer models (nothing
    per step to build, however many steps).

    Computed on a copy of the scheduler, so the pipeline's own scheduler state is untouched.
    """
    boundary = _boundary_timestep(pipe)
    if boundary is None:
        return []
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(int(num_steps), device="cpu")
    return [HIGH_NOISE if float(t) >= boundary else LOW_NOISE for t in scheduler.timesteps]


# ---------------------------------------------------------------------------------------------
# Image-to-video
# ---------------------------------------------------------------------------------------------
def check_image(image: Any) -> None:
    """Cheap validation of an ``image=`` argument (file exists, array shape) before any work."""
    _load_image(image, check_only=True)


def load_image(image: Any):
    """An ``image=`` argument (path, PIL image, array) as a PIL image, unresized; a clear error else."""
    return _load_image(image)


def _load_image(image: Any, check_only: bool = False):
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    if isinstance(image, (str, os.PathLike)):
        path = Path(image).expanduser()
        if path.is_dir():
            raise ValueError(f"image={str(image)!r} is a folder; pass the path of one image file "
                             "(PNG, JPEG, WebP) for the first frame.")
        if not path.is_file():
            raise ValueError(f"image={str(image)!r}: no such file.")
        if check_only:
            return None
        try:
            with Image.open(path) as opened:
                opened.load()
                return opened.copy()
        except Exception as exc:
            raise ValueError(f"image={str(image)!r} is not a readable image ({exc}).") from None
    if hasattr(image, "shape") and hasattr(image, "dtype"):
        import numpy as np

        array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            array = np.moveaxis(array, 0, -1)  # channels-first (torch style) -> channels-last
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))) or min(array.shape[:2]) < 1:
            raise ValueError(f"image: array of shape {tuple(image.shape)} is not a picture; pass "
                             "(height, width, 3) RGB, (height, width, 4) RGBA or (height, width) gray.")
        if check_only:
            return None
        if array.dtype.kind == "f":
            # Floats are taken as 0..1 (diffusers' convention) unless clearly 0..255.
            scale = 1.0 if array.max(initial=0) > 1.0 else 255.0
            array = np.clip(array * scale, 0, 255).round()
        elif array.dtype.kind not in "ui" and array.dtype != bool:
            raise ValueError(f"image: array of dtype {array.dtype} is not a picture.")
        return Image.fromarray(array.astype(np.uint8))
    raise ValueError(f"image: expected a PIL image, a file path or a numpy array, got "
                     f"{type(image).__name__}.")


def prepare_image(image: Any, height: int, width: int):
    """The first frame as an RGB PIL image of exactly ``width`` x ``height``.

    Center-cropped to the target aspect ratio first, so the picture is not stretched.
    """
    from PIL import Image

    picture = _load_image(image).convert("RGB")
    w, h = picture.size
    target = width / height
    if abs(w / h - target) > 1e-3:
        if w / h > target:   # too wide: trim the sides
            new_w = max(1, round(h * target))
            left = (w - new_w) // 2
            picture = picture.crop((left, 0, left + new_w, h))
        else:                # too tall: trim top and bottom
            new_h = max(1, round(w / target))
            top = (h - new_h) // 2
            picture = picture.crop((0, top, w, top + new_h))
    if picture.size != (width, height):
        picture = picture.resize((width, height), Image.Resampling.LANCZOS)
    return picture


def size_for_image(image: Any, spec: ModelSpec, *, height: int | None = None,
                   width: int | None = None) -> tuple[int, int]:
    """(height, width) with the image's aspect ratio and the area of the spec's default size,
    rounded to the model's multiples; a side that is given is kept and the other follows."""
    picture = _load_image(image)
    w, h = picture.size
    f = spec.spatial_factor

    def snap(value: float) -> int:
        return max(f, round(value / f) * f)

    if height is not None:
        return height, snap(height * w / h)
    if width is not None:
        return snap(width * h / w), width
    area = spec.defaults["height"] * spec.defaults["width"]
    return snap((area * h / w) ** 0.5), snap((area * w / h) ** 0.5)


def pipeline_for_inputs(pipe: Any, image: Any = None) -> Any:
    """The pipeline to call: ``pipe`` itself, or for Wan 2.2 TI2V with an image, an image-to-video
    pipeline sharing ``pipe``'s modules (same weights, offload hooks and LoRA adapters)."""
    if image is None or "ImageToVideo" in type(pipe).__name__:
        return pipe
    if not getattr(pipe.config, "expand_timesteps", False):
        raise ValueError(f"this model ({type(pipe).__name__}) makes video from text only; "
                         "drop image= or use an image-to-video model (e.g. 'wan2.1-i2v-14b-480p', "
                         "'wan2.2-ti2v-5b').")
    cached = getattr(pipe, "_wan_nb_i2v", None)
    if cached is None:
        from diffusers import WanImageToVideoPipeline

        cached = WanImageToVideoPipeline(
            **{k: v for k, v in pipe.components.items()
               if k in ("tokenizer", "text_encoder", "vae", "scheduler", "transformer", "transformer_2")},
            boundary_ratio=pipe.config.boundary_ratio, expand_timesteps=True)
        cached.set_progress_bar_config(disable=True)
        pipe._wan_nb_i2v = cached
    return cached
