"""Load a diffusers folder one component at a time, reporting each, then place it on the device.

diffusers' ``DiffusionPipeline.from_pretrained`` loads every component behind one call, which
for Wan means minutes of silence while tens of gigabytes are read. Here the folder's
``model_index.json`` is read, each component is loaded with its own ``from_pretrained(folder,
subfolder=name)`` and reported (``component=`` names it, progress is weighted by the bytes of its
weight files), and the pipeline class is then built from the loaded parts.

Placement: ``offload`` picks how weights meet the GPU — ``none`` (all on the device), ``model``
(one component at a time, ``enable_model_cpu_offload``), ``sequential`` (layer by layer, smallest
memory, slowest) or ``group`` (groups of layers with a CUDA stream overlapping transfer and compute).
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

__all__ = ["OFFLOAD_MODES", "read_index", "load_components", "place", "apply_flow_shift",
           "component_sizes"]

log = logging.getLogger("wan_nb")
Report = Callable[..., None]

OFFLOAD_MODES = ("none", "model", "sequential", "group")

# Heavy parts are loaded in the order a run uses them; the light ones (tokenizer, scheduler,
# image processor) first, since they cost nothing and a typo in them should fail fast.
_HEAVY_ORDER = ("text_encoder", "image_encoder", "transformer", "transformer_2", "vae")
# Kept in float32 whatever the dtype: the Wan authors run the VAE and CLIP in fp32 (bf16 VAE
# decoding visibly bands), and both are small next to the transformer.
FP32_COMPONENTS = ("vae", "image_encoder")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def read_index(folder: Path) -> dict[str, Any]:
    index_file = Path(folder) / "model_index.json"
    try:
        return json.loads(index_file.read_text())
    except FileNotFoundError:
        raise ValueError(f"{folder} has no model_index.json; point at a diffusers folder "
                         "(one saved with save_pretrained or a '-Diffusers' repo).") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{index_file} is not valid JSON ({exc}); the download may be damaged: "
                         "delete it from the cache and try again.") from None


def _components_of(index: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {name: (value[0], value[1]) for name, value in index.items()
            if not name.startswith("_") and isinstance(value, list) and len(value) == 2
            and value[0] and value[1]}


def component_sizes(folder: Path, names) -> dict[str, int]:
    """Bytes of weight files per component subfolder (how long each takes to load, roughly)."""
    sizes = {}
    for name in names:
        sub = Path(folder) / name
        sizes[name] = sum(p.stat().st_size for p in sub.rglob("*")
                          if p.is_file() and p.suffix in _WEIGHT_SUFFIXES) if sub.is_dir() else 0
    return sizes


@lru_cache(maxsize=None)
def _dtype_keyword(library: str) -> str:
    """``dtype=`` where the library takes it (diffusers >= 0.36, transformers >= 4.56), else ``torch_dtype=``."""
    from packaging.version import Version

    module = importlib.import_module(library)
    if library == "transformers":
        return "dtype" if Version(module.__version__) >= Version("4.56") else "torch_dtype"
    if library == "diffusers":
        from diffusers import ModelMixin

        return "dtype" if '"dtype"' in inspect.getsource(ModelMixin.from_pretrained) else "torch_dtype"
    return "torch_dtype"


def _component_class(name: str, library: str, class_name: str):
    try:
        module = importlib.import_module(library)
    except ImportError as exc:
        raise ValueError(f"component {name!r} needs the package {library!r} ({exc}); install it.") from None
    cls = getattr(module, class_name, None)
    if cls is None and library == "transformers":
        # Class names move between transformers releases (e.g. tokenizers saved by v5 as
        # "TokenizersBackend"); the Auto classes read the right one from the folder.
        auto = {"tokenizer": "AutoTokenizer", "image_processor": "AutoImageProcessor",
                "feature_extractor": "AutoFeatureExtractor"}.get(name, "AutoModel")
        cls = getattr(module, auto)
    if cls is None:
        raise ValueError(f"component {name!r}: {library} has no class {class_name!r}; upgrade {library}.")
    return cls


def _human(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} KB"


def load_components(folder: Path, *, dtype: Any, report: Report, fp32_components=FP32_COMPONENTS,
                    device: Any = None, weights: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load every component of ``folder``; returns (components, pipeline config arguments).

    ``device``: move each model there as soon as it is loaded (``offload="none"``), so host RAM
    holds one component at a time instead of the whole model (~69 GB for Wan 2.2 A14B in bf16).
    ``weights``: a :class:`wan_nb.weights.options.WeightOptions` (quantized components, single files).
    """
    folder = Path(folder)
    index = read_index(folder)
    parts = _components_of(index)
    config = {k: v for k, v in index.items() if not k.startswith("_") and not isinstance(v, list)}
    order = [n for n in parts if n not in _HEAVY_ORDER] + [n for n in _HEAVY_ORDER if n in parts]
    sizes = {**component_sizes(folder, order), **(weights.sizes() if weights else {})}
    total = sum(sizes.values()) or 1
    loaded: dict[str, Any] = {}
    done = 0
    with _quiet_transformers():
        for name in order:
            done = _load_one(folder, name, parts[name], sizes, done, total, dtype, fp32_components,
                             report, loaded, weights)
            if device is not None and hasattr(loaded[name], "to") and hasattr(loaded[name], "parameters"):
                loaded[name].to(device)
    return loaded, config


@contextmanager
def _quiet_transformers():
    """transformers draws its own per-file bars; ours replace them, so hide theirs meanwhile."""
    try:
        from transformers.utils import logging as tlog
    except ImportError:
        yield
        return
    was_enabled = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            tlog.enable_progress_bar()


