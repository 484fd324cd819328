"""The memory planner: which offload and quantization make a model fit a GPU, and which is fastest.

``wan_nb.plan("wan2.1-t2v-14b", gpu_gb=24, ram_gb=64)`` counts each component's parameters
exactly (its real config instantiated on the meta device: :mod:`wan_nb.fast.planner_counts`, no
download), prices them per storage format, estimates the peak GPU and host memory of every
offload x quantization choice at the model's resolution and frame count, and picks the fastest
choice that fits. ``Generator(..., plan="auto")`` applies it.

The estimate's basis is printed with the table (:data:`BASIS`): weights are exact byte counts;
activations are formulas from the latent token count, not measurements; the relative speeds are
rules of thumb. ``benchmarks/gpu_fast.py`` measures the predicted peaks on a real GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from wan_nb.fast.planner_counts import ComponentCount, count_components, tiny_components

__all__ = ["Plan", "PlanRow", "plan", "QUANT_BYTES", "BASIS"]

GB = 1e9
OFFLOADS = ("none", "model", "group", "sequential")
# Bytes per quantizable weight (nn.Linear) in each storage format, scales included: int8 and fp8
# keep one bf16 scale per output row (~0.1 %), nf4 one fp32 absmax per 64 weights (double-quantized
# to ~0.53 B), GGUF blocks: Q8_0 34 B / 32 weights, Q6_K 210 B / 256, Q5_K 176 / 256, Q4_K 144 / 256.
QUANT_BYTES: dict[str | None, float] = {None: 2.0, "fp8": 1.0, "int8": 1.0, "nf4": 0.53,
                                        "gguf:Q8_0": 34 / 32, "gguf:Q6_K": 210 / 256,
                                        "gguf:Q5_K_M": 176 / 256, "gguf:Q4_K_M": 144 / 256}
PLANNED_QUANTS: tuple[str | None, ...] = (None, "fp8", "int8", "nf4", "gguf:Q8_0", "gguf:Q4_K_M")
# Relative time per denoising step (rules of thumb from the diffusers docs and community
# benchmarks, not measured here): offload moves weights, quantized weights are cast back to bf16.
OFFLOAD_COST = {"none": 1.0, "model": 1.05, "group": 1.3, "sequential": 8.0}
QUANT_COST: dict[str | None, float] = {None: 1.0, "fp8": 1.05, "int8": 1.15, "nf4": 1.35,
                                       "gguf:Q8_0": 1.2, "gguf:Q6_K": 1.25, "gguf:Q5_K_M": 1.25,
                                       "gguf:Q4_K_M": 1.3}
CONTEXT_GB = 1.0          # CUDA context and allocator slack, subtracted from the card's memory
HEADROOM = 0.95           # and plan to use at most this share of the rest
RAM_BASE_GB = 3.0         # Python, torch, diffusers, the tokenizer
RAM_SHARE = 0.85

BASIS = (
    "Basis: weights = exact parameter counts from the real configs on the meta device x bytes per "
    "format (Linear weights quantized, the rest bf16; VAE and CLIP fp32). Activations: denoise = "
    "latent tokens x (2 x ffn + 6 x width) x 2 B (one pass at a time, flash/SDPA attention: no "
    "tokens^2 term); encode = 512 tokens of UMT5 (~0.2 GB); decode = 4 frames x H x W x the VAE's "
    "last channels x 4 B x 6 live buffers (tiles of 256x256 with VAE tiling). Offload: none = every "
    "component on the GPU; model = one component at a time; group = what lies outside the "
    "repeated blocks plus two blocks; sequential = two of the largest single module. Host RAM: the "
    "largest component without offload, all of them with. Fits: peak <= (card - 1 GB) x 0.95 and "
    "RAM <= 85 %. Speed: rule-of-thumb factors (offload none 1, model 1.05, group 1.3, sequential "
    "8; fp8 1.05, int8 1.15, nf4 1.35, GGUF 1.2-1.3), not measurements.")


@dataclass(frozen=True)
class PlanRow:
    offload: str
    quant: str | None
    vram_gb: float
    ram_gb: float
    vae_tiling: bool
    fits: bool
    speed: float            # relative time per step (1.0 = bf16 on the GPU, no offload)
    weights_gb: float       # all weights in this format
    note: str = ""

    @property
    def applicable(self) -> bool:
        """Generator(plan="auto") can apply it without a file the user must supply."""
        return self.quant is None or not self.quant.startswith("gguf:")


@dataclass
class Plan:
    model: str
    gpu_gb: float
    ram_gb: float
    shape: dict[str, int]
    components: list[ComponentCount]
    rows: list[PlanRow] = field(default_factory=list)

    @property
    def best(self) -> PlanRow | None:
        """The fastest row that fits (and needs no GGUF file), ties going to the better format."""
        order = {q: i for i, q in enumerate(PLANNED_QUANTS)}
        fitting = [r for r in self.rows if r.fits and r.applicable]
        return min(fitting, key=lambda r: (r.speed, order.get(r.quant, 99)), default=None)

    def quant_argument(self, row: PlanRow | None = None) -> dict[str, str] | None:
        """``Generator(quant=...)`` for ``row`` (default: the best): its format on every transformer
        and the text encoder, the VAE and CLIP left as they are."""
        row = row or self.best
        if row is None or row.quant is None:
            return None
        return {c.name: row.quant for c in self.components if c.kind in ("transformer", "umt5")}

    def __str__(self) -> str:
        s = self.shape
        lines = [f"Memory plan for {self.model} at {s['width']}x{s['height']}, {s['num_frames']} frames, "
                 f"on a {self.gpu_gb:g} GB GPU with {self.ram_gb:g} GB RAM", "",
                 _table(["component", "parameters", *(_fmt_quant(q) for q in PLANNED_QUANTS)],
                        [[c.name, f"{c.params / 1e9:.3f} B",
                          *(f"{component_bytes(c, q) / GB:.2f} GB" for q in PLANNED_QUANTS)]
                         for c in self.components]), ""]
        best = self.best
        rows = sorted(self.rows, key=lambda r: (not r.fits, r.speed))
        lines.append(_table(["", "offload", "quant", "peak VRAM", "peak RAM", "vae_tiling", "fits", "speed", "note"],
                            [["->" if r is best else "", r.offload, _fmt_quant(r.quant), f"{r.vram_gb:.1f} GB",
                              f"{r.ram_gb:.1f} GB", "yes" if r.vae_tiling else "no", "yes" if r.fits else "no",
                              f"x{r.speed:.2f}", r.note] for r in rows]))
        lines.append("")
        if best is None:
            lines.append("Nothing fits: lower height/width/num_frames, or use a smaller model.")
        else:
            quant = self.quant_argument(best)
            lines.append(f"Best: offload={best.offload!r}, quant={quant!r}, vae_tiling={best.vae_tiling} "
                         f"(Generator(..., plan='auto') applies it)")
        import textwrap

        lines += ["", *textwrap.wrap(BASIS, 100)]
        return "\n".join(lines)

    def __repr__(self) -> str:
        best = self.best
        return (f"Plan({self.model!r}, gpu_gb={self.gpu_gb:g}, ram_gb={self.ram_gb:g}, best="
                f"{(best.offload, best.quant) if best else None})")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython shows the table
        printer.text(str(self))


def _fmt_quant(q: str | None) -> str:
    return "bf16" if q is None else q


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows])


# ---------------------------------------------------------------------------------------------
# bytes
# ---------------------------------------------------------------------------------------------
def component_bytes(c: ComponentCount, quant: str | None) -> float:
    """Bytes of component ``c`` stored with ``quant`` (VAE and CLIP stay fp32, unquantized)."""
    if c.fp32:
        return 4.0 * c.params
    q = quant if c.kind in ("transformer", "umt5") else None
    return QUANT_BYTES[q] * c.quantizable + 2.0 * (c.params - c.quantizable)


def _scaled(c: ComponentCount, params: int, quant: str | None) -> float:
    """Bytes of ``params`` parameters of ``c`` (a block, a module) in ``quant``."""
    return component_bytes(c, quant) * params / max(c.params, 1)


# ---------------------------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------------------------
def activation_bytes(components: list[ComponentCount], shape: dict[str, int], tiling: bool) -> dict[str, float]:
    """Estimated working memory of each stage (encode, denoise, decode) in bytes; see BASIS."""
    h, w, f = shape["height"], shape["width"], shape["num_frames"]
    by_kind = {c.kind: c for c in components}
    vae = by_kind.get("vae")
    z_dim = (vae.config.get("z_dim", 16) if vae else 16)
    spatial = 16 if z_dim == 48 else 8
    transformer = by_kind["transformer"]
    cfg = transformer.config
    patch = (cfg.get("patch_size") or (1, 2, 2))[1]
    tokens = ((f - 1) // 4 + 1) * (h // (spatial * patch)) * (w // (spatial * patch))
    width = cfg.get("num_attention_heads", 12) * cfg.get("attention_head_dim", 128)
    denoise = tokens * (2 * cfg.get("ffn_dim", 4 * width) + 6 * width) * 2.0
    te = by_kind.get("umt5")
    encode = 512 * (2 * te.config.get("d_ff", 10240) + 6 * te.config.get("d_model", 4096)) * 2.0 if te else 0.0
    encode += 0.1 * GB if te else 0.0
    # The Wan VAE decodes causally, one latent frame (4 video frames) at a time; its last stage
    # runs at full resolution with base_dim channels (Wan 2.2: decoder_base_dim on 2x2 patches).
    channels = 96.0
    if vae is not None:
        channels = vae.config.get("base_dim", 96) if z_dim != 48 else vae.config.get("decoder_base_dim", 256) / 4
    area = h * w
    if tiling:
        area = min(area, 256 * 256 * 1.5)  # a tile and its blended overlap
    decode = 4 * area * channels * 4.0 * 6 + 3 * f * h * w * 4.0  # + the decoded video itself
    return {"encode": encode, "denoise": denoise, "decode": decode}


def peak_bytes(components: list[ComponentCount], offload: str, quant: str | None,
               acts: dict[str, float]) -> tuple[float, float]:
    """(peak GPU bytes, peak host bytes) of one offload x quant choice."""
    sizes = {c.name: component_bytes(c, quant) for c in components}
    total = sum(sizes.values())
    stage_of = {"umt5": "encode", "clip": "encode", "transformer": "denoise", "vae": "decode"}
    ram = RAM_BASE_GB * GB + (max(sizes.values()) if offload == "none" else total)
    if offload == "none":
        return total + max(acts.values()), ram
    peaks = []
    for c in components:
        act = acts[stage_of[c.kind]]
        if offload == "model" or (offload == "group" and (c.kind == "vae" or not c.block)):
            resident = sizes[c.name]  # group offload leaves the VAE whole (loading.place)
        elif offload == "group":
            resident = _scaled(c, c.outside, quant) + 2 * _scaled(c, c.block, quant)
        else:  # sequential: each module's weights arrive just before it runs
            resident = 2 * _scaled(c, c.largest_module, quant)
        peaks.append(resident + act)
    return max(peaks), ram


# ---------------------------------------------------------------------------------------------
# the plan
# ---------------------------------------------------------------------------------------------
def _components_of(model: str) -> tuple[str, list[ComponentCount], dict[str, Any]]:
    from wan_nb.models import specs as models
    from wan_nb.fast.arch_configs import arch_for

    spec = models.resolve(model)
    if spec.builder:
        return spec.name, count_components(tiny_components(spec.builder)), spec.defaults
    from wan_nb.models.presets import PRESETS

    by_repo = {p.repo_id.lower(): p.name for p in PRESETS.values()}  # a preset's repo id plans as the preset
    arch = arch_for(spec.preset or by_repo.get(str(spec.source).lower(), spec.name))
    if arch is None:
        raise ValueError(f"plan({model!r}): the planner knows the presets ({', '.join(_preset_names())}) and "
                         "the tiny models; for another folder or repo, plan the preset of the same "
                         "architecture (e.g. wan_nb.plan('wan2.1-t2v-14b'))")
    return spec.name, count_components(arch), spec.defaults


def _preset_names() -> list[str]:
    from wan_nb.fast.arch_configs import ARCHS

    return list(ARCHS)


def plan(model: str, gpu_gb: float = 24, ram_gb: float = 64, *, height: int | None = None,
         width: int | None = None, num_frames: int | None = None) -> Plan:
    """Every offload x quant choice for ``model`` on a ``gpu_gb`` card with ``ram_gb`` of RAM."""
    for name, value in (("gpu_gb", gpu_gb), ("ram_gb", ram_gb)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name}={value!r}: give the memory in GB as a positive number, e.g. {name}=24")
    name, components, defaults = _components_of(model)
    shape = {"height": int(height or defaults.get("height", 480)), "width": int(width or defaults.get("width", 832)),
             "num_frames": int(num_frames or defaults.get("num_frames", 81))}
    usable = max(gpu_gb - CONTEXT_GB, 0.0) * HEADROOM * GB
    result = Plan(model=name, gpu_gb=float(gpu_gb), ram_gb=float(ram_gb), shape=shape, components=components)
    acts = {t: activation_bytes(components, shape, tiling=t) for t in (False, True)}
    for offload in OFFLOADS:
        for quant in PLANNED_QUANTS:
            vram, ram = peak_bytes(components, offload, quant, acts[False])
            tiling = False
            if vram > usable:
                tiled, _ = peak_bytes(components, offload, quant, acts[True])
                if tiled < vram and tiled <= usable:
                    vram, tiling = tiled, True
            fits = vram <= usable and ram <= ram_gb * GB * RAM_SHARE
            note = "needs a .gguf file (quant='gguf:<file>')" if quant and quant.startswith("gguf:") else ""
            if ram > ram_gb * GB * RAM_SHARE:
                note = (note + "; " if note else "") + "not enough RAM"
            result.rows.append(PlanRow(offload=offload, quant=quant, vram_gb=round(vram / GB, 2),
                                       ram_gb=round(ram / GB, 2), vae_tiling=tiling, fits=fits,
                                       speed=round(OFFLOAD_COST[offload] * QUANT_COST[quant], 3),
                                       weights_gb=round(sum(component_bytes(c, quant) for c in components) / GB, 2),
                                       note=note))
    return result
