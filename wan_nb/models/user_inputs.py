"""The pictures and videos a generation is given: read once, checked, hashed, kept with the run.

Every media argument (``image``, ``last_image``, ``reference_images``, ``video``, ``mask``,
``pose_video``, ``face_video``, ``background_video``) may be a file path, a PIL image, a numpy array
(or a torch tensor), or for videos a list of pictures or an MP4 path. :func:`read` turns each into
what the run uses: a PIL image, a list of them, or a :class:`VideoInput` whose frames were decoded
once (and remembered in this process, so a grid of twenty cells over one MP4 decodes it once).

A video's ``sha256`` is that of its decoded pixels. An in-memory video (or a file that is not an
MP4) is written as an MP4 with :func:`wan_nb.models.video_io.write_mp4` and read back, and the run uses the
frames read back: so the MP4 kept in the run folder holds exactly the pixels the run saw, and a
rerun from it hashes the same. An MP4 the user gives is copied as it is.

:func:`save` writes them into ``<run>/inputs/`` and returns the ``task.json`` record::

    {name: {"kind": "image" | "video" | "images", "files": ["inputs/<file>", ...], "sha256": "..."}}
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from wan_nb.protocol.errors import InvalidParameter
from wan_nb.models.kinds import IMAGE_ARGS, LIST_ARGS, MEDIA_ARGS, VIDEO_ARGS
from wan_nb.runs import kept_inputs
from wan_nb.runs.file_digest import file_sha256  # noqa: F401 (the one owner; callers read it here too)
from wan_nb.runs.layout import INPUTS_DIR

__all__ = ["IMAGE_ARGS", "VIDEO_ARGS", "LIST_ARGS", "MEDIA_ARGS", "INPUTS_DIR", "VideoInput", "read",
           "pixels_sha256", "picture_sha256", "save", "record", "describe", "resume_kwargs"]

_MP4 = (".mp4", ".m4v")
_PICTURE = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
# Decoded videos kept for reuse in this process (a 81-frame 832x480 clip is about 100 MB).
_CACHE_SIZE = 4
# The most one video input may take decoded (its frames the run uses, at the file's own size):
# 1025 frames of 1280x720 fit, a clip past that is refused with the frame count that fits.
MAX_DECODED_BYTES = 4 << 30


def _invalid(name: str, value: Any, message: str) -> Exception:
    shown = str(value) if isinstance(value, (str, os.PathLike)) else f"<{type(value).__name__}>"
    return InvalidParameter(name, shown, message)


class VideoInput:
    """A video as a run uses it: its first ``used`` frames, uint8 (F, H, W, 3), decoded once.

    A file is probed when it is read (frame count, size: :func:`wan_nb.models.video_io.probe_video`)
    and decoded only when its pixels are needed, and then only the frames the run uses
    (:meth:`using` sets how many, ``build_params`` calls it once ``num_frames`` is known): a
    100,000-frame MP4 costs the 81 frames a run takes, not 4 GB. ``sha256`` is that of those
    frames' pixels. ``mp4`` is a file holding exactly the pixels (the user's MP4, or the one written
    for an in-memory video or another format); ``source`` / ``source_sha256`` / ``source_size``
    name the user's file, for a rerun to check.
    """

    def __init__(self, name: str, *, mp4: Path, count: int, width: int, height: int,
                 frames: np.ndarray | None = None, used: int | None = None, convert_fps: float | None = None,
                 source: str | None = None, source_sha256: str | None = None,
                 source_size: int | None = None) -> None:
        self.name = name
        self.mp4 = Path(mp4)
        self.count, self.width, self.height = int(count), int(width), int(height)
        self.used = self.count if used is None else int(used)
        self.source, self.source_sha256, self.source_size = source, source_sha256, source_size
        self._convert_fps = convert_fps    # not an MP4: kept as one, written at this rate when decoded
        self._frames = frames if frames is None else frames[:self.used]
        self._sha256: str | None = None
        self._lock = threading.Lock()

    def renamed(self, name: str) -> "VideoInput":
        return self._copy(name=name)

    def _copy(self, **changes: Any) -> "VideoInput":
        fields = dict(name=self.name, mp4=self.mp4, count=self.count, width=self.width, height=self.height,
                      frames=self._frames, used=self.used, convert_fps=self._convert_fps, source=self.source,
                      source_sha256=self.source_sha256, source_size=self.source_size)
        fields.update(changes)
        copy = VideoInput(**fields)
        if fields["used"] == self.used and fields["frames"] is self._frames:
            copy._sha256 = self._sha256
        return copy

    def __len__(self) -> int:
        return self.count

    @property
    def size(self) -> tuple[int, int]:   # (width, height), as PIL says it
        return self.width, self.height

    def using(self, count: int) -> "VideoInput":
        """This video as a run of ``count`` frames uses it (its first ``count``); refused with what to
        pass when those frames would not fit in memory."""
        count = max(1, min(int(count), self.count))
        need = count * self.width * self.height * 3
        if need > MAX_DECODED_BYTES:
            fits = max(1, MAX_DECODED_BYTES // (self.width * self.height * 3))
            fits = max(1, (fits - 1) // 4 * 4 + 1)
            raise _invalid(self.name, self.describe(), f"its first {count} frames at {self.width}x{self.height} would "
                           f"take {need / 1e9:.1f} GB decoded, over the {MAX_DECODED_BYTES / 1e9:.1f} GB an input may; "
                           f"pass num_frames={fits} or fewer, or scale the video down first (it is resized to the "
                           "output size anyway), e.g. ffmpeg -i in.mp4 -vf scale=832:-2 out.mp4")
        if count == self.used:
            return self
        frames = None if self._frames is None or len(self._frames) < count else self._frames[:count]
        return self._copy(used=count, frames=frames)

    @property
    def frames(self) -> np.ndarray:
        with self._lock:
            if self._frames is None:
                self.using(self.used)   # refuses a decode that would not fit, before it starts
                self._frames, mp4 = _decoded(self.name, self.mp4, self.used, self._convert_fps, self.describe())
                if self._convert_fps is not None:
                    self.mp4, self._convert_fps = mp4, None
            return self._frames

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = pixels_sha256(self.frames)
        return self._sha256

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to a Ray worker) with its pixels: the file may not be on the other machine."""
        frames, digest = self.frames, self.sha256
        state = {k: v for k, v in self.__dict__.items() if k != "_lock"}
        state.update(_frames=frames, _sha256=digest)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def first_frame(self):
        from PIL import Image

        if self._frames is not None:
            return Image.fromarray(self._frames[0])
        return Image.fromarray(_decode(self.name, self.mp4, self.describe(), limit=1)[0])

    def pictures(self, count: int, height: int | None = None, width: int | None = None) -> list:
        """The first ``count`` frames as PIL images, center-cropped and resized to the given size."""
        from PIL import Image

        from wan_nb.models.specs import prepare_image

        frames = self.frames if count <= self.used else self.using(count).frames
        out = [Image.fromarray(frame) for frame in frames[:count]]
        if height is not None and width is not None:
            out = [prepare_image(picture, height, width) for picture in out]
        return out

    def describe(self) -> str:
        return self.source or f"<video {len(self)} frames {self.width}x{self.height}>"


