"""One generation, top to bottom: what the worker thread does with one :class:`~wan_nb.task.Task`.

:meth:`TaskRun.run` reads as the list of its steps::

    1. start        status "running", the VRAM sampler
    2. load         the pipeline, once per generator (download and load stages)
    3. encode       the text encoder (``preparing_inputs``)
    4. LoRA         attach and weight the adapters (``applying_lora``)
    5. denoise      ``output_type="latent"``; the step callback reports, pauses and cancels
    6. decode       the VAE (``post_processing``)
    7. save         the MP4 (``saving``)
    8. finish       ``generation_completed``, timings for the next estimate

The pipeline is called in three visible parts so each has its own stage. Cancelling raises
from the step callback, so a cancelled run never pays for a VAE decode.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

from . import eta, models, monitor
from .errors import GenerationCancelled, GenerationError
from .events import EventType, Stage
from .params import public_params
from .task import Result, Task

if TYPE_CHECKING:
    from .generator import Generator

log = logging.getLogger(__name__)

_TIMED = ("loading_model", "post_processing", "saving", "step", "step_unit")


class _StopRequested(Exception):
    """Raised inside the pipeline (from the step callback) to abandon a cancelled run."""


def event_params(task: Task) -> dict[str, Any]:
    """The task's parameters as its events carry them (JSON-safe; a scene names its storyboard)."""
    params = public_params(task.params)
    if task.parent_id:
        params["storyboard_id"] = task.parent_id
    return params


def estimate_duration(gen: "Generator", params: dict[str, Any]) -> float | None:
    """Seconds the whole run should take, from earlier runs of this shape (None if never run)."""
    known = gen._timings.get(eta.shape_key(gen.model, params))
    if not all(k in known for k in ("step", "post_processing", "saving")):
        return None
    loading = 0.0 if gen.pipeline is not None else known.get("loading_model", 0.0)
    return round(known["step"] * params["steps"] + known["post_processing"] + known["saving"] + loading, 2)


def cancel_before_start(gen: "Generator", task: Task) -> None:
    """End a task that was taken off the queue before it ran."""
    TaskRun(gen, task).cancelled()
    gen._task_ended(task)


