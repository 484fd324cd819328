"""Helpers for the model, download and LoRA tests: load a tiny variant, run it, collect reports."""
from __future__ import annotations

import threading
from typing import Any

from wan_nb.models import specs as models


class Reports:
    """A ``report`` callable that records every call (kind, fields, thread name)."""

    def __init__(self):
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.threads: set[str] = set()

    def __call__(self, kind: str, **fields: Any) -> None:
        self.calls.append((kind, fields))
        self.threads.add(threading.current_thread().name)

    def stages(self) -> list[str]:
        return [f["stage"] for kind, f in self.calls if kind == "stage"]

    def loading(self) -> list[dict[str, Any]]:
        return [f for kind, f in self.calls if kind == "loading"]


def load(name: str, **kwargs):
    return models.load_pipeline(models.resolve(name), device="cpu", dtype="fp32", **kwargs)


def latents(pipe, seed: int = 0, steps: int = 2, size: int = 32, **kwargs):
    """A short deterministic run, stopped before the VAE decode (compares the denoiser's work)."""
    import torch

    args = dict(prompt="a red fox running in snow", height=size, width=size, num_frames=5,
                num_inference_steps=steps, guidance_scale=1.0, output_type="latent",
                generator=torch.Generator().manual_seed(seed))
    args.update(kwargs)
    return pipe(**args).frames
