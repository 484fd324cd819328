"""The public ``wan_nb.recipe``: a run's recipe built from a generator, and read back.

``wan_nb.recipe(source)`` reads the recipe of a Result, an MP4 or a run folder (the reading and
the format live in :mod:`wan_nb.runs.recipe`, which the server uses without torch);
:func:`build` makes the recipe a run records, :func:`plan` the one a ``submit`` would record.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import sys
import types
from pathlib import Path
from typing import Any, Mapping

from wan_nb.fast import options as fast_path  # light: no torch at import
from wan_nb.runs.recipe import GUIDANCE_FIELDS  # guidance=, guidance_options= (set only)
from wan_nb.models import few_step as fast_presets
from wan_nb.core import lora_schedule
from wan_nb.runs.recipe import (FORMAT, IMAGE_NAME, METADATA_TAG, OPTIONAL_FIELDS, PARAM_FIELDS, RecipeError,  # noqa: F401
                                created_at_iso, dumps, embed, file_sha256, file_size, parse_ffmetadata, post_recipe_fields,
                                read_mp4, recipe,
                                recipe_key, weights_key)

__all__ = ["recipe", "recipe_key", "weights_key", "build", "plan", "lora_entry", "versions", "read_mp4",
           "embed", "dumps", "file_sha256", "FORMAT", "PARAM_FIELDS", "RecipeError"]


def _png(picture: Any) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")  # PNG of the same pixels is the same bytes: a stable hash
    return buffer.getvalue()


_versions: dict[str, str | None] = {}


def versions() -> dict[str, str | None]:
    if not _versions:
        from importlib import metadata

        from wan_nb._version import __version__

        _versions["wan_nb"] = __version__
        for name in ("diffusers", "torch"):
            try:
                _versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                _versions[name] = None
    return dict(_versions)


def _revision(generator: Any) -> str | None:
    spec = generator.spec
    if spec.builder:  # built-in tiny models are versioned by wan_nb itself
        from wan_nb.models.tiny import TINY_VERSION

        return f"tiny-v{TINY_VERSION}"
    folder = getattr(generator.pipeline, "_wan_nb_folder", None)
    if folder is None and not spec.is_local:
        try:
            from wan_nb.models.download import cached_snapshot

            folder = cached_snapshot(spec.source)
        except Exception:
            folder = None
    found = re.search(r"[/\\]snapshots[/\\]([0-9a-f]{40})", str(folder or ""))
    return found.group(1) if found else None


def _model(generator: Any) -> dict[str, Any]:
    spec = generator.spec
    return {"name": generator.model, "repo_id": None if spec.is_local else spec.source,
            "revision": _revision(generator), "kind": spec.kind}


def _dtype(generator: Any) -> str | None:
    pipe = generator.pipeline
    module = None if pipe is None else (getattr(pipe, "transformer", None) or getattr(pipe, "transformer_2", None))
    if module is not None:
        return str(module.dtype).replace("torch.", "")
    try:
        from wan_nb.models.specs import resolve_device_dtype

        return str(resolve_device_dtype(generator.device_request, generator.dtype_request)[1]).replace("torch.", "")
    except Exception:
        return None


def _flow_shift(generator: Any, params: Mapping[str, Any]) -> float | None:
    """The shift asked for, else the preset's; None means the model's own scheduler setting (fixed
    by its revision). Not read from the loaded scheduler: a recipe planned before the model is
    loaded must equal the one recorded after."""
    value = params.get("flow_shift")
    if value is None:
        value = generator.spec.defaults.get("flow_shift")
    return None if value is None else float(value)


def lora_entry(name: str, entry: Any, weight: Any) -> dict[str, Any]:
    """One adapter as a recipe holds it: its file (or, for a pair on a two-expert model, one file
    per expert under ``files``), the sha256 that identifies it, and the transformers it goes into.
    A weight that changes over the steps is ``schedule`` (its JSON form, a callable's values saying
    so in ``from``); ``weight`` is then the highest it reaches, for readers that want one number."""
    state = entry.state
    targets = dict(state) if isinstance(state, Mapping) else {"transformer": state}
    files = {component: {"path": str(Path(getattr(read, "path", None) or entry.source).resolve()),
                         "sha256": file_sha256(getattr(read, "path", None) or entry.source),
                         "size": file_size(getattr(read, "path", None) or entry.source)}
             for component, read in sorted(targets.items())}
    constant = lora_schedule.is_constant(weight)
    out: dict[str, Any] = {"name": name, "weight": float(weight) if constant else lora_schedule.peak(weight),
                           **({} if constant else {"schedule": weight}), "source": entry.source, "targets": list(files)}
    if len({f["path"] for f in files.values()}) == 1:
        first = next(iter(files.values()))
        out.update(path=first["path"], sha256=first["sha256"], size=first["size"])
    else:
        joined = ";".join(f"{component}:{f['sha256']}" for component, f in files.items())
        out.update(path=None, sha256=hashlib.sha256(joined.encode()).hexdigest(), files=files)
    return out


def _loras(generator: Any, requested: Mapping[str, float]) -> list[dict[str, Any]]:
    """The adapters a run uses: the requested ones, or (none requested) every loaded one."""
    loaded = generator.lora_registry.entries
    weights = dict(requested) if requested else {n: entry.weight for n, entry in loaded.items()}
    # A few-step variant's distilled LoRA is part of the model: its name says it, a rerun reloads it.
    return [lora_entry(name, loaded[name], weight) for name, weight in weights.items()
            if name in loaded and not fast_presets.implied(generator.model, name)]


def build(generator: Any, params: Mapping[str, Any], *, image_path: str | os.PathLike | None = None,
          task_id: str | None = None, created_at: str | None = None) -> dict[str, Any]:
    """The recipe of a run of ``generator`` with the full parameter set ``params``.

    With an image, ``image_path`` is where its PNG is written (its hash is taken either way).
    """
    out: dict[str, Any] = {"format": FORMAT}
    for field in PARAM_FIELDS:
        out[field] = params.get(field)
    out["flow_shift"] = _flow_shift(generator, params)
    out["model"] = _model(generator)
    out["dtype"] = _dtype(generator)
    out["loras"] = _loras(generator, params.get("loras") or {})
    out.update(fast_path.recipe_fields(generator, params))  # cache, attention, compile
    out.update(post_recipe_fields(params))  # decode, interpolate, fps_out, upscale, upscaler, previews
    out.update({f: params[f] for f in GUIDANCE_FIELDS if params.get(f) is not None})  # guidance=, its options
    out["image"] = None
    picture = params.get("image")
    if picture is not None:
        data = _png(picture)
        out["image"] = {"sha256": hashlib.sha256(data).hexdigest(), "path": None}
        if image_path is not None:
            target = Path(image_path)
            target.write_bytes(data)
            out["image"].update(path=str(target.resolve()), size=len(data))
    for field in OPTIONAL_FIELDS:
        if out.get(field) is None:
            del out[field]
    from wan_nb.models.user_inputs import record

    found = record(params)   # every input: kind, sha256 of its pixels, the user's file
    if found:
        out["inputs"] = found
    weights = getattr(generator, "weights", None)  # wan_nb.weights.options.WeightOptions: quant=, transformer=
    if weights:
        out.update(weights.recipe_fields())
    out["versions"] = versions()
    out["task_id"] = task_id
    out["created_at"] = created_at
    return out


def plan(generator: Any, prompt: str, **kwargs: Any) -> dict[str, Any]:
    """The recipe ``generator.submit(prompt, **kwargs)`` would record, without running anything.

    With a fixed ``seed``, ``recipe_key(plan(...))`` finds an earlier identical run
    (``wan_nb.history.find_by_key``).
    """
    from wan_nb.models.specs import prepare_image

    params = generator.check(prompt, **kwargs)
    for name in ("image", "last_image"):
        if params.get(name) is not None:
            params[name] = prepare_image(params[name], params["height"], params["width"])
    return build(generator, params)


class _CallableModule(types.ModuleType):
    """``wan_nb.recipe(source)`` calls :func:`recipe`; ``wan_nb.recipe.recipe_key`` still works."""

    def __call__(self, source: Any) -> dict[str, Any]:
        return recipe(source)


sys.modules[__name__].__class__ = _CallableModule
