"""Make a video again from its recipe: ``gen.rerun(source, **overrides)``.

Everything the recipe needs is checked before anything runs: the model matches, every LoRA
file is where the recipe says and still has the recorded hash, the input image too. Then the
LoRAs it used are loaded (under their recorded names) and the task is submitted with the
recorded arguments, an override replacing only the argument it names.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

from wan_nb.fast import options as fast_path
from wan_nb.models import few_step as fast_presets
from wan_nb.models import user_inputs as inputs
from wan_nb.models.lora_files import EXPERTS, looks_like_repo  # the one rule for "org/name" vs a path
from wan_nb.core.recipes import lora_entry
from wan_nb.runs.recipe import GUIDANCE_FIELDS, PARAM_FIELDS, RecipeError, file_sha256, recipe, size_mismatch

__all__ = ["rerun", "rerun_args", "generator_rerun"]


def _lora_file(name: str, path: str | None, source: str | None, want: str | None, size: Any = None) -> str:
    """Where to load one LoRA file from; raises RecipeError naming it when it is gone or changed
    (a different size is refused before the file is hashed)."""
    candidates = list(dict.fromkeys(str(c) for c in (path, source) if c))
    for candidate in candidates:
        if Path(candidate).expanduser().is_file():
            differs = size_mismatch(Path(candidate).expanduser(), size)
            if differs:
                raise RecipeError(f"LoRA {name!r} at {candidate} has changed since the recipe was made ({differs}); "
                                  f"put the original file back, or rerun with loras={{{name!r}: 0}} to leave it out")
            have = file_sha256(Path(candidate).expanduser())
            if want and have != want:
                raise RecipeError(f"LoRA {name!r} at {candidate} has changed since the recipe was made "
                                  f"(sha256 {have[:12]}…, recorded {want[:12]}…); put the original file back, "
                                  f"or rerun with loras={{{name!r}: 0}} to leave it out")
            return candidate
    if source and looks_like_repo(source) and not Path(source).expanduser().exists():
        return source  # a Hub LoRA: downloaded again, its hash checked once it is here
    raise RecipeError(f"LoRA {name!r} of this recipe is no longer there: no file at "
                      f"{' or '.join(candidates) or '(no path recorded)'}; put it back, or rerun with "
                      f"loras={{{name!r}: 0}} to leave it out")


def _lora_load_args(entry: Mapping[str, Any], two_experts: bool) -> tuple[Any, str | None]:
    """(path or (high, low) pair, experts=) that load ``entry`` as the recipe recorded it."""
    name = entry["name"]
    files = entry.get("files")
    if files:
        return tuple(_lora_file(name, files[c]["path"], None, files[c]["sha256"], files[c].get("size"))
                     for c in ("transformer", "transformer_2")), None
    path = _lora_file(name, entry.get("path"), entry.get("source"), entry.get("sha256"), entry.get("size"))
    targets = tuple(entry.get("targets") or ())
    experts = next((k for k, v in EXPERTS.items() if v == targets), None) if two_experts else None
    return path, experts


def _check_image(found: Mapping[str, Any]) -> str:
    image = found["image"]
    path = image.get("path")
    if not path or not Path(path).is_file():
        raise RecipeError(f"the input image of this recipe is no longer there ({path or 'no path recorded'}); "
                          "pass image= to rerun with another one")
    differs = size_mismatch(path, image.get("size"))
    if differs:
        raise RecipeError(f"the input image {path} has changed since the recipe was made ({differs}); pass "
                          "image= to use another one")
    have = file_sha256(path)
    if image.get("sha256") and have != image["sha256"]:
        raise RecipeError(f"the input image {path} has changed since the recipe was made (sha256 "
                          f"{have[:12]}…, recorded {image['sha256'][:12]}…); pass image= to use it anyway")
    return path


def recorded_inputs(found: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The recorded inputs of recipe ``found`` (but ``image``, and those in ``overrides``), read and
    checked against their recorded hashes: a changed or missing file raises ``RecipeError`` here,
    before anything runs. The user's own file is checked too when it is still there."""
    out: dict[str, Any] = {}
    for name, entry in (found.get("inputs") or {}).items():
        if name == "image" or name in overrides or not isinstance(entry, Mapping):
            continue
        source = entry.get("source")
        differs = size_mismatch(source, entry.get("source_size")) if source and Path(source).is_file() else None
        if differs:
            raise RecipeError(f"the {name} input {source} has changed since the recipe was made ({differs}); put the "
                              f"original back, or pass {name}= to rerun with it as it is now")
        if source and Path(source).is_file() and entry.get("source_sha256") \
                and inputs.file_sha256(source) != entry["source_sha256"]:
            raise RecipeError(f"the {name} input {source} has changed since the recipe was made (sha256 "
                              f"{inputs.file_sha256(source)[:12]}…, recorded {entry['source_sha256'][:12]}…); put the "
                              f"original back, or pass {name}= to rerun with it as it is now")
        files = [Path(f) for f in entry.get("files") or ()]
        if not files or not all(f.is_file() for f in files):
            if entry.get("kind") == "video" and source and Path(source).is_file():
                files = [Path(source)]
            else:
                raise RecipeError(f"the {name} input of this recipe is no longer there "
                                  f"({', '.join(map(str, files)) or source or 'no file recorded'}); pass {name}= "
                                  "to rerun with another one")
        if entry.get("kind") == "video":
            value = inputs.read_video(name, files[0])
            have = _video_sha256(value, found.get("num_frames"), entry.get("sha256"))
            if source:   # the new run refers to the user's file, as the first did
                value.source, value.source_sha256 = source, entry.get("source_sha256")
        elif entry.get("kind") == "images":
            value = [inputs.read_picture(name, f) for f in files]
            have = hashlib.sha256(";".join(inputs.picture_sha256(p) for p in value).encode()).hexdigest()
        else:
            value = inputs.read_picture(name, files[0])
            have = inputs.picture_sha256(value)
        if entry.get("sha256") and have != entry["sha256"]:
            raise RecipeError(f"the {name} input {files[0]} has changed since the recipe was made (its pixels' "
                              f"sha256 {have[:12]}…, recorded {entry['sha256'][:12]}…); pass {name}= to rerun "
                              "with it as it is now")
        out[name] = value
    return out


