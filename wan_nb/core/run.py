"""One generation, top to bottom: what the worker thread does with one :class:`~wan_nb.core.task.Task`.

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

A run sees its generator only through a :class:`RunContext`: the pipeline holder, the event
sink, the timing store, the LoRA registry, the step hooks and the end-of-task callback.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from wan_nb.core import eta
from wan_nb.core import resume as checkpoints
from wan_nb.fast import options as fast_path
from wan_nb.models import few_step as fast_presets
from wan_nb.models import specs as models
from wan_nb.protocol import monitor
from wan_nb.models import pipelines
from wan_nb.core.lora_registry import LoraRegistry
from wan_nb.core import lora_steps
from wan_nb.fast.cache import cache_for_run
from wan_nb.models.guided_call import guided_call
from wan_nb.models.guidance import describe as describe_guidance
from wan_nb.core.engine import EventSink
from wan_nb.protocol.errors import GenerationCancelled, GenerationError
from wan_nb.protocol.events import EventType, Stage
from wan_nb.core.holder import PipelineHolder
from wan_nb.core.params import public_params
from wan_nb.runs.layout import ORIGINAL_NAME, VIDEO_NAME
from wan_nb.core.task import Result, Task
from wan_nb.post.stage import fetch_post_files

log = logging.getLogger(__name__)

_TIMED = ("loading_model", "post_processing", "saving", "step", "step_unit")


@dataclass
class RunContext:
    """What a run needs of the generator it runs for (and nothing else)."""

    holder: PipelineHolder
    sink: EventSink
    timings: eta.TimingStore
    loras: LoraRegistry = field(default_factory=LoraRegistry)
    step_hooks: list[Callable[..., Any]] = field(default_factory=list)
    monitor_interval: float = 1.0
    #: container tags for a task's MP4 (its recipe), asked for as the MP4 is written
    mp4_tags: Callable[[str], dict[str, str]] = lambda task_id: {}
    #: seconds a run of these params should take before any was timed (the memory plan's estimate), or None
    first_estimate: Callable[[dict[str, Any]], float | None] = lambda params: None
    #: called once a task's last event is published (journal closed, queue file updated, done)
    on_ended: Callable[[Task], None] = Task.mark_done
    #: the TAEHV file (path or "owner/repo/file") for decode="taehv"; None: the published one for the latents
    taehv_source: str | None = None
    #: denoising checkpoints: "auto" (paced by cost), N (every N steps) or False (wan_nb.core.checkpoint)
    checkpoints: Any = "auto"

    @property
    def model(self) -> str:
        return self.holder.model


class _StopRequested(Exception):
    """Raised inside the pipeline (from the step callback) to abandon a cancelled run."""


def event_params(task: Task) -> dict[str, Any]:
    """The task's parameters as its events carry them (JSON-safe; a scene names its storyboard)."""
    params = public_params(task.params)
    if task.parent_id:
        params["storyboard_id"] = task.parent_id
    return params


def estimate_duration(ctx: RunContext, params: dict[str, Any]) -> float | None:
    """Seconds the whole run should take, from earlier runs of this shape (None if never run)."""
    known = ctx.timings.get(eta.shape_key(ctx.model, params))
    if not all(k in known for k in ("step", "post_processing", "saving")):
        return ctx.first_estimate(params)  # never timed here: the plan's estimate (or None)
    loading = 0.0 if ctx.holder.loaded else known.get("loading_model", 0.0)
    steps = pipelines.total_steps(params)   # Animate: segments x steps
    return round(known["step"] * steps + known["post_processing"] + known["saving"] + loading, 2)


def cancel_before_start(ctx: RunContext, task: Task) -> None:
    """End a task that was taken off the queue before it ran."""
    TaskRun(ctx, task).end.cancelled()
    ctx.on_ended(task)


#: the parameters of a load-only task (no frames to make; what a run's bookkeeping reads)
LOAD_PARAMS = {"prompt": "", "seed": 0, "steps": 0, "height": 0, "width": 0, "num_frames": 0, "purpose": "load"}


