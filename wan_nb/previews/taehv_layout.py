"""The shape of a TAEHV (what a checkpoint's tensor shapes decide); no torch, so checking a file's
layout stays cheap. The network itself is in :mod:`.taehv`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TaehvLayout", "WIDTHS", "ENCODER_WIDTH"]

WIDTHS = (256, 128, 64, 64)        # decoder feature widths, stage by stage
ENCODER_WIDTH = 64


@dataclass(frozen=True)
class TaehvLayout:
    """One TAEHV's shape: latent channels, pixel-shuffle patch, which stages grow time and space."""

    latent_channels: int = 16
    patch_size: int = 1
    decoder_time: tuple[bool, bool, bool] = (False, True, True)   # which stages double time
    decoder_space: tuple[bool, bool, bool] = (True, True, True)   # which stages double height/width
    encoder_time: tuple[bool, bool, bool] = (True, True, False)

    @property
    def time_factor(self) -> int:
        return 2 ** sum(self.decoder_time)

    @property
    def space_factor(self) -> int:
        return self.patch_size * 2 ** sum(self.decoder_space)

    def frames_out(self, latent_frames: int) -> int:
        """Video frames from ``latent_frames`` (Wan: 4k+1 from k+1), warm-up frames dropped."""
        return max(0, latent_frames * self.time_factor - (self.time_factor - 1))