def _check_lora_entries(found: Mapping[str, Any]) -> None:
    """Every LoRA entry of a recipe is an object with a name and a numeric weight; anything else
    (a hand-edited or damaged recipe) is refused naming the entry, before any file is touched."""
    from wan_nb.core.lora_registry import MAX_ADAPTER_NAME

    loras = found.get("loras") or []
    if not isinstance(loras, list):
        raise RecipeError(f"this recipe's \"loras\" is {type(loras).__name__}, not a list of adapters; fix or "
                          "remove it from the recipe")
    for index, entry in enumerate(loras, start=1):
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_ADAPTER_NAME:
            raise RecipeError(f"LoRA entry {index} of this recipe has no usable name ({str(name)[:40]!r}); every "
                              f"entry needs \"name\" (1-{MAX_ADAPTER_NAME} characters): add it, or remove the entry")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise RecipeError(f"LoRA {name!r} of this recipe has weight {weight!r}; it must be a number")


def _video_sha256(video: Any, num_frames: Any, want: Any) -> str:
    """The hash a recipe recorded for ``video``: that of the frames its run used (its first
    ``num_frames``). Recipes made before only those were decoded hashed the whole video: that
    hash is tried when the first differs and the whole video fits."""
    used = num_frames if isinstance(num_frames, int) and not isinstance(num_frames, bool) and num_frames > 0 else len(video)
    have = video.using(used).sha256
    if have != want and len(video) > used:
        try:
            whole = video.using(len(video)).sha256
        except ValueError:   # too large to decode whole: the recorded hash cannot be of it
            return have
        return whole if whole == want else have
    return have


