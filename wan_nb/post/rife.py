"""RIFE 4.6 (the IFNet of hzwer's Practical-RIFE, the release most video tools ship), written here so the
published ``flownet.pkl`` / ``.safetensors`` loads unchanged: the frame between two frames at any time t.

The network estimates, coarse to fine over four blocks (1/8, 1/4, 1/2 and full resolution), the
optical flow from the wanted moment back to each frame and a blending mask; both frames are warped
along their flow and blended. Each block sees the frames (warped by the flow so far), the time t as a
constant plane, the mask so far and the flow so far, and adds its correction:

    block k:  conv0 = two stride-2 convs (in -> c/2 -> c), convblock = 8 residual convs with a learned
              per-channel gain (``beta``), lastconv = a stride-2 transposed conv to 24 channels and a
              2x pixel shuffle -> 6 channels: flow (4: to frame 0, to frame 1), mask (1), unused (1)

Widths c are 192, 128, 96, 64; block 0 takes 7 input channels (two frames and t), the others 12 (two
warped frames, t, the mask, the 4-channel flow). Frames are padded to a multiple of 32 (the coarsest
block works at 1/8 and halves twice more). ``.pth`` / ``.pkl`` files are read only with
``torch.load(weights_only=True)``; a checkpoint of another RIFE version or another network is refused
by its tensor shapes, naming the file to use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from wan_nb.models.tensor_files import UnreadableTensorFile, read_tensor_file, unwrap
from wan_nb.protocol.errors import CheckpointError

__all__ = ["RifeNet", "load_rife", "rife_layout_error", "WIDTHS"]

WIDTHS = (192, 128, 96, 64)
SCALES = (8, 4, 2, 1)
_FIX = ("give RIFE 4.6 weights (Practical-RIFE v4.6 train_log/flownet.pkl, or a .safetensors of the same "
        "tensors), or interpolate='ffmpeg' (no weights)")


def _conv(n_in: int, n_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(n_in, n_out, 3, stride, 1), nn.LeakyReLU(0.2, inplace=True))


class GainedResidual(nn.Module):
    """x + beta * conv(x), then a leaky ReLU (``beta``: a learned gain per channel)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones((1, width, 1, 1)))
        self.relu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x) * self.beta + x)


class FlowBlock(nn.Module):
    """One resolution level: (inputs, flow so far) -> (flow correction, mask correction)."""

    def __init__(self, inputs: int, width: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv(inputs, width // 2, 2), _conv(width // 2, width, 2))
        self.convblock = nn.Sequential(*[GainedResidual(width) for _ in range(8)])
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(width, 24, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        if flow is not None:  # flow is in pixels: shrinking the picture shrinks it too
            x = torch.cat([x, F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear",
                                            align_corners=False) / scale], 1)
        out = self.lastconv(self.convblock(self.conv0(x)))
        out = F.interpolate(out, scale_factor=scale, mode="bilinear", align_corners=False)
        return out[:, :4] * scale, out[:, 4:5]


def _warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` at each pixel moved by ``flow`` (pixels), clamping at the border."""
    _, _, height, width = image.shape
    ys = torch.linspace(-1.0, 1.0, height, device=image.device, dtype=image.dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=image.device, dtype=image.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([grid_x + flow[:, 0] * (2.0 / max(1, width - 1)),
                        grid_y + flow[:, 1] * (2.0 / max(1, height - 1))], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


class RifeNet(nn.Module):
    """RIFE 4.6's IFNet: ``middle(frame0, frame1, t)``, frames (1, 3, H, W) in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.block0 = FlowBlock(7, WIDTHS[0])
        self.block1 = FlowBlock(12, WIDTHS[1])
        self.block2 = FlowBlock(12, WIDTHS[2])
        self.block3 = FlowBlock(12, WIDTHS[3])

    @torch.no_grad()
    def forward(self, frame0: torch.Tensor, frame1: torch.Tensor, t: float) -> torch.Tensor:
        _, _, height, width = frame0.shape
        pad = (0, -width % 32, 0, -height % 32)
        img0, img1 = F.pad(frame0, pad, mode="replicate"), F.pad(frame1, pad, mode="replicate")
        time = torch.full_like(img0[:, :1], float(t))
        flow = mask = None
        warped0, warped1 = img0, img1
        for block, scale in zip((self.block0, self.block1, self.block2, self.block3), SCALES):
            if flow is None:
                flow, mask = block(torch.cat([img0, img1, time], 1), None, scale)
            else:
                d_flow, d_mask = block(torch.cat([warped0, warped1, time, mask], 1), flow, scale)
                flow, mask = flow + d_flow, mask + d_mask
            warped0, warped1 = _warp(img0, flow[:, :2]), _warp(img1, flow[:, 2:4])
        weight = torch.sigmoid(mask)
        middle = warped0 * weight + warped1 * (1 - weight)
        return middle[:, :, :height, :width].clamp(0, 1)

    def middle(self, a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
        """uint8 frames (H, W, 3) -> the uint8 frame at time t (for ``interpolate_pairs``)."""
        param = next(self.parameters())

        def tensor(frame: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(frame).to(param.device).permute(2, 0, 1)[None].to(param.dtype) / 255.0

        out = self(tensor(a), tensor(b), t)
        return (out[0].permute(1, 2, 0).float() * 255.0 + 0.5).clamp(0, 255).byte().cpu().numpy()


def rife_layout_error(shapes: Mapping[str, tuple[int, ...]], name: str) -> str | None:
    """Why these tensor shapes are not RIFE 4.6 (None if they are)."""
    want = {k: tuple(v.shape) for k, v in RifeNet().state_dict().items()}
    missing = [k for k in want if k not in shapes]
    if missing:
        sample = ", ".join(sorted(shapes)[:3]) or "no tensors"
        return f"{name} is not a RIFE 4.6 checkpoint (no {missing[0]}; it holds {sample}, ...)"
    for key, shape in want.items():
        if tuple(shapes[key]) != shape:
            return (f"{name} is another RIFE version or network ({key} is {tuple(shapes[key])}, RIFE 4.6 has "
                    f"{shape})")
    return None


def load_rife(path: str | os.PathLike, device: Any = "cpu") -> RifeNet:
    """RIFE 4.6 from a file (``module.`` prefixes of a DataParallel save are dropped)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"no RIFE checkpoint at {path}: {_FIX}")
    try:
        state = unwrap(read_tensor_file(path))
    except UnreadableTensorFile as exc:
        raise CheckpointError(f"cannot read {path} as a checkpoint ({exc}); {_FIX}") from exc
    problem = rife_layout_error({k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}, str(path))
    if problem:
        raise CheckpointError(f"{problem}: {_FIX}")
    model = RifeNet()
    model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()})
    return model.eval().to(device)