def load_as_task(ctx: RunContext, task: Task) -> Any:
    """Load the pipeline under ``task``'s id (``run_on_worker`` before any run); the pipeline.

    Its stream reads like a short generation: ``generation_started`` (``purpose: "load"``), the
    loading stages and ``model_loading_progress``, then ``generation_completed`` with an empty
    ``output_path`` (or ``generation_failed`` with the loader's error, which is raised too).
    """
    run = TaskRun(ctx, task)
    ctx.sink.publish(task.id, EventType.GENERATION_STARTED, model_type=ctx.model, params=event_params(task),
                     estimated_duration=None, purpose="load")
    task.status = "running"
    run.stage(Stage.INITIALIZING, "Loading the model before run_on_worker")
    try:
        pipe = run.load_pipeline()
    except BaseException as exc:
        run.end.failed(exc)
        ctx.on_ended(task)
        raise
    duration = round(time.perf_counter() - run.started, 3)
    task.set_outcome("completed")
    run.stage(Stage.COMPLETED, f"Loaded {ctx.model}", stage_progress=100.0)
    run.publish(EventType.GENERATION_COMPLETED, output_path="", duration_s=duration, params=event_params(task),
                seed=0)
    ctx.on_ended(task)
    return pipe


class RunEnd:
    """How a run ends: the task's outcome, its last stage and its one terminal event."""

    def __init__(self, run: "TaskRun") -> None:
        self.run = run

    def completed(self, video_path: Any) -> None:
        run = self.run
        task, ctx = run.task, run.ctx
        total = round(time.perf_counter() - run.started, 3)
        result = Result(task_id=task.id, video_path=video_path, params=public_params(task.params),
                        seed=task.seed, model=ctx.model, duration_s=total, run_dir=task.run_dir)
        run.stop_sampler()
        run.checkpoints.discard()  # the video is saved: nothing left to resume
        ctx.timings.record(run.key, {k: v for k, v in run.durations.items() if k in _TIMED})
        task.set_outcome("completed", result=result)
        run.stage(Stage.COMPLETED, "Done", stage_progress=100.0)
        task.progress = run.scale.complete()
        run.publish(EventType.DETAILED_GENERATION_PROGRESS, stage=Stage.COMPLETED.value, progress=100.0,
                    message="Done", estimated_time_remaining=0.0, current_step=task.current_step,
                    total_steps=run.total_steps)
        run.publish(EventType.GENERATION_COMPLETED, output_path=str(video_path), duration_s=total,
                    params=event_params(task), seed=task.seed)

    def cancelled(self) -> None:
        run = self.run
        task = run.task
        run.stop_sampler()
        run.holder.release_hooks()  # models: offload hooks back to rest, GPU memory given back
        stage = task.stage
        kept = run.checkpoints.ending()  # resumable? (stop_after, cancel(keep=True)): wan_nb.core.resume
        if kept.get("stopped_after"):
            task.set_outcome("stopped", result=checkpoints.stopped_result(run, kept))
        else:
            # cancel(keep=True) with a checkpoint: "stopped" (resume_run finishes it); result() still raises
            task.set_outcome("stopped" if kept else "cancelled",
                             error=GenerationCancelled(task.id, stage, task.current_step))
        run.stage(Stage.CANCELLED, f"Stopped after step {task.current_step}" if kept else f"Cancelled during {stage}")
        run.publish(EventType.GENERATION_CANCELLED, stage=stage, current_step=task.current_step, **kept)

    def failed(self, exc: BaseException) -> None:
        run = self.run
        task = run.task
        run.stop_sampler()
        stage = task.stage
        run.holder.release_hooks()  # models: offload hooks back to rest, GPU memory given back
        error_type = type(exc).__name__
        message = str(exc) or error_type
        log.debug("task %s failed in %s:\n%s", task.id, stage, traceback.format_exc())
        error = GenerationError(f"{error_type} during {stage}: {message}", task_id=task.id,
                                stage=stage, error_type=error_type)
        error.__cause__ = exc
        task.set_outcome("failed", error=error)
        run.stage(Stage.FAILED, f"{error_type}: {message}")
        run.publish(EventType.GENERATION_FAILED, stage=stage, error_type=error_type, error=message)