def pixels_sha256(frames: np.ndarray) -> str:
    """sha256 of decoded pixels (their shape, then the bytes), the same for any file holding them."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    digest = hashlib.sha256(repr(tuple(frames.shape)).encode())
    digest.update(frames.tobytes())
    return digest.hexdigest()


def picture_sha256(picture: Any) -> str:
    return pixels_sha256(np.asarray(picture.convert("RGB")))


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
_cache: "OrderedDict[Any, VideoInput]" = OrderedDict()
_cache_lock = threading.Lock()
_scratch: list[Path] = []


def _scratch_dir() -> Path:
    """Where in-memory videos are written as MP4 before a run copies them (removed at exit)."""
    with _cache_lock:
        if not _scratch:
            folder = Path(tempfile.mkdtemp(prefix="wan_nb-inputs-"))
            atexit.register(shutil.rmtree, folder, True)
            _scratch.append(folder)
        return _scratch[0]


def _remember(key: Any, video: VideoInput) -> VideoInput:
    with _cache_lock:
        _cache[key] = video
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return video


def _cached(key: Any) -> VideoInput | None:
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
        return found


def _decode(name: str, path: Path, shown: Any, limit: int | None = None) -> np.ndarray:
    from wan_nb.models.video_io import read_frames

    try:
        frames = read_frames(path, limit)
    except Exception as exc:  # ffmpeg's reason, first line: "Invalid data found when processing input"
        reason = str(exc).strip().splitlines()
        raise _invalid(name, shown, f"is not a readable video ({reason[-1] if reason else type(exc).__name__}); "
                       "pass an MP4 (or any file ffmpeg reads), a list of pictures or a (frames, height, "
                       "width, 3) array") from None
    if frames.shape[0] == 0:
        raise _invalid(name, shown, "holds no frames; pass a video with at least one frame")
    return frames


def _decoded(name: str, path: Path, used: int, convert_fps: float | None, shown: Any) -> tuple[np.ndarray, Path]:
    """(the first ``used`` frames of ``path``, the MP4 holding exactly them), decoded once per process."""
    stat = path.stat()
    key = ("file", str(path.resolve()), stat.st_size, stat.st_mtime_ns, int(used), convert_fps)
    found = _cached(key)
    if found is None:
        frames = _decode(name, path, shown, limit=used)
        if len(frames) < used:   # packets counted that do not decode (a damaged tail)
            usable = (len(frames) - 1) // 4 * 4 + 1
            raise _invalid(name, shown, f"decodes to {len(frames)} frames, fewer than the {used} it counts; pass "
                           f"num_frames={usable} or re-encode the video")
        if convert_fps is None:
            found = VideoInput(name, mp4=path, count=len(frames), width=frames.shape[2], height=frames.shape[1],
                               frames=frames)
        else:   # a WebM, GIF, MOV...: kept as an MP4, its pixels as read back
            found = _round_trip(name, frames, convert_fps)
        _remember(key, found)
    return found.frames, found.mp4


def _round_trip(name: str, frames: np.ndarray, fps: float) -> VideoInput:
    """Write ``frames`` as the MP4 the run folder keeps and use the pixels read back from it."""
    from wan_nb.models.video_io import write_mp4

    key = ("pixels", pixels_sha256(frames), float(fps))
    found = _cached(key)
    if found is not None:
        return found.renamed(name)
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise _invalid(name, frames, f"is {frames.shape[2]}x{frames.shape[1]}: an H.264 MP4 needs even sides; "
                       "crop or resize the frames to an even width and height")
    target = _scratch_dir() / f"{key[1][:24]}.mp4"
    write_mp4(frames, target, fps=fps)
    back = _decode(name, target, target)
    return _remember(key, VideoInput(name, mp4=target, count=len(back), width=back.shape[2], height=back.shape[1],
                                     frames=back))


def _frames_from_array(name: str, value: Any) -> np.ndarray:
    array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    if array.ndim == 4 and array.shape[1] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 1, -1)   # (F, C, H, W), torch style -> (F, H, W, C)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        raise _invalid(name, value, f"an array of shape {tuple(array.shape)} is one picture; a video is (frames, "
                       "height, width, 3): stack the frames, e.g. np.stack(frames)")
    if array.ndim == 3:
        array = array[..., None]            # gray frames
    if array.ndim != 4 or array.shape[-1] not in (1, 3) or 0 in array.shape:
        raise _invalid(name, value, f"an array of shape {tuple(array.shape)} is not a video; pass (frames, "
                       "height, width, 3) RGB or (frames, height, width) gray")
    if array.dtype.kind == "f":
        scale = 1.0 if array.max(initial=0) > 1.0 else 255.0   # 0..1 unless clearly 0..255
        array = np.clip(array * scale, 0, 255).round()
    elif array.dtype.kind not in "uib":
        raise _invalid(name, value, f"an array of dtype {array.dtype} is not a video")
    array = array.astype(np.uint8)
    return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array


def _frames_from_pictures(name: str, pictures: Any) -> np.ndarray:
    from wan_nb.models.specs import load_image

    frames = []
    for index, picture in enumerate(pictures):
        try:
            frames.append(np.asarray(load_image(picture).convert("RGB")))
        except ValueError as exc:
            raise _invalid(name, pictures, f"frame {index}: {exc}") from None
    if not frames:
        raise _invalid(name, pictures, "is an empty list; pass at least one frame")
    sizes = {frame.shape for frame in frames}
    if len(sizes) > 1:
        raise _invalid(name, pictures, f"frames differ in size ({', '.join(f'{s[1]}x{s[0]}' for s in sorted(sizes))}); "
                       "give every frame the same width and height")
    return np.stack(frames)


def read_video(name: str, value: Any, fps: float = 16.0) -> VideoInput:
    """``value`` (a path, a list of pictures, an array) as a :class:`VideoInput`. A file is probed
    here (refused at once when it holds no video) and decoded only when its pixels are needed."""
    if isinstance(value, VideoInput):
        return value if value.name == name else value.renamed(name)
    if isinstance(value, (str, os.PathLike)):
        path = Path(value).expanduser()
        if path.is_dir():
            raise _invalid(name, value, "is a folder; pass the path of one video file (an MP4)")
        if not path.is_file():
            raise _invalid(name, value, "no such file; pass the path of a video (an MP4), a list of pictures "
                           "or an array")
        from wan_nb.models.video_io import NotAVideo, probe_video

        stat = path.stat()
        key = ("probe", str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        found = _cached(key)
        if found is None:
            try:
                probe = probe_video(path)
            except NotAVideo as exc:
                raise _invalid(name, value, f"is not a readable video ({exc}); pass an MP4 (or any video file ffmpeg "
                               "reads), a list of pictures or a (frames, height, width, 3) array") from None
            if probe.frames < 1:
                raise _invalid(name, value, "holds no frames; pass a video with at least one frame")
            convert = None if path.suffix.lower() in _MP4 else float(fps)
            found = _remember(key, VideoInput(name, mp4=path.resolve(), count=probe.frames, width=probe.width,
                                              height=probe.height, convert_fps=convert, source=str(path.resolve()),
                                              source_sha256=None, source_size=stat.st_size))
        if found.source_sha256 is None:
            found.source_sha256 = file_sha256(path)
        return found.renamed(name)
    if isinstance(value, (list, tuple)):
        return _round_trip(name, _frames_from_pictures(name, value), fps)
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return _round_trip(name, _frames_from_array(name, value), fps)
    raise _invalid(name, value, f"expected an MP4 path, a list of pictures or a (frames, height, width, 3) "
                   f"array, got {type(value).__name__}")


def read_picture(name: str, value: Any):
    """``value`` as an RGB PIL image; the error names the argument."""
    from wan_nb.models.specs import load_image

    try:
        return load_image(value).convert("RGB")
    except ValueError as exc:
        raise _invalid(name, value, str(exc).split(": ", 1)[-1] if str(exc).startswith("image") else str(exc)) from None


def _is_picture_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike)) and Path(value).suffix.lower() in _PICTURE


def read(name: str, value: Any, fps: float = 16.0) -> Any:
    """The form the run uses: a PIL image (images; a mask given as one picture), a list of them
    (``reference_images``), or a :class:`VideoInput`."""
    if value is None:
        return None
    if name in IMAGE_ARGS:
        return read_picture(name, value)
    if name in LIST_ARGS:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if not items:
            raise _invalid(name, value, "is an empty list; pass one picture or a list of them, or None")
        return [read_picture(f"{name}[{i}]", item) for i, item in enumerate(items)]
    if name == "mask" and (_is_picture_path(value) or _is_single_picture(value)):
        return read_picture(name, value)   # one mask for every frame
    return read_video(name, value, fps)


def _is_single_picture(value: Any) -> bool:
    if hasattr(value, "convert") and hasattr(value, "size"):   # a PIL image
        return True
    shape = tuple(getattr(value, "shape", ()))   # one gray or RGB(A) array
    return len(shape) == 2 or (len(shape) == 3 and shape[-1] in (3, 4))


# ---------------------------------------------------------------------------------------------
# The run folder and the recipe
# ---------------------------------------------------------------------------------------------
def record(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{name: {"kind", "sha256", ...}} of the media in ``params`` (no files written)."""
    out: dict[str, dict[str, Any]] = {}
    for name in MEDIA_ARGS:
        value = params.get(name)
        if value is None:
            continue
        if isinstance(value, VideoInput):
            out[name] = {"kind": "video", "sha256": value.sha256, "source": value.source,
                         "source_sha256": value.source_sha256}
            if value.source_size is not None:
                out[name]["source_size"] = value.source_size
        elif isinstance(value, list):
            joined = ";".join(picture_sha256(p) for p in value)
            out[name] = {"kind": "images", "sha256": hashlib.sha256(joined.encode()).hexdigest()}
        elif hasattr(value, "convert"):
            out[name] = {"kind": "image", "sha256": picture_sha256(value)}
    return out


