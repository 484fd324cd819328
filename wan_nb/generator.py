"""Generator: run a diffusers Wan pipeline and say what it is doing.

The Generator is a facade. It checks arguments, writes each task's run folder, journal and
queue entry, and hands the task to its **engine** (``wan_nb.core.engine``): here, one worker thread
with one pipeline (``wan_nb.core.local_engine``); with ``cluster=``, Ray actors
(``wan_nb.cluster``). Every run goes through the stages

    initializing -> [downloading_model] -> [loading_model] -> preparing_inputs -> [applying_lora]
    -> generating -> post_processing -> saving -> completed | failed | cancelled

and publishes typed events (``wan_nb.protocol.events``) on the generator's bus; widgets, the CLI, the
run journal and the relay to Jupyter servers all read that one stream. How one run goes is in
``wan_nb.core.run``; the handles (Task, Result, Sweep) are in ``wan_nb.core.task``. Work built on a
generator (sweeps, grids, storyboards, reruns) sees it as ``wan_nb.core.surface.GeneratorSurface``.

Other work that publishes here (a storyboard) uses the public hooks: :meth:`Generator.open_task`
for a task with its own id, journal and steering, :meth:`add_sink`, :meth:`add_step_hook`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from . import relay
from wan_nb.core import checkpoint, eta
from wan_nb.core import notify as notify_on_end
from wan_nb.core import resume as resuming
from wan_nb.compose import resume as finding
from wan_nb.fast import options as fast_path
from wan_nb.protocol import frontend
from wan_nb.models import user_inputs as inputs
from wan_nb.runs import journal
from wan_nb.runs.layout import default_runs_dir
from wan_nb.models import specs as models
from wan_nb.core import recorder as run_record
from wan_nb.weights import options as weights
from wan_nb.core.lora_registry import LoraRegistry
from wan_nb.core.queue import QueueFile, queue_entry
from wan_nb.core.run import RunContext, estimate_duration, event_params
from wan_nb.core.bus import EventBus, Unsubscribe
from wan_nb.core.engine import Engine, LoadOptions
from wan_nb.protocol.errors import GenerationCancelled, GenerationError, TaskNotQueued  # noqa: F401 (re-exported)
from wan_nb.protocol.events import Event
from wan_nb.core.holder import PipelineHolder
from wan_nb.core.hosting import HostedTask, HostedTasks  # noqa: F401 (HostedTask re-exported)
from wan_nb.core.local_engine import LocalEngine
from wan_nb.core.params import build_params, public_params
from wan_nb.compose.rerun import generator_rerun
from wan_nb.core.task import Handle, Result, Sweep, Task, new_task_id, steer  # noqa: F401 (re-exported)

__all__ = ["Generator", "Task", "Result", "GenerationError", "GenerationCancelled", "Sweep", "HostedTask"]

log = logging.getLogger(__name__)


class Generator:
    """Runs Wan generations and publishes their progress.

    >>> gen = Generator(model="tiny")
    >>> result = gen.generate("a red fox running through snow", seed=0)
    >>> result.video_path
    """

    def __init__(self, model: str | os.PathLike = "tiny", device: str = "auto", dtype: Any = "auto",
                 runs_dir: str | os.PathLike | None = None, *, offload: str = "none",
                 vae_tiling: bool = False, vae_slicing: bool = False,
                 monitor_interval: float = 1.0, previews: Any = "auto",
                 preview_every: float | None = None, pipeline: Any = None,
                 defaults: Mapping[str, Any] | None = None, cluster: str | None = None,
                 workers: int | None = None, quant: Any = None, transformer: Any = None,
                 plan: str | None = None, attention: str | None = None, compile: bool = False,
                 checkpoints: Any = "auto", notify: Any = None) -> None:
        if pipeline is not None:  # see from_pipeline (quant= / transformer=: see wan_nb.weights.options)
            self.weights = weights.refuse_for_pipeline(quant, transformer)
            spec = models.spec_from_pipeline(pipeline, name=str(model), defaults=dict(defaults or {}))
        else:  # cheap: an unknown model (or a file that is no Wan transformer) is refused here
            spec, transformer = weights.model_spec(model, transformer)
        self.model = spec.name
        # wan_nb.fast.options: plan="auto" picks the offload (and a quant if none is given); attention checked.
        fast = fast_path.configure(spec, device=device, offload=offload, vae_tiling=vae_tiling, plan=plan,
                                   attention=attention, compile=compile)
        self.memory_plan = fast.plan  # the wan_nb.plan(...) that plan="auto" applied, else None
        if pipeline is None:  # resolved once, the plan applied: a bad quant mode or unfitting file is refused here
            quant = fast.quant if quant is None and transformer is None else quant
            self.weights = weights.for_model(spec, quant=quant, transformer=transformer, device=device)
        # Every pipeline-loading option in one value (engines, workers and recipes read it).
        self.load_options = weights.placeable(self.weights, LoadOptions(  # GGUF + sequential: refused here
            device=device, dtype=dtype, vae_slicing=vae_slicing, **fast.load, weights=self.weights))
        _check_engine_args(cluster, workers, pipeline, spec, device)
        self.monitor_interval = monitor_interval
        self.previews, self.preview_every = previews, preview_every
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()

        self._bus = EventBus()
        self._notify_off = notify_on_end.attach(self, notify)  # notify(summary) as each task ends
        self._journal = journal.Journal()
        self._bus.add_sink(self._journal)
        self._tasks: dict[str, Task] = {}
        self._hosted = HostedTasks(self._bus, self._journal)  # storyboards, by id
        self._queue_file = QueueFile(self.runs_dir)
        self._holder = PipelineHolder(spec, self.load_options, pipeline)
        self._loras = LoraRegistry()
        self._closed = False
        self._context = RunContext(
            holder=self._holder, sink=self._bus, timings=eta.TimingStore(models.cache_dir() / "timings.json"),
            loras=self._loras, monitor_interval=monitor_interval, first_estimate=fast_path.first_estimate(self.memory_plan),
            mp4_tags=lambda task_id: self._recorder.mp4_tags(task_id), on_ended=self._task_ended,
            checkpoints=checkpoint.configure(checkpoints))  # checked; SIGTERM checkpoints a running task first
        self._previewer, self._context.taehv_source = _previews(self, previews, spec)  # live previews, TAEHV file
        self._engine = _make_engine(self, self._context, self._queue_file, cluster, workers)  # refusals first
        self._relay_detach = relay.attach(self._bus, runs_dir=self.runs_dir, steer=self.steer,  # servers steer, and
                                          model=self.model, resume=lambda run: self.submit_resume(run).id)  # Resume
        self._recorder = run_record.attach(self)  # recipes, history; after the relay: 1st recipe imports torch

    @classmethod
    def from_pipeline(cls, pipeline: Any, name: str = "custom", *, defaults: Mapping[str, Any] | None = None,
                      **options: Any) -> "Generator":
        """Wrap a diffusers Wan pipeline you built or loaded yourself (used where it is, unless
        ``offload=`` / ``vae_tiling=`` / ``vae_slicing=`` ask for a placement). ``defaults``: generation
        defaults (height, width, steps, ...); the rest follow the pipeline's Wan 2.1 / 2.2 configuration.
        """
        return cls(model=name, pipeline=pipeline, defaults=defaults, **options)

    # -- generating --------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Event], Any], *, task_id: str | None = None,
                  types: Iterable[str] | None = None, replay: bool = False) -> Unsubscribe:
        """Call ``callback(event)`` for every event of this generator; returns ``off()``."""
        return self._bus.subscribe(callback, task_id=task_id, types=types, replay=replay)

    def submit(self, prompt: str, *, parent_id: str | None = None, retries: int = 0, stop_after: int | None = None,
               resume_from: Any = None, **kwargs: Any) -> Task:
        """Queue a generation; return its :class:`Task` at once (``retries``: re-runs after a lost Ray worker)."""
        if self._closed:
            raise RuntimeError("this Generator is closed; create a new one")
        _check_retries(retries)
        params = build_params(self.spec, prompt, kwargs, known_loras=self._loras.entries)
        given_image = params["image"]
        for name in ("image", "last_image"):  # the frames as the run sees them (and keeps)
            if params[name] is not None:
                params[name] = models.prepare_image(params[name], params["height"], params["width"])
        task_id = new_task_id()
        engine = self._engine
        task = engine.task_class(self, task_id, params, self.runs_dir / task_id, parent_id=parent_id, engine=engine)
        link = resuming.prepare_task(task, resume_from, stop_after)  # stop_after checked; what a resumed run continues
        _open_run_folder(task, {"task_id": task_id, "model": self.model, "prompt": params["prompt"],
                                "params": public_params(params), "seed": params["seed"], "parent_id": parent_id,
                                "loras": self._loras.describe(), **link}, self._journal)
        self._tasks[task_id] = task
        self._queue_file.add(task_id, queue_entry(self.model, task, given_image))
        started = {"model_type": self.model, "params": event_params(task),
                   "estimated_duration": estimate_duration(self._context, params), **link}
        return engine.submit(task, retries=retries, started=started)  # generation_started, generation_queued

    def generate(self, prompt: str, *, progress: str | bool = "auto", **kwargs: Any) -> Result:
        """Generate and wait, showing live progress (a widget in Jupyter, a bar in a terminal).

        Interrupting the wait (Ctrl-C, the notebook's stop button) cancels the task.
        """
        task = self.submit(prompt, **kwargs)
        frontend.show("progress", task, mode=progress)
        try:
            return task.result()
        except KeyboardInterrupt:
            task.cancel(keep=True)  # Ctrl-C keeps the steps done: gen.resume_run(task) finishes it
            task.wait(timeout=30)
            raise

    def grid(self, prompt: str, x: Any, y: Any = None, z: Any = None, *, refresh: bool = False,
             **fixed: Any) -> Any:
        """A comparison grid (:class:`wan_nb.compose.grid.Grid`) over ``(name, values)`` axes; see :mod:`wan_nb.compose.grid`."""
        from wan_nb.compose.grid import build_grid  # when called: Pillow and the grid stay out of ``import wan_nb``

        return build_grid(self, prompt, x, y, z, refresh=refresh, **fixed)

    def sweep(self, *, retries: int = 0, **axes: Any) -> Sweep:
        """Queue the cross product of every list-valued argument; others are fixed.

        ``gen.sweep(prompt=["a fox", "a cat"], seed=[0, 1], steps=8)`` queues four tasks. For
        ``loras`` a list of dicts is an axis. Returns a :class:`Sweep` whose labels hold only the
        parameters that vary. ``retries``: on a cluster, re-runs of a cell whose worker died.
        """
        from wan_nb.compose.sweep import submit_sweep

        return submit_sweep(self, axes, retries=retries)

    def check(self, prompt: str, **kwargs: Any) -> dict[str, Any]:
        """The full parameter set ``submit(prompt, **kwargs)`` would run; raises what it would raise."""
        return resuming.checked_params(kwargs, lambda kw: build_params(self.spec, prompt, kw, known_loras=self._loras.entries))

    rerun = generator_rerun  # gen.rerun(source, **overrides): see wan_nb.compose.rerun

    @property
    def tasks(self) -> list[Task]:
        return list(self._tasks.values())

    @property
    def current_task(self) -> Task | None:
        return next(iter(self._engine.running), None)

    @property
    def workers(self) -> int:  # how many tasks run at once: 1 here, the Ray workers with cluster=
        return self._engine.count

    @property
    def engine(self) -> Engine:
        """Where the tasks run (``wan_nb.core.engine.Engine``): a LocalEngine, or a RayEngine with cluster=."""
        return self._engine

    def task(self, task_id: str) -> Task:
        return self._tasks[task_id]

    @property
    def bus(self) -> EventBus:
        return self._bus

    @property
    def pipeline(self) -> Any:
        """The loaded diffusers pipeline (None until the first run, or ``run_on_worker``, loads it)."""
        return self._holder.pipe

    @property
    def spec(self) -> models.ModelSpec:
        """What the model is (a repo id guessed by name is read from its files once loaded)."""
        return self._holder.spec

    @property
    def device(self) -> str | None:
        """Where the pipeline was placed (None until it is loaded)."""
        return self._holder.device

    # The loading options one by one, as Generator(...) took them.
    device_request = property(lambda self: self.load_options.device)
    dtype_request = property(lambda self: self.load_options.dtype)
    offload = property(lambda self: self.load_options.offload)
    vae_tiling = property(lambda self: self.load_options.vae_tiling)
    vae_slicing = property(lambda self: self.load_options.vae_slicing)

    # -- steering ----------------------------------------------------------------------------
    @property
    def queue(self) -> list[Task]:
        """The tasks waiting to run, in the order they will run (the running one is not here)."""
        return self._engine.queued

    def pause(self) -> None:
        """Take no more queued tasks until :meth:`resume` (the running one goes on)."""
        self._engine.pause()

    def resume(self) -> None:
        self._engine.resume()

    @property
    def paused(self) -> bool:
        return self._engine.paused

    def steer(self, task_id: str, action: str, **kw: Any) -> bool:
        """Apply ``action`` (cancel | pause | resume | move) to a task of this generator by id.

        What Jupyter servers call through the relay. ``move`` takes ``index=``; ``pause`` takes
        ``release_memory=``. False if the task is unknown here or cannot do it now.
        """
        return steer(self._tasks.get(task_id) or self._hosted.get(task_id), action, **kw)

    # gen.resume_queue(), gen.resume_run(source), gen.submit_resume(source): see wan_nb.compose.resume
    resume_queue, resume_run, submit_resume = finding.resume_queue, finding.resume_run, finding.submit_resume

    # -- hooks for work that publishes here --------------------------------------------------
    @staticmethod
    def new_task_id() -> str:
        return new_task_id()

    def add_step_hook(self, hook: Callable[..., Any]) -> Callable[[], None]:
        """``hook(task, step, timestep, latents, pipe)`` after every denoising step (previews)."""
        hooks = self._context.step_hooks
        hooks.append(hook)
        return lambda: hooks.remove(hook) if hook in hooks else None

    def add_sink(self, sink: Callable[[Event], Any]) -> Callable[[], None]:
        """``sink(event)`` synchronously, on the publishing thread, for every event (keep it quick)."""
        return self._bus.add_sink(sink)

    def open_task(self, handle: Handle, folder: Path, info: Mapping[str, Any]) -> "HostedTask":
        """Host a task that is not a generation (a storyboard) under ``handle.id``: writes
        ``folder/task.json`` from ``info``, journals its events to ``folder`` (seq going on from the
        journal there, so a resumed task's ids stay unique), lets :meth:`steer` reach ``handle``."""
        return self._hosted.open(handle, folder, info)

    # -- LoRA --------------------------------------------------------------------------------
    def load_lora(self, path_or_repo: Any, name: str | None = None, weight: float = 1.0, *,
                  experts: str | None = None) -> str:
        """Register a LoRA (file, folder or repo id); returns its adapter name.

        On two-expert models (Wan 2.2 A14B) the adapter goes into both experts unless
        ``experts="high"`` or ``"low"``; a pair ``(high_noise_file, low_noise_file)`` gives each
        expert its own file. The file is read and checked now; if the model is loaded the adapter
        is attached now too, else in the ``applying_lora`` stage of the next run. A bad file raises
        and leaves the pipeline exactly as it was.
        """
        with self._holder.lock:
            return self._loras.load(path_or_repo, name, weight, self._holder.pipe, experts=experts,
                                    model_experts=self.spec.experts)

    def unload_lora(self, name: str | None = None) -> None:
        """Remove one LoRA by name, or all of them."""
        with self._holder.lock:
            self._loras.unload(name, self._holder.pipe)

    @property
    def loras(self) -> dict[str, float]:
        return self._loras.weights()

    @property
    def lora_registry(self) -> LoraRegistry:
        """The loaded LoRAs with their files (``.entries``: name -> source, weight, state)."""
        return self._loras

    def run_on_worker(self, fn: Callable[[Any], Any], timeout: float | None = None) -> Any:
        """``fn(pipeline)`` on the worker thread, after the tasks queued before it; its result.

        For changing the pipeline between runs (a scheduler, an attention processor) without
        racing a generation, and on CPU to keep torch on one thread (OpenMP slows down once two
        threads have used it). Before any run, the model is loaded first as a task of its own
        (``generation_started`` has ``purpose: "load"``): ``fn`` always gets the real pipeline.
        """
        if self._closed:
            raise RuntimeError("this generator is closed; create a new one")
        return self._engine.run_on_worker(fn, timeout)

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the worker after queued tasks finish; detach from Jupyter servers."""
        if self._closed:
            return
        self._closed = True
        self._engine.close(timeout=60)
        if self._relay_detach is not None:
            self._relay_detach()

    def __enter__(self) -> "Generator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _ipython_display_(self) -> None:
        frontend.show("generator", self)

    def __repr__(self) -> str:
        return f"Generator(model={self.model!r}, device={self.device or self.device_request!r})"

    # -- used by the worker, the run and the task --------------------------------------------
    def _task_ended(self, task: Task) -> None:
        self._journal.close(task.id)
        self._queue_file.remove(task.id)
        task.mark_done()


def _check_engine_args(cluster: str | None, workers: int | None, pipeline: Any, spec: Any, device: Any) -> None:
    if cluster is None and pipeline is None and str(device) == "auto" and models.needs_gpu(spec):
        # A real model without a GPU is refused here, where the user wrote Generator(...), not at
        # the first generate() on the worker thread (a cluster's workers judge their own devices).
        models.resolve_device_dtype(device, "auto", real_model=models.needs_gpu(spec))
    if cluster is None and workers is not None:
        raise ValueError("workers= counts Ray workers; pass cluster='ray' (or a Ray address) too")
    if cluster is not None and pipeline is not None:
        raise ValueError("cluster= cannot ship a pipeline object to other processes; pass model= a name, "
                         "repo id or folder that every worker can load")


def _make_engine(gen: Generator, context: RunContext, queue_file: QueueFile, cluster: str | None,
                 workers: int | None) -> Engine:
    """The engine: this process's worker thread, or (``cluster=``) Ray workers (imports Ray)."""
    if cluster is None:
        return LocalEngine(context, gen, name=f"wan_nb-generator-{gen.model}", on_reorder=queue_file.reorder)
    from .cluster import attach

    return attach(context, cluster=cluster, workers=workers, model=gen.model,
                  worker_options={"monitor_interval": gen.monitor_interval, "previews": gen.previews,
                                  "preview_every": gen.preview_every},
                  resubmit=gen.submit)


def _previews(gen: Generator, previews: Any, spec: Any) -> tuple[Any, str | None]:
    """(a Previewer on ``gen``'s steps or None, the TAEHV file given): ``previews`` ("auto" | "taehv" |
    "latent2rgb" | False | a TAEHV file) checked first, a given file read now (wan_nb.previews.choice);
    preview_every validated before anything attaches."""
    from .previews.choice import choose  # no torch at import

    choice = choose(previews, spec)
    if not choice.enabled:
        return None, choice.source
    from .previews import install  # numpy at import; torch only when a preview is made

    return install(gen.bus, gen.add_step_hook, gen.preview_every, model=gen.model, choice=choice), choice.source


def _open_run_folder(task: Task, info: dict[str, Any], run_journal: journal.Journal) -> None:
    """Write ``task``'s folder: its inputs (``<run>/inputs/``), ``task.json``, and open its journal."""
    info["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(task.created_at))
    try:
        info["inputs"] = task.inputs = inputs.save(task.run_dir, task.params)
        journal.write_task_file(task.run_dir, info)
        run_journal.open(task.id, task.run_dir)
    except OSError as exc:
        raise OSError(f"cannot write the run folder {task.run_dir}: {exc}. Pass runs_dir= a writable "
                      "folder (or set WAN_NB_RUNS_DIR).") from exc


def _check_retries(retries: Any) -> None:
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries={retries!r}: give a whole number >= 0")
