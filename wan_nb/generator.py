"""Generator, Task and Result: run a diffusers Wan pipeline and say what it is doing.

One generator owns one pipeline (loaded once, kept between runs) and one worker thread that runs
its tasks in the order they were submitted. Every run goes through the stages

    initializing -> [downloading_model] -> [loading_model] -> preparing_inputs -> [applying_lora]
    -> generating -> post_processing -> saving -> completed | failed | cancelled

and publishes typed events (``wan_nb.events``) on the generator's bus; widgets, the CLI, the
run journal and the relay to Jupyter servers all read that one stream.

The pipeline is called in three visible parts so each has its own stage: the text encoder
(``encode_prompt``), the denoising loop (``output_type="latent"`` with a step callback that
reports and cancels), and the VAE decode. Cancelling raises from the step callback, so a
cancelled run never pays for a decode.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from . import eta, journal, models, monitor, relay
from .bus import EventBus, Unsubscribe
from .events import Event, EventType, Stage
from .params import build_params, public_params

__all__ = ["Generator", "Task", "Result", "GenerationError", "GenerationCancelled", "Sweep"]

log = logging.getLogger(__name__)


class GenerationError(RuntimeError):
    """A task failed. ``stage`` says where, ``error_type`` what (the original exception's class)."""

    def __init__(self, message: str, *, task_id: str, stage: str, error_type: str) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.stage = stage
        self.error_type = error_type


class GenerationCancelled(RuntimeError):
    """The task was cancelled before it finished."""

    def __init__(self, task_id: str, stage: str, current_step: int) -> None:
        super().__init__(f"task {task_id} was cancelled during {stage} (after step {current_step})")
        self.task_id = task_id
        self.stage = stage
        self.current_step = current_step


class _StopRequested(Exception):
    """Raised inside the pipeline (from the step callback) to abandon a cancelled run."""


@dataclass(frozen=True)
class Result:
    """A finished generation: the MP4 and everything needed to make it again."""

    task_id: str
    video_path: Path
    params: dict[str, Any]
    seed: int
    model: str
    duration_s: float
    run_dir: Path

    def _ipython_display_(self) -> None:
        from .widgets import show_result

        show_result(self)

    def __repr__(self) -> str:
        return (f"Result(task_id={self.task_id!r}, video_path='{self.video_path}', seed={self.seed}, "
                f"duration_s={self.duration_s:.2f})")


class Task:
    """A queued or running generation. Returned by :meth:`Generator.submit`."""

    def __init__(self, generator: "Generator", task_id: str, params: dict[str, Any],
                 run_dir: Path, parent_id: str | None = None) -> None:
        self.id = task_id
        self.params = params
        self.seed: int = params["seed"]
        self.prompt: str = params["prompt"]
        self.run_dir = run_dir
        self.parent_id = parent_id
        self.generator = generator
        self.status = "queued"
        self.stage: str = Stage.INITIALIZING.value
        self.progress = 0.0
        self.current_step = 0
        self.created_at = time.time()
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._result: Result | None = None
        self._error: BaseException | None = None

    @property
    def task_id(self) -> str:
        return self.id

    def cancel(self) -> bool:
        """Ask the task to stop; it stops within one denoising step. False if already finished."""
        if self._done.is_set():
            return False
        self._cancel.set()
        return True

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> Result:
        """Wait for the task; return its :class:`Result` or raise why it has none."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"task {self.id} is still {self.status} after {timeout} s")
        self.generator._bus.drain(timeout=2.0)  # listeners have seen the end before we return
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def events(self) -> list[Event]:
        return self.generator._bus.history(self.id)

    def subscribe(self, callback: Callable[[Event], Any], replay: bool = True) -> Unsubscribe:
        """Events of this task only; ``replay`` first delivers what already happened."""
        return self.generator._bus.subscribe(callback, task_id=self.id, replay=replay)

    def _ipython_display_(self) -> None:
        from .widgets import show_task

        show_task(self)

    def __repr__(self) -> str:
        return (f"Task(id={self.id!r}, status={self.status!r}, stage={self.stage!r}, "
                f"progress={self.progress:.0f}%)")


@dataclass
class _Lora:
    source: str
    weight: float
    state: Any
    attached: bool = False


@dataclass
class Sweep:
    """Tasks of a parameter sweep, each labelled by the parameters that vary."""

    labels: list[dict[str, Any]]
    tasks: list[Task]
    _results: list[Result] | None = field(default=None, repr=False)

    def results(self, timeout: float | None = None) -> list[Result]:
        """Wait for every task; a failed one raises (its siblings' videos are kept on disk)."""
        if self._results is None:
            self._results = [task.result(timeout) for task in self.tasks]
        return self._results

    def __iter__(self):
        return iter(zip(self.labels, self.tasks))

    def __len__(self) -> int:
        return len(self.tasks)

    def _ipython_display_(self) -> None:
        from .widgets import show_sweep

        show_sweep(self)


def _new_task_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-", time.gmtime()) + uuid.uuid4().hex[:8]


def default_runs_dir() -> Path:
    return Path(os.environ.get("WAN_NB_RUNS_DIR") or (Path.cwd() / "wan_nb_runs"))


class Generator:
    """Runs Wan generations and publishes their progress.

    >>> gen = Generator(model="tiny")
    >>> result = gen.generate("a red fox running through snow", seed=0)
    >>> result.video_path
    """

    def __init__(self, model: str | os.PathLike = "tiny", device: str = "auto", dtype: Any = "auto",
                 runs_dir: str | os.PathLike | None = None, *, offload: str = "none",
                 vae_tiling: bool = False, vae_slicing: bool = False,
                 monitor_interval: float = 1.0, previews: bool = True,
                 preview_every: float | None = None, pipeline: Any = None,
                 defaults: Mapping[str, Any] | None = None, cluster: str | None = None,
                 workers: int | None = None) -> None:
        if pipeline is not None:  # see from_pipeline
            self.spec = models.spec_from_pipeline(pipeline, name=str(model), defaults=dict(defaults or {}))
        else:
            self.spec = models.resolve(model)  # cheap; raises a clear error for an unknown model
        self.model = self.spec.name
        if offload not in ("none", "model", "sequential", "group"):
            raise ValueError(f"offload={offload!r}: choose 'none', 'model', 'sequential' or 'group'")
        self.device_request, self.dtype_request = device, dtype
        self.offload, self.vae_tiling, self.vae_slicing = offload, vae_tiling, vae_slicing
        self.monitor_interval = monitor_interval
        self.previews, self.preview_every = previews, preview_every
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        self.device: str | None = None

        self._bus = EventBus()
        self._journal = journal.Journal()
        self._bus.add_sink(self._journal)
        self._timings = eta.TimingStore(models.cache_dir() / "timings.json")
        self._tasks: dict[str, Task] = {}
        self._queue: queue.Queue[Task | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()
        self._pipe: Any = pipeline
        if pipeline is not None:
            if offload != "none" or vae_tiling or vae_slicing:  # else it stays where its owner put it
                from .loading import place

                place(pipeline, device=models.resolve_device_dtype(device, dtype)[0], offload=offload,
                      vae_tiling=vae_tiling, vae_slicing=vae_slicing)
            self.device = str(getattr(pipeline, "_execution_device", None) or pipeline.device)
        self._pipe_lock = threading.RLock()
        self._exec_device: tuple[Any, Any] | None = None  # (pipeline, its execution device)
        self._loras: dict[str, _Lora] = {}
        self._step_hooks: list[Callable[..., Any]] = []
        # Cancel handlers of things that are not Tasks but publish here (storyboards), by id.
        self._cancellers: dict[str, Callable[[], bool]] = {}
        self._current: Task | None = None
        self._closed = False
        self._cluster: Any = None  # cluster=: tasks run on Ray workers (wan_nb.cluster)
        if previews:  # live latent previews (wan_nb.previews imports torch only when it runs)
            from .previews import install

            install(self)  # validates preview_every first, so a bad value leaves nothing attached
        if cluster is not None:  # before the relay: a cluster that cannot run this model refuses first
            from .cluster import attach as attach_cluster

            self._cluster = attach_cluster(self, cluster, workers, model)
        self._relay_detach = relay.attach(self._bus, runs_dir=self.runs_dir, cancel=self._cancel_task_by_id)

    @classmethod
    def from_pipeline(cls, pipeline: Any, name: str = "custom", *, defaults: Mapping[str, Any] | None = None,
                      **options: Any) -> "Generator":
        """Wrap a diffusers Wan pipeline you built or loaded yourself.

        It is used where it is, unless ``offload=`` / ``vae_tiling=`` / ``vae_slicing=`` ask for a
        placement. ``defaults`` sets generation defaults (height, width, num_frames, steps, ...); the rest
        come from the Wan 2.1 / 2.2 defaults matching the pipeline's configuration.
        """
        return cls(model=name, pipeline=pipeline, defaults=defaults, **options)

    # -- public API --------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Event], Any], *, task_id: str | None = None,
                  types: Iterable[str] | None = None, replay: bool = False) -> Unsubscribe:
        """Call ``callback(event)`` for every event of this generator; returns ``off()``."""
        return self._bus.subscribe(callback, task_id=task_id, types=types, replay=replay)

    def submit(self, prompt: str, *, parent_id: str | None = None, retries: int = 0, **kwargs: Any) -> Task:
        """Queue a generation and return its :class:`Task` at once (runs on a worker thread).

        ``retries``: on a cluster, how many times a task whose Ray worker died is re-run.
        """
        if self._closed:
            raise RuntimeError("this Generator is closed; create a new one")
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ValueError(f"retries={retries!r}: give a whole number >= 0")
        params = build_params(self.spec, prompt, kwargs, known_loras=self._loras)
        if params["image"] is not None:
            params["image"] = models.prepare_image(params["image"], params["height"], params["width"])
        task_id = _new_task_id()
        run_dir = self.runs_dir / task_id
        task = (self._cluster.task_class if self._cluster is not None else Task)(
            self, task_id, params, run_dir, parent_id=parent_id)
        info = {"task_id": task_id, "model": self.model, "prompt": params["prompt"],
                "params": public_params(params), "seed": params["seed"], "parent_id": parent_id,
                "loras": {n: {"source": l.source, "weight": l.weight} for n, l in self._loras.items()},
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(task.created_at))}
        try:
            journal.write_task_file(run_dir, info)
            self._journal.open(task_id, run_dir)
        except OSError as exc:
            raise OSError(f"cannot write the run folder {run_dir}: {exc}. Pass runs_dir= a writable "
                          "folder (or set WAN_NB_RUNS_DIR).") from exc
        self._tasks[task_id] = task
        if self._cluster is not None:  # the Ray worker that takes it publishes its events
            return self._cluster.enqueue(task, retries)
        ahead = self._queue.qsize() + (1 if self._current is not None else 0)
        key = eta.shape_key(self.model, params)
        known = self._timings.get(key)
        estimate = None
        if "step" in known and "post_processing" in known and "saving" in known:
            estimate = round(known["step"] * params["steps"] + known["post_processing"] + known["saving"]
                             + (0.0 if self._pipe is not None else known.get("loading_model", 0.0)), 2)
        self._publish(task, EventType.GENERATION_STARTED, model_type=self.model,
                      params=self._event_params(task), estimated_duration=estimate)
        self._stage(task, Stage.INITIALIZING, f"Queued behind {ahead} task(s)" if ahead else "Starting")
        self._ensure_worker()
        self._queue.put(task)
        return task

    def generate(self, prompt: str, *, progress: str | bool = "auto", **kwargs: Any) -> Result:
        """Generate and wait, showing live progress (a widget in Jupyter, a bar in a terminal).

        Interrupting the wait (Ctrl-C, the notebook's stop button) cancels the task.
        """
        task = self.submit(prompt, **kwargs)
        _show_progress(task, progress)
        try:
            return task.result()
        except KeyboardInterrupt:
            task.cancel()
            task.wait(timeout=30)
            raise

    def sweep(self, *, retries: int = 0, **axes: Any) -> Sweep:
        """Queue the cross product of every list-valued argument; others are fixed.

        ``gen.sweep(prompt=["a fox", "a cat"], seed=[0, 1], steps=8)`` queues four tasks. For
        ``loras`` a list of dicts is an axis. Returns a :class:`Sweep` whose labels hold only the
        parameters that vary. ``retries``: on a cluster, re-runs of a cell whose worker died.
        """
        from .sweep import expand

        if not any(isinstance(v, (list, tuple)) for v in axes.values()):
            raise ValueError("sweep needs at least one list of values, e.g. seed=[0, 1, 2]")
        if "prompt" not in axes:
            raise ValueError("sweep needs a prompt (a string, or a list of prompts to compare)")
        runs = expand(**axes)
        # Validate every run before queuing any, so a typo costs no generation.
        for _, kwargs in runs:
            args = dict(kwargs)
            build_params(self.spec, args.pop("prompt"), args, known_loras=self._loras)
        tasks = []
        for _, kwargs in runs:
            args = dict(kwargs)
            tasks.append(self.submit(args.pop("prompt"), retries=retries, **args))
        combos = [label for label, _ in runs]
        return Sweep(labels=combos, tasks=tasks)

    @property
    def tasks(self) -> list[Task]:
        return list(self._tasks.values())

    @property
    def current_task(self) -> Task | None:
        return self._current

    def task(self, task_id: str) -> Task:
        return self._tasks[task_id]

    @property
    def bus(self) -> EventBus:
        return self._bus

    @property
    def pipeline(self) -> Any:
        """The loaded diffusers pipeline (None until the first run loads it)."""
        return self._pipe

    # -- LoRA --------------------------------------------------------------------------------
    def load_lora(self, path_or_repo: str | os.PathLike, name: str | None = None,
                  weight: float = 1.0) -> str:
        """Register a LoRA (file, folder or repo id); returns its adapter name.

        The file is read and checked now; if the model is loaded the adapter is attached now
        too, else in the ``applying_lora`` stage of the next run. A bad file raises and leaves
        the pipeline exactly as it was.
        """
        from . import lora

        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            raise ValueError(f"weight={weight!r}: give a number, e.g. weight=0.8")
        name = name or lora.default_name(path_or_repo)
        if name in self._loras:
            raise ValueError(f"a LoRA named {name!r} is already loaded; unload_lora({name!r}) first or "
                             "pass another name=")
        state = lora.read_lora(path_or_repo)
        entry = _Lora(source=str(path_or_repo), weight=float(weight), state=state)
        with self._pipe_lock:
            if self._pipe is not None:
                lora.attach(self._pipe, name, state)
                entry.attached = True
            self._loras[name] = entry
        return name

    def unload_lora(self, name: str | None = None) -> None:
        """Remove one LoRA by name, or all of them."""
        from . import lora

        names = list(self._loras) if name is None else [name]
        for n in names:
            if n not in self._loras:
                raise KeyError(f"no LoRA named {n!r} is loaded (loaded: {sorted(self._loras) or 'none'})")
        with self._pipe_lock:
            for n in names:
                entry = self._loras.pop(n)
                if entry.attached and self._pipe is not None:
                    lora.detach(self._pipe, n)

    @property
    def loras(self) -> dict[str, float]:
        return {n: l.weight for n, l in self._loras.items()}

    def run_on_worker(self, fn: Callable[[Any], Any], timeout: float | None = None) -> Any:
        """Run ``fn(pipeline)`` on the generator's worker thread, after the tasks queued before
        it and before those queued after; return its result (or raise its exception).

        For changing the pipeline between runs without racing a generation (a scheduler, an
        attention processor), and on CPU to keep every torch call on one thread: torch's
        OpenMP runtime slows every op down once two threads of a process have used it.
        ``pipeline`` is None until the first run has loaded the model.
        """
        if self._closed:
            raise RuntimeError("this generator is closed; create a new one")
        if self._cluster is not None:
            raise RuntimeError("run_on_worker runs on this process's pipeline; with cluster= the pipelines "
                               "live on the Ray workers")
        call = _WorkerCall(fn)
        self._ensure_worker()
        self._queue.put(call)
        if not call.done.wait(timeout):
            raise TimeoutError(f"run_on_worker: still waiting after {timeout} s (tasks ahead of it)")
        if call.error is not None:
            raise call.error
        return call.result

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the worker after queued tasks finish; detach from Jupyter servers."""
        if self._closed:
            return
        self._closed = True
        if self._cluster is not None:
            self._cluster.close()
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=60)
        if self._relay_detach is not None:
            self._relay_detach()

    def __enter__(self) -> "Generator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _ipython_display_(self) -> None:
        from .widgets import show_generator

        show_generator(self)

    def __repr__(self) -> str:
        return f"Generator(model={self.model!r}, device={self.device or self.device_request!r})"

    # -- internals ---------------------------------------------------------------------------
    def add_step_hook(self, hook: Callable[..., Any]) -> Callable[[], None]:
        """``hook(task, step, timestep, latents, pipe)`` after every denoising step (previews)."""
        self._step_hooks.append(hook)
        return lambda: self._step_hooks.remove(hook) if hook in self._step_hooks else None

    def _cancel_task_by_id(self, task_id: str) -> bool:
        task = self._tasks.get(task_id)
        if task is not None:
            return task.cancel()
        canceller = self._cancellers.get(task_id)
        return canceller() if canceller is not None else False

    def _event_params(self, task: Task) -> dict[str, Any]:
        params = public_params(task.params)
        if task.parent_id:
            params["storyboard_id"] = task.parent_id
        return params

    def _publish(self, task: Task, type: str, **data: Any) -> Event:
        return self._bus.publish(task.id, type, **data)

    def _stage(self, task: Task, stage: Stage, message: str, stage_progress: float = 0.0) -> None:
        task.stage = stage.value
        self._publish(task, EventType.GENERATION_STAGE, stage=stage.value,
                      stage_progress=stage_progress, stage_message=message)

    def _progress(self, task: Task, scale: eta.ProgressScale, message: str, *, fraction: float = 0.0,
                  remaining: float | None = None, step: int | None = None, total: int | None = None,
                  **extra: Any) -> None:
        task.progress = scale.at(task.stage, fraction)
        if step is not None:
            task.current_step = step
        self._publish(task, EventType.DETAILED_GENERATION_PROGRESS, stage=task.stage,
                      progress=task.progress, message=message,
                      estimated_time_remaining=None if remaining is None else round(remaining, 3),
                      current_step=task.current_step if step is None else step,
                      total_steps=task.params["steps"] if total is None else total, **extra)

    def _ensure_worker(self) -> None:
        with self._worker_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name=f"wan_nb-generator-{self.model}",
                                                daemon=True)
                self._worker.start()

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            if isinstance(task, _WorkerCall):
                with self._pipe_lock:
                    task.run(self._pipe)
                    self._exec_device = None  # the call may have moved or rebuilt the pipeline
                continue
            self._current = task
            try:
                self._run(task)
            except BaseException:  # _run reports its own failures; this is a last resort
                log.exception("wan_nb worker crashed on task %s", task.id)
            finally:
                self._current = None

    def _run(self, task: Task) -> None:
        scale = eta.ProgressScale()
        started = time.perf_counter()
        durations: dict[str, float] = {}
        stage_started = [started]
        sampler = None

        def enter(stage: Stage, message: str, remaining: float | None = None) -> None:
            now = time.perf_counter()
            durations[task.stage] = durations.get(task.stage, 0.0) + now - stage_started[0]
            stage_started[0] = now
            self._stage(task, stage, message)
            self._progress(task, scale, message, remaining=remaining)

        def check_cancel() -> None:
            if task._cancel.is_set():
                raise _StopRequested()

        task.status = "running"
        try:
            check_cancel()
            self._progress(task, scale, "Starting")
            sampler = monitor.Sampler(
                lambda reading: self._publish(task, EventType.VRAM_MONITORING, **reading),
                interval=self.monitor_interval).start()
            with self._pipe_lock:
                pipe = self._ensure_pipeline(task, enter, scale, check_cancel)
                check_cancel()
                frames = self._denoise_and_decode(task, pipe, enter, scale, check_cancel, durations)
            enter(Stage.SAVING, "Writing MP4", self._timings.get(eta.shape_key(self.model, task.params)).get("saving"))
            video_path = task.run_dir / "video.mp4"
            from .video import write_mp4

            write_mp4(frames, video_path, fps=task.params["fps"])
            self._progress(task, scale, f"Saved {video_path.name}", fraction=1.0, remaining=0.0)
            durations[Stage.SAVING.value] = time.perf_counter() - stage_started[0]
            total = time.perf_counter() - started
            result = Result(task_id=task.id, video_path=video_path, params=public_params(task.params),
                            seed=task.seed, model=self.model, duration_s=round(total, 3), run_dir=task.run_dir)
            self._stop_sampler(sampler)
            sampler = None
            self._timings.record(eta.shape_key(self.model, task.params),
                                 {k: v for k, v in durations.items()
                                  if k in ("loading_model", "post_processing", "saving", "step", "step_unit")})
            task.status, task.stage = "completed", Stage.COMPLETED.value
            task._result = result
            self._stage(task, Stage.COMPLETED, "Done", stage_progress=100.0)
            task.progress = scale.complete()
            self._publish(task, EventType.DETAILED_GENERATION_PROGRESS, stage=Stage.COMPLETED.value,
                          progress=100.0, message="Done", estimated_time_remaining=0.0,
                          current_step=task.current_step, total_steps=task.params["steps"])
            self._publish(task, EventType.GENERATION_COMPLETED, output_path=str(video_path),
                          duration_s=round(total, 3), params=self._event_params(task), seed=task.seed)
        except _StopRequested:
            self._stop_sampler(sampler)
            stage = task.stage
            task.status, task.stage = "cancelled", Stage.CANCELLED.value
            task._error = GenerationCancelled(task.id, stage, task.current_step)
            self._stage(task, Stage.CANCELLED, f"Cancelled during {stage}")
            self._publish(task, EventType.GENERATION_CANCELLED, stage=stage, current_step=task.current_step)
        except BaseException as exc:
            self._stop_sampler(sampler)
            stage = task.stage
            self._free_accelerator_memory()
            error_type = type(exc).__name__
            message = str(exc) or error_type
            log.debug("task %s failed in %s:\n%s", task.id, stage, traceback.format_exc())
            task.status, task.stage = "failed", Stage.FAILED.value
            error = GenerationError(f"{error_type} during {stage}: {message}", task_id=task.id,
                                    stage=stage, error_type=error_type)
            error.__cause__ = exc
            task._error = error
            self._stage(task, Stage.FAILED, f"{error_type}: {message}")
            self._publish(task, EventType.GENERATION_FAILED, stage=stage, error_type=error_type, error=message)
            if not isinstance(exc, Exception):  # KeyboardInterrupt/SystemExit: report, then honour
                raise
        finally:
            self._journal.close(task.id)
            task._done.set()

    def _stop_sampler(self, sampler: monitor.Sampler | None) -> None:
        if sampler is not None:
            sampler.stop(final_reading=True)

    def _free_accelerator_memory(self) -> None:
        torch = sys.modules.get("torch")
        try:
            if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.empty_cache()
        except Exception:
            pass

    def _ensure_pipeline(self, task: Task, enter: Callable[..., None],
                         scale: eta.ProgressScale, check_cancel: Callable[[], None]) -> Any:
        if self._pipe is not None:
            return self._pipe
        if "diffusers" not in sys.modules:
            self._progress(task, scale, "Importing PyTorch and diffusers")  # seconds, once per process
        on_worker = threading.current_thread()

        def report(kind: str, **fields: Any) -> None:
            if kind == "stage":
                if fields["stage"] != task.stage:
                    enter(Stage(fields["stage"]), fields.get("message", ""))
            elif kind == "loading":
                progress = float(fields.pop("progress", 0.0))
                status = fields.pop("status", "")
                self._publish(task, EventType.MODEL_LOADING_PROGRESS, model_type=self.model,
                              progress=round(min(max(progress, 0.0), 100.0), 2), status=status,
                              **{k: v for k, v in fields.items() if v is not None})
                task.progress = scale.at(task.stage, progress / 100.0)
            if threading.current_thread() is on_worker:
                check_cancel()  # downloads report from their own threads: cancel on ours

        device, dtype = models.resolve_device_dtype(self.device_request, self.dtype_request)
        loaded = time.perf_counter()
        # The loader announces downloading_model / loading_model itself: only it knows whether
        # the files are already cached.
        pipe = models.load_pipeline(self.spec, device=device, dtype=dtype, report=report, offload=self.offload,
                                    vae_tiling=self.vae_tiling, vae_slicing=self.vae_slicing)
        log.debug("loaded %s in %.2fs", self.model, time.perf_counter() - loaded)
        self._pipe = pipe
        self.spec = models.refine(self.spec, pipe)  # a repo id guessed by name: now read from its files
        self.device = device
        return pipe

    def _execution_device(self, pipe: Any) -> Any:
        """Where the pipeline computes. diffusers finds it by walking every module's hooks
        (milliseconds a call), so it is looked up once per pipeline object and again after
        ``run_on_worker``, the one place user code may move the pipeline."""
        cached = self._exec_device
        if cached is not None and cached[0] is pipe:
            return cached[1]
        device = getattr(pipe, "_execution_device", None) or self.device
        self._exec_device = (pipe, device)
        return device

    def _apply_loras(self, task: Task, pipe: Any, enter: Callable[..., None]) -> None:
        requested = task.params["loras"]
        if not self._loras and not requested:
            return
        from . import lora

        weights = requested if requested else {n: l.weight for n, l in self._loras.items()}
        described = ", ".join(f"{n}={w:g}" for n, w in weights.items()) or "none (LoRAs off)"
        enter(Stage.APPLYING_LORA, f"LoRA weights: {described}")
        for name, entry in list(self._loras.items()):
            if not entry.attached:
                try:
                    lora.attach(pipe, name, entry.state)
                except Exception:
                    self._loras.pop(name, None)  # a LoRA that cannot attach must not break later runs
                    raise
                entry.attached = True
        lora.activate(pipe, {n: w for n, w in weights.items()})

    def _denoise_and_decode(self, task: Task, pipe: Any, enter: Callable[..., None],
                            scale: eta.ProgressScale, check_cancel: Callable[[], None],
                            durations: dict[str, float]) -> Any:
        import torch

        p = task.params
        enter(Stage.PREPARING_INPUTS, "Encoding the prompt")
        cfg = p["guidance_scale"] > 1.0
        device = self._execution_device(pipe)
        with torch.no_grad():
            prompt_embeds, negative_embeds = pipe.encode_prompt(
                prompt=p["prompt"], negative_prompt=p["negative_prompt"], do_classifier_free_guidance=cfg,
                num_videos_per_prompt=1, max_sequence_length=512, device=device)
        check_cancel()
        self._apply_loras(task, pipe, enter)
        check_cancel()

        steps = p["steps"]
        experts = models.expert_schedule(pipe, steps)
        if not any(experts):
            experts = None
        key = eta.shape_key(self.model, p)
        passes = 2 if cfg else 1
        clock = eta.StepClock(steps, self._timings.tail_seconds(key), experts,
                              tail_reference=self._timings.reference(key), passes=passes)
        enter(Stage.GENERATING, f"Denoising: {steps} steps")
        current_expert: list[str | None] = [None]

        def on_step_end(pipeline: Any, index: int, timestep: Any, callback_kwargs: dict) -> dict:
            step = index + 1
            clock.step_done(step)
            check_cancel()
            expert = experts[index] if experts else None
            message = f"Step {step}/{steps}"
            extra: dict[str, Any] = {}
            if expert is not None:
                extra["expert"] = expert
                if expert != current_expert[0] and current_expert[0] is not None:
                    message = f"Switched to the {expert.replace('_', '-')} expert at step {step}/{steps}"
                current_expert[0] = expert
            for hook in list(self._step_hooks):
                try:
                    hook(task, step, timestep, callback_kwargs.get("latents"), pipeline)
                except Exception:
                    log.debug("step hook failed", exc_info=True)
            self._progress(task, scale, message, fraction=step / steps, remaining=clock.remaining(),
                           step=step, **extra)
            return callback_kwargs

        call: dict[str, Any] = dict(
            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds if cfg else None,
            height=p["height"], width=p["width"], num_frames=p["num_frames"], num_inference_steps=steps,
            guidance_scale=p["guidance_scale"], generator=torch.Generator("cpu").manual_seed(p["seed"]),
            output_type="latent", callback_on_step_end=on_step_end)
        if p.get("guidance_scale_2") is not None:
            call["guidance_scale_2"] = p["guidance_scale_2"]
        if p["image"] is not None:
            call["image"] = p["image"]
        # Wan 2.2 TI2V: an image turns the text-to-video pipeline into its image-to-video twin
        # (same modules); every other model is called as loaded.
        runner = models.pipeline_for_inputs(pipe, p["image"]) if hasattr(models, "pipeline_for_inputs") else pipe
        denoise_started = time.perf_counter()
        clock.start()
        latents = runner(**call).frames
        durations["step"] = (time.perf_counter() - denoise_started) / steps
        durations["step_unit"] = durations["step"] / passes  # per transformer pass: comparable across guidance
        check_cancel()

        enter(Stage.POST_PROCESSING, "Decoding latents with the VAE", clock.tail())
        from .video import decode_latents

        frames = decode_latents(pipe, latents)
        self._progress(task, scale, f"Decoded {frames.shape[0]} frames", fraction=1.0,
                       remaining=self._timings.get(key).get("saving"))
        return frames


class _WorkerCall:
    """A function queued for the worker thread by :meth:`Generator.run_on_worker`."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self, pipeline: Any) -> None:
        try:
            self.result = self.fn(pipeline)
        except BaseException as exc:  # handed to the caller, never kills the worker
            self.error = exc
        finally:
            self.done.set()


def _show_progress(task: Task, mode: str | bool) -> None:
    """Show a blocking ``generate``'s progress (tqdm-style: the front end fits the environment).

    ``"auto"``: a widget panel in a Jupyter kernel, a text line on a terminal, nothing when output
    goes nowhere a person reads live (a pipe, a log); ``"text"`` forces text; ``False`` nothing.
    """
    if mode is False or mode == "none":
        return
    if mode == "text":
        from .console import follow_in_background

        follow_in_background(task)
        return
    if mode == "auto" and "ipykernel" not in sys.modules and not sys.stderr.isatty():
        return
    from .widgets import show_task  # a widget where one can render, text progress elsewhere

    show_task(task)