def save(run_dir: Path, params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Write the media of ``params`` into ``run_dir/inputs/``; return the ``task.json`` record."""
    found = record(params)
    if not found:
        return {}
    folder = Path(run_dir) / INPUTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name, entry in found.items():
        value = params[name]
        if entry["kind"] == "video":
            files = [f"{name}.mp4"]
            if Path(value.mp4).is_file():
                shutil.copyfile(value.mp4, folder / files[0])
            else:   # a Ray worker on another node: the driver's file is not here, its frames are
                from wan_nb.models.video_io import write_mp4

                write_mp4(value.frames, folder / files[0], fps=float(params.get("fps") or 16.0))
        elif entry["kind"] == "images":
            files = [f"{name}_{i}.png" for i in range(len(value))]
            for picture, file in zip(value, files):
                picture.save(folder / file)
        else:
            files = [f"{name}.png"]
            value.save(folder / files[0])
        entry["files"] = [f"{INPUTS_DIR}/{file}" for file in files]
    return found


def describe(value: Any) -> Any:
    """A JSON-safe word for a media argument (events, task.json params)."""
    if isinstance(value, VideoInput):
        return value.describe()
    if isinstance(value, list):
        return [describe(v) for v in value]
    if isinstance(value, (str, bytes)) or hasattr(value, "__fspath__"):
        return str(value)
    size = getattr(value, "shape", None)
    if size is None:
        size = getattr(value, "size", None)
    return f"<{type(value).__name__} {tuple(size) if isinstance(size, (tuple, list)) else ''}>"


def resume_kwargs(run_dir: Path, saved: Mapping[str, Any]) -> dict[str, Any]:
    """What ``resume_queue`` passes for each kept input: the files in the run folder."""
    kinds = {name: entry.get("kind") for name, entry in saved.items() if isinstance(entry, Mapping)}
    # "image" is not here: the queue keeps the image its own way (input.png)
    return {name: [str(f) for f in files] if kinds[name] == "images" else str(files[0])
            for name, files in kept_inputs.paths(run_dir, saved).items() if name != "image"}


def attach_files(made: dict[str, Any], saved: Mapping[str, Any] | None, run_dir: Path) -> None:
    """Add to a recipe's ``inputs`` the absolute paths of the copies kept in ``run_dir``."""
    for name, files in kept_inputs.paths(run_dir, saved or {}).items():
        target = (made.get("inputs") or {}).get(name)
        if target is not None:
            target["files"] = [str(f) for f in files]