class TaskRun:
    """The state of one run: progress scale, stage timings, the clock of the denoising steps."""

    def __init__(self, gen: "Generator", task: Task) -> None:
        self.gen = gen
        self.task = task
        self.scale = eta.ProgressScale()
        self.started = time.perf_counter()
        self.stage_started = self.started
        self.durations: dict[str, float] = {}
        self.paused_s = 0.0
        self.sampler: monitor.Sampler | None = None
        self.clock: eta.StepClock | None = None
        self.key = eta.shape_key(gen.model, task.params)
        self.expert: str | None = None

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> None:
        task, gen = self.task, self.gen
        try:
            self.check_cancel()
            task.status = "running"                                    # 1. start
            self.progress("Starting")
            self.sampler = monitor.Sampler(
                lambda reading: self.publish(EventType.VRAM_MONITORING, **reading),
                interval=gen.monitor_interval).start()
            with gen._pipe_lock:
                pipe = self.load_pipeline()                            # 2. load
                self.check_cancel()
                embeds = self.encode_prompt(pipe)                      # 3. encode
                self.check_cancel()
                self.apply_loras(pipe)                                 # 4. LoRA
                self.check_cancel()
                latents = self.denoise(pipe, embeds)                   # 5. denoise
                self.check_cancel()
                frames = self.decode(pipe, latents)                    # 6. decode
            video_path = self.save(frames)                             # 7. save
            self.completed(video_path)                                 # 8. finish
        except _StopRequested:
            self.cancelled()
        except BaseException as exc:
            self.failed(exc)
            if not isinstance(exc, Exception):  # KeyboardInterrupt/SystemExit: report, then honour
                raise
        finally:
            gen._task_ended(task)

    def load_pipeline(self) -> Any:
        gen, task = self.gen, self.task
        if gen._pipe is not None:
            return gen._pipe
        if "diffusers" not in sys.modules:
            self.progress("Importing PyTorch and diffusers")  # seconds, once per process
        on_worker = threading.current_thread()

        def report(kind: str, **fields: Any) -> None:
            if kind == "stage":
                if fields["stage"] != task.stage:
                    self.enter(Stage(fields["stage"]), fields.get("message", ""))
            elif kind == "loading":
                progress = float(fields.pop("progress", 0.0))
                status = fields.pop("status", "")
                self.publish(EventType.MODEL_LOADING_PROGRESS, model_type=gen.model,
                             progress=round(min(max(progress, 0.0), 100.0), 2), status=status,
                             **{k: v for k, v in fields.items() if v is not None})
                task.progress = self.scale.at(task.stage, progress / 100.0)
            if threading.current_thread() is on_worker:
                self.check_cancel()  # downloads report from their own threads: cancel on ours

        # models: a real model with device="auto" and no GPU is refused here, before any download.
        device, dtype = models.resolve_device_dtype(gen.device_request, gen.dtype_request,
                                                    real_model=models.needs_gpu(gen.spec))
        loaded = time.perf_counter()
        # The loader announces downloading_model / loading_model itself: only it knows whether
        # the files are already cached.
        pipe = models.load_pipeline(gen.spec, device=device, dtype=dtype, report=report, offload=gen.offload,
                                    vae_tiling=gen.vae_tiling, vae_slicing=gen.vae_slicing, weights=gen.weights)
        log.debug("loaded %s in %.2fs", gen.model, time.perf_counter() - loaded)
        gen._pipe = pipe
        gen.spec = models.refine(gen.spec, pipe)  # a repo id guessed by name: now read from its files
        gen.device = device
        return pipe

    def encode_prompt(self, pipe: Any) -> tuple[Any, Any]:
        import torch

        p = self.task.params
        self.enter(Stage.PREPARING_INPUTS, "Encoding the prompt")
        with torch.no_grad():
            return pipe.encode_prompt(
                prompt=p["prompt"], negative_prompt=p["negative_prompt"],
                do_classifier_free_guidance=p["guidance_scale"] > 1.0, num_videos_per_prompt=1,
                max_sequence_length=512, device=execution_device(self.gen, pipe))

    def apply_loras(self, pipe: Any) -> None:
        loras = self.gen._loras
        requested = self.task.params["loras"]
        if not loras and not requested:
            return
        weights = requested if requested else loras.weights()
        described = ", ".join(f"{n}={w:g}" for n, w in weights.items()) or "none (LoRAs off)"
        self.enter(Stage.APPLYING_LORA, f"LoRA weights: {described}")
        loras.activate(pipe, weights)

    def denoise(self, pipe: Any, embeds: tuple[Any, Any]) -> Any:
        import torch

        p = self.task.params
        steps = p["steps"]
        cfg = p["guidance_scale"] > 1.0
        models.set_flow_shift(pipe, p.get("flow_shift"))  # models: flow_shift is a generation argument
        from .video import FiniteWatch

        self.finite = FiniteWatch()  # models: which step (if any) made the latents NaN/inf
        experts = models.expert_schedule(pipe, steps)
        self.experts = experts if any(experts) else None
        passes = 2 if cfg else 1
        self.clock = eta.StepClock(steps, self.gen._timings.tail_seconds(self.key), self.experts,
                                   tail_reference=self.gen._timings.reference(self.key), passes=passes)
        self.enter(Stage.GENERATING, f"Denoising: {steps} steps")
        call: dict[str, Any] = dict(
            prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1] if cfg else None,
            height=p["height"], width=p["width"], num_frames=p["num_frames"], num_inference_steps=steps,
            guidance_scale=p["guidance_scale"], generator=torch.Generator("cpu").manual_seed(p["seed"]),
            output_type="latent", callback_on_step_end=self.on_step_end)
        if p.get("guidance_scale_2") is not None:
            call["guidance_scale_2"] = p["guidance_scale_2"]
        if p["image"] is not None:
            call["image"] = p["image"]
        # Wan 2.2 TI2V: an image turns the text-to-video pipeline into its image-to-video twin
        # (same modules); every other model is called as loaded.
        runner = models.pipeline_for_inputs(pipe, p["image"])
        denoise_started = time.perf_counter()
        self.clock.start()
        latents = runner(**call).frames
        step = (time.perf_counter() - denoise_started - self.paused_s) / steps
        self.durations["step"] = step
        self.durations["step_unit"] = step / passes  # per transformer pass: comparable across guidance
        return latents

    def on_step_end(self, pipeline: Any, index: int, timestep: Any, callback_kwargs: dict) -> dict:
        """The pipeline's step callback: time, cancel, report, run the step hooks, pause."""
        task, steps, step = self.task, self.task.params["steps"], index + 1
        self.clock.step_done(step)
        self.finite.observe(step, callback_kwargs.get("latents"))  # models: on the device, no sync
        self.check_cancel()
        expert = self.experts[index] if self.experts else None
        message = f"Step {step}/{steps}"
        extra: dict[str, Any] = {}
        if expert is not None:
            extra["expert"] = expert
            if expert != self.expert and self.expert is not None:
                message = f"Switched to the {expert.replace('_', '-')} expert at step {step}/{steps}"
            self.expert = expert
        for hook in list(self.gen._step_hooks):
            try:
                hook(task, step, timestep, callback_kwargs.get("latents"), pipeline)
            except Exception:
                log.debug("step hook failed", exc_info=True)
        self.progress(message, fraction=step / steps, remaining=self.clock.remaining(), step=step, **extra)
        if task._hold:
            self.hold(pipeline)
        return callback_kwargs

    def hold(self, pipe: Any) -> None:
        """Wait at this step boundary while the task is paused (a cancel ends the wait)."""
        task = self.task
        held = time.perf_counter()
        released = task.release_memory and release_accelerator(self.gen, pipe)
        task.status = "paused"
        self.publish(EventType.GENERATION_PAUSED, stage=task.stage, current_step=task.current_step)
        with task._steer:
            while task._hold and not task.cancel_requested:
                task._steer.wait()
        if released:
            pipe.to(execution_device(self.gen, pipe))
        self.check_cancel()
        task.status = "running"
        self.paused_s += time.perf_counter() - held
        self.clock.start()  # the next step's time starts now: the pause is not a step
        self.publish(EventType.GENERATION_RESUMED, stage=task.stage, current_step=task.current_step)

    def decode(self, pipe: Any, latents: Any) -> Any:
        from .video import decode_latents

        self.finite.check(latents, self.task.params["steps"])  # models: fail before decoding garbage
        self.enter(Stage.POST_PROCESSING, "Decoding latents with the VAE", self.clock.tail())
        frames = decode_latents(pipe, latents)
        models.release(pipe)  # models: the decode ran after the pipeline call freed its hooks
        self.progress(f"Decoded {frames.shape[0]} frames", fraction=1.0,
                      remaining=self.gen._timings.get(self.key).get("saving"))
        return frames

    def save(self, frames: Any) -> Any:
        from .video import write_mp4

        self.enter(Stage.SAVING, "Writing MP4", self.gen._timings.get(self.key).get("saving"))
        video_path = self.task.run_dir / "video.mp4"
        write_mp4(frames, video_path, fps=self.task.params["fps"], metadata=self.gen._recorder.mp4_tags(self.task.id))
        self.progress(f"Saved {video_path.name}", fraction=1.0, remaining=0.0)
        self.durations[Stage.SAVING.value] = time.perf_counter() - self.stage_started
        return video_path

    def completed(self, video_path: Any) -> None:
        task, gen = self.task, self.gen
        total = round(time.perf_counter() - self.started, 3)
        result = Result(task_id=task.id, video_path=video_path, params=public_params(task.params),
                        seed=task.seed, model=gen.model, duration_s=total, run_dir=task.run_dir)
        self.stop_sampler()
        gen._timings.record(self.key, {k: v for k, v in self.durations.items() if k in _TIMED})
        task.status, task._result = "completed", result
        self.stage(Stage.COMPLETED, "Done", stage_progress=100.0)
        task.progress = self.scale.complete()
        self.publish(EventType.DETAILED_GENERATION_PROGRESS, stage=Stage.COMPLETED.value, progress=100.0,
                     message="Done", estimated_time_remaining=0.0, current_step=task.current_step,
                     total_steps=task.params["steps"])
        self.publish(EventType.GENERATION_COMPLETED, output_path=str(video_path), duration_s=total,
                     params=event_params(task), seed=task.seed)

    def cancelled(self) -> None:
        task = self.task
        self.stop_sampler()
        release_hooks(self.gen)  # models: offload hooks back to rest, GPU memory given back
        stage = task.stage
        task.status, task._error = "cancelled", GenerationCancelled(task.id, stage, task.current_step)
        self.stage(Stage.CANCELLED, f"Cancelled during {stage}")
        self.publish(EventType.GENERATION_CANCELLED, stage=stage, current_step=task.current_step)

    def failed(self, exc: BaseException) -> None:
        task = self.task
        self.stop_sampler()
        stage = task.stage
        release_hooks(self.gen)  # models: offload hooks back to rest, GPU memory given back
        free_accelerator_memory()
        error_type = type(exc).__name__
        message = str(exc) or error_type
        log.debug("task %s failed in %s:\n%s", task.id, stage, traceback.format_exc())
        error = GenerationError(f"{error_type} during {stage}: {message}", task_id=task.id,
                                stage=stage, error_type=error_type)
        error.__cause__ = exc
        task.status, task._error = "failed", error
        self.stage(Stage.FAILED, f"{error_type}: {message}")
        self.publish(EventType.GENERATION_FAILED, stage=stage, error_type=error_type, error=message)

    # -- reporting ---------------------------------------------------------------------------
    def check_cancel(self) -> None:
        if self.task.cancel_requested:
            raise _StopRequested()

    def publish(self, type: str, **data: Any) -> None:
        self.gen._bus.publish(self.task.id, type, **data)

    def stage(self, stage: Stage, message: str, stage_progress: float = 0.0) -> None:
        self.task.stage = stage.value
        self.publish(EventType.GENERATION_STAGE, stage=stage.value, stage_progress=stage_progress,
                     stage_message=message)

    def enter(self, stage: Stage, message: str, remaining: float | None = None) -> None:
        """Move to ``stage``: time the one left, announce the new one."""
        now = time.perf_counter()
        self.durations[self.task.stage] = self.durations.get(self.task.stage, 0.0) + now - self.stage_started
        self.stage_started = now
        self.stage(stage, message)
        self.progress(message, remaining=remaining)

    def progress(self, message: str, *, fraction: float = 0.0, remaining: float | None = None,
                 step: int | None = None, **extra: Any) -> None:
        task = self.task
        task.progress = self.scale.at(task.stage, fraction)
        if step is not None:
            task.current_step = step
        self.publish(EventType.DETAILED_GENERATION_PROGRESS, stage=task.stage, progress=task.progress,
                     message=message, estimated_time_remaining=None if remaining is None else round(remaining, 3),
                     current_step=task.current_step, total_steps=task.params["steps"], **extra)

    def stop_sampler(self) -> None:
        if self.sampler is not None:
            self.sampler.stop(final_reading=True)
            self.sampler = None


