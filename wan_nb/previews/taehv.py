"""TAEHV, the tiny video autoencoder trained to mimic the Wan VAE, written here so that the
published checkpoints (madebyollin's ``taew2_1`` for Wan 2.1 / 2.2-A14B 16-channel latents and
``taew2_2`` for the TI2V-5B 48-channel latents) load unchanged.

The network is two ``nn.Sequential`` stacks, ``encoder`` and ``decoder``; a checkpoint's keys are
``encoder.<index>.…`` / ``decoder.<index>.…``, so every block sits at the index the published
layout gives it (parameter-free blocks included: they hold the numbering). The decoder is

    clamp, conv(latent->256), relu,
    3 x memory block(256), upsample, temporal grow, conv(256->128)     # stage 0
    3 x memory block(128), upsample, temporal grow, conv(128->64)      # stage 1
    3 x memory block(64),  upsample, temporal grow, conv(64->64)       # stage 2
    relu, conv(64 -> 3 * patch**2)                                     # pixels (pixel-shuffled)

A *memory block* sees its input frame and the input frame before it (zeros before the first):
that is the decoder's whole notion of time, which is why it can run a clip in chunks of frames
with only the last frame of each block carried over (:meth:`TinyVideoAutoencoder.decode`): bounded
memory for any clip length. A *temporal grow* turns each frame into ``stride`` frames; Wan's
decoders grow time in stages 1 and 2 (x4), and the first three frames out are warm-up frames
that the Wan VAE does not produce (4k+1 frames from k+1 latent frames).

Latents go in as the Wan pipelines denoise them: normalised with the VAE's latents_mean/std
(roughly unit Gaussian). Frames come out in [0, 1].
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from .taehv_layout import ENCODER_WIDTH, WIDTHS, TaehvLayout

__all__ = ["TaehvLayout", "TinyVideoAutoencoder", "MemoryBlock", "TemporalGrow", "TemporalPool",
           "WIDTHS", "build", "load_state"]

def _conv3(n_in: int, n_out: int, **kw: Any) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kw)


class SoftClamp(nn.Module):
    """Squashes latents into (-3, 3) smoothly: outliers of a half-denoised sample stay tame."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3.0) * 3.0


