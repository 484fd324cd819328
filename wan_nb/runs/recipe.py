"""Recipes: everything needed to make a video again, kept in its MP4 and in its ``task.json``.

A recipe is a JSON-ready dict::

    {"format": "wan_nb.runs.recipe/1",
     "prompt", "negative_prompt", "seed", "steps", "height", "width", "num_frames", "fps",
     "guidance_scale", "guidance_scale_2", "flow_shift",          # generation arguments
     "model": {"name", "repo_id", "revision", "kind"}, "dtype",
     "loras": [{"name", "weight", "sha256", "size", "path",      # the adapters that were on
                "source", "targets", ["files"]}],             # (files: a pair, one per expert)
     "image": {"sha256", "path", "size"} | None,                  # the first frame, as used
     ["strength", "mode"],                                        # when a run used them
     ["inputs": {name: {"kind", "sha256", "files", ["source", "source_sha256", "source_size"]}}],
     ["quant": {component: "fp8" | "int8" | "nf4" | "gguf"},       # only when the weights were
      "files": {component: {"path", "sha256"}}]                   # quantized / single files
     "versions": {"wan_nb", "diffusers", "torch"},
     "task_id", "created_at"}

It is written into the MP4's ``comment`` tag (``ffmpeg -i video.mp4 -f ffmetadata -`` shows
it), so a video copied anywhere still says how it was made. :func:`recipe_key` hashes only what
decides the pixels, so two runs with the same key made the same video.

Imports only the standard library at module level; ffmpeg (``imageio_ffmpeg``), PIL and the
model code are loaded where needed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, Mapping

from wan_nb.fast import options as fast_path  # light: no torch at import
from wan_nb.models import few_step as fast_presets

__all__ = ["recipe", "recipe_key", "weights_key", "build", "plan", "lora_entry", "read_mp4", "read_tags", "embed", "dumps",
           "file_sha256", "file_size", "size_mismatch", "FORMAT", "PARAM_FIELDS", "RecipeError", "MAX_RECIPE_BYTES"]

log = logging.getLogger(__name__)

FORMAT = "wan_nb.runs.recipe/1"
PARAM_FIELDS = ("prompt", "negative_prompt", "seed", "steps", "height", "width", "num_frames", "fps",
                "guidance_scale", "guidance_scale_2", "flow_shift", "strength", "mode")
# Fields a recipe holds only when a run used them, so keys of the runs made before them stay the same.
_WHEN_SET = ("strength", "mode")
_INTS = ("seed", "steps", "height", "width", "num_frames")
# The fast path's fields: in the key only when set, so recipes made before them keep their keys.
FAST_FIELDS = ("cache", "cache_threshold", "attention", "compile")
IMAGE_NAME = "input.png"
METADATA_TAG = "comment"
# The most of an MP4's metadata read when looking for a recipe. A run's recipe is a few KB (two
# prompts of at most 10,000 characters, a few LoRAs and inputs); more is not one wan_nb wrote, and
# reading it whole let a crafted 100 MB tag cost 20 s and 1 GB before failing.
MAX_RECIPE_BYTES = 1 << 20


class RecipeError(ValueError):
    """No recipe can be read from this source, or it names a file that is gone or changed."""


# ---------------------------------------------------------------------------------------------
# Hashes
# ---------------------------------------------------------------------------------------------
_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, remembered per (path, size, mtime) for this process.

    A file in the Hugging Face cache is a link to ``blobs/<sha256>`` (for LFS files): that name
    is the hash, so a multi-GB LoRA from the Hub costs nothing to identify.
    """
    real = os.path.realpath(path)
    stat = os.stat(real)
    name = os.path.basename(real)
    if _HEX64.match(name) and os.path.basename(os.path.dirname(real)) == "blobs":
        return name
    key = (real, stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        known = _hash_cache.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(real, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _hash_lock:
        _hash_cache[key] = value
    return value


def file_size(path: str | os.PathLike) -> int:
    """A file's size in bytes, recorded beside its sha256: a rerun compares it first, so a file that
    changed size is refused at once instead of after hashing it (a 50 GB file takes minutes)."""
    return os.stat(os.path.realpath(path)).st_size


def size_mismatch(path: str | os.PathLike, recorded: Any) -> str | None:
    """Why ``path`` cannot be the recorded file (its size differs), or None when it may be (same
    size, or no size recorded: recipes made before sizes were)."""
    if isinstance(recorded, bool) or not isinstance(recorded, int):
        return None
    have = file_size(path)
    return None if have == recorded else f"{have:,} bytes, recorded {recorded:,}"


def _png(picture: Any) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")  # PNG of the same pixels is the same bytes: a stable hash
    return buffer.getvalue()


def _normal(recipe: Mapping[str, Any], field: str) -> Any:
    value = recipe.get(field)
    if field == "negative_prompt":
        return value or ""
    if value is None or field in ("prompt", "mode"):
        return value
    return int(value) if field in _INTS else float(value)


def weights_key(recipe: Mapping[str, Any]) -> dict[str, Any] | None:
    """What of the weights decides the video: quant modes and file hashes (not paths); None if neither."""
    modes, files = recipe.get("quant") or {}, recipe.get("files") or {}
    if not modes and not files:
        return None
    return {"quant": dict(sorted(modes.items())),
            "files": {name: entry.get("sha256") for name, entry in sorted(files.items())}}


def recipe_key(recipe: Mapping[str, Any]) -> str:
    """A stable hash of what decides the video: the generation arguments, the model (repo id or
    name, revision), the dtype, the LoRA files' hashes and weights, the image's hash.

    Versions, paths, adapter names, task ids and times are left out: the same recipe run twice
    has the same key. A LoRA at weight 0 changes nothing, so it is left out too.
    """
    model = recipe.get("model") or {}
    loras = sorted((l.get("sha256"), float(l.get("weight", 1.0)), l.get("targets")) for l in recipe.get("loras") or ()
                   if float(l.get("weight", 1.0)) != 0.0)
    image = recipe.get("image")
    params = {f: _normal(recipe, f) for f in PARAM_FIELDS if f not in _WHEN_SET or recipe.get(f) is not None}
    decisive = {"params": params,
                "model": [model.get("repo_id") or model.get("name"), model.get("revision")],
                "dtype": recipe.get("dtype"), "loras": loras,
                "image": image.get("sha256") if isinstance(image, Mapping) else None}
    media = {n: e.get("sha256") for n, e in (recipe.get("inputs") or {}).items() if n != "image"}
    if media:  # video, last image, masks...: their pixels (the image is keyed above, as before)
        decisive["inputs"] = media
    decisive.update({f: recipe[f] for f in FAST_FIELDS if recipe.get(f) not in (None, False)})  # set only
    weights = weights_key(recipe)
    if weights is not None:  # only then: earlier recipes keep their keys
        decisive["weights"] = weights
    text = json.dumps(decisive, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# ---------------------------------------------------------------------------------------------
# Building a recipe from a generator
# ---------------------------------------------------------------------------------------------
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


def lora_entry(name: str, entry: Any, weight: float) -> dict[str, Any]:
    """One adapter as a recipe holds it: its file (or, for a pair on a two-expert model, one file
    per expert under ``files``), the sha256 that identifies it, and the transformers it goes into."""
    state = entry.state
    targets = dict(state) if isinstance(state, Mapping) else {"transformer": state}
    files = {component: {"path": str(Path(getattr(read, "path", None) or entry.source).resolve()),
                         "sha256": file_sha256(getattr(read, "path", None) or entry.source),
                         "size": file_size(getattr(read, "path", None) or entry.source)}
             for component, read in sorted(targets.items())}
    out: dict[str, Any] = {"name": name, "weight": float(weight), "source": entry.source, "targets": list(files)}
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
    out["image"] = None
    picture = params.get("image")
    if picture is not None:
        data = _png(picture)
        out["image"] = {"sha256": hashlib.sha256(data).hexdigest(), "path": None}
        if image_path is not None:
            target = Path(image_path)
            target.write_bytes(data)
            out["image"].update(path=str(target.resolve()), size=len(data))
    for field in _WHEN_SET:
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
    (``wan_nb.runs.history.find_by_key``).
    """
    from wan_nb.models.specs import prepare_image

    params = generator.check(prompt, **kwargs)
    for name in ("image", "last_image"):
        if params.get(name) is not None:
            params[name] = prepare_image(params[name], params["height"], params["width"])
    return build(generator, params)


# ---------------------------------------------------------------------------------------------
# The MP4's metadata
# ---------------------------------------------------------------------------------------------
def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def dumps(recipe: Mapping[str, Any]) -> str:
    """The recipe as the MP4's tag holds it: compact JSON."""
    return json.dumps(recipe, ensure_ascii=False, separators=(",", ":"))


def embed(video: str | os.PathLike, recipe: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> Path:
    """Write ``recipe`` into the MP4's ``comment`` tag (and any other ``tags``), in place (a stream
    copy: no re-encode). The video's other tags are kept."""
    from wan_nb.models.video_io import metadata_file

    path = Path(video)
    partial = path.with_name(path.name + ".recipe.part.mp4")
    with metadata_file({**(tags or {}), METADATA_TAG: dumps(recipe)}) as written:
        # ffmpeg copies each -map_metadata source without overwriting what an earlier one set, so
        # the new tags (input 1) come first and the video's own (input 0) fill in the rest.
        command = [_ffmpeg(), "-y", "-loglevel", "error", "-i", str(path), "-f", "ffmetadata", "-i", str(written),
                   "-map", "0", "-c", "copy", "-map_metadata", "1", "-map_metadata", "0",
                   "-movflags", "+faststart", "-f", "mp4", str(partial)]
        done = subprocess.run(command, capture_output=True)
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise OSError(f"could not write the recipe into {path}: {reason[-1] if reason else 'ffmpeg failed'}")
    partial.replace(path)
    return path


def parse_ffmetadata(text: str) -> dict[str, str]:
    """The global tags of ffmpeg's ``ffmetadata`` output (``\\`` escapes ``=;#\\`` and newlines)."""
    tags: dict[str, str] = {}
    key: str | None = None
    buf: list[str] = []
    i, n = 0, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if at_line_start and c == "[":
            break  # a [STREAM] or [CHAPTER] section: the global tags are done
        at_line_start = False
        if c == "\\" and i + 1 < n:
            buf.append(text[i + 1])
            i += 2
            continue
        if c == "\n":
            if key is not None:
                tags[key] = "".join(buf)
            key, buf, at_line_start = None, [], True
        elif c == "=" and key is None:
            key, buf = "".join(buf), []
        else:
            buf.append(c)
        i += 1
    if key is not None:
        tags[key] = "".join(buf)
    return tags


def read_tags(video: str | os.PathLike, limit: int = MAX_RECIPE_BYTES) -> dict[str, str]:
    """The global tags of a video, reading at most ``limit`` bytes of them: more raises RecipeError
    as soon as the limit is passed (ffmpeg is stopped, nothing more is read)."""
    path = Path(video)
    if not path.is_file():
        raise FileNotFoundError(f"no video at {path}")
    with subprocess.Popen([_ffmpeg(), "-loglevel", "error", "-i", str(path), "-f", "ffmetadata", "-"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        data = proc.stdout.read(limit + 1)
        if len(data) > limit:
            proc.kill()
            proc.communicate()
            raise RecipeError(f"{path}: its metadata is larger than {limit:,} bytes, more than any wan_nb "
                              "recipe; it was not read (the file was not made by wan_nb, or was altered)")
        _, errors = proc.communicate()
    if proc.returncode != 0:
        reason = errors.decode(errors="replace").strip().splitlines()
        raise RecipeError(f"{path} is not a readable video: {reason[-1] if reason else 'ffmpeg failed'}")
    return parse_ffmetadata(data.decode("utf-8", errors="replace"))


def loads_recipe(text: str, where: Any) -> Any:
    """JSON of a recipe tag or task file; None when it is not JSON. Nesting too deep for the
    parser (``[`` x 100,000) is refused by name instead of escaping as RecursionError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise RecipeError(f"{where}: its recipe nests too deeply to be one wan_nb wrote; it was not read") from None
    except ValueError:
        return None


def read_mp4(video: str | os.PathLike) -> dict[str, Any] | None:
    """The recipe in an MP4's metadata; None if it carries none."""
    text = read_tags(video).get(METADATA_TAG)
    if not text:
        return None
    found = loads_recipe(text, video)
    return found if isinstance(found, dict) and found.get("format") == FORMAT else None


# ---------------------------------------------------------------------------------------------
# recipe(source)
# ---------------------------------------------------------------------------------------------
def _from_task_file(folder: Path) -> dict[str, Any] | None:
    try:
        text = (folder / "task.json").read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    info = loads_recipe(text, folder / "task.json")
    found = info.get("recipe") if isinstance(info, dict) else None
    return dict(found) if isinstance(found, dict) and found.get("format") == FORMAT else None


def _from_folder(folder: Path, video: Path | None = None) -> dict[str, Any] | None:
    found = _from_task_file(folder)
    if found is None:
        video = video if video is not None else folder / "video.mp4"
        if video.is_file():
            found = read_mp4(video)
    return found


def recipe(source: Any) -> dict[str, Any]:
    """The recipe of a ``Result``, a history ``Run``, an MP4 file, a run folder (or a recipe dict).

    Raises :class:`RecipeError` when the source holds none (a video from another tool, or one
    made before wan_nb recorded recipes), ``FileNotFoundError`` when the path does not exist.
    """
    if isinstance(source, Mapping):
        if source.get("format") != FORMAT:
            raise RecipeError(f"this dict is not a wan_nb recipe (no \"format\": {FORMAT!r}); get one with "
                              "wan_nb.runs.recipe(result_or_mp4)")
        try:
            return json.loads(json.dumps(source))  # a deep copy the caller may change
        except RecursionError:
            raise RecipeError("this recipe dict nests too deeply to be one wan_nb wrote") from None
    run_dir = getattr(source, "run_dir", None)
    if run_dir is not None:
        found = _from_folder(Path(run_dir), getattr(source, "video_path", None))
        where = Path(run_dir)
    elif isinstance(source, (str, os.PathLike)):
        where = Path(source).expanduser()
        if where.is_dir():
            found = _from_folder(where)
        elif where.is_file():
            found = _from_task_file(where.parent) if where.name == "task.json" else read_mp4(where)
        else:
            raise FileNotFoundError(f"{where}: no such file or run folder")
    else:
        raise TypeError(f"recipe() takes a Result, a history Run, an MP4 path, a run folder or a recipe "
                        f"dict, not {type(source).__name__}")
    if found is None:
        raise RecipeError(f"{where} holds no wan_nb recipe (made by another tool, or before wan_nb "
                          "recorded recipes)")
    return found


def created_at_iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class _CallableModule(types.ModuleType):
    """``wan_nb.runs.recipe(source)`` calls :func:`recipe`; ``wan_nb.runs.recipe.recipe_key`` still works."""

    def __call__(self, source: Any) -> dict[str, Any]:
        return recipe(source)


sys.modules[__name__].__class__ = _CallableModule
