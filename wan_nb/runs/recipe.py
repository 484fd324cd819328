"""Recipes: everything needed to make a video again, kept in its MP4 and in its ``task.json``.

A recipe is a JSON-ready dict::

    {"format": "wan_nb.recipe/1",
     "prompt", "negative_prompt", "seed", "steps", "height", "width", "num_frames", "fps",
     "guidance_scale", "guidance_scale_2", "flow_shift",          # generation arguments
     "model": {"name", "repo_id", "revision", "kind"}, "dtype",
     "loras": [{"name", "weight", "sha256", "size", "path",      # the adapters that were on
                "source", "targets", ["files"],               # (files: a pair, one per expert)
                ["schedule"]}],                               # a weight that changes over the steps
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

This module reads and writes recipes and imports only the standard library (ffmpeg through
``imageio_ffmpeg`` where needed), so the server can read them without torch. Building one from a
generator is :mod:`wan_nb.core.recipes`, which is also the public ``wan_nb.recipe``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping

from wan_nb.runs.ffmetadata import metadata_file
from wan_nb.runs.file_digest import file_sha256
from wan_nb.runs.layout import IMAGE_NAME, TASK_FILE, VIDEO_NAME

__all__ = ["recipe", "recipe_key", "weights_key", "read_mp4", "read_tags", "loads_recipe", "embed", "dumps",
           "file_sha256", "file_size", "size_mismatch", "FORMAT", "PARAM_FIELDS", "OPTIONAL_FIELDS", "RecipeError",
           "MAX_RECIPE_BYTES", "POST_DEFAULTS", "post_recipe_fields", "GUIDANCE_FIELDS"]

log = logging.getLogger(__name__)

FORMAT = "wan_nb.recipe/1"
PARAM_FIELDS = ("prompt", "negative_prompt", "seed", "steps", "height", "width", "num_frames", "fps",
                "guidance_scale", "guidance_scale_2", "flow_shift", "strength", "mode")
# Fields a recipe holds only when a run used them, so keys of the runs made before them stay the same.
OPTIONAL_FIELDS = ("strength", "mode")
_INTS = ("seed", "steps", "height", "width", "num_frames")
# The fast path's fields: in the key only when set, so recipes made before them keep their keys.
FAST_FIELDS = ("cache", "cache_threshold", "attention", "compile")
# The guidance method and its options (wan_nb.models.guidance): recorded and keyed only when a run
# named one, so recipes of classic-CFG runs (all before them) keep their keys.
GUIDANCE_FIELDS = ("guidance", "guidance_options")
# Post-processing a recipe records (wan_nb.post checks them), with the value that means "none":
# a field is recorded only when it differs, so recipes and keys made before these stay the same.
POST_DEFAULTS: dict[str, Any] = {"decode": "vae", "interpolate": 1, "fps_out": None, "interpolator": None,
                                 "upscale": 1, "upscaler": None, "previews": None}
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


def is_post_default(name: str, value: Any) -> bool:
    return value is None or value == POST_DEFAULTS.get(name) or (name == "upscaler" and value == "lanczos")


def post_recipe_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    """What a recipe records of post-processing: only what differs from the defaults."""
    return {name: params.get(name) for name in POST_DEFAULTS if not is_post_default(name, params.get(name))}


def recipe_key(recipe: Mapping[str, Any]) -> str:
    """A stable hash of what decides the video: the generation arguments, the model (repo id or
    name, revision), the dtype, the LoRA files' hashes and weights, the image's hash.

    Versions, paths, adapter names, task ids and times are left out: the same recipe run twice
    has the same key. A LoRA at weight 0 changes nothing, so it is left out too.
    """
    model = recipe.get("model") or {}
    # A schedule (a weight that changes over the steps) is decisive too; only then keyed, so
    # earlier recipes keep their keys.
    loras = sorted((l.get("sha256"), float(l.get("weight", 1.0)), l.get("targets"))
                   + ((json.dumps(l["schedule"], sort_keys=True),) if l.get("schedule") is not None else ())
                   for l in recipe.get("loras") or () if float(l.get("weight", 1.0)) != 0.0)
    image = recipe.get("image")
    params = {f: _normal(recipe, f) for f in PARAM_FIELDS if f not in OPTIONAL_FIELDS or recipe.get(f) is not None}
    decisive = {"params": params,
                "model": [model.get("repo_id") or model.get("name"), model.get("revision")],
                "dtype": recipe.get("dtype"), "loras": loras,
                "image": image.get("sha256") if isinstance(image, Mapping) else None}
    media = {n: e.get("sha256") for n, e in (recipe.get("inputs") or {}).items() if n != "image"}
    if media:  # video, last image, masks...: their pixels (the image is keyed above, as before)
        decisive["inputs"] = media
    decisive.update({f: recipe[f] for f in FAST_FIELDS if recipe.get(f) not in (None, False)})  # set only
    decisive.update(post_recipe_fields(recipe))  # set only: earlier recipes keep their keys
    decisive.update({f: recipe[f] for f in GUIDANCE_FIELDS if recipe.get(f) is not None})  # set only
    weights = weights_key(recipe)
    if weights is not None:  # only then: earlier recipes keep their keys
        decisive["weights"] = weights
    text = json.dumps(decisive, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


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
        text = (folder / TASK_FILE).read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    info = loads_recipe(text, folder / TASK_FILE)
    found = info.get("recipe") if isinstance(info, dict) else None
    return dict(found) if isinstance(found, dict) and found.get("format") == FORMAT else None


def _from_folder(folder: Path, video: Path | None = None) -> dict[str, Any] | None:
    found = _from_task_file(folder)
    if found is None:
        video = video if video is not None else folder / VIDEO_NAME
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
                              "wan_nb.recipe(result_or_mp4)")
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
            found = _from_task_file(where.parent) if where.name == TASK_FILE else read_mp4(where)
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