# -- the accelerator ----------------------------------------------------------------------------
def execution_device(gen: "Generator", pipe: Any) -> Any:
    """Where the pipeline computes. diffusers finds it by walking every module's hooks
    (milliseconds a call), so it is looked up once per pipeline object and again after
    ``run_on_worker``, the one place user code may move the pipeline."""
    cached = gen._exec_device
    if cached is not None and cached[0] is pipe:
        return cached[1]
    device = getattr(pipe, "_execution_device", None) or gen.device
    gen._exec_device = (pipe, device)
    return device


def release_hooks(gen: "Generator") -> None:
    """After a run that ended early: models.release puts model-offload hooks back to rest."""
    if gen._pipe is not None:
        models.release(gen._pipe)
    free_accelerator_memory()


def free_accelerator_memory() -> None:
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except Exception:
        pass


def release_accelerator(gen: "Generator", pipe: Any) -> bool:
    """While a task is paused: move the pipeline to the CPU; True if it was moved."""
    device = str(execution_device(gen, pipe) or "cpu")
    moved = False
    if gen.offload == "none" and not device.startswith("cpu") and hasattr(pipe, "to"):
        pipe.to("cpu")
        moved = True
    elif gen.offload != "none":
        models.release(pipe)  # the offload hooks load each model back when the next step needs it
    free_accelerator_memory()
    return moved
