"""Bigger frames: Lanczos resampling (no weights), or a super-resolution network from a ``.pth`` /
``.safetensors`` file (Real-ESRGAN's RRDBNet and SRVGGNetCompact by :mod:`.sr_networks`, most other
architectures through spandrel), run in tiles so the memory a frame needs is bounded by the tile
size, not the frame size.

Each frame is reported as it is done: ``report(done, total)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["upscale_lanczos", "upscale_with_model", "tiled", "load_upscaler", "read_state", "Report"]

Report = Callable[[int, int], None]
TILE = 256       # input pixels a side per tile: a 4x network's tile output is 1024 x 1024
OVERLAP = 16     # input pixels shared by neighbouring tiles; their seam is cut in the middle


def upscale_lanczos(frames: np.ndarray, size: tuple[int, int], report: Report | None = None) -> np.ndarray:
    """Frames (F, H, W, 3) uint8 -> (F, *size, 3), Lanczos-resampled one by one."""
    from PIL import Image

    height, width = size
    out = np.empty((len(frames), height, width, 3), dtype=np.uint8)
    for index, frame in enumerate(frames):
        out[index] = np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.LANCZOS))
        if report is not None:
            report(index + 1, len(frames))
    return out


def tiled(network: Callable[[Any], Any], image: Any, scale: int, tile: int = TILE, overlap: int = OVERLAP) -> Any:
    """``network`` (a (1, 3, h, w) -> (1, 3, h*scale, w*scale) function) over ``image`` (1, 3, H, W) in
    tiles of ``tile`` pixels overlapping by ``overlap``; each output pixel comes from the tile where it
    is farthest from an edge, so seams fall in the overlap's middle."""
    import torch

    _, channels, height, width = image.shape
    if height <= tile and width <= tile:
        return network(image)
    out = torch.empty((1, channels, height * scale, width * scale), dtype=image.dtype, device=image.device)
    step = max(1, tile - overlap)
    for top in range(0, height, step):
        for left in range(0, width, step):
            y0, x0 = max(0, min(top, height - tile)), max(0, min(left, width - tile))
            y1, x1 = min(height, y0 + tile), min(width, x0 + tile)
            piece = network(image[:, :, y0:y1, x0:x1])
            # keep the part of this tile beyond half the overlap from each inner edge
            ky0 = 0 if y0 == 0 else y0 + overlap // 2
            kx0 = 0 if x0 == 0 else x0 + overlap // 2
            ky1 = height if y1 == height else y1 - overlap // 2
            kx1 = width if x1 == width else x1 - overlap // 2
            out[:, :, ky0 * scale:ky1 * scale, kx0 * scale:kx1 * scale] = \
                piece[:, :, (ky0 - y0) * scale:(ky1 - y0) * scale, (kx0 - x0) * scale:(kx1 - x0) * scale]
            if x1 == width:
                break
        if y1 == height:
            break
    return out


_FIX = ("give a Real-ESRGAN file (RRDBNet: RealESRGAN_x4plus.pth, x2plus; SRVGGNetCompact: "
        "realesr-general-x4v3.pth, realesr-animevideov3.pth), another super-resolution architecture with "
        "spandrel installed, or upscaler='lanczos' (no weights)")


def read_state(path: Path) -> dict[str, Any]:
    """The tensors of a ``.safetensors`` / ``.pth`` file (``weights_only``: no pickled code runs)."""
    from wan_nb.protocol.errors import CheckpointError

    from wan_nb.models.tensor_files import UnreadableTensorFile, read_tensor_file, unwrap

    try:
        return unwrap(read_tensor_file(path))
    except UnreadableTensorFile as exc:
        raise CheckpointError(f"cannot read {path} as a checkpoint ({exc}); {_FIX}") from exc


def load_upscaler(source: str, report: Callable[..., None] | None = None) -> Any:
    """A super-resolution model from a file path or ``owner/repo/file`` on the Hub (downloaded through
    wan_nb's Hub code): Real-ESRGAN's networks by our own code (:mod:`.sr_networks`), any other
    architecture through spandrel. Raises CheckpointError for a file neither knows."""
    from wan_nb.protocol.errors import CheckpointError

    from .sr_networks import build_network

    path = Path(source).expanduser()
    if not path.is_file():
        from wan_nb.models.download import fetch_file

        owner, repo, filename = source.split("/", 2)
        path = fetch_file(f"{owner}/{repo}", filename, report, what="upscaler")
    state = read_state(path)
    try:
        model = build_network(state)
    except ValueError as exc:
        raise CheckpointError(f"{path} is {exc}; {_FIX}") from exc
    if model is not None:
        return model
    try:
        import spandrel
    except Exception as exc:  # not installed, or a torchvision built for another torch (CUDA wheels on a CPU torch)
        sample = ", ".join(sorted(state)[:3]) or "no tensors"
        raise CheckpointError(f"{path} is not a Real-ESRGAN network (it holds {sample}, ...) and spandrel, which "
                              f"loads other architectures, cannot be imported ({type(exc).__name__}: {exc}): "
                              "pip install spandrel with a torchvision built for your torch, or " + _FIX) from exc
    try:
        model = spandrel.ModelLoader().load_from_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path} is not a super-resolution model spandrel can load ({exc}); {_FIX}") from exc
    if not isinstance(model, spandrel.ImageModelDescriptor):
        raise CheckpointError(f"{path} is a {type(model).__name__}, not an upscaler; {_FIX}")
    return model


def upscale_with_model(frames: np.ndarray, model: Any, size: tuple[int, int], device: Any = "cpu",
                       report: Report | None = None, tile: int = TILE) -> np.ndarray:
    """Frames through a spandrel model (tiled), then resized to ``size`` if the model's own factor differs."""
    import torch

    model.to(device).eval()
    network = model.model if hasattr(model, "model") else model
    scale = int(getattr(model, "scale", 1) or 1)
    height, width = size
    out = np.empty((len(frames), height, width, 3), dtype=np.uint8)
    with torch.no_grad():
        for index, frame in enumerate(frames):
            image = torch.from_numpy(frame).to(device).permute(2, 0, 1)[None].float() / 255.0
            big = tiled(network, image, scale, tile=tile).clamp_(0, 1)
            if tuple(big.shape[-2:]) != (height, width):
                big = torch.nn.functional.interpolate(big, size=(height, width), mode="bicubic",
                                                      align_corners=False, antialias=True).clamp_(0, 1)
            out[index] = (big[0].permute(1, 2, 0) * 255.0 + 0.5).byte().cpu().numpy()
            if report is not None:
                report(index + 1, len(frames))
    return out
