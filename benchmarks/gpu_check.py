"""GPU checks (shared/GPU.md): what wan_nb costs and measures at the real Wan sizes, on a CUDA GPU.

Real-size architectures with random weights, built in code (nothing is downloaded; compute and
memory are the same as with the released weights):

* ``wan2.1-1.3b``: WanTransformer3DModel as Wan2.1-T2V-1.3B (patch 1x2x2, 12 heads x 128 = 1536,
  30 layers, ffn 8960, text_dim 4096, freq_dim 256, 16 latent channels, cross_attn_norm,
  qk_norm rms_norm_across_heads, eps 1e-6, rope_max_seq_len 1024), a UMT5-XXL-sized encoder
  (d_model 4096, d_ff 10240, 24 layers, 64 heads x d_kv 64, vocab 256384, 32 relative-attention
  buckets, max distance 128, gated-gelu), AutoencoderKLWan with diffusers' defaults (the Wan 2.1
  VAE: base_dim 96, z_dim 16, dim_mult [1,2,4,4], 2 res blocks, temperal_downsample
  [False,True,True]), UniPCMultistepScheduler (flow_prediction, flow sigmas, flow_shift 3.0: the
  480p setting) — 480x832, 81 frames, guidance 5.0 (two transformer passes a step).
* ``wan2.2-5b``: WanTransformer3DModel as Wan2.2-TI2V-5B (24 heads x 128 = 3072, 30 layers, ffn
  14336, 48 latent channels, text_dim 4096, rest as above), the same encoder, the Wan 2.2 VAE
  (AutoencoderKLWan base_dim 160, decoder_base_dim 256, z_dim 48, in/out channels 12 (RGB
  patchified 2x2), is_residual, patch_size 2, scale_factor_spatial 16, scale_factor_temporal 4),
  WanPipeline(expand_timesteps=True), flow_shift 5.0 — 704x1280, 121 frames (its preset size).

Verified against: the constructor signatures of diffusers 0.42.1 (WanTransformer3DModel,
AutoencoderKLWan, WanPipeline) and the Wan 2.2 VAE config in diffusers'
scripts/convert_wan_to_diffusers.py (``vae22_diffusers_config``) and the published
Wan2.2-TI2V-5B-Diffusers vae/config.json as quoted by several public projects. Not verified here
(no access to the Hub): the 48-value ``latents_mean``/``latents_std`` (irrelevant with random
weights: zeros and ones are used) and the exact UniPC scheduler_config.json of the -Diffusers repos
(the flow settings above are the ones the Wan pipelines document). The tokenizer is wan_nb's tiny
word-level one: prompts are padded to 512 tokens as in the real pipeline, so the encoder does
the real amount of work.

Weights: parameters are created on the "meta" device (accelerate's ``init_empty_weights``; buffers
such as the RoPE tables are real) and then materialised on the GPU in place, normal(0, 1/sqrt(fan_in))
for matrices, ones/zeros for norm scales/biases: seconds instead of minutes for 5.7 B encoder
parameters. Like ``from_pretrained``, the transformer's ``_keep_in_fp32_modules`` stay float32;
the VAE and the CLIP image encoder stay float32 (as wan_nb's loader keeps them); the rest is bfloat16.

Sections (each prints a table, returns rows and, with ``--out``, writes ``gpu_check_<section>.json``
as soon as it ends; a failing section is recorded and the next one runs):

* ``monitor`` (GPU.md 1): wan_nb.protocol.monitor.sample() and nvidia-smi read back to back, (a) while
  memory is filled on purpose in steps up to ~95 % (warning levels must cross 75 % and 90 %), then
  (b) every 0.5 s during a real Generator run.
* ``speed`` / ``speed5b`` (GPU.md 2): seconds per step (step hook with a device sync), decode time
  (post_processing stage), encode time, peak VRAM, then ``Generator.generate`` against the bare
  ``pipe(..., output_type="np")`` + ``write_mp4``, interleaved, medians, ratio (target <= 1.005).
* ``memory`` (GPU.md 3): offload none | model | group | sequential applied with
  ``wan_nb.models.loading.place`` (what ``load_pipeline`` uses), each a fresh pipeline, a short run with a
  time budget: peak VRAM overall, up to the end of denoising and in the decode, time per step and
  decode; then the run's final latents decoded again with VAE tiling on (peak and time).
* ``previews`` (GPU.md 5): preview cost with ``preview_every=1`` and at the default adaptive rate as
  a share of step time; one ``monitor.sample()`` call timed many times.
* ``compile`` (GPU.md 4, optional, not in the default list): attention backends (native SDPA,
  cuDNN, flash through SDPA) and ``torch.compile`` of the transformer; first-call compile time.
* ``quant`` (optional): peak VRAM and seconds per step per ``quant=`` mode (bf16, fp8, int8, nf4,
  GGUF Q8_0 / Q4_0, with and without model offload) at the 1.3B size (benchmarks/gpu_quant.py).

Runs that need no decode (previews, compile) stop after the last denoising step by cancelling the
task from a step hook (the generator checks for cancellation before it decodes).

    python benchmarks/gpu_check.py                        # default sections, on the GPU
    python benchmarks/gpu_check.py --section speed --runs 5 --out results/
    python benchmarks/gpu_check.py --smoke                # every section on CPU at toy sizes

``--smoke`` runs every section on the CPU with drastically reduced sizes (2 layers, width 64,
64x64, 9 frames, 2 steps, float32) so the script can be checked without a GPU; nvidia-smi/NVML
parts then report "no GPU" rows. Smoke numbers mean nothing.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing (the GPU machine)
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("WAN_NB_CACHE", str(ROOT / ".cache" / "bench"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SECTIONS = ("real", "monitor", "speed", "previews", "memory", "speed5b", "compile", "fast",
            "v2v", "vace", "flf2v", "animate",   # these four: benchmarks/gpu_pipelines.py
            "quant",                             # benchmarks/gpu_quant.py
            "planner",                           # benchmarks/gpu_planner.py
            "taehv")                             # benchmarks/gpu_post.py
# The one prepared call (docs/gpu.md): every architecture end to end, then the monitor (< 10 min).
DEFAULT_SECTIONS = ("real", "monitor")
OVERHEAD_TARGET = 1.005
MB = 1024 * 1024
PROMPT = "a red fox running through snow"


# ---------------------------------------------------------------------------------------------
# architectures
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Arch:
    name: str            # Generator model name
    transformer: dict
    text_encoder: dict   # UMT5Config keywords (vocab_size filled in from the tokenizer in smoke)
    vae: dict
    scheduler: dict      # UniPCMultistepScheduler keywords
    pipeline: dict       # extra WanPipeline keywords
    shape: dict          # height, width, num_frames, guidance_scale, fps
    flow_shift: float
    pipeline_class: str = "WanPipeline"
    image_encoder: dict | None = None   # CLIPVisionConfig keywords (Wan 2.1 image-to-video)
    two_experts: bool = False           # Wan 2.2 A14B: transformer_2 of the same shape


_UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                 relative_attention_num_buckets=32, relative_attention_max_distance=128,
                 feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, dropout_rate=0.0,
                 tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
_WAN_BLOCK = dict(patch_size=(1, 2, 2), attention_head_dim=128, text_dim=4096, freq_dim=256,
                  cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
                  num_layers=30)
_UNIPC_FLOW = dict(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000)


def arch(name: str, smoke: bool = False) -> Arch:
    """The real-size architecture ``name`` ("wan2.1-1.3b" | "wan2.2-5b"), or its toy twin."""
    if name == "wan2.1-1.3b":
        real = Arch(
            name="wan2.1-t2v-1.3b-random",
            transformer=dict(_WAN_BLOCK, num_attention_heads=12, ffn_dim=8960, in_channels=16, out_channels=16),
            text_encoder=dict(_UMT5_XXL), vae={}, scheduler=dict(_UNIPC_FLOW, flow_shift=3.0), pipeline={},
            shape=dict(height=480, width=832, num_frames=81, guidance_scale=5.0, fps=16), flow_shift=3.0)
    elif name == "wan2.2-5b":
        real = Arch(
            name="wan2.2-ti2v-5b-random",
            transformer=dict(_WAN_BLOCK, num_attention_heads=24, ffn_dim=14336, in_channels=48, out_channels=48),
            text_encoder=dict(_UMT5_XXL),
            vae=dict(base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                     temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
                     out_channels=12, patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
                     latents_mean=[0.0] * 48, latents_std=[1.0] * 48),
            scheduler=dict(_UNIPC_FLOW, flow_shift=5.0), pipeline={"expand_timesteps": True},
            shape=dict(height=704, width=1280, num_frames=121, guidance_scale=5.0, fps=24), flow_shift=5.0)
    elif name in ("wan2.1-14b", "wan2.2-a14b"):
        # Wan2.1-T2V-14B: 40 heads x 128 = 5120, 40 layers, ffn 13824; each Wan 2.2 A14B expert
        # has this shape, switched at boundary_ratio 0.875 (T2V), flow shift 12.
        a14b = name == "wan2.2-a14b"
        real = Arch(
            name="wan2.2-t2v-a14b-random" if a14b else "wan2.1-t2v-14b-random",
            transformer=dict(_WAN_BLOCK, num_attention_heads=40, ffn_dim=13824, num_layers=40, in_channels=16,
                             out_channels=16),
            text_encoder=dict(_UMT5_XXL), vae={}, scheduler=dict(_UNIPC_FLOW, flow_shift=12.0 if a14b else 5.0),
            pipeline={"boundary_ratio": 0.875} if a14b else {},
            shape=dict(height=720, width=1280, num_frames=81, guidance_scale=4.0 if a14b else 5.0, fps=16,
                       **({"guidance_scale_2": 3.0} if a14b else {})),
            flow_shift=12.0 if a14b else 5.0, two_experts=a14b)
    elif name == "wan2.1-i2v-14b":
        # Wan2.1-I2V-14B: 16 noise + 4 mask + 16 image-latent channels in; cross-attention to CLIP
        # ViT-H/14's penultimate hidden states (1280) through added k/v projections (5120).
        real = Arch(
            name="wan2.1-i2v-14b-480p-random",
            transformer=dict(_WAN_BLOCK, num_attention_heads=40, ffn_dim=13824, num_layers=40, in_channels=36,
                             out_channels=16, image_dim=1280, added_kv_proj_dim=5120),
            text_encoder=dict(_UMT5_XXL), vae={}, scheduler=dict(_UNIPC_FLOW, flow_shift=3.0), pipeline={},
            shape=dict(height=480, width=832, num_frames=81, guidance_scale=5.0, fps=16), flow_shift=3.0,
            pipeline_class="WanImageToVideoPipeline",
            image_encoder=dict(hidden_size=1280, intermediate_size=5120, projection_dim=1024, num_hidden_layers=32,
                               num_attention_heads=16, image_size=224, patch_size=14, hidden_act="gelu"))
    else:
        raise ValueError(f"unknown architecture {name!r}: use one of {', '.join(ARCHITECTURES)}")
    if not smoke:
        return real
    t = dict(real.transformer, num_attention_heads=2, attention_head_dim=32, ffn_dim=128, num_layers=2,
             text_dim=64, freq_dim=32, rope_max_seq_len=32)
    if "image_dim" in t:
        t.update(image_dim=16, added_kv_proj_dim=64)
    image_encoder = None if real.image_encoder is None else dict(
        real.image_encoder, hidden_size=16, intermediate_size=32, projection_dim=16, num_hidden_layers=2,
        num_attention_heads=2, image_size=32, patch_size=8)
    te = dict(real.text_encoder, vocab_size=None, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
              relative_attention_num_buckets=8, relative_attention_max_distance=16)
    v = dict(real.vae, base_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
    if "decoder_base_dim" in v:
        v["decoder_base_dim"] = 16
    return replace(real, transformer=t, text_encoder=te, vae=v, image_encoder=image_encoder,
                   shape=dict(real.shape, height=64, width=64, num_frames=9))


ARCHITECTURES = ("wan2.1-1.3b", "wan2.2-5b", "wan2.1-14b", "wan2.1-i2v-14b", "wan2.2-a14b")


# ---------------------------------------------------------------------------------------------
# building a pipeline with random weights, fast
# ---------------------------------------------------------------------------------------------
def materialize(module: Any, device: Any, dtype: Any, seed: int = 0) -> int:
    """Give every meta parameter of ``module`` real random storage on ``device``; returns the count.

    Matrices/convolutions: normal(0, 1/sqrt(fan_in)), which keeps activations finite through 30
    layers; 1-d weights and norm ``gamma``: ones; biases: zeros. Names in the module's
    ``_keep_in_fp32_modules`` stay float32, as diffusers' ``from_pretrained`` keeps them.
    """
    import torch

    keep = list(getattr(module, "_keep_in_fp32_modules", None) or []) if type(module).__module__.startswith(
        "diffusers") else []
    generator = torch.Generator(device=device).manual_seed(seed)
    count = 0
    made: dict[int, Any] = {}  # tied parameters (UMT5's shared / embed_tokens) stay one tensor
    with torch.no_grad():
        for module_name, sub in module.named_modules(remove_duplicate=False):
            for name, param in list(sub._parameters.items()):
                if param is None:
                    continue
                if id(param) in made:
                    sub._parameters[name] = made[id(param)]
                    continue
                full = f"{module_name}.{name}" if module_name else name
                fp32 = any(k in full.split(".") for k in keep)
                tensor = torch.empty(param.shape, device=device, dtype=torch.float32 if fp32 else dtype)
                if name == "gamma" or (param.ndim == 1 and name != "bias"):
                    tensor.fill_(1.0)
                elif name == "bias":
                    tensor.zero_()
                else:
                    fan_in = max(1, math.prod(param.shape[1:])) if param.ndim > 1 else param.shape[0]
                    tensor.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)
                made[id(param)] = sub._parameters[name] = torch.nn.Parameter(tensor, requires_grad=False)
                count += tensor.numel()
            for name, buffer in list(sub._buffers.items()):
                if buffer is not None:
                    if buffer.device.type == "meta":
                        raise RuntimeError(f"buffer {module_name}.{name} was created on meta; cannot fill it")
                    sub._buffers[name] = buffer.to(device)
    module.eval()
    return count


def build_pipeline(a: Arch, device: str, dtype: Any, seed: int = 0) -> tuple[Any, dict[str, float]]:
    """A Wan pipeline of architecture ``a`` on ``device``; returns (pipeline, {component: params in B}).

    The VAE (and CLIP image encoder) are float32 whatever ``dtype`` is, as wan_nb's loader keeps
    them (``loading.FP32_COMPONENTS``): decode time and memory are what users get.
    """
    import diffusers
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from wan_nb.models.loading import FP32_COMPONENTS
    from wan_nb.models.tiny import _tokenizer  # the tiny model's word-level tokenizer (no download)

    tokenizer = _tokenizer()
    te = dict(a.text_encoder)
    te["vocab_size"] = te.get("vocab_size") or len(tokenizer)
    if te["vocab_size"] < len(tokenizer):
        raise ValueError(f"text encoder vocab {te['vocab_size']} < tokenizer's {len(tokenizer)}")
    parts: dict[str, Any] = {}
    with init_empty_weights():
        parts["transformer"] = WanTransformer3DModel(**a.transformer)
        if a.two_experts:
            parts["transformer_2"] = WanTransformer3DModel(**a.transformer)
        parts["text_encoder"] = UMT5EncoderModel(UMT5Config(**te))
        parts["vae"] = AutoencoderKLWan(**a.vae)
        if a.image_encoder is not None:
            from transformers import CLIPVisionConfig, CLIPVisionModel

            parts["image_encoder"] = CLIPVisionModel(CLIPVisionConfig(**a.image_encoder))
    # Created on meta, the encoder's input embedding is not yet tied to ``shared`` (as loading
    # would tie it): tie first, or the 1 B-parameter table would exist twice.
    parts["text_encoder"].tie_weights()
    params = {}
    for index, (name, part) in enumerate(parts.items()):
        part_dtype = torch.float32 if name in FP32_COMPONENTS else dtype
        params[name] = round(materialize(part, device, part_dtype, seed=seed + index) / 1e9, 3)
    extra: dict[str, Any] = {}
    if a.image_encoder is not None:
        from transformers import CLIPImageProcessor

        size = a.image_encoder["image_size"]
        extra["image_processor"] = CLIPImageProcessor(crop_size=size, size={"shortest_edge": size})
    pipeline_cls = getattr(diffusers, a.pipeline_class)
    pipe = pipeline_cls(tokenizer=tokenizer, scheduler=UniPCMultistepScheduler(**a.scheduler), **parts, **extra,
                        **a.pipeline)
    pipe.set_progress_bar_config(disable=True)
    if device != "cpu":
        torch.cuda.synchronize()
    return pipe, params


# ---------------------------------------------------------------------------------------------
# device helpers
# ---------------------------------------------------------------------------------------------
def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def sync() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def reset_peak() -> None:
    import torch

    if cuda():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_mb(reserved: bool = False) -> float | None:
    """torch's peak since the last reset: allocated (tensors) or reserved (allocator's cache too)."""
    import torch

    if not cuda():
        return None
    torch.cuda.synchronize()
    return round((torch.cuda.max_memory_reserved() if reserved else torch.cuda.max_memory_allocated()) / MB, 1)


def free_memory() -> None:
    import torch

    gc.collect()
    if cuda():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def nvidia_smi(index: int | None = None) -> dict[str, float] | None:
    """memory.used / memory.total (MiB) from nvidia-smi, or None where there is none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    command = [exe, "--query-gpu=memory.used,memory.total", "--format=csv,noheader,nounits"]
    if index is not None:
        command.append(f"--id={index}")
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
        used, total = (float(v) for v in out.stdout.strip().splitlines()[0].split(","))
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return None
    return {"used_mb": used, "total_mb": total}


