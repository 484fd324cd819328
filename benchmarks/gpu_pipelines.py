"""Sections of gpu_check.py for the other Wan pipelines: ``v2v``, ``vace``, ``flf2v``, ``animate``.

Each builds its architecture at the released size with random weights (on "meta", then
materialised on the GPU by gpu_check's ``materialize``: seconds, nothing downloaded) and runs it
through ``wan_nb.Generator.from_pipeline`` with its inputs, at a reduced but real-shaped size
(256x448, 17 frames, 2 steps), as a user's first run would:

* ``v2v``: Wan2.1-T2V-1.3B (gpu_check's ``wan2.1-1.3b``) as text-to-video, then video-to-video
  (``WanVideoToVideoPipeline`` on the same modules, strength 0.5) from a 17-frame video: the
  ratio of their seconds per step (v2v adds one VAE encode of the video, not per-step work).
* ``vace``: Wan2.1-VACE-1.3B (1536 wide, 30 layers, control blocks at every second layer, 96
  control channels) and Wan2.1-VACE-14B (5120, 40 layers, control blocks every fifth): control
  video + mask + one reference image; the 1.3B also with the reference image alone.
* ``flf2v``: Wan2.1-FLF2V-14B-720P (Wan2.1-I2V-14B's shape, plus the position embedding of two
  CLIP ViT-H/14 images: 2 x 257 states), a first and a last frame.
* ``animate``: Wan2.2-Animate-14B (5120 wide, 40 layers, 36 input channels, CLIP image
  cross-attention, the 512x512 face motion encoder, face adapters every fifth block), mode
  ``animate`` and mode ``replace``.

One row per run: status, run time, seconds per step, peak GPU memory, output frames. ``--smoke``
runs every case on the CPU with toy widths (the same code paths; numbers mean nothing).

    python benchmarks/gpu_check.py --section v2v,vace,flf2v,animate --out results/
"""
from __future__ import annotations

import time
from typing import Any

SECTIONS = ("v2v", "vace", "flf2v", "animate")
SHAPE = dict(height=256, width=448, num_frames=17)
SMOKE_SHAPE = dict(height=64, width=64, num_frames=9)
COLUMNS = ["arch", "case", "status", "run_s", "s_per_step", "peak_mb", "frames", "params_b", "note"]

_CLIP_H14 = dict(hidden_size=1280, intermediate_size=5120, projection_dim=1024, num_hidden_layers=32,
                 num_attention_heads=16, image_size=224, patch_size=14, hidden_act="gelu")
_WAN_14B = dict(num_attention_heads=40, ffn_dim=13824, num_layers=40)


def _transformer(name: str, g: Any, smoke: bool) -> tuple[str, dict]:
    """(diffusers class, keywords) of the transformer of architecture ``name``."""
    block = dict(g._WAN_BLOCK)
    if name == "vace-1.3b":
        config = dict(block, num_attention_heads=12, ffn_dim=8960, in_channels=16, out_channels=16,
                      vace_layers=list(range(0, 30, 2)), vace_in_channels=96)
        cls = "WanVACETransformer3DModel"
    elif name == "vace-14b":
        config = dict(block, **_WAN_14B, in_channels=16, out_channels=16, vace_layers=list(range(0, 40, 5)),
                      vace_in_channels=96)
        cls = "WanVACETransformer3DModel"
    elif name == "flf2v-14b":
        config = dict(block, **_WAN_14B, in_channels=36, out_channels=16, image_dim=1280, added_kv_proj_dim=5120,
                      pos_embed_seq_len=2 * 257)
        cls = "WanTransformer3DModel"
    elif name == "animate-14b":
        config = dict(block, **_WAN_14B, in_channels=36, latent_channels=16, out_channels=16, image_dim=1280,
                      added_kv_proj_dim=5120, motion_encoder_size=512, motion_style_dim=512, motion_dim=20,
                      motion_encoder_dim=512, face_encoder_hidden_dim=1024, face_encoder_num_heads=4,
                      inject_face_latents_blocks=5)
        cls = "WanAnimateTransformer3DModel"
    else:
        raise ValueError(f"unknown architecture {name!r}")
    if smoke:
        config.update(num_attention_heads=2, attention_head_dim=32, ffn_dim=128, num_layers=2, text_dim=64,
                      freq_dim=32, rope_max_seq_len=32)
        if "vace_layers" in config:
            config["vace_layers"] = [0, 1]
        if "image_dim" in config:
            config.update(image_dim=16, added_kv_proj_dim=64)
        if "pos_embed_seq_len" in config:
            config["pos_embed_seq_len"] = 2 * 17   # the toy CLIP: 32x32 in 8x8 patches + 1
        if cls == "WanAnimateTransformer3DModel":
            config.update(motion_encoder_size=16, motion_style_dim=16, motion_dim=4, motion_encoder_dim=16,
                          face_encoder_hidden_dim=32, face_encoder_num_heads=2, inject_face_latents_blocks=2,
                          motion_encoder_channel_sizes={"4": 16, "8": 16, "16": 16})
    return cls, config


