"""Finding, checking and loading TAEHV checkpoints (the network is in :mod:`.taehv`).

Where a file comes from: a path the user gives, or the Hub (``DEFAULT_SOURCES``, one per latent
channel count) through wan_nb's download code (progress, offline mode, clear errors). ``.safetensors``
is read as it is; ``.pth`` only with ``torch.load(weights_only=True)`` (no pickled code runs).

A checkpoint is checked by its tensor *shapes* before anything is built: the decoder's first conv
gives the latent channels, its last conv the patch size, the temporal grows the time factor.
Anything else (a TAESD image decoder, a Wan VAE, a random file) is refused with a
:class:`~wan_nb.protocol.errors.CheckpointError` naming the file to use instead.
``import`` of this module does not import torch.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from wan_nb.models.tensor_files import UnreadableTensorFile, read_tensor_file, unwrap
from wan_nb.protocol.errors import CheckpointError

__all__ = ["DEFAULT_SOURCES", "layout_of", "read_shapes", "read_tensors", "cached_file", "resolve_file",
           "load_decoder", "is_path", "check_source"]

# Published TAEHV weights on the Hub, per latent channel count (repo id, file name). The first is
# the mirror the issue names (Kijai/WanVideo_comfy); a path or "owner/repo/file" overrides either.
DEFAULT_SOURCES: dict[int, tuple[str, str]] = {
    16: ("Kijai/WanVideo_comfy", "taew2_1.safetensors"),
    48: ("Kijai/WanVideo_comfy", "taew2_2.safetensors"),
}
_FIX = ("give a TAEHV checkpoint: taew2_1 (.safetensors or .pth) for Wan 2.1 / Wan 2.2 A14B "
        "(16-channel latents), taew2_2 for Wan 2.2 TI2V-5B (48-channel latents), from madebyollin's "
        "taehv release or the Kijai/WanVideo_comfy mirror")


def is_path(source: str) -> bool:
    """A local file (as opposed to ``owner/repo/file`` on the Hub): one that exists, one written as a
    path (``/``, ``~``, ``.`` first), or a bare file name."""
    text = str(source)
    return Path(text).expanduser().exists() or text.startswith(("/", "~", ".")) or text.count("/") < 2


def read_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, without reading the tensors of a .safetensors file."""
    return {k: tuple(v.shape) for k, v in read_tensors(path, shapes_only=True).items()}


class _Shape:
    def __init__(self, shape: Any) -> None:
        self.shape = tuple(int(s) for s in shape)


