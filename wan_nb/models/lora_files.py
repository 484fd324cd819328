"""LoRA adapters on a Wan pipeline: read, attach, activate per run, detach.

``read_lora`` finds and reads the weights (a .safetensors file, a folder holding one, or a Hub
repo id); ``attach`` loads them into the pipeline as a named adapter, in any key format diffusers
converts (diffusers/peft, original Wan and ComfyUI ``diffusion_model.*``, musubi ``lora_unet_*``);
``activate`` sets which adapters are on, with which weights, for the next run; ``detach`` removes
them.

A failed ``attach`` leaves the pipeline exactly as it was: the half-made adapter is deleted and,
when it was the first one, the LoRA wrappers are removed from the model too. Attaching never
changes what the pipeline generates until ``activate`` names the adapter.
"""

from __future__ import annotations

import logging
import math
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from wan_nb.models.tensor_files import UnreadableTensorFile, read_tensor_file
from wan_nb.protocol.errors import LoraError  # noqa: F401 (re-exported)

__all__ = ["LoraError", "LoraState", "read_lora", "attach", "activate", "detach", "loaded",
           "default_name", "read_for_experts", "attach_targets", "per_component", "EXPERTS", "set_scales"]

# experts= of Generator.load_lora -> the pipeline components that get the adapter.
EXPERTS = {"both": ("transformer", "transformer_2"), "high": ("transformer",), "low": ("transformer_2",)}

Report = Callable[..., None]
_PREFERRED_FILE = "pytorch_lora_weights.safetensors"
_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass
class LoraState:
    """The weights of one LoRA as read from disk, before they are attached to a pipeline."""

    name: str                       # a default adapter name: the file's stem
    source: str                     # what the caller passed (path or repo id)
    path: Path                      # the local file read
    state_dict: dict[str, Any]
    format: str                     # "diffusers" | "original" | "musubi"

    def __repr__(self) -> str:
        return (f"LoraState(name={self.name!r}, source={self.source!r}, format={self.format!r}, "
                f"tensors={len(self.state_dict)})")


def _default_name(path: Path) -> str:
    stem = path.stem if path.suffix in _SUFFIXES else path.name
    if stem == Path(_PREFERRED_FILE).stem:   # diffusers' generic file name: use the folder's
        stem = path.parent.name or stem
    # Adapter names become parts of module paths in peft: no dots, no slashes.
    return re.sub(r"[^\w-]", "_", stem) or "lora"


def default_name(path_or_repo: str | os.PathLike) -> str:
    """The adapter name used when none is given: the file (or folder, or repo) name, no suffix.

    ``styles/ink.safetensors`` -> ``ink``; ``org/ink-lora`` -> ``ink-lora``; a folder holding
    ``pytorch_lora_weights.safetensors`` -> the folder's name.
    """
    if not str(path_or_repo).strip():
        raise LoraError("LoRA path '': give the path of a .safetensors file, a folder holding one, or a "
                        "Hub repo id ('org/name').")
    path = Path(str(path_or_repo)).expanduser()
    if path.is_dir():
        try:
            path = _pick_file(path, str(path_or_repo))
        except LoraError:
            return _default_name(path)
    return _default_name(path)


def _key_format(keys) -> str:
    keys = list(keys)
    if any(k.startswith("diffusion_model.") for k in keys):
        return "original"
    if any(k.startswith("lora_unet_") for k in keys):
        return "musubi"
    return "diffusers"


def _pick_file(folder: Path, source: str) -> Path:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _SUFFIXES)
    if not files:
        raise LoraError(f"LoRA folder {source!r} holds no .safetensors file.")
    preferred = [p for p in files if p.name == _PREFERRED_FILE] or [p for p in files if p.suffix == ".safetensors"]
    if len(preferred) == 1:
        return preferred[0]
    raise LoraError(f"LoRA folder {source!r} holds several weight files "
                    f"({', '.join(p.name for p in files)}); pass the path of the one to use.")


# How to get a LoRA file to try things with, for messages about a missing one.
_MAKE_ONE = ("Give the path of a .safetensors file, a folder holding one, or a Hub repo id ('org/name'); "
             "to try LoRAs without one, make a tiny one: notebooks/02_prompts_and_loras.ipynb shows how "
             "(wan_nb.models.tiny.make_lora).")