def build(name: str, g: Any, ctx: Any) -> tuple[Any, float]:
    """The pipeline of architecture ``name`` on the device; returns (pipeline, billions of parameters)."""
    import diffusers
    import torch
    from accelerate import init_empty_weights
    from transformers import UMT5Config, UMT5EncoderModel

    from wan_nb.models.loading import FP32_COMPONENTS
    from wan_nb.models.tiny import _tokenizer

    base = g.arch("wan2.1-1.3b", ctx.smoke)   # the shared text encoder and Wan 2.1 VAE shapes
    tokenizer = _tokenizer()
    te = dict(base.text_encoder)
    te["vocab_size"] = te.get("vocab_size") or len(tokenizer)
    cls, config = _transformer(name, g, ctx.smoke)
    parts: dict[str, Any] = {}
    with init_empty_weights():
        parts["transformer"] = getattr(diffusers, cls)(**config)
        parts["text_encoder"] = UMT5EncoderModel(UMT5Config(**te))
        parts["vae"] = diffusers.AutoencoderKLWan(**base.vae)
        if "image_dim" in config:
            from transformers import CLIPVisionConfig, CLIPVisionModel

            clip = _CLIP_H14 if not ctx.smoke else dict(_CLIP_H14, hidden_size=16, intermediate_size=32,
                                                        projection_dim=16, num_hidden_layers=2,
                                                        num_attention_heads=2, image_size=32, patch_size=8)
            parts["image_encoder"] = CLIPVisionModel(CLIPVisionConfig(**clip))
    parts["text_encoder"].tie_weights()
    count = 0
    for index, (part_name, part) in enumerate(parts.items()):
        dtype = torch.float32 if part_name in FP32_COMPONENTS else ctx.dtype
        count += g.materialize(part, ctx.device, dtype, seed=index)
    if "image_encoder" in parts:
        from transformers import CLIPImageProcessor

        size = parts["image_encoder"].config.image_size
        parts["image_processor"] = CLIPImageProcessor(crop_size=size, size={"shortest_edge": size})
    pipeline = {"vace": "WanVACEPipeline", "flf2v": "WanImageToVideoPipeline",
                "animate": "WanAnimatePipeline"}[name.split("-")[0]]
    shift = 5.0 if name.startswith("animate") else 16.0
    scheduler = diffusers.UniPCMultistepScheduler(**dict(g._UNIPC_FLOW, flow_shift=shift))
    pipe = getattr(diffusers, pipeline)(tokenizer=tokenizer, scheduler=scheduler, **parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe, round(count / 1e9, 2)


class Cases:
    """Runs the cases of one section and keeps their rows."""

    def __init__(self, ctx: Any, g: Any) -> None:
        self.ctx, self.g = ctx, g
        self.shape = dict(SMOKE_SHAPE if ctx.smoke else SHAPE)
        self.rows: list[dict] = []

    def generator(self, pipe: Any, name: str) -> Any:
        from wan_nb import Generator

        defaults = dict(self.shape, steps=2, guidance_scale=1.0 if "animate" in name else 5.0, fps=16)
        return Generator.from_pipeline(pipe, f"{name}-random", defaults=defaults, runs_dir=self.ctx.tmp / "runs",
                                       previews=False)

    def run(self, gen: Any, arch_name: str, case: str, params_b: float | None, **inputs: Any) -> dict:
        from wan_nb.models.video_io import frame_count

        clock = self.g.StepClock()
        off = gen.add_step_hook(clock)
        self.g.reset_peak()
        started = time.perf_counter()
        try:
            task, status = self.g.run_task(gen, self.ctx.budget_s, seed=0, **inputs)
            if task.status == "failed":
                status = f"failed: {task._error}"[:300]
        finally:
            off()
        steps = clock.step_seconds()
        done = task.status == "completed"
        row = {"arch": arch_name, "case": case, "status": status, "run_s": round(time.perf_counter() - started, 2),
               "s_per_step": round(sum(steps) / len(steps), 3) if steps else None, "peak_mb": self.g.peak_mb(),
               "frames": frame_count(task.result(timeout=0).video_path) if done else None, "params_b": params_b,
               "note": ""}
        print(f"  {arch_name} {case}: {status} in {row['run_s']} s, peak {row['peak_mb']} MB", flush=True)
        self.rows.append(row)
        return row

    def guarded(self, arch_name: str, fn) -> None:
        """``fn()``; an exception is a failed row, and the next architecture still runs."""
        try:
            fn()
        except Exception as exc:
            import traceback

            traceback.print_exc()
            self.rows.append({"arch": arch_name, "case": "build/run", "status": f"failed: {type(exc).__name__}: "
                              f"{exc}"[:300]})
        finally:
            self.g.free_memory()


def _video(shape: dict, seed: int, side: tuple[int, int] | None = None) -> Any:
    import numpy as np

    height, width = side or (shape["height"], shape["width"])
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(shape["num_frames"], height, width, 3), dtype=np.uint8)