def environment() -> dict[str, Any]:
    import diffusers
    import torch
    import transformers

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "diffusers": diffusers.__version__, "transformers": transformers.__version__,
           "device": torch.cuda.get_device_name() if cuda() else "cpu (no GPU)"}
    exe = shutil.which("nvidia-smi")
    if exe:
        try:
            env["driver"] = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=10).stdout.strip()
        except (subprocess.SubprocessError, OSError):
            pass
    return env


# ---------------------------------------------------------------------------------------------
# shared state, output
# ---------------------------------------------------------------------------------------------
@dataclass
class Context:
    smoke: bool
    device: str
    dtype: Any
    steps: int
    runs: int
    budget_s: float
    memory_steps: int
    memory_arch: str
    out: Path | None
    tmp: Path
    argv: list[str]
    env: dict[str, Any] = field(default_factory=dict)
    _pipes: dict[str, Any] = field(default_factory=dict)
    params: dict[str, dict[str, float]] = field(default_factory=dict)

    def pipeline(self, arch_name: str) -> Any:
        """The cached on-device (no offload) pipeline of ``arch_name``; built once."""
        if arch_name not in self._pipes:
            self.drop()  # one real-size pipeline on the device at a time
            started = time.perf_counter()
            pipe, params = build_pipeline(arch(arch_name, self.smoke), self.device, self.dtype)
            self.params[arch_name] = params
            print(f"  built {arch_name} ({params}) in {time.perf_counter() - started:.1f} s", flush=True)
            self._pipes[arch_name] = pipe
        return self._pipes[arch_name]

    def drop(self) -> None:
        self._pipes.clear()
        free_memory()

    def generator(self, pipe: Any, arch_name: str, **options: Any):
        from wan_nb import Generator

        a = arch(arch_name, self.smoke)
        defaults = dict(a.shape, steps=self.steps, flow_shift=a.flow_shift)
        options.setdefault("previews", False)
        return Generator.from_pipeline(pipe, a.name, defaults=defaults, runs_dir=self.tmp / "runs", **options)