def _read_file(path: Path, source: str) -> dict[str, Any]:
    if not path.is_file():
        raise LoraError(f"LoRA file {source!r} does not exist (looked for {path.resolve()}). {_MAKE_ONE}")
    try:
        state = read_tensor_file(path)
    except UnreadableTensorFile as exc:
        raise LoraError(f"LoRA file {source!r} could not be read ({exc}); it is damaged or not a LoRA "
                        "weights file.") from None
    if not isinstance(state, dict) or not state:
        raise LoraError(f"LoRA file {source!r} holds no tensors.")
    if not any("lora" in k.lower() for k in state):
        raise LoraError(f"LoRA file {source!r} is not a LoRA: none of its {len(state)} tensors has "
                        "'lora' in its name (is it a full model checkpoint?).")
    _check_finite(state, path)
    return state


def _check_finite(state: dict[str, Any], path: Path) -> None:
    """A LoRA holding NaN or inf would turn every video black: refuse it, naming the file."""
    import torch

    bad = [k for k, v in state.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise LoraError(f"LoRA file {str(path)!r} holds NaN or infinite values in {len(bad)} of its "
                        f"{len(state)} tensors (first: {bad[0]}); the file is damaged or was saved from "
                        "a diverged training run.")


def looks_like_repo(text: str) -> bool:
    parts = text.split("/")
    return (len(parts) >= 2 and all(parts) and not text.startswith((".", "/", "~"))
            and not os.path.isabs(text))


def read_lora(path_or_repo: str | os.PathLike, *, report: Report | None = None,
              revision: str | None = None) -> LoraState:
    """Read a LoRA from a file, a folder with one weights file, or a Hub repo id.

    ``"org/repo"`` downloads its single .safetensors (or ``pytorch_lora_weights.safetensors``);
    ``"org/repo/file.safetensors"`` picks a file. Downloads report bytes through ``report``.
    """
    source = str(path_or_repo)
    if not source.strip():
        raise LoraError("LoRA path '': give the path of a .safetensors file, a folder holding one, or a "
                        "Hub repo id ('org/name').")
    path = Path(source).expanduser()
    if path.is_dir():
        path = _pick_file(path, source)
    elif not path.exists():
        # 'dir/ink.safetensors' names a file (a Hub file needs 'org/name/file.safetensors').
        if path.suffix in _SUFFIXES and (not looks_like_repo(source) or len(source.split("/")) < 3):
            raise LoraError(f"LoRA file {source!r} does not exist (looked for {path.resolve()}). {_MAKE_ONE}")
        if not looks_like_repo(source):
            raise LoraError(f"LoRA {source!r}: no such file or folder, and not a Hub repo id "
                            "('org/name' or 'org/name/file.safetensors').")
        path = _download(source, report, revision)
    state = _read_file(path, source)
    return LoraState(name=_default_name(path), source=source, path=path, state_dict=state,
                     format=_key_format(state))


def _download(source: str, report: Report | None, revision: str | None) -> Path:
    from wan_nb.models.download import ModelNotAvailable, fetch_file, list_files

    parts = source.split("/")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:]) or None
    try:
        if filename is None:
            names = [n for n in list_files(repo_id, revision=revision) if n.endswith(".safetensors")]
            if not names:
                raise LoraError(f"LoRA repo {repo_id!r} has no .safetensors file.")
            chosen = [n for n in names if n.endswith(_PREFERRED_FILE)]
            if len(chosen) != 1 and len(names) != 1:
                raise LoraError(f"LoRA repo {repo_id!r} has several weight files ({', '.join(names)}); "
                                f"pass '{repo_id}/<file>' to pick one.")
            filename = chosen[0] if len(chosen) == 1 else names[0]
        return fetch_file(repo_id, filename, report, revision=revision)
    except ModelNotAvailable as exc:
        raise LoraError(str(exc)) from exc


# ---------------------------------------------------------------------------------------------
# On the pipeline
# ---------------------------------------------------------------------------------------------
def loaded(pipe: Any) -> list[str]:
    """Names of the adapters attached to ``pipe`` (over all its transformers)."""
    if not hasattr(pipe, "get_list_adapters"):
        return []
    names: list[str] = []
    for adapters in pipe.get_list_adapters().values():
        names += [a for a in adapters if a not in names]
    return names