class MemoryBlock(nn.Module):
    """Residual block over (this frame, the frame before); ``conv`` indices 0, 2, 4 are the convs."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv3(2 * n_in, n_out), nn.ReLU(inplace=True), _conv3(n_out, n_out),
                                  nn.ReLU(inplace=True), _conv3(n_out, n_out))
        self.skip = nn.Identity() if n_in == n_out else nn.Conv2d(n_in, n_out, 1, bias=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, frames: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(torch.cat([frames, before], 1)) + self.skip(frames))


class TemporalPool(nn.Module):
    """``stride`` consecutive frames -> one (a 1x1 conv over their stacked channels)."""

    def __init__(self, width: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(width * stride, width, 1, bias=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        count, channels, height, width = frames.shape
        return self.conv(frames.reshape(count // self.stride, self.stride * channels, height, width))


class TemporalGrow(nn.Module):
    """One frame -> ``stride`` consecutive frames (a 1x1 conv to stride x the channels)."""

    def __init__(self, width: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(width, width * stride, 1, bias=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        count, channels, height, width = frames.shape
        return self.conv(frames).reshape(count * self.stride, channels, height, width)


def _decoder(layout: TaehvLayout) -> nn.Sequential:
    blocks: list[nn.Module] = [SoftClamp(), _conv3(layout.latent_channels, WIDTHS[0]), nn.ReLU(inplace=True)]
    for stage in range(3):
        width, narrower = WIDTHS[stage], WIDTHS[stage + 1]
        blocks += [MemoryBlock(width, width) for _ in range(3)]
        blocks += [nn.Upsample(scale_factor=2 if layout.decoder_space[stage] else 1),
                   TemporalGrow(width, 2 if layout.decoder_time[stage] else 1),
                   _conv3(width, narrower, bias=False)]
    blocks += [nn.ReLU(inplace=True), _conv3(WIDTHS[3], 3 * layout.patch_size ** 2)]
    return nn.Sequential(*blocks)


def _encoder(layout: TaehvLayout) -> nn.Sequential:
    w = ENCODER_WIDTH
    blocks: list[nn.Module] = [_conv3(3 * layout.patch_size ** 2, w), nn.ReLU(inplace=True)]
    for stage in range(3):
        blocks += [TemporalPool(w, 2 if layout.encoder_time[stage] else 1), _conv3(w, w, stride=2, bias=False)]
        blocks += [MemoryBlock(w, w) for _ in range(3)]
    blocks.append(_conv3(w, layout.latent_channels))
    return nn.Sequential(*blocks)


class TinyVideoAutoencoder(nn.Module):
    """A TAEHV (encoder and decoder, the published key layout); decodes Wan latents to frames."""

    def __init__(self, layout: TaehvLayout = TaehvLayout()) -> None:
        super().__init__()
        self.layout = layout
        self.encoder = _encoder(layout)
        self.decoder = _decoder(layout)

    # -- decoding ----------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, latents: torch.Tensor, *, chunk: int = 8) -> torch.Tensor:
        """Latents (B, C, F, h, w) as the Wan pipelines hold them -> frames (B, T, 3, H, W) in [0, 1].

        ``chunk`` latent frames go through the network at a time (memory grows with it, not with
        the clip); the result is the same for every chunk size, since each memory block carries
        the last frame it saw into the next chunk.
        """
        if latents.ndim != 5 or latents.shape[1] != self.layout.latent_channels:
            raise ValueError(f"latents of shape {tuple(latents.shape)}: this TAEHV decodes (B, "
                             f"{self.layout.latent_channels}, F, h, w) latents")
        param = next(self.parameters())
        videos = []
        for one in latents.to(param.device, param.dtype):
            frames = one.transpose(0, 1)                      # (F, C, h, w): time is the batch axis
            carried: dict[int, torch.Tensor] = {}
            out = [self._run(self.decoder, piece, carried) for piece in frames.split(max(1, chunk))]
            video = torch.cat(out)[self.layout.time_factor - 1:]
            if self.layout.patch_size > 1:
                video = nn.functional.pixel_shuffle(video, self.layout.patch_size)
            videos.append(video.clamp_(0.0, 1.0))
        return torch.stack(videos)

    def decode_chunks(self, latents: torch.Tensor, *, chunk: int = 4) -> Iterator[tuple[int, torch.Tensor]]:
        """Like :meth:`decode` for one video (B = 1), yielding ``(latent frames done, new frames)``
        as it goes, so a caller can report progress and write frames out without holding them all."""
        param = next(self.parameters())
        frames = latents[0].to(param.device, param.dtype).transpose(0, 1)
        carried: dict[int, torch.Tensor] = {}
        skip, done = self.layout.time_factor - 1, 0
        with torch.no_grad():
            for piece in frames.split(max(1, chunk)):
                video = self._run(self.decoder, piece, carried)
                video, skip = video[skip:], max(0, skip - len(video))
                if self.layout.patch_size > 1:
                    video = nn.functional.pixel_shuffle(video, self.layout.patch_size)
                done += len(piece)
                yield done, video.clamp_(0.0, 1.0)

    @staticmethod
    def _run(blocks: nn.Sequential, frames: torch.Tensor, carried: dict[int, torch.Tensor]) -> torch.Tensor:
        x = frames
        for index, block in enumerate(blocks):
            if isinstance(block, MemoryBlock):
                first = carried.get(index)
                before = torch.cat([torch.zeros_like(x[:1]) if first is None else first, x[:-1]])
                carried[index] = x[-1:]
                x = block(x, before)
            else:
                x = block(x)
        return x

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (T, 3, H, W) in [0, 1], T a multiple of the time factor -> latents (1, C, F, h, w)."""
        x = frames.to(next(self.parameters()).dtype)
        if self.layout.patch_size > 1:
            x = nn.functional.pixel_unshuffle(x, self.layout.patch_size)
        return self._run(self.encoder, x, {}).transpose(0, 1).unsqueeze(0)


def build(layout: TaehvLayout) -> TinyVideoAutoencoder:
    return TinyVideoAutoencoder(layout)


def load_state(model: TinyVideoAutoencoder, state: Mapping[str, Any]) -> TinyVideoAutoencoder:
    """Load a checkpoint's tensors (checked by :func:`wan_nb.previews.taehv_files.layout_of`).

    A published decoder may carry a stride-2 temporal grow where the layout has stride 1 (one
    checkpoint serves several layouts): its last-frame output channels are the ones kept. A
    decoder-only checkpoint leaves the encoder at its random start.
    """
    own = model.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
        if key in own and tensor.shape != own[key].shape and key.startswith("decoder.") \
                and key.endswith(".conv.weight") and tensor.shape[0] > own[key].shape[0]:
            tensor = tensor[-own[key].shape[0]:]
        tensors[key] = tensor
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    absent = [k for k in missing if k.startswith("decoder.")]
    if absent or unexpected:
        raise ValueError(f"checkpoint does not fit the TAEHV layout: missing {absent[:4]}, "
                         f"unexpected {list(unexpected)[:4]}")
    return model