def read_tensors(path: str | os.PathLike, *, shapes_only: bool = False) -> dict[str, Any]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"no TAEHV checkpoint at {path}: {_FIX}")
    if shapes_only and path.suffix == ".safetensors":   # the header alone: no tensor is read
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: _Shape(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception as exc:
            raise CheckpointError(f"cannot read {path} as a checkpoint ({type(exc).__name__}: {exc}); {_FIX}") from exc
    try:
        return unwrap(read_tensor_file(path))
    except UnreadableTensorFile as exc:
        raise CheckpointError(f"cannot read {path} as a checkpoint ({exc}); {_FIX}") from exc


def layout_of(shapes: Mapping[str, tuple[int, ...]], name: str = "checkpoint") -> Any:
    """The :class:`~wan_nb.previews.taehv.TaehvLayout` these tensor shapes describe, or CheckpointError."""
    from .taehv_layout import TaehvLayout, WIDTHS

    first, last = shapes.get("decoder.1.weight"), shapes.get("decoder.22.weight")
    if first is None or last is None or len(first) != 4 or len(last) != 4 or first[0] != WIDTHS[0] \
            or last[1] != WIDTHS[3] or last[0] % 3:
        sample = ", ".join(sorted(shapes)[:3]) or "no tensors"
        raise CheckpointError(f"{name} is not a TAEHV checkpoint (no decoder.1 conv to {WIDTHS[0]} features "
                              f"and decoder.22 conv to pixels; it holds {sample}, ...): {_FIX}")
    patch = round((last[0] // 3) ** 0.5)
    time = []
    for stage, index in enumerate((7, 13, 19)):
        grow = shapes.get(f"decoder.{index}.conv.weight")
        if grow is None or grow[1] != WIDTHS[stage] or grow[0] not in (WIDTHS[stage], 2 * WIDTHS[stage]):
            raise CheckpointError(f"{name} has a decoder of another layout (decoder.{index} is "
                                  f"{grow}, not a temporal grow of {WIDTHS[stage]} features): {_FIX}")
        time.append(grow[0] == 2 * WIDTHS[stage])
    # Wan's decoders grow time x4 in stages 1 and 2; a stride-2 grow at stage 0 (a checkpoint
    # that serves several layouts) is cut to stride 1 when loaded.
    if patch * patch * 3 != last[0] or not (time[1] and time[2]):
        raise CheckpointError(f"{name} is a TAEHV of another family (patch {patch}, time grows {time}); {_FIX}")
    encoder = shapes.get("encoder.0.weight")
    encoder_time = (True, True, False)
    if encoder is not None:
        pools = [shapes.get(f"encoder.{i}.conv.weight") for i in (2, 7, 12)]
        encoder_time = tuple(bool(p and p[1] == 2 * p[0]) for p in pools)  # type: ignore[assignment]
    return TaehvLayout(latent_channels=first[1], patch_size=patch, encoder_time=encoder_time)


def check_source(source: str, channels: int | None = None) -> str:
    """A local TAEHV file, checked now (cheap: shapes only); the source unchanged. Raises CheckpointError."""
    if is_path(source):
        layout = layout_of(read_shapes(source), name=str(source))
        if channels is not None and layout.latent_channels != channels:
            raise CheckpointError(f"{source} decodes {layout.latent_channels}-channel latents but this model "
                                  f"makes {channels}-channel ones: {_FIX}")
    elif source.count("/") < 2:
        raise CheckpointError(f"TAEHV source {source!r}: give a file path, or 'owner/repo/file' on the Hub; {_FIX}")
    return source


def _hub(source: str | None, channels: int) -> tuple[str, str]:
    if source:
        owner, repo, filename = source.split("/", 2)
        return f"{owner}/{repo}", filename
    if channels not in DEFAULT_SOURCES:
        raise CheckpointError(f"no published TAEHV for {channels}-channel latents; previews use the linear "
                              "projection (previews='latent2rgb')")
    return DEFAULT_SOURCES[channels]


def cached_file(source: str | None, channels: int) -> Path | None:
    """The checkpoint if it is here already (a path, or in the Hub cache), without any network call."""
    if source and is_path(source):
        return Path(source).expanduser()
    try:
        repo, filename = _hub(source, channels)
        from huggingface_hub import try_to_load_from_cache
    except (CheckpointError, ImportError):
        return None
    found = try_to_load_from_cache(repo, filename)
    return Path(found) if isinstance(found, str) else None


def resolve_file(source: str | None, channels: int, report: Callable[..., None] | None = None) -> Path:
    """The checkpoint, downloaded through wan_nb's Hub code when it is not cached (``report``: progress)."""
    found = cached_file(source, channels)
    if found is not None:
        return found
    from wan_nb.models.download import fetch_file

    repo, filename = _hub(source, channels)
    return fetch_file(repo, filename, report, what="TAEHV decoder")


_loaded: dict[tuple[str, str, bool], Any] = {}
_lock = threading.Lock()


def load_decoder(path: str | os.PathLike, *, channels: int | None = None, device: Any = "cpu",
                 dtype: Any = None, preview: bool = False) -> Any:
    """The TAEHV in ``path`` as a module (cached per file, device and use).

    ``preview=True`` leaves out the last stage's spatial upsampling: a preview is shown at
    most 256 px wide, so the full-size last stage (most of the decoder's work) would be thrown
    away by the downscale.
    """
    import dataclasses

    from . import taehv

    key = (str(Path(path).resolve()), str(device), preview)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        tensors = read_tensors(path)
        layout = layout_of({k: tuple(v.shape) for k, v in tensors.items()}, name=str(path))
        if channels is not None and layout.latent_channels != channels:
            raise CheckpointError(f"{path} decodes {layout.latent_channels}-channel latents, the model makes "
                                  f"{channels}-channel ones: {_FIX}")
        if preview:
            layout = dataclasses.replace(layout, decoder_space=(True, True, False))
        model = taehv.load_state(taehv.build(layout), tensors).eval()
        model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
        _loaded[key] = model
        return model