def per_component(pipe: Any) -> dict[str, list[str]]:
    """Adapter names per denoiser component, e.g. ``{"transformer": ["ink"], "transformer_2": ["ink"]}``."""
    if not hasattr(pipe, "get_list_adapters"):
        return {}
    return {k: list(v) for k, v in pipe.get_list_adapters().items()}


def read_for_experts(path_or_repo: Any, experts: str | None, model_experts: tuple[str, ...], *,
                     report: Report | None = None) -> dict[str, LoraState]:
    """Read a LoRA for the components ``experts`` names: ``{component: LoraState}``.

    ``path_or_repo`` is one file (or folder, or repo id) or, for two-expert models, a pair
    ``(high_noise_file, low_noise_file)`` as many Wan 2.2 LoRAs are published. ``experts``:
    "both" (default on two-expert models), "high" or "low"; single-expert models take neither a
    pair nor ``experts``.
    """
    two = len(model_experts) >= 2
    pair = isinstance(path_or_repo, (tuple, list))
    if experts is not None and experts not in EXPERTS:
        raise LoraError(f"experts={experts!r}: use 'both', 'high' or 'low'.")
    if not two and (pair or experts is not None):
        what = "a pair of files" if pair else f"experts={experts!r}"
        raise LoraError(f"{what} is for two-expert models (Wan 2.2 A14B); this model has one transformer: "
                        "pass one LoRA file and no experts=.")
    if pair:
        if len(path_or_repo) != 2:
            raise LoraError(f"a LoRA pair is (high_noise_file, low_noise_file); got {len(path_or_repo)} items.")
        if experts not in (None, "both"):
            raise LoraError(f"a pair of files fills both experts; experts={experts!r} does not apply.")
        high, low = (read_lora(item, report=report) for item in path_or_repo)
        return {"transformer": high, "transformer_2": low}
    state = read_lora(path_or_repo, report=report)
    return {component: state for component in EXPERTS[experts or ("both" if two else "high")]}


def attach_targets(pipe: Any, name: str, targets: dict[str, LoraState]) -> None:
    """:func:`attach` ``name`` into every component of ``targets``; all of them or none."""
    done: list[str] = []
    try:
        for component, state in targets.items():
            attach(pipe, name, state, target=component)
            done.append(component)
    except Exception:
        for component in done:
            _delete_from(pipe, component, name)
        raise


def _delete_from(pipe: Any, component: str, name: str) -> None:
    model = getattr(pipe, component, None)
    if model is not None and name in getattr(model, "peft_config", {}):
        model.delete_adapters(name)
    _reapply(pipe)


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextmanager
def _capture_diffusers_warnings():
    logger = logging.getLogger("diffusers")
    handler = _Capture()
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def attach(pipe: Any, name: str, state: LoraState, *, target: str = "transformer",
           strict: bool = True) -> None:
    """Load ``state`` into ``pipe`` as adapter ``name`` (inactive until :func:`activate`).

    ``target="transformer_2"`` loads it into the low-noise expert of a Wan 2.2 A14B model (their
    LoRAs come as a high-noise and a low-noise file). With ``strict``, a LoRA whose tensors only
    partly fit the model is refused instead of being half applied.
    """
    if not isinstance(name, str) or not name or "." in name:
        raise LoraError(f"LoRA name {name!r}: use a non-empty name without dots.")
    if not hasattr(pipe, "load_lora_weights"):
        raise LoraError(f"{type(pipe).__name__} does not support LoRA adapters.")
    if target not in ("transformer", "transformer_2"):
        raise LoraError(f"target={target!r}: use 'transformer' or 'transformer_2'.")
    if target == "transformer_2" and getattr(pipe, "transformer_2", None) is None:
        raise LoraError(f"LoRA {state.source!r}: target='transformer_2' needs a two-expert model "
                        "(Wan 2.2 A14B).")
    before = loaded(pipe)
    if name in per_component(pipe).get(target, []):
        raise LoraError(f"a LoRA named {name!r} is already loaded into the {target}; unload it first or "
                        "pick another name.")
    kwargs = {"load_into_transformer_2": True} if target == "transformer_2" else {}
    try:
        with _capture_diffusers_warnings() as warnings:
            pipe.load_lora_weights(dict(state.state_dict), adapter_name=name, **kwargs)
        if name not in per_component(pipe).get(target, []):
            raise LoraError(f"LoRA {state.source!r} does not fit this model: none of its layers match "
                            f"the {target} of {type(pipe).__name__} (is it for another model?).")
        partial = [w for w in warnings if "unexpected keys" in w]
        if strict and partial:
            raise LoraError(f"LoRA {state.source!r} only partly fits this model: {partial[0][:300]}")
    except Exception as exc:
        _roll_back(pipe, name, before, target)
        if isinstance(exc, LoraError):
            raise
        detail = " ".join(str(exc).split())[:500]   # one line: torch's message spans several
        raise LoraError(f"LoRA {state.source!r} could not be loaded into this model "
                        f"({type(exc).__name__}: {detail}). Is it a LoRA for this Wan model "
                        "and size?") from exc
    finally:
        _reapply(pipe)