def v2v(c: Cases) -> None:
    def go() -> None:
        a = c.g.arch("wan2.1-1.3b", c.ctx.smoke)
        pipe, params = c.g.build_pipeline(a, c.ctx.device, c.ctx.dtype)
        gen = c.generator(pipe, "wan2.1-t2v-1.3b")
        billions = round(sum(params.values()), 2)
        text = c.run(gen, "wan2.1-t2v-1.3b", "text-to-video", billions)
        video = c.run(gen, "wan2.1-t2v-1.3b", "video-to-video 0.5", billions, video=_video(c.shape, 1), strength=0.5)
        if text.get("s_per_step") and video.get("s_per_step"):
            video["note"] = f"step time {video['s_per_step'] / text['s_per_step']:.3f}x text-to-video"
        gen.close()
    c.guarded("wan2.1-t2v-1.3b", go)


def vace(c: Cases) -> None:
    from PIL import Image

    for name in ("vace-1.3b", "vace-14b"):
        def go(name: str = name) -> None:
            pipe, billions = build(name, c.g, c.ctx)
            gen = c.generator(pipe, name)
            reference = Image.fromarray(_video(c.shape, 3)[0])
            mask = Image.new("L", (c.shape["width"], c.shape["height"]), 0)
            mask.paste(255, (c.shape["width"] // 4, c.shape["height"] // 4,
                             3 * c.shape["width"] // 4, 3 * c.shape["height"] // 4))
            c.run(gen, name, "control + mask + reference", billions, video=_video(c.shape, 2), mask=mask,
                  reference_images=[reference])
            if name == "vace-1.3b":
                c.run(gen, name, "reference only", billions, reference_images=[reference])
            gen.close()
        c.guarded(name, go)


def flf2v(c: Cases) -> None:
    def go() -> None:
        pipe, billions = build("flf2v-14b", c.g, c.ctx)
        gen = c.generator(pipe, "flf2v-14b")
        frames = _video(c.shape, 4)
        c.run(gen, "flf2v-14b", "first + last frame", billions, image=frames[0], last_image=frames[-1])
        gen.close()
    c.guarded("flf2v-14b", go)


def animate(c: Cases) -> None:
    def go() -> None:
        pipe, billions = build("animate-14b", c.g, c.ctx)
        gen = c.generator(pipe, "animate-14b")
        face_side = pipe.transformer.config.motion_encoder_size
        pose, face = _video(c.shape, 5), _video(c.shape, 6, (face_side, face_side))
        character = _video(c.shape, 7)[0]
        c.run(gen, "animate-14b", "animate", billions, image=character, pose_video=pose, face_video=face)
        c.run(gen, "animate-14b", "replace", billions, image=character, pose_video=pose, face_video=face,
              mode="replace", background_video=_video(c.shape, 8), mask=_video(c.shape, 9))
        gen.close()
    c.guarded("animate-14b", go)


def section(name: str, ctx: Any, g: Any) -> list[dict]:
    """gpu_check's runner for section ``name`` (``g`` is the gpu_check module)."""
    cases = Cases(ctx, g)
    {"v2v": v2v, "vace": vace, "flf2v": flf2v, "animate": animate}[name](cases)
    g.print_table(f"{name}: the {name} pipeline through Generator at "
                  f"{cases.shape['width']}x{cases.shape['height']}, {cases.shape['num_frames']} frames, 2 steps",
                  cases.rows, COLUMNS)
    return cases.rows

