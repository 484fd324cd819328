"""Real-ESRGAN checkpoints with random weights, written in the published key layout by hand (not
from wan_nb's own modules, so a layout our code got wrong fails here): basicsr's RRDBNet
(``RealESRGAN_x4plus.pth``: ``{"params_ema": {conv_first, body.N.rdbM.convK, conv_body, conv_up1,
conv_up2, conv_hr, conv_last}}``) and SRVGGNetCompact (``realesr-general-x4v3.pth``: ``{"params":
{body.0 conv, body.1 PReLU, ..., body.L conv to 3 x scale^2}}``)."""
from __future__ import annotations

from pathlib import Path

import torch


def _conv(state, name, out_ch, in_ch, gen, gain=0.05):
    state[f"{name}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=gen) * gain
    state[f"{name}.bias"] = torch.randn(out_ch, generator=gen) * 0.01


def rrdbnet_state(scale: int = 4, feat: int = 16, blocks: int = 2, grow: int = 32, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    _conv(state, "conv_first", feat, 3 * {4: 1, 2: 4, 1: 16}[scale], gen)
    for b in range(blocks):
        for r in (1, 2, 3):
            for k in range(1, 6):
                _conv(state, f"body.{b}.rdb{r}.conv{k}", feat if k == 5 else grow, feat + (k - 1) * grow, gen)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        _conv(state, name, feat, feat, gen)
    _conv(state, "conv_last", 3, feat, gen)
    return state


def compact_state(scale: int = 4, feat: int = 16, convs: int = 4, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    _conv(state, "body.0", feat, 3, gen)
    state["body.1.weight"] = torch.full((feat,), 0.25)
    for i in range(convs):
        _conv(state, f"body.{2 * i + 2}", feat, feat, gen)
        state[f"body.{2 * i + 3}.weight"] = torch.full((feat,), 0.25)
    _conv(state, f"body.{2 * convs + 2}", 3 * scale * scale, feat, gen)
    return state


def write_sr(path: Path, state: dict, wrapper: str | None = "params_ema") -> Path:
    """As Real-ESRGAN publishes them: a .pth dict under ``params_ema`` / ``params``, or a bare
    .safetensors state dict (the converted files on the Hub)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({wrapper: state} if wrapper else state, str(path))
    return path
