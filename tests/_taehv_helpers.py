"""TAEHV checkpoints with random weights, written in the published key layout (``encoder.N.…`` /
``decoder.N.…``), as .safetensors or as a .pth state dict: what the real taew2_1 / taew2_2 files hold,
minus the training."""
from __future__ import annotations

from pathlib import Path

import torch


def taehv_state(channels: int = 16, patch: int = 1, seed: int = 0, stage0_stride2: bool = False,
                decoder_only: bool = False) -> dict[str, torch.Tensor]:
    from wan_nb.previews import taehv

    torch.manual_seed(seed)
    model = taehv.build(taehv.TaehvLayout(latent_channels=channels, patch_size=patch))
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if stage0_stride2:  # one published decoder carries a stride-2 grow at stage 0 for other layouts
        state["decoder.7.conv.weight"] = torch.randn(512, 256, 1, 1) * 0.05
    if decoder_only:
        state = {k: v for k, v in state.items() if k.startswith("decoder.")}
    return state


def write_taehv(path: Path, channels: int = 16, patch: int = 1, seed: int = 0, **kw) -> Path:
    state = taehv_state(channels, patch, seed, **kw)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, str(path))
    return path