def rerun_args(generator: Any, source: Any, **overrides: Any) -> tuple[str, dict[str, Any]]:
    """(prompt, keyword arguments) for ``generator.submit`` that remake ``source``'s video.

    Loads the recipe's LoRAs into ``generator`` (the one piece of work done here, after every
    check has passed).
    """
    from wan_nb.core.params import GENERATION_ARGS, build_params
    from wan_nb.post.options import POST_ARGS  # decode / interpolate / upscale: redone as recorded

    found = recipe(source)
    allowed = set(GENERATION_ARGS) | {"prompt"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise TypeError(f"unknown override(s) {', '.join(unknown)}; valid: {', '.join(sorted(allowed))}")
    model = (found.get("model") or {}).get("name")
    if model != generator.model:
        raise RecipeError(f"this recipe was made with model {model!r}; this generator runs {generator.model!r}. "
                          f"Use Generator(model={model!r}).rerun(...)")

    from wan_nb.weights.options import check_rerun

    _check_lora_entries(found)
    check_rerun(generator, found)
    # A recorded schedule (wan_nb.core.lora_schedule's JSON form) is the weight; build_params checks it.
    weights = {l["name"]: l["schedule"] if l.get("schedule") is not None else float(l.get("weight", 1.0))
               for l in found.get("loras") or ()}
    weights.update({str(k): v for k, v in (overrides.get("loras") or {}).items()})
    two_experts = len(generator.spec.experts) >= 2
    to_load: dict[str, tuple[Any, str | None]] = {}
    for entry in found.get("loras") or ():
        name = entry["name"]
        if weights.get(name) == 0.0:
            continue
        loaded = generator.lora_registry.entries.get(name)
        if loaded is not None:
            have = lora_entry(name, loaded, weights[name])
            recorded = (entry.get("sha256", have["sha256"]), entry.get("targets", have["targets"]))
            if (have["sha256"], have["targets"]) != recorded:
                raise RecipeError(f"a different LoRA named {name!r} is loaded ({loaded.source}); "
                                  f"unload_lora({name!r}) first so the recipe's file can be loaded")
            continue
        to_load[name] = _lora_load_args(entry, two_experts)

    prompt = overrides.get("prompt", found["prompt"])
    kwargs = {f: found.get(f) for f in (*PARAM_FIELDS, "cache", "cache_threshold", *POST_ARGS, *GUIDANCE_FIELDS)
              if f != "prompt" and f in GENERATION_ARGS and found.get(f) is not None}
    kwargs.update({k: v for k, v in overrides.items() if k not in ("prompt", "loras")})
    if found.get("image") and "image" not in overrides:
        kwargs["image"] = _check_image(found)
    kwargs.update(recorded_inputs(found, overrides))  # videos, masks, last image: read and hash-checked now
    # Every argument checked (LoRAs as names only) before any file is read into the generator.
    build_params(generator.spec, prompt, kwargs)
    fast_path.check_recipe(generator, found)  # the recorded attention backend

    for name, (path, experts) in to_load.items():
        generator.load_lora(path, name=name, weight=weights[name], **({"experts": experts} if experts else {}))
        want = next(l for l in found["loras"] if l["name"] == name).get("sha256")
        have = lora_entry(name, generator.lora_registry.entries[name], weights[name])["sha256"]
        if want and have != want:  # only a Hub download can get here: local files were checked
            generator.unload_lora(name)
            raise RecipeError(f"LoRA {name!r} downloaded from {path} is not the recorded file "
                              f"(sha256 {have[:12]}…, recorded {want[:12]}…)")
    # Adapters loaded but not in the recipe are turned off (weight 0), not left on.
    active = {n: weights.get(n, 0.0) for n in generator.lora_registry.entries
              if not fast_presets.implied(generator.model, n)}  # a few-step variant's LoRA stays on
    if active:
        kwargs["loras"] = active
    return prompt, kwargs


def rerun(generator: Any, source: Any, *, progress: str | bool = "auto", **overrides: Any) -> Any:
    """Generate ``source``'s video again (blocking, with progress) and return the new Result."""
    prompt, kwargs = rerun_args(generator, source, **overrides)
    return generator.generate(prompt, progress=progress, **kwargs)



def generator_rerun(self: Any, source: Any, **overrides: Any) -> Any:
    """Make a video again from its recipe (a Result, an MP4, a run folder or a recipe dict) and
    return the new Result; ``overrides`` replace single arguments, e.g. ``seed=5``. Everything
    the recipe names (model, LoRA files, input image) is checked before any work."""
    return rerun(self, source, **overrides)
