"""Named Wan models: which Hub repo, which diffusers pipeline, and the settings each was trained for.

``presets()`` lists them with first-download size and how much GPU memory to expect per offload
mode. Pure data: importing this module imports no torch and touches no network.

Numbers marked "approximate" are estimates from parameter counts (bf16 weights, default
resolution and frame count); real peaks vary with the attention backend and the PyTorch version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["Preset", "PRESETS", "presets", "get"]

OFFLOAD_MODES = ("none", "model", "sequential", "group")

# The negative prompt the Wan authors ship with their examples (translated); it matters for quality.
WAN_NEGATIVE_PROMPT = (
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, "
    "static, overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, "
    "extra fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, "
    "fused fingers, still picture, messy background, three legs, many people in the background, "
    "walking backwards")


# Wan 2.1's flow shift follows the resolution (the Wan authors: 3.0 for 480p, 5.0 for 720p).
WAN21_FLOW_SHIFT = {"480p": 3.0, "720p": 5.0}


def flow_shift_for(rule: Any, height: int, width: int) -> float | None:
    """The flow shift a model uses at ``height`` x ``width``: ``rule`` is a number (any size), a
    ``{"480p": a, "720p": b}`` dict (the Wan 2.1 models: a up to between the two areas, b above)
    or None (the scheduler as loaded)."""
    if isinstance(rule, Mapping):
        middle = (480 * 832 + 720 * 1280) / 2
        return float(rule["480p"] if height * width <= middle else rule["720p"])
    return None if rule is None else float(rule)


@dataclass(frozen=True)
class Preset:
    """One named model. ``defaults`` are the generation arguments used when the caller gives none."""

    name: str
    repo_id: str
    pipeline_class: str
    kind: str                       # "t2v" | "i2v" | "ti2v" | "flf2v" | "vace" | "animate" (wan_nb.models.pipelines)
    defaults: dict[str, Any]
    spatial_factor: int             # height/width multiple: VAE spatial factor x transformer patch
    temporal_factor: int            # num_frames = temporal_factor * k + 1
    download_gb: float              # estimated first-run download (= disk in the Hub cache)
    vram_gb: dict[str, float]       # estimated peak GPU memory per offload mode
    recommended: str                # which GPU / offload setting to use, in words
    description: str = ""
    experts: tuple[str, ...] = ()   # ("high_noise", "low_noise") for the Wan 2.2 A14B models
    boundary_ratio: float | None = None
    latent_channels: int = 16
    extra: dict[str, Any] = field(default_factory=dict)
    # Estimated peak host RAM: "none" (each component goes to the GPU as soon as it is loaded, so
    # the peak is the largest one) and "offload" (model / sequential / group keep every component
    # in RAM and bring it to the GPU when it runs).
    ram_gb: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "repo_id": self.repo_id, "pipeline_class": self.pipeline_class,
            "kind": self.kind, "defaults": dict(self.defaults),
            "spatial_factor": self.spatial_factor, "temporal_factor": self.temporal_factor,
            "download_gb": self.download_gb, "vram_gb": dict(self.vram_gb), "ram_gb": dict(self.ram_gb),
            "recommended": self.recommended, "description": self.description,
            "experts": list(self.experts), "boundary_ratio": self.boundary_ratio,
        }

    def __str__(self) -> str:
        d = self.defaults
        vram = ", ".join(f"{k} ≈{v:g} GB" for k, v in self.vram_gb.items())
        ram = ", ".join(f"{k} ≈{v:g} GB" for k, v in self.ram_gb.items())
        return (f"{self.name:<22} {self.kind:<4} {d['width']}x{d['height']} {d['num_frames']}f "
                f"@{d['fps']}fps  download ≈{self.download_gb:g} GB  VRAM {vram}  RAM {ram}")


def _defaults(height, width, num_frames, fps, steps, guidance, flow_shift, **more) -> dict[str, Any]:
    return {"height": height, "width": width, "num_frames": num_frames, "fps": fps, "steps": steps,
            "guidance_scale": guidance, "flow_shift": flow_shift,
            "negative_prompt": WAN_NEGATIVE_PROMPT, **more}


# Sizes are estimates from parameter counts and the dtypes the -Diffusers repos store (the Hub's
# own byte counts decide at download time: download.fetch_snapshot checks them against free disk):
#   umT5-XXL text encoder 5.7 B parameters: ~23 GB as stored in fp32 (Wan 2.1 repos), ~11 GB in bf16
#     (Wan 2.2 repos); 11.4 GB in RAM in bf16.
#   transformers, stored in fp32: 1.3B ~5.7 GB, 5B ~20 GB, 14B ~57 GB, Wan 2.1 I2V 14B (image
#     cross-attention) ~66 GB; Wan 2.2 A14B has two 14B experts: ~114 GB, so its repos hold ~126 GB.
#   VAE: Wan 2.1 0.5 GB, Wan 2.2 1.4 GB (both kept in fp32); CLIP ViT-H image encoder 2.5 GB (fp32).
# RAM: bf16 transformer and text encoder, fp32 VAE / image encoder. "none" peaks at the largest
# component (loading.load_components moves each to the GPU as it is loaded), offload modes hold all.
# Steps: Wan 2.1 text-to-video 50 (the authors' default); image-to-video 40, as the Wan 2.1 authors'
# generate.py uses for i2v (the 50 first used here cost 25 % more time for no visible gain on their
# examples); Wan 2.2 A14B 40 (the authors' default for both tasks); TI2V-5B 50 (its model card).
_LIST = [
    Preset(
        name="wan2.1-t2v-1.3b", repo_id="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        pipeline_class="WanPipeline", kind="t2v",
        defaults=_defaults(480, 832, 81, 16, 50, 5.0, WAN21_FLOW_SHIFT),
        spatial_factor=16, temporal_factor=4, download_gb=29, ram_gb={"none": 12, "offload": 15},
        vram_gb={"none": 18, "model": 12, "sequential": 4, "group": 6},
        recommended="Any 24 GB GPU without offload; 12-16 GB: offload='model'; 8 GB: offload='group' "
                    "with vae_tiling=True.",
        description="Wan 2.1 text-to-video, 1.3B: the small, fast one (480p)."),
    Preset(
        name="wan2.1-t2v-14b", repo_id="Wan-AI/Wan2.1-T2V-14B-Diffusers",
        pipeline_class="WanPipeline", kind="t2v",
        defaults=_defaults(720, 1280, 81, 16, 50, 5.0, WAN21_FLOW_SHIFT),
        spatial_factor=16, temporal_factor=4, download_gb=81, ram_gb={"none": 29, "offload": 40},
        vram_gb={"none": 48, "model": 36, "sequential": 8, "group": 12},
        recommended="80 GB GPU (A100/H100) without offload; 40-48 GB: offload='model'; 24 GB: "
                    "offload='group' + vae_tiling=True and 64 GB of system RAM. 480p works too: "
                    "height=480, width=832.",
        description="Wan 2.1 text-to-video, 14B (720p; 480p works too)."),
    Preset(
        name="wan2.1-i2v-14b-480p", repo_id="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
        pipeline_class="WanImageToVideoPipeline", kind="i2v",
        defaults=_defaults(480, 832, 81, 16, 40, 5.0, WAN21_FLOW_SHIFT),
        spatial_factor=16, temporal_factor=4, download_gb=91, ram_gb={"none": 33, "offload": 47},
        vram_gb={"none": 45, "model": 34, "sequential": 7, "group": 10},
        recommended="48 GB+ GPU without offload; 40 GB: offload='model'; 24 GB: offload='group' + "
                    "vae_tiling=True.",
        description="Wan 2.1 image-to-video, 14B, 480p (CLIP image encoder)."),
    Preset(
        name="wan2.1-i2v-14b-720p", repo_id="Wan-AI/Wan2.1-I2V-14B-720P-Diffusers",
        pipeline_class="WanImageToVideoPipeline", kind="i2v",
        defaults=_defaults(720, 1280, 81, 16, 40, 5.0, WAN21_FLOW_SHIFT),
        spatial_factor=16, temporal_factor=4, download_gb=91, ram_gb={"none": 33, "offload": 47},
        vram_gb={"none": 52, "model": 38, "sequential": 9, "group": 13},
        recommended="80 GB GPU without offload; 48 GB: offload='model'; 24 GB: offload='group' + "
                    "vae_tiling=True.",
        description="Wan 2.1 image-to-video, 14B, 720p (CLIP image encoder)."),
    Preset(
        name="wan2.2-ti2v-5b", repo_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
        pipeline_class="WanPipeline", kind="ti2v",
        defaults=_defaults(704, 1280, 121, 24, 50, 5.0, 5.0),
        spatial_factor=32, temporal_factor=4, download_gb=33, latent_channels=48,
        ram_gb={"none": 12, "offload": 23},
        vram_gb={"none": 34, "model": 22, "sequential": 8, "group": 10},
        recommended="24 GB GPU (RTX 4090) with offload='model' + vae_tiling=True; 48 GB+ without "
                    "offload. Text-to-video, or image-to-video when you pass image=.",
        description="Wan 2.2 text/image-to-video, 5B, 720p at 24 fps (high-compression VAE, "
                    "16x16 spatial x patch 2 = 32, 48 latent channels).",
        extra={"expand_timesteps": True}),
    Preset(
        name="wan2.2-t2v-a14b", repo_id="Wan-AI/Wan2.2-T2V-A14B-Diffusers",
        pipeline_class="WanPipeline", kind="t2v",
        defaults=_defaults(720, 1280, 81, 16, 40, 4.0, 12.0, guidance_scale_2=3.0),
        spatial_factor=16, temporal_factor=4, download_gb=126, ram_gb={"none": 29, "offload": 69},
        vram_gb={"none": 76, "model": 38, "sequential": 9, "group": 13},
        recommended="H100/H200 80 GB+: offload='none' only on 141 GB (H200), else offload='model'; "
                    "24-48 GB: offload='group' + vae_tiling=True and 96 GB of system RAM.",
        description="Wan 2.2 text-to-video, two 14B experts (high noise, then low noise).",
        experts=("high_noise", "low_noise"), boundary_ratio=0.875),
    Preset(
        name="wan2.2-i2v-a14b", repo_id="Wan-AI/Wan2.2-I2V-A14B-Diffusers",
        pipeline_class="WanImageToVideoPipeline", kind="i2v",
        defaults=_defaults(720, 1280, 81, 16, 40, 3.5, 5.0, guidance_scale_2=3.5),
        spatial_factor=16, temporal_factor=4, download_gb=126, ram_gb={"none": 29, "offload": 69},
        vram_gb={"none": 76, "model": 38, "sequential": 9, "group": 13},
        recommended="As wan2.2-t2v-a14b: offload='model' on 80 GB, offload='group' + "
                    "vae_tiling=True on 24-48 GB.",
        description="Wan 2.2 image-to-video, two 14B experts, no image encoder.",
        experts=("high_noise", "low_noise"), boundary_ratio=0.9),
    # The other pipelines (wan_nb.models.pipelines). Steps, guidance and shift as the Wan authors' generate.py
    # sets them: VACE and FLF2V 50 steps at shift 16, guidance 5; Animate 20 steps, no guidance
    # (1.0), shift 5, 77-frame clips at 30 fps. Sizes approximate, from parameter counts as above
    # (VACE adds 8 (1.3B: 15) control blocks, about 2.5 B parameters on the 14B).
    Preset(
        name="wan2.1-vace-1.3b", repo_id="Wan-AI/Wan2.1-VACE-1.3B-diffusers",
        pipeline_class="WanVACEPipeline", kind="vace",
        defaults=_defaults(480, 832, 81, 16, 50, 5.0, 16.0),
        spatial_factor=16, temporal_factor=4, download_gb=31, ram_gb={"none": 12, "offload": 16},
        vram_gb={"none": 20, "model": 13, "sequential": 5, "group": 7},
        recommended="24 GB GPU without offload; 12-16 GB: offload='model'; 8 GB: offload='group' + "
                    "vae_tiling=True.",
        description="Wan 2.1 VACE 1.3B (480p): control video, mask (inpaint/outpaint) and reference images."),
    Preset(
        name="wan2.1-vace-14b", repo_id="Wan-AI/Wan2.1-VACE-14B-diffusers",
        pipeline_class="WanVACEPipeline", kind="vace",
        defaults=_defaults(720, 1280, 81, 16, 50, 5.0, 16.0),
        spatial_factor=16, temporal_factor=4, download_gb=92, ram_gb={"none": 35, "offload": 47},
        vram_gb={"none": 56, "model": 42, "sequential": 9, "group": 13},
        recommended="80 GB GPU without offload; 48 GB: offload='model'; 24 GB: offload='group' + "
                    "vae_tiling=True and 64 GB of system RAM. 480p works too: height=480, width=832.",
        description="Wan 2.1 VACE 14B (720p): control video, mask and reference images."),
    Preset(
        name="wan2.1-flf2v-14b-720p", repo_id="Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers",
        pipeline_class="WanImageToVideoPipeline", kind="flf2v",
        defaults=_defaults(720, 1280, 81, 16, 50, 5.0, 16.0),
        spatial_factor=16, temporal_factor=4, download_gb=91, ram_gb={"none": 33, "offload": 47},
        vram_gb={"none": 52, "model": 38, "sequential": 9, "group": 13},
        recommended="80 GB GPU without offload; 48 GB: offload='model'; 24 GB: offload='group' + "
                    "vae_tiling=True.",
        description="Wan 2.1 first-last-frame-to-video, 14B, 720p: image= and last_image= (CLIP image encoder)."),
    Preset(
        name="wan2.2-animate-14b", repo_id="Wan-AI/Wan2.2-Animate-14B-Diffusers",
        pipeline_class="WanAnimatePipeline", kind="animate",
        defaults=_defaults(720, 1280, 77, 30, 20, 1.0, 5.0, mode="animate"),
        spatial_factor=16, temporal_factor=4, download_gb=77, ram_gb={"none": 34, "offload": 50},
        vram_gb={"none": 54, "model": 40, "sequential": 10, "group": 14},
        recommended="80 GB GPU without offload; 48 GB: offload='model'; 24 GB: offload='group' + "
                    "vae_tiling=True and 64 GB of system RAM.",
        description="Wan 2.2 Animate 14B: a character image moved by a pose and a face video "
                    "(mode='animate'), or put into a video in place of a person (mode='replace')."),
]

PRESETS: dict[str, Preset] = {p.name: p for p in _LIST}


def get(name: str) -> Preset | None:
    """The preset called ``name`` (case-insensitive), or None."""
    return PRESETS.get(name.lower())


class PresetList(list):
    """A list of :class:`Preset` that prints as a table (and renders as one in a notebook)."""

    _COLUMNS = ("name", "kind", "resolution", "frames", "download", "ram (none/offload)",
                "vram (none/model/seq/group)")

    def _rows(self):
        for p in self:
            d = p.defaults
            v = p.vram_gb
            yield (p.name, p.kind, f"{d['width']}x{d['height']}", f"{d['num_frames']} @ {d['fps']} fps",
                   f"≈{p.download_gb:g} GB",
                   "/".join(f"{p.ram_gb[m]:g}" for m in ("none", "offload")) + " GB",
                   "/".join(f"{v[m]:g}" for m in OFFLOAD_MODES) + " GB")

    def __str__(self) -> str:
        rows = [self._COLUMNS, *self._rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self._COLUMNS))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

    def _repr_html_(self) -> str:
        import html
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self._COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                       for r in self._rows())
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def presets() -> PresetList:
    """All presets, smallest first, as :class:`Preset` objects (``.as_dict()`` for JSON)."""
    return PresetList(_LIST)