class TaskRun:
    """The state of one run: progress scale, stage timings, the clock of the denoising steps."""

    def __init__(self, ctx: RunContext, task: Task) -> None:
        self.ctx = ctx
        self.holder = ctx.holder
        self.task = task
        self.scale = eta.ProgressScale()
        self.started = time.perf_counter()
        self.stage_started = self.started
        self.durations: dict[str, float] = {}
        self.paused_s = 0.0
        self.sampler: monitor.Sampler | None = None
        self.clock: eta.StepClock | None = None
        self.key = eta.shape_key(ctx.model, task.params)
        self.expert: str | None = None
        self.run_cache: Any = None
        self.lora_steps: lora_steps.LoraSteps | None = None  # set when a LoRA weight changes over the steps
        self.guided: Any = None  # wan_nb.models.guided_call.GuidedCall when guidance= names a method
        self.post: Any = None  # wan_nb.post.stage.PostResult once decoded
        # Every step the run makes: steps x the pipeline's passes (Animate denoises clip by clip,
        # its step index starting again at 0 in each); what total_steps and the ETA count.
        self.total_steps = pipelines.total_steps(task.params) if task.params.get("steps") else 0
        self.steps_done = 0
        self.checkpoints: Any = checkpoints.NO_CHECKPOINTS
        self.end = RunEnd(self)

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> None:
        task, ctx = self.task, self.ctx
        try:
            self.check_cancel()
            task.status = "running"                                    # 1. start
            self.stage(Stage.INITIALIZING, "Starting")
            self.progress("Starting")
            self.sampler = monitor.Sampler(  # the generator's own device (cuda:1), not the current one
                lambda reading: self.publish(EventType.VRAM_MONITORING, **reading),
                interval=ctx.monitor_interval, read=lambda: monitor.sample(self.holder.device)).start()
            with self.holder.lock:
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
            self.end.completed(video_path)                             # 8. finish
        except _StopRequested:
            self.end.cancelled()
        except BaseException as exc:
            self.end.failed(exc)
            if not isinstance(exc, Exception):  # KeyboardInterrupt/SystemExit: report, then honour
                raise
        finally:
            ctx.on_ended(task)

    def load_pipeline(self) -> Any:
        pipe = self.holder.load(self.load_report())
        fetch_post_files(self, pipe)  # wan_nb.post: decode="taehv"'s file, fetched before the denoising
        return pipe

    def load_report(self) -> Callable[..., None]:
        """The loader's ``report(kind, **fields)``, as this task's stages and loading progress."""
        task = self.task
        on_worker = threading.current_thread()
        model = self.ctx.model

        def report(kind: str, **fields: Any) -> None:
            if kind == "note":
                self.progress(fields.get("message", ""))
            elif kind == "stage":
                if fields["stage"] != task.stage:
                    self.enter(Stage(fields["stage"]), fields.get("message", ""))
            elif kind == "loading":
                progress = float(fields.pop("progress", 0.0))
                status = fields.pop("status", "")
                self.publish(EventType.MODEL_LOADING_PROGRESS, model_type=model,
                             progress=round(min(max(progress, 0.0), 100.0), 2), status=status,
                             **{k: v for k, v in fields.items() if v is not None})
                task.progress = self.scale.at(task.stage, progress / 100.0)
            if threading.current_thread() is on_worker:
                self.check_cancel()  # downloads report from their own threads: cancel on ours

        return report

    def encode_prompt(self, pipe: Any) -> tuple[Any, Any]:
        import torch

        p = self.task.params
        self.enter(Stage.PREPARING_INPUTS, "Encoding the prompt")
        with torch.no_grad():
            return pipe.encode_prompt(
                prompt=p["prompt"], negative_prompt=p["negative_prompt"],
                do_classifier_free_guidance=p["guidance_scale"] > 1.0, num_videos_per_prompt=1,
                max_sequence_length=512, device=self.holder.execution_device(pipe))

    def apply_loras(self, pipe: Any) -> None:
        fast_path.prepare(self.ctx, pipe)  # once per pipeline: a few-step variant's LoRA, attention, compile
        loras = self.ctx.loras
        requested = self.task.params["loras"]
        if not loras and not requested:
            return
        weights = fast_presets.run_weights(self.ctx.model, loras, requested if requested else loras.weights())
        described = ", ".join(f"{n}={lora_steps.describe(w)}" for n, w in weights.items()) or "none (LoRAs off)"
        self.enter(Stage.APPLYING_LORA, f"LoRA weights: {described}")
        steps, first = self.task.params["steps"], getattr(getattr(self.task, "resume_point", None), "step", 0) or 0
        loras.activate(pipe, lora_steps.first_weights(weights, steps, first))
        self.lora_steps = lora_steps.for_run(pipe, weights, steps, first)  # schedules: the scales move per step

    def denoise(self, pipe: Any, embeds: tuple[Any, Any]) -> Any:
        import torch

        p = self.task.params
        steps = p["steps"]
        cfg = p["guidance_scale"] > 1.0
        models.set_flow_shift(pipe, p.get("flow_shift"))  # models: flow_shift is a generation argument
        from wan_nb.models.video_io import FiniteWatch

        self.finite = FiniteWatch()  # models: which step (if any) made the latents NaN/inf
        experts = models.expert_schedule(pipe, steps)
        self.experts = experts if any(experts) else None
        passes = 2 if cfg else 1
        timings = self.ctx.timings
        self.clock = eta.StepClock(self.total_steps, timings.tail_seconds(self.key), self.experts,
                                   tail_reference=timings.reference(self.key), passes=passes)
        segments = self.total_steps // steps
        # never timed here: the plan's estimate is the time left until the first steps are timed
        method = f", guidance {describe_guidance(p['guidance'], p['guidance_options'])}" if p.get("guidance") else ""
        self.enter(Stage.GENERATING, f"Denoising: {segments} clips x {steps} steps{method}" if segments > 1
                   else f"Denoising: {steps} steps{method}", None if "step" in timings.get(self.key) else self.ctx.first_estimate(p))
        self.generator = torch.Generator("cpu").manual_seed(p["seed"])  # its state goes into checkpoints
        call: dict[str, Any] = dict(
            prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1] if cfg else None,
            height=p["height"], width=p["width"], num_frames=p["num_frames"], num_inference_steps=steps,
            guidance_scale=p["guidance_scale"], generator=self.generator,
            output_type="latent", callback_on_step_end=self.on_step_end)
        if p.get("guidance_scale_2") is not None:
            call["guidance_scale_2"] = p["guidance_scale_2"]
        # The inputs and the pipeline that takes them: a twin on the same modules for video-to-video
        # and Wan 2.2 TI2V's image-to-video, else the model as loaded (wan_nb.models.pipelines).
        runner, self.reference_frames = pipelines.prepare_call(pipe, p, call)
        denoise_started = time.perf_counter()
        first = getattr(getattr(self.task, "resume_point", None), "step", 0)  # a resumed run's first step
        with guided_call(runner, p, first) as self.guided, \
                cache_for_run(runner, p, self.ctx.model) as self.run_cache, \
                checkpoints.for_run(self, runner, call) as self.checkpoints:  # (resumes from one, if asked)
            if self.run_cache is not None:
                self.progress(self.run_cache.message)
            self.clock.start()
            latents = runner(**call).frames
        if self.reference_frames:  # VACE: the reference images' latent frames come first
            latents = latents[:, :, self.reference_frames:]
        step = (time.perf_counter() - denoise_started - self.paused_s) / self.total_steps
        self.durations["step"] = step
        self.durations["step_unit"] = step / passes  # per transformer pass: comparable across guidance
        return latents

    def on_step_end(self, pipeline: Any, index: int, timestep: Any, callback_kwargs: dict) -> dict:
        """The pipeline's step callback: time, cancel, report, run the step hooks, pause."""
        # Animate's index starts again at 0 in each clip: count calls; a resumed run's first index
        # is the step after its checkpoint: take the index where it is ahead.
        self.steps_done = max(self.steps_done + 1, index + 1)
        if self.guided is not None:
            self.guided.step_ended(index)  # the guider's next call is the next step's conditional one
        task, steps, step = self.task, self.total_steps, self.steps_done
        reused = self.run_cache.step_end() if self.run_cache is not None else None  # computed or reused
        self.clock.step_done(step, reused=reused)
        self.finite.observe(step, callback_kwargs.get("latents"))  # models: on the device, no sync
        expert = self.experts[index] if self.experts else None
        saved = self.checkpoints.step_end(step, pipeline, callback_kwargs.get("latents"), expert,
                                          self.generator)  # before a cancel: cancel(keep=True) keeps this step
        self.check_cancel()
        message = f"Step {step}/{steps}"
        extra: dict[str, Any] = {} if reused is None else {"step_reused": reused}
        extra.update(saved)
        if reused:
            message += " (reused)"
        if expert is not None:
            extra["expert"] = expert
            if expert != self.expert and self.expert is not None:
                message = f"Switched to the {expert.replace('_', '-')} expert at step {step}/{steps}"
            self.expert = expert
        if self.lora_steps is not None:  # the weights this step ran with; then the next step's scales
            extra["lora_weights"] = self.lora_steps.in_force(index, expert)
            message += " · LoRA " + ", ".join(f"{n} {w:g}" for n, w in extra["lora_weights"].items())
            self.lora_steps.apply(index + 1)
        for hook in list(self.ctx.step_hooks):
            try:
                hook(task, step, timestep, callback_kwargs.get("latents"), pipeline)
            except Exception:
                log.debug("step hook failed", exc_info=True)
        self.progress(message, fraction=min(step / steps, 1.0), remaining=self.clock.remaining(), step=step, **extra)
        if self.checkpoints.stopped_at == step:  # stop_after=k: checkpoint and x0 preview kept
            raise _StopRequested()
        if task.pause_requested:
            self.hold(pipeline)
        return callback_kwargs

    def hold(self, pipe: Any) -> None:
        """Wait at this step boundary while the task is paused (a cancel ends the wait)."""
        task = self.task
        held = time.perf_counter()
        released = task.release_memory and self.holder.release_accelerator(pipe)
        task.status = "paused"
        # release_memory (only when asked): the pipeline left the accelerator, its cache emptied, while it holds
        self.publish(EventType.GENERATION_PAUSED, stage=task.stage, current_step=task.current_step,
                     **({"release_memory": True} if task.release_memory else {}))
        task.wait_while_paused()
        if released:
            pipe.to(self.holder.execution_device(pipe))
        self.check_cancel()
        task.status = "running"
        self.paused_s += time.perf_counter() - held
        self.clock.start()  # the next step's time starts now: the pause is not a step
        self.publish(EventType.GENERATION_RESUMED, stage=task.stage, current_step=task.current_step)

    def decode(self, pipe: Any, latents: Any) -> Any:
        from wan_nb.models.video_io import decode_latents

        decoded = pipelines.decoded_frames(latents)  # Animate decodes inside, segment by segment
        if decoded is None:
            self.finite.check(latents, self.task.params["steps"])  # models: fail before decoding garbage
        from wan_nb.post import stage as post  # draft decode, interpolation, upscaling (wan_nb.post)

        draft, share = self.task.params.get("decode") == "taehv", post.decode_share(self.task.params)
        self.enter(Stage.POST_PROCESSING, f"Decoding latents with {'TAEHV (draft)' if draft else 'the VAE'}",
                   self.clock.tail())
        if draft and decoded is None:
            from wan_nb.post.draft_decode import decode_with_taehv

            frames = decode_with_taehv(self, pipe, latents, self.ctx.taehv_source, share)
        else:
            frames = decode_latents(pipe, latents) if decoded is None else decoded
        models.release(pipe)  # models: the decode ran after the pipeline call freed its hooks
        self.progress(f"Decoded {frames.shape[0]} frames", fraction=share,
                      remaining=self.ctx.timings.get(self.key).get("saving"))
        self.post = post.run_post(self, frames)  # the original frames kept beside the processed ones
        return self.post.frames

    def save(self, frames: Any) -> Any:
        from wan_nb.models.video_io import write_mp4

        self.enter(Stage.SAVING, "Writing MP4", self.ctx.timings.get(self.key).get("saving"))
        video_path = self.task.run_dir / VIDEO_NAME
        post = self.post
        if post is not None and post.original is not None:  # interpolated/upscaled: the original stays beside it
            write_mp4(post.original, self.task.run_dir / ORIGINAL_NAME, fps=self.task.params["fps"],
                      metadata=self.ctx.mp4_tags(self.task.id))
        write_mp4(frames, video_path, fps=post.fps if post is not None else self.task.params["fps"],
                  metadata=self.ctx.mp4_tags(self.task.id))
        self.progress(f"Saved {video_path.name}", fraction=1.0, remaining=0.0)
        self.durations[Stage.SAVING.value] = time.perf_counter() - self.stage_started
        return video_path

    # -- reporting ---------------------------------------------------------------------------
    def check_cancel(self) -> None:
        if self.task.cancel_requested:
            raise _StopRequested()

    def publish(self, type: str, **data: Any) -> None:
        self.ctx.sink.publish(self.task.id, type, **data)

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
                     current_step=task.current_step, total_steps=self.total_steps, **extra)

    def stop_sampler(self) -> None:
        if self.sampler is not None:
            self.sampler.stop(final_reading=True)
            self.sampler = None