def _roll_back(pipe: Any, name: str, before: list[str], target: str) -> None:
    if not before:
        # First adapter: remove the LoRA wrappers entirely, so the modules are the originals.
        pipe.unload_lora_weights()
        return
    model = getattr(pipe, target, None)
    if model is not None and name in getattr(model, "peft_config", {}):
        model.delete_adapters(name)


def _reapply(pipe: Any) -> None:
    activate(pipe, getattr(pipe, "_wan_nb_lora_weights", {}))


def activate(pipe: Any, weights: dict[str, float] | None) -> None:
    """Turn on exactly the adapters in ``weights`` (name -> strength); empty turns LoRA off."""
    weights = dict(weights or {})
    names = loaded(pipe)
    unknown = [n for n in weights if n not in names]
    if unknown:
        raise LoraError(f"LoRA {', '.join(map(repr, unknown))} is not loaded; loaded: "
                        f"{', '.join(names) or 'none'}. Load it first (load_lora).")
    for n, w in weights.items():
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w):
            raise LoraError(f"LoRA weight for {n!r} must be a finite number, got {w!r}.")
    pipe._wan_nb_lora_weights = weights
    # Per component: an adapter may sit on one expert only (experts="high"/"low"), and diffusers'
    # pipeline-wide set_adapters asks every component for every name.
    for component, present in per_component(pipe).items():
        model = getattr(pipe, component)
        active = [n for n in weights if n in present]
        if not active:
            model.disable_lora()
            continue
        model.enable_lora()
        model.set_adapters(active, [float(weights[n]) for n in active])


def set_scales(pipe: Any, scales: dict[str, dict[str, float]]) -> None:
    """Set active adapters' strengths per component (``{"transformer": {"ink": 0.4}}``) between two
    denoising steps, after :func:`activate` turned them on.

    Each LoRA layer's scale becomes a 0-d tensor filled in place, as peft's compiled hotswap does
    (``peft.utils.hotswap``): ``set_adapters`` writes Python floats, which a compiled transformer
    guards on, so every new weight would recompile it. The next :func:`activate` writes floats again.
    """
    import torch
    from peft.tuners.lora import LoraLayer

    for component, weights in scales.items():
        model = getattr(pipe, component, None)
        if model is None or not weights:
            continue
        for module in model.modules():
            if not isinstance(module, LoraLayer):
                continue
            for name, weight in weights.items():
                current = module.scaling.get(name)
                if current is None:
                    continue
                rank = math.sqrt(module.r[name]) if module.use_rslora.get(name, False) else module.r[name]
                value = float(weight) * module.lora_alpha[name] / rank
                if isinstance(current, torch.Tensor):
                    current.fill_(value)
                else:
                    module.scaling[name] = torch.tensor(value, device=module.lora_A[name].weight.device)


def detach(pipe: Any, name: str | None = None) -> None:
    """Remove adapter ``name`` (all of them when None); the model returns to its own weights."""
    names = loaded(pipe)
    if name is None or names == [name]:
        if name is not None and name not in names:
            raise LoraError(f"LoRA {name!r} is not loaded; loaded: {', '.join(names) or 'none'}.")
        if names:
            pipe.unload_lora_weights()
        pipe._wan_nb_lora_weights = {}
        return
    if name not in names:
        raise LoraError(f"LoRA {name!r} is not loaded; loaded: {', '.join(names) or 'none'}.")
    for component, present in per_component(pipe).items():
        if name in present:
            getattr(pipe, component).delete_adapters(name)
    remaining = {k: v for k, v in getattr(pipe, "_wan_nb_lora_weights", {}).items() if k != name}
    activate(pipe, remaining)
