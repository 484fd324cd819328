"""Which previews a generator makes: ``Generator(previews="auto" | "taehv" | "latent2rgb" | False | <file>)``.

* ``"auto"`` (default; ``True`` means the same): TAEHV when its checkpoint is already here (the
  Hub cache, or a path given), else the linear latent2rgb projection. Nothing is downloaded.
* ``"taehv"``: the published TAEHV for the model's latents, downloaded *now* if it is not cached
  (at ``Generator(...)``, with the usual offline/disk errors), never in the middle of a run.
* a path or ``"owner/repo/file"``: that TAEHV checkpoint, checked now (shapes only: another
  architecture is refused before any run).
* ``"latent2rgb"``: the projection only; ``False`` / ``None``: no previews.

A run may ask for another mode (``generate(..., previews="latent2rgb")``, a grid axis); a run
asking for TAEHV where no file is here gets latent2rgb, and its preview events say why
(``fallback``), rather than a download between two denoising steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PreviewChoice", "choose", "latent_channels_of"]

MODES = ("auto", "taehv", "latent2rgb")


@dataclass(frozen=True)
class PreviewChoice:
    mode: str | None               # "auto" | "taehv" | "latent2rgb" | None (no previews)
    source: str | None = None      # a TAEHV path / "owner/repo/file"; None: the published file

    @property
    def enabled(self) -> bool:
        return self.mode is not None

    def taehv_file(self, channels: int) -> Path | None:
        """The TAEHV checkpoint a run with ``channels``-channel latents uses, if it is here (no network)."""
        if self.mode not in ("auto", "taehv"):
            return None
        from .taehv_files import cached_file

        return cached_file(self.source, channels)


def latent_channels_of(spec: Any) -> int:
    """The latent channels a model's VAE makes: 48 for Wan 2.2 TI2V-5B, 16 for the rest."""
    return 48 if getattr(spec, "kind", None) == "ti2v" else 16


def choose(previews: Any, spec: Any = None) -> PreviewChoice:
    """Check ``Generator(previews=...)`` and fetch what it needs now; a :class:`PreviewChoice`."""
    if previews is None or previews is False:
        return PreviewChoice(None)
    if previews is True:
        return PreviewChoice("auto")
    if not isinstance(previews, (str, Path)):
        raise ValueError(f"previews={previews!r}: give 'auto' (default), 'taehv', 'latent2rgb', False, or "
                         "the path of a TAEHV checkpoint (taew2_1.safetensors)")
    text = str(previews)
    if text in ("auto", "latent2rgb"):
        return PreviewChoice(text)
    from .taehv_files import check_source, resolve_file

    channels = latent_channels_of(spec)
    if text == "taehv":
        resolve_file(None, channels)  # asked for: downloaded here, before any run, if not cached
        return PreviewChoice("taehv")
    check_source(text, channels)      # a file of another architecture is refused here
    resolve_file(text, channels)
    return PreviewChoice("taehv", text)