def _load_one(folder: Path, name: str, entry: tuple[str, str], sizes: dict[str, int], done: int,
              total: int, dtype: Any, fp32_components, report: Report, loaded: dict[str, Any],
              weights: Any = None) -> int:
    """Load component ``name`` into ``loaded``, reporting before and after; returns bytes done."""
    import torch

    library, class_name = entry
    cls = _component_class(name, library, class_name)
    is_model = isinstance(cls, type) and issubclass(cls, torch.nn.Module)
    kwargs: dict[str, Any] = {"subfolder": name}
    if is_model:
        half = dtype in (torch.float16, torch.bfloat16)
        kwargs[_dtype_keyword(library)] = torch.float32 if half and name in fp32_components else dtype
    if sizes[name]:
        report("loading", progress=round(100.0 * done / total, 1),
               status=f"Loading {name} ({_human(sizes[name])})", component=name)
    started = time.monotonic()
    try:
        part = weights.load(name, cls, folder, kwargs, dtype) if weights else cls.from_pretrained(folder, **kwargs)
    except ValueError as exc:
        if type(exc).__name__ == "CheckpointError":  # already names the file and the fix
            raise
        raise ValueError(f"could not load component {name!r} ({class_name}) from {folder / name}: "
                         f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise ValueError(f"could not load component {name!r} ({class_name}) from {folder / name}: "
                         f"{type(exc).__name__}: {exc}") from exc
    if is_model:
        part.eval()
    loaded[name] = part
    done += sizes[name]
    report("loading", progress=round(100.0 * done / total, 1),
           status=f"Loaded {name} in {time.monotonic() - started:.1f} s", component=name)
    return done


def build_pipeline(pipeline_cls, components: dict[str, Any], config: dict[str, Any]):
    """Construct ``pipeline_cls`` from loaded parts; absent optional parts are passed as None."""
    params = inspect.signature(pipeline_cls.__init__).parameters
    kwargs = {k: v for k, v in {**config, **components}.items() if k in params}
    for name, param in params.items():
        if name != "self" and name not in kwargs and param.default is inspect.Parameter.empty:
            raise ValueError(f"{pipeline_cls.__name__} needs a {name!r} component, which this model folder lacks.")
    return pipeline_cls(**kwargs)


def apply_flow_shift(pipe: Any, shift: float | None) -> None:
    """Set the scheduler's flow shift (Wan: 3.0 for 480p, 5.0 for 720p; A14B T2V: 12.0)."""
    if shift is None:
        return
    config = pipe.scheduler.config
    key = "flow_shift" if "flow_shift" in config else "shift" if "shift" in config else None
    if key is None or float(config[key]) == float(shift):
        return
    pipe.scheduler = type(pipe.scheduler).from_config(config, **{key: float(shift)})


def place(pipe: Any, *, device: str, offload: str = "none", vae_tiling: bool = False,
          vae_slicing: bool = False, report: Report | None = None) -> str:
    """Put ``pipe`` on ``device`` the way ``offload`` says; returns a note for the status line."""
    import torch

    if offload not in OFFLOAD_MODES:
        raise ValueError(f"offload={offload!r}: choose one of {', '.join(OFFLOAD_MODES)}")
    dev = torch.device(device)
    note = f"on {dev}"
    if offload != "none" and dev.type == "cpu":
        # Offloading moves weights between CPU and an accelerator; with no accelerator the
        # weights already live where they run, so it would only add hooks and time.
        note = f"offload={offload!r} has no effect on CPU; running without offload"
        log.info("wan_nb: %s", note)
        offload = "none"
    if offload == "none":
        pipe.to(dev)
    elif offload == "model":
        pipe.enable_model_cpu_offload(device=dev)
        note = f"model CPU offload to {dev}"
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=dev)
        note = f"sequential CPU offload to {dev}"
    elif offload == "group":
        _group_offload(pipe, dev)
        note = f"group offload to {dev}"
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        (vae.enable_tiling if vae_tiling else vae.disable_tiling)()
        (vae.enable_slicing if vae_slicing else vae.disable_slicing)()
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    if report is not None:
        report("loading", progress=100.0, status=f"Model ready ({note})", component=None)
    return note


# Group offload, as diffusers' Wan docs apply it: one transformer block (or encoder layer) per
# group, the next group copied on a CUDA stream while the current one computes. With a stream,
# diffusers pins every offloaded weight in host memory up front (about 69 GB for Wan 2.2 A14B);
# low_cpu_mem_usage pins each group only while it is copied, so host RAM stays at the model's size.
GROUP_OFFLOAD = dict(offload_type="block_level", num_blocks_per_group=1, low_cpu_mem_usage=True)


def _group_offload(pipe: Any, dev: Any) -> None:
    import torch

    # The VAE stays on the device: it is small and decodes in one go.
    use_stream = dev.type == "cuda"
    kwargs = dict(onload_device=dev, offload_device=torch.device("cpu"), use_stream=use_stream, **GROUP_OFFLOAD)
    if hasattr(pipe, "enable_group_offload"):
        pipe.enable_group_offload(**kwargs, exclude_modules=["vae"])
    else:  # diffusers before enable_group_offload: apply it per component
        from diffusers.hooks import apply_group_offloading

        for name, component in pipe.components.items():
            if name != "vae" and isinstance(component, torch.nn.Module):
                apply_group_offloading(component, **kwargs)
    if getattr(pipe, "vae", None) is not None:
        pipe.vae.to(dev)