_TABLES: list[tuple[str, list[str], list[list[str]]]] = []  # everything printed, for the Markdown summary


def print_table(title: str, rows: list[dict], columns: list[str] | None = None) -> None:
    print(f"\n{title}")
    if not rows:
        print("  (no rows)")
        return
    columns = columns or list(dict.fromkeys(k for r in rows for k in r if k != "section"))

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    table = [columns] + [[cell(r.get(c)) for c in columns] for r in rows]
    _TABLES.append((title, columns, table[1:]))
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for n, row in enumerate(table):
        print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))
    sys.stdout.flush()


def write_json(ctx: Context, section: str, rows: list[dict], elapsed: float, error: str | None = None) -> None:
    if ctx.out is None:
        return
    ctx.out.mkdir(parents=True, exist_ok=True)
    payload = {"section": section, "rows": rows, "elapsed_s": round(elapsed, 1), "error": error,
               "environment": ctx.env, "command": "python benchmarks/gpu_check.py " + " ".join(ctx.argv),
               "smoke": ctx.smoke}
    path = ctx.out / f"gpu_check_{section}.json"
    path.write_text(json.dumps(payload, indent=1, default=str))


def write_markdown(ctx: Context) -> None:
    """gpu_check_summary.md: every table printed so far, ready for docs/benchmarks.md."""
    if ctx.out is None:
        return
    env = ctx.env
    lines = [f"Device: {env.get('device')} (driver {env.get('driver', '?')}); torch {env.get('torch')} "
             f"(CUDA {env.get('cuda')}), diffusers {env.get('diffusers')}, transformers {env.get('transformers')}, "
             f"Python {env.get('python')}.", "",
             f"Command: `python benchmarks/gpu_check.py {' '.join(ctx.argv)}`" + (" (smoke: numbers mean nothing)"
                                                                                 if ctx.smoke else ""), ""]
    for title, columns, body in _TABLES:
        lines += [f"**{title}**", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(v.replace("|", "/") for v in row) + " |" for row in body]
        lines.append("")
    (ctx.out / "gpu_check_summary.md").write_text("\n".join(lines))


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def _event_seconds(timestamp: str) -> float:
    import datetime as dt

    return dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc).timestamp()


