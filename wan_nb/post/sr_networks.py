"""Real-ESRGAN's two published networks in our own code: RRDBNet (``RealESRGAN_x4plus.pth``,
``RealESRGAN_x2plus.pth``, ``RealESRNet_*``, ESRGAN in basicsr's layout) and SRVGGNetCompact
(``realesr-general-x4v3.pth``, ``realesr-animevideov3.pth``).

Most upscaler files people use are one of these two, so they load here without spandrel (whose
import needs a torchvision built for the installed torch, which a CPU-only torch from PyPI's
mirror does not get). The layout is read from the tensor shapes (scale, widths, depth), the
key names are basicsr's (``conv_first``, ``body.N.rdb1.conv1``, ... / ``body.N``), and a file is
read with ``torch.load(weights_only=True)`` or safetensors: no pickled code runs. Any other
architecture goes to spandrel (:func:`wan_nb.post.upscaling.load_upscaler`).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["RRDBNet", "SRVGGNetCompact", "build_network", "SRModel"]


class _DenseBlock(nn.Module):
    """basicsr's ResidualDenseBlock: five 3x3 convs, each seeing every earlier output."""

    def __init__(self, feat: int, grow: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(feat, grow, 3, 1, 1)
        self.conv2 = nn.Conv2d(feat + grow, grow, 3, 1, 1)
        self.conv3 = nn.Conv2d(feat + 2 * grow, grow, 3, 1, 1)
        self.conv4 = nn.Conv2d(feat + 3 * grow, grow, 3, 1, 1)
        self.conv5 = nn.Conv2d(feat + 4 * grow, feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            outs.append(F.leaky_relu(conv(torch.cat(outs, 1)), 0.2))
        return self.conv5(torch.cat(outs, 1)) * 0.2 + x


class _RRDB(nn.Module):
    def __init__(self, feat: int, grow: int) -> None:
        super().__init__()
        self.rdb1, self.rdb2, self.rdb3 = _DenseBlock(feat, grow), _DenseBlock(feat, grow), _DenseBlock(feat, grow)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN / Real-ESRGAN's generator. x2 and x1 fold the input into channels first (pixel
    unshuffle), so every scale ends in the same two x2 upsamplings."""

    def __init__(self, scale: int = 4, feat: int = 64, blocks: int = 23, grow: int = 32) -> None:
        super().__init__()
        self.scale = scale
        fold = {4: 1, 2: 2, 1: 4}[scale]
        self.conv_first = nn.Conv2d(3 * fold * fold, feat, 3, 1, 1)
        self.body = nn.Sequential(*(_RRDB(feat, grow) for _ in range(blocks)))
        self.conv_body = nn.Conv2d(feat, feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(feat, feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(feat, feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(feat, feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(feat, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fold = {4: 1, 2: 2, 1: 4}[self.scale]
        feat = self.conv_first(F.pixel_unshuffle(x, fold) if fold > 1 else x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact network: a plain conv stack at the input size, a pixel shuffle, and
    the nearest-upsampled input added back."""

    def __init__(self, scale: int = 4, feat: int = 64, convs: int = 16, act: str = "prelu") -> None:
        super().__init__()
        self.scale = scale

        def activation() -> nn.Module:
            return nn.PReLU(feat) if act == "prelu" else nn.LeakyReLU(0.1) if act == "leakyrelu" else nn.ReLU()

        layers: list[nn.Module] = [nn.Conv2d(3, feat, 3, 1, 1), activation()]
        for _ in range(convs):
            layers += [nn.Conv2d(feat, feat, 3, 1, 1), activation()]
        layers += [nn.Conv2d(feat, 3 * scale * scale, 3, 1, 1)]
        self.body = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        return F.pixel_shuffle(out, self.scale) + F.interpolate(x, scale_factor=self.scale, mode="nearest")


class SRModel:
    """What :func:`wan_nb.post.upscaling.upscale_with_model` needs, as spandrel's descriptors give
    it: ``.model`` (the network), ``.scale``, ``.architecture``, ``.to()``, ``.eval()``."""

    def __init__(self, model: nn.Module, architecture: str) -> None:
        self.model, self.architecture, self.scale = model, architecture, int(model.scale)  # type: ignore[arg-type]

    def to(self, device: Any) -> "SRModel":
        self.model.to(device)
        return self

    def eval(self) -> "SRModel":
        self.model.eval()
        return self


def build_network(state: Mapping[str, Any]) -> SRModel | None:
    """The network these tensors are the weights of (loaded, on the CPU), or None when they are
    neither layout; raises ValueError for one of them with tensors that do not fit."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if "conv_first.weight" in shapes and "body.0.rdb1.conv1.weight" in shapes and "conv_up2.weight" in shapes:
        feat, folded = shapes["conv_first.weight"][:2]
        scale = {3: 4, 12: 2, 48: 1}.get(folded)
        if scale is None:
            raise ValueError(f"an RRDBNet whose first conv takes {folded} channels (3, 12 or 48 expected)")
        blocks = 1 + max(int(m.group(1)) for k in shapes if (m := re.match(r"body\.(\d+)\.rdb1\.conv1\.weight$", k)))
        grow = shapes["body.0.rdb1.conv1.weight"][0]
        network: nn.Module = RRDBNet(scale, feat, blocks, grow)
        name = f"RRDBNet x{scale} ({blocks} blocks, {feat} features)"
    elif "body.0.weight" in shapes and len(shapes["body.0.weight"]) == 4 and shapes["body.0.weight"][1] == 3:
        convs = sorted(int(m.group(1)) for k, s in shapes.items()
                       if (m := re.match(r"body\.(\d+)\.weight$", k)) and len(s) == 4)
        feat, last = shapes["body.0.weight"][0], shapes[f"body.{convs[-1]}.weight"][0]
        scale = round((last // 3) ** 0.5)
        if convs != list(range(0, 2 * len(convs) - 1, 2)) or scale * scale * 3 != last:
            raise ValueError("a plain conv stack that is not SRVGGNetCompact's (convs at every other layer, "
                             "the last one making 3 x scale^2 channels)")
        act = "prelu" if "body.1.weight" in shapes else "leakyrelu"
        network = SRVGGNetCompact(scale, feat, len(convs) - 2, act)
        name = f"SRVGGNetCompact x{scale} ({len(convs) - 2} convs, {feat} features)"
    else:
        return None
    want = network.state_dict()
    wrong = [k for k in want if k not in state or tuple(state[k].shape) != tuple(want[k].shape)]
    if wrong:
        found = tuple(state[wrong[0]].shape) if wrong[0] in state else "missing"
        raise ValueError(f"{name}: {wrong[0]} is {found}, the network needs {tuple(want[wrong[0]].shape)}")
    network.load_state_dict({k: state[k].float() for k in want})
    return SRModel(network.eval(), name)