def stage_durations(events: list[Any]) -> dict[str, float]:
    """Seconds spent in each stage, from the generation_stage events' timestamps (ms precision)."""
    changes = [(e.data["stage"], _event_seconds(e.timestamp)) for e in events if e.type == "generation_stage"]
    out: dict[str, float] = {}
    for (stage, start), (_, end) in zip(changes, changes[1:]):
        out[stage] = round(out.get(stage, 0.0) + end - start, 3)
    return out


class StepClock:
    """A step hook that synchronises the device and stamps each step's end (so per-step times are
    device times, not how far the CPU ran ahead). Optionally cancels after the last step: the
    run then ends without a decode."""

    def __init__(self, stop_after_denoise: bool = False) -> None:
        self.stamps: list[float] = []
        self.latents: Any = None
        self.stop_after_denoise = stop_after_denoise

    def __call__(self, task: Any, step: int, timestep: Any, latents: Any, pipe: Any) -> None:
        sync()
        self.stamps.append(time.perf_counter())
        if step >= int(task.params["steps"]):
            self.latents = latents
            if self.stop_after_denoise:
                task.cancel()

    def step_seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])]


def run_task(gen: Any, budget_s: float, **kwargs: Any) -> tuple[Any, str]:
    """Submit and wait up to ``budget_s``; over budget the task is cancelled. Returns (task, status)."""
    from wan_nb import GenerationCancelled

    task = gen.submit(PROMPT, **kwargs)
    if not task.wait(budget_s):
        task.cancel()
        task.wait(max(60.0, budget_s))
        return task, f"over budget ({budget_s:g} s): cancelled after step {task.current_step}"
    try:
        task.result(timeout=0)
    except GenerationCancelled:
        return task, "stopped after denoising"
    return task, "completed"


# ---------------------------------------------------------------------------------------------
# 1. monitor vs nvidia-smi
# ---------------------------------------------------------------------------------------------
def _paired_sample() -> dict[str, Any]:
    from wan_nb.protocol import monitor

    reading = monitor.sample()
    smi = nvidia_smi(monitor._cuda_device_index() if reading.get("source") == "nvml" else None)
    row = {"monitor_source": reading.get("source"), "monitor_used_mb": reading.get("used_mb"),
           "monitor_total_mb": reading.get("total_mb"), "monitor_pct": reading.get("allocated_percent"),
           "level": reading.get("warning_level"), "torch_allocated_mb": reading.get("allocated_mb"),
           "torch_reserved_mb": reading.get("reserved_mb")}
    if smi is None:
        row.update(smi_used_mb=None, smi_total_mb=None, diff_mb=None, smi_level=None, level_agrees=None)
    else:
        smi_pct = 100.0 * smi["used_mb"] / smi["total_mb"]
        row.update(smi_used_mb=smi["used_mb"], smi_total_mb=smi["total_mb"],
                   diff_mb=round(reading["used_mb"] - smi["used_mb"], 1) if reading.get("source") == "nvml" else None,
                   smi_level=monitor.warning_level(smi_pct))
        row["level_agrees"] = row["smi_level"] == row["level"]
    return row


def section_monitor(ctx: Context) -> list[dict]:
    rows = section_monitor_fill(ctx)
    rows += section_monitor_run(ctx)
    return rows


def section_monitor_fill(ctx: Context) -> list[dict]:
    import torch

    if not cuda():
        row = {"part": "fill", "status": "no GPU", **_paired_sample()}
        print_table("monitor: fill memory on purpose", [row], ["part", "status", "monitor_source", "level"])
        return [row]
    ctx.drop()
    free, total = torch.cuda.mem_get_info()
    blocks: list[Any] = []
    rows = []
    targets = (0.50, 0.70, 0.74, 0.76, 0.80, 0.88, 0.90, 0.92, 0.95)
    status = "ok"
    try:
        for target in targets:
            free, total = torch.cuda.mem_get_info()
            need = int(target * total) - (total - free)
            while need > 0:  # 1 GiB pieces: cudaMalloc each, no single huge request
                piece = min(need, 1 << 30)
                blocks.append(torch.empty(piece, dtype=torch.uint8, device="cuda"))
                need -= piece
            torch.cuda.synchronize()
            time.sleep(0.2)  # let NVML's counters settle
            rows.append({"part": "fill", "target_pct": round(100 * target, 1), **_paired_sample()})
    except torch.cuda.OutOfMemoryError:
        status = f"out of memory before {100 * target:.0f} %"
    finally:
        blocks.clear()
        free_memory()
    time.sleep(0.2)
    rows.append({"part": "fill", "target_pct": "freed", **_paired_sample()})
    levels = [r["level"] for r in rows]
    summary = {"part": "fill-summary", "status": status,
               "levels_seen": sorted(set(levels), key=["normal", "warning", "critical"].index),
               "crossed_75_and_90": {"warning", "critical"} <= set(levels) and levels[-1] == "normal",
               "all_levels_agree_with_smi": all(r.get("level_agrees") for r in rows),
               "max_abs_diff_mb": max((abs(r["diff_mb"]) for r in rows if r.get("diff_mb") is not None),
                                      default=None)}
    rows.append(summary)
    print_table("monitor: fill memory on purpose (monitor.sample() vs nvidia-smi, MiB)", rows[:-1],
                ["target_pct", "monitor_used_mb", "smi_used_mb", "diff_mb", "monitor_pct", "level", "smi_level",
                 "torch_allocated_mb", "torch_reserved_mb"])
    print_table("monitor: fill summary", [summary])
    return rows


def section_monitor_run(ctx: Context) -> list[dict]:
    pipe = ctx.pipeline("wan2.1-1.3b")
    gen = ctx.generator(pipe, "wan2.1-1.3b", monitor_interval=1.0)
    events: list[tuple[float, dict]] = []
    off = gen.subscribe(lambda e: events.append((time.time(), dict(e.data))), types=["vram_monitoring"])
    samples: list[dict] = []
    stop = threading.Event()
    started = time.time()

    def sampler() -> None:
        while not stop.is_set():
            samples.append({"part": "run", "t_s": round(time.time() - started, 2), **_paired_sample()})
            stop.wait(0.5)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    try:
        task, status = run_task(gen, ctx.budget_s, steps=2)
    finally:
        stop.set()
        thread.join(timeout=15)
        off()
        gen.close()
    diffs = [abs(s["diff_mb"]) for s in samples if s.get("diff_mb") is not None]
    # each vram_monitoring event next to the nvidia-smi sample taken nearest in time
    event_diffs = []
    for t, data in events:
        timed = [s for s in samples if s.get("smi_used_mb") is not None]
        if timed and data.get("used_mb") is not None:
            nearest = min(timed, key=lambda s: abs(started + s["t_s"] - t))
            event_diffs.append(abs(data["used_mb"] - nearest["smi_used_mb"]))
    summary = {"part": "run-summary", "status": status, "samples": len(samples),
               "vram_events": len(events),
               "event_device": events[0][1].get("device_name") if events else None,
               "max_abs_diff_mb": round(max(diffs), 1) if diffs else None,
               "median_abs_diff_mb": _median(diffs),
               "events_max_abs_diff_to_nearest_smi_mb": round(max(event_diffs), 1) if event_diffs else None,
               "peak_monitor_pct": max((s["monitor_pct"] for s in samples), default=None)}
    shown = samples[:: max(1, len(samples) // 10)]
    print_table("monitor: during a generation (every 0.5 s, MiB)", shown,
                ["t_s", "monitor_used_mb", "smi_used_mb", "diff_mb", "monitor_pct", "level",
                 "torch_allocated_mb", "torch_reserved_mb"])
    print_table("monitor: run summary", [summary])
    return samples + [summary]


# ---------------------------------------------------------------------------------------------
# 2. real-size speed and overhead
# ---------------------------------------------------------------------------------------------
def section_speed(ctx: Context, arch_name: str = "wan2.1-1.3b") -> list[dict]:
    import numpy as np
    import torch

    from wan_nb.models.video_io import write_mp4

    pipe = ctx.pipeline(arch_name)
    a = arch(arch_name, ctx.smoke)
    gen = ctx.generator(pipe, arch_name)
    negative = gen.spec.defaults.get("negative_prompt") or ""
    shape = {k: a.shape[k] for k in ("height", "width", "num_frames")}
    try:
        # warm-up: first-call costs (cuDNN autotuning of the VAE convolutions, allocator growth)
        run_task(gen, ctx.budget_s, steps=1)
        clock = StepClock()
        off_hook = gen.add_step_hook(clock)
        reset_peak()
        task, status = run_task(gen, ctx.budget_s, steps=ctx.steps)
        timed_peak, timed_reserved = peak_mb(), peak_mb(reserved=True)
        off_hook()
        stages = stage_durations(task.events)
        step_s = clock.step_seconds()

        def bare(seed: int) -> tuple[float, float | None]:
            reset_peak()
            started = time.perf_counter()
            frames = pipe(prompt=PROMPT, negative_prompt=negative, **shape, num_inference_steps=ctx.steps,
                          guidance_scale=a.shape["guidance_scale"], output_type="np",
                          generator=torch.Generator("cpu").manual_seed(seed)).frames[0]
            frames = (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)
            write_mp4(frames, ctx.tmp / f"bare-{seed}.mp4", fps=a.shape["fps"])
            return time.perf_counter() - started, peak_mb()

        def tracked(seed: int) -> tuple[float, float | None]:
            reset_peak()
            started = time.perf_counter()
            gen.generate(PROMPT, seed=seed, progress=False, steps=ctx.steps)
            return time.perf_counter() - started, peak_mb()

        bare_runs, tracked_runs = [], []
        for run in range(ctx.runs):  # interleaved, so drift hits both sides
            bare_runs.append(bare(run))
            tracked_runs.append(tracked(run))
    finally:
        gen.close()
    from wan_nb import relay

    bare_s, generate_s = _median([r[0] for r in bare_runs]), _median([r[0] for r in tracked_runs])
    row = {"arch": arch_name, "shape": f"{shape['width']}x{shape['height']}x{shape['num_frames']}",
           "steps": ctx.steps, "guidance": a.shape["guidance_scale"], "dtype": str(ctx.dtype).replace("torch.", ""),
           "params_b": ctx.params.get(arch_name), "status": status,
           "s_per_step": _median(step_s[1:] or step_s), "step_s_all": [round(s, 3) for s in step_s],
           "encode_s": stages.get("preparing_inputs"), "decode_s": stages.get("post_processing"),
           "save_s": stages.get("saving"), "peak_vram_mb": timed_peak, "peak_reserved_mb": timed_reserved,
           "bare_s": bare_s, "generate_s": generate_s,
           "ratio": round(generate_s / bare_s, 4) if bare_s else None, "target": OVERHEAD_TARGET,
           "runs": ctx.runs, "bare_s_all": [round(r[0], 3) for r in bare_runs],
           "generate_s_all": [round(r[0], 3) for r in tracked_runs],
           "peak_vram_bare_mb": max((r[1] for r in bare_runs if r[1] is not None), default=None),
           "peak_vram_generate_mb": max((r[1] for r in tracked_runs if r[1] is not None), default=None),
           "relay_active": relay._producer is not None}
    print_table(f"speed: {arch_name} {row['shape']}, {ctx.steps} steps, guidance {row['guidance']} "
                f"({ctx.runs} interleaved runs)", [row],
                ["arch", "s_per_step", "encode_s", "decode_s", "save_s", "peak_vram_mb", "peak_reserved_mb", "bare_s",
                 "generate_s",
                 "ratio", "target"])
    return [row]


def section_speed5b(ctx: Context) -> list[dict]:
    return section_speed(ctx, "wan2.2-5b")


# ---------------------------------------------------------------------------------------------
# 3. memory options
# ---------------------------------------------------------------------------------------------
def section_memory(ctx: Context, arch_name: str | None = None) -> list[dict]:
    from wan_nb.models import loading
    from wan_nb.models.presets import get as preset
    from wan_nb.models.video_io import decode_latents

    arch_name = arch_name or ctx.memory_arch
    steps = ctx.memory_steps  # peaks do not grow with the step count; time does
    a = arch(arch_name, ctx.smoke)
    preset = preset("wan2.1-t2v-1.3b" if arch_name == "wan2.1-1.3b" else "wan2.2-ti2v-5b")
    rows = []
    for mode in ("none", "model", "group", "sequential"):
        ctx.drop()
        budget = ctx.budget_s * (2 if mode == "sequential" else 1)
        row: dict[str, Any] = {"arch": arch_name, "offload": mode, "steps": steps, "budget_s": budget,
                               "preset_vram_gb": preset.vram_gb.get(mode) if preset else None}
        pipe = gen = clock = None
        try:
            built = time.perf_counter()
            pipe, _ = build_pipeline(a, ctx.device, ctx.dtype)
            if mode != "none":
                pipe.to("cpu")  # offloading starts from weights in host memory, as after loading
                free_memory()
            # the loader's own placement function (wan_nb.models.specs.load_pipeline calls it)
            row["placement"] = loading.place(pipe, device=ctx.device, offload=mode, vae_tiling=False)
            row["build_s"] = round(time.perf_counter() - built, 1)
            gen = ctx.generator(pipe, arch_name)
            clock = StepClock()
            peaks: dict[str, float | None] = {}

            def denoise_peak(task: Any, step: int, *rest: Any) -> None:
                if step >= int(task.params["steps"]):
                    peaks["denoise"] = peak_mb()
                    peaks["denoise_reserved"] = peak_mb(reserved=True)
                    reset_peak()

            gen.add_step_hook(clock)
            gen.add_step_hook(denoise_peak)
            reset_peak()
            started = time.perf_counter()
            task, status = run_task(gen, budget, steps=steps)
            row["total_s"] = round(time.perf_counter() - started, 2)
            peaks["decode_and_save"] = peak_mb()
            decode_reserved = peak_mb(reserved=True)
            stages = stage_durations(task.events)
            step_s = clock.step_seconds()
            row.update(status=status, s_per_step=_median(step_s) if step_s else None,
                       decode_s=stages.get("post_processing"),
                       peak_until_denoise_end_mb=peaks.get("denoise"), peak_decode_mb=peaks["decode_and_save"],
                       peak_mb=max((v for k, v in peaks.items() if v is not None and "reserved" not in k),
                                   default=None),
                       peak_reserved_mb=max((v for v in (peaks.get("denoise_reserved"), decode_reserved)
                                             if v is not None), default=None))
            rows.append(row)
            if clock.latents is not None and status == "completed":
                # the same decode the generator runs, with VAE tiling on (Generator(vae_tiling=True))
                pipe.vae.enable_tiling()
                reset_peak()
                started = time.perf_counter()
                decode_latents(pipe, clock.latents)
                sync()
                tiled_decode_s = round(time.perf_counter() - started, 2)
                tiled_peak = peak_mb()
                tiled_reserved = peak_mb(reserved=True)
                rows.append({"arch": arch_name, "offload": mode, "vae_tiling": True, "steps": steps,
                             "status": "decode of the run's final latents", "decode_s": tiled_decode_s,
                             "peak_decode_mb": tiled_peak,
                             "peak_until_denoise_end_mb": peaks.get("denoise"),
                             "peak_mb": max((v for v in (peaks.get("denoise"), tiled_peak) if v is not None),
                                            default=None),
                             "peak_reserved_mb": max((v for v in (peaks.get("denoise_reserved"), tiled_reserved)
                                                      if v is not None), default=None),
                             "preset_vram_gb": row["preset_vram_gb"]})
        except Exception as exc:  # one mode failing must not hide the others
            traceback.print_exc()
            row.update(status=f"failed: {type(exc).__name__}: {exc}"[:300])
            if row not in rows:
                rows.append(row)
        finally:
            if gen is not None:
                gen.close()
            del pipe, gen, clock  # weights and latents go before the next build
            free_memory()
    for r in rows:
        r.setdefault("vae_tiling", False)
        if r.get("peak_mb") is not None:
            r["peak_gb"] = round(r["peak_mb"] / 1024, 2)
    print_table(f"memory: {arch_name} {a.shape['width']}x{a.shape['height']}x{a.shape['num_frames']}, "
                f"{steps} steps (peak = torch max_memory_allocated)", rows,
                ["offload", "vae_tiling", "status", "s_per_step", "decode_s", "total_s", "peak_until_denoise_end_mb",
                 "peak_decode_mb", "peak_gb", "peak_reserved_mb", "preset_vram_gb"])
    return rows


# ---------------------------------------------------------------------------------------------
# 5. previews and monitor cost
# ---------------------------------------------------------------------------------------------
def _timed_previewer(gen: Any) -> list[float]:
    previewer = gen._previewer
    costs: list[float] = []
    original = previewer.make_preview

    def make_preview(*args: Any, **kwargs: Any) -> Any:
        sync()  # the step's kernels are done (the sync hook ran first): time only the preview
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            sync()
            costs.append(time.perf_counter() - started)

    previewer.make_preview = make_preview
    return costs


def section_previews(ctx: Context, arch_name: str = "wan2.1-1.3b") -> list[dict]:
    from wan_nb.protocol import monitor
    from wan_nb.previews import install

    pipe = ctx.pipeline(arch_name)
    steps = max(ctx.steps, 3)
    rows = []
    base_step_s = None
    for label, every in (("no previews", "off"), ("preview_every=1", 1), ("default (adaptive)", None)):
        gen = ctx.generator(pipe, arch_name, previews=False)
        clock = StepClock(stop_after_denoise=True)
        gen.add_step_hook(clock)  # first: synchronise, so a preview never waits for the step's kernels
        costs: list[float] = []
        if every != "off":
            gen.preview_every = every
            gen._previewer = install(gen.bus, gen.add_step_hook, every, model=gen.model)
            costs = _timed_previewer(gen)
        try:
            task, status = run_task(gen, ctx.budget_s, steps=steps)
        finally:
            gen.close()
        intervals = clock.step_seconds()
        row = {"arch": arch_name, "case": label, "steps": steps, "status": status,
               "s_per_step": _median(intervals), "previews": len(costs),
               "preview_ms": round(1000 * statistics.median(costs), 2) if costs else None,
               "preview_ms_max": round(1000 * max(costs), 2) if costs else None}
        if every == "off":
            base_step_s = row["s_per_step"]
        if costs and base_step_s:
            # previews cost / denoising time without previews (same steps)
            row["preview_share"] = round(sum(costs) / (base_step_s * steps), 5)
        rows.append(row)
    # monitor sampler: one call timed many times (the generator samples once a second)
    monitor.sample()  # first call initialises NVML
    times = []
    for _ in range(200 if not ctx.smoke else 50):
        started = time.perf_counter()
        monitor.sample()
        times.append(time.perf_counter() - started)
    sample_s = statistics.median(times)
    times.sort()
    rows.append({"arch": arch_name, "case": "monitor.sample()", "status": monitor.sample().get("source"),
                 "sample_ms": round(1000 * sample_s, 3), "sample_ms_p95": round(1000 * times[int(0.95 * len(times))], 3),
                 "s_per_step": base_step_s,
                 # the generator samples once a second on its own thread: sample_s per second of run,
                 # so the same share of every step whatever the step time
                 "sampler_share_at_1s": round(sample_s / 1.0, 6)})
    print_table(f"previews and monitor cost: {arch_name}, {steps} steps", rows,
                ["case", "status", "s_per_step", "previews", "preview_ms", "preview_ms_max", "preview_share",
                 "sample_ms", "sample_ms_p95", "sampler_share_at_1s"])
    return rows


# ---------------------------------------------------------------------------------------------
# 4. fast path (optional)
# ---------------------------------------------------------------------------------------------
def section_compile(ctx: Context, arch_name: str = "wan2.1-1.3b") -> list[dict]:
    import torch

    pipe = ctx.pipeline(arch_name)
    steps = max(ctx.steps, 3)
    rows = []

    def timed(label: str) -> dict:
        gen = ctx.generator(pipe, arch_name)
        clock = StepClock(stop_after_denoise=True)
        gen.add_step_hook(clock)
        marks: list[float] = []
        gen.subscribe(lambda e: marks.append(_event_seconds(e.timestamp))
                      if e.data.get("stage") == "generating" else None, types=["generation_stage"])
        wall0, perf0 = time.time(), time.perf_counter()
        try:
            task, status = run_task(gen, ctx.budget_s * 3, steps=steps)
        finally:
            gen.close()
        intervals = clock.step_seconds()
        first = None
        if marks and clock.stamps:  # from the "generating" stage event to the end of step 1
            first = round((clock.stamps[0] - perf0) - (marks[0] - wall0), 3)
        return {"arch": arch_name, "case": label, "steps": steps, "status": status,
                "s_per_step": _median(intervals), "first_step_s": first}

    backends = ["native", "_native_cudnn", "_native_flash"] if cuda() else ["native"]
    for backend in backends:
        try:
            pipe.transformer.set_attention_backend(backend)
            rows.append(timed(f"attention {backend}"))
        except Exception as exc:
            rows.append({"arch": arch_name, "case": f"attention {backend}",
                         "status": f"failed: {type(exc).__name__}: {exc}"[:300]})
    pipe.transformer.set_attention_backend("native")
    base = rows[0].get("s_per_step")
    backend = "inductor" if cuda() else "eager"  # on CPU (smoke) only the plumbing is checked
    try:
        pipe.transformer.compile(backend=backend)
        first = timed(f"torch.compile ({backend}), first run")
        again = timed(f"torch.compile ({backend}), second run")
        if first.get("first_step_s") is not None and again.get("s_per_step"):
            first["compile_s"] = round(first["first_step_s"] - again["s_per_step"], 2)
        rows += [first, again]
    except Exception as exc:
        rows.append({"arch": arch_name, "case": f"torch.compile ({backend})",
                     "status": f"failed: {type(exc).__name__}: {exc}"[:300]})
    finally:
        ctx.drop()  # the compiled transformer must not leak into later sections
        torch._dynamo.reset()
    for r in rows:
        if base and r.get("s_per_step"):
            r["speedup"] = round(base / r["s_per_step"], 3)
    print_table(f"fast path: {arch_name}, {steps} steps (speedup over native SDPA, eager)", rows,
                ["case", "status", "s_per_step", "first_step_s", "compile_s", "speedup"])
    return rows


def section_real(ctx: Context) -> list[dict]:
    """Every preset architecture through Generator (benchmarks/gpu_real.py)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import gpu_real

    return gpu_real.section_real(ctx, sys.modules[__name__])


def _section_from(module: str, function: str, *args: str) -> Callable[[Context], list[dict]]:
    """A section that lives in its own file beside this one (benchmarks/<module>.py)."""
    def run(ctx: Context) -> list[dict]:
        here = str(Path(__file__).resolve().parent)
        if here not in sys.path:
            sys.path.insert(0, here)
        return getattr(importlib.import_module(module), function)(*args, ctx, sys.modules[__name__])
    return run


section_fast = _section_from("gpu_fast", "section_fast")      # cache modes, attention, compile, planner vs VRAM
section_quant = _section_from("gpu_quant", "section_quant")   # peak VRAM and speed per quant mode
section_planner = _section_from("gpu_planner", "section")     # planner's peak and s/step vs measured
section_taehv = _section_from("gpu_post", "section")          # TAEHV preview/draft vs the VAE: time, PSNR


RUNNERS: dict[str, Callable[[Context], list[dict]]] = {
    "real": section_real, "monitor": section_monitor, "speed": section_speed, "previews": section_previews,
    "memory": section_memory, "speed5b": section_speed5b, "compile": section_compile, "fast": section_fast,
    "quant": section_quant, "planner": section_planner, "taehv": section_taehv}


RUNNERS.update({name: _section_from("gpu_pipelines", "section", name) for name in ("v2v", "vace", "flf2v", "animate")})


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> list[dict]:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", default=",".join(DEFAULT_SECTIONS),
                        help=f"comma-separated, run in this order; from: {', '.join(SECTIONS)} "
                             f"(default: {','.join(DEFAULT_SECTIONS)})")
    parser.add_argument("--smoke", action="store_true", help="CPU, toy sizes, float32: checks the script only")
    parser.add_argument("--steps", type=int, help="denoising steps per run (default 4; smoke 2)")
    parser.add_argument("--runs", type=int, help="interleaved bare/generate pairs (default 3; smoke 1)")
    parser.add_argument("--memory-steps", type=int, default=2, help="steps per run in 'memory' (default 2)")
    parser.add_argument("--memory-arch", default="wan2.1-1.3b", choices=("wan2.1-1.3b", "wan2.2-5b"),
                        help="architecture of the 'memory' section (default wan2.1-1.3b)")
    parser.add_argument("--budget", type=float, help="seconds one run may take before it is cancelled "
                                                     "(default 240; sequential offload gets twice this)")
    parser.add_argument("--out", default=os.environ.get("OUT"),
                        help="folder for gpu_check_<section>.json (default: $OUT when set, else none)")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.section.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        parser.error(f"--section {args.section!r}: unknown {unknown}; choose from {', '.join(SECTIONS)}")
    for name in ("steps", "runs", "budget", "memory_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} {value}: must be at least 1")

    import torch

    if not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA GPU is visible; real sizes need one. Use --smoke to check the script on CPU.")
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        ctx = Context(smoke=args.smoke, device="cpu" if args.smoke else "cuda",
                      dtype=torch.float32 if args.smoke else torch.bfloat16,
                      steps=args.steps or (2 if args.smoke else 4), runs=args.runs or (1 if args.smoke else 3),
                      budget_s=args.budget or (120.0 if args.smoke else 240.0),
                      memory_steps=args.memory_steps, memory_arch=args.memory_arch,
                      out=Path(args.out) if args.out else None, tmp=Path(tmp), argv=argv)
        ctx.env = environment()
        print(f"# gpu_check {' '.join(argv)}\n# {json.dumps(ctx.env)}", flush=True)
        all_rows: list[dict] = []
        for section in sections:
            print(f"\n## {section}", flush=True)
            started = time.perf_counter()
            try:
                rows = RUNNERS[section](ctx)
                error = None
            except Exception as exc:  # recorded; the next section still runs
                traceback.print_exc()
                rows, error = [], f"{type(exc).__name__}: {exc}"
                ctx.drop()
            for row in rows:
                row["section"] = section
            elapsed = time.perf_counter() - started
            write_json(ctx, section, rows, elapsed, error)
            write_markdown(ctx)
            print(f"## {section} done in {elapsed:.0f} s{' (FAILED: ' + error + ')' if error else ''}", flush=True)
            all_rows += rows or [{"section": section, "error": error}]
        ctx.drop()
    return all_rows


if __name__ == "__main__":
    rows = main()
    sys.exit(1 if any(r.get("error") for r in rows) else 0)
