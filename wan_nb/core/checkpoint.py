"""Denoising checkpoints: what a run keeps so that a later process can finish it.

After every denoising step :class:`RunCheckpoints` holds *references* to the state the next step
needs (the latents, the scheduler's attributes, the RNG state): no copy, so watching costs
nothing. Now and then it writes that state to ``<run>/checkpoint.pt`` (``wan_nb.runs.checkpoint_file``
replaces it atomically, only the latest is kept):

* paced by cost (:class:`Pacing`): all checkpoint writes together stay under ``budget`` (1 %) of
  the denoising time so far, but one is written at least every ``max_interval_s`` (3 minutes)
  whatever it costs, and always after the last step (a decode that runs out of memory then
  costs only the decode);
* always when the task is being paused, cancelled with ``keep=True``, stopped by
  ``stop_after=k``, or its process gets SIGTERM/SIGINT (:func:`watch_signals`).

A write that fails (a full disk) fails that checkpoint only: the step's progress event carries
``checkpoint: {"saved": false, "error": ...}`` and the run goes on.

The state is the scheduler's whole ``__dict__`` (its config aside): step index, timesteps and
sigmas, a multistep solver's history (UniPC / DPM-Solver ``model_outputs``, ``timestep_list``,
``last_sample``, ``lower_order_nums``...). Whatever a scheduler keeps, it is kept, so a new
scheduler needs no code here; a value of a type torch cannot save safely makes checkpointing
refuse for that run (the event says which attribute).

Resuming (``wan_nb.core.resume``) gives the pipeline the saved latents and the RNG state and skips
the steps already done (:class:`SkipDoneSteps`) with the scheduler state put back, so the rest of
the run computes exactly what the interrupted one would have.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from wan_nb._version import __version__
from wan_nb.protocol.errors import ResumeError
from wan_nb.runs import checkpoint_file as files
from wan_nb.runs.atomic import replace_bytes

__all__ = ["Pacing", "RunCheckpoints", "SkipDoneSteps", "capture_scheduler", "restore_scheduler",
           "load_state", "watch_signals", "pacing_for", "configure", "NO_CHECKPOINTS"]

log = logging.getLogger(__name__)

#: the pipelines whose loop the checkpoint can re-enter (``if self.interrupt: continue`` per step)
RESUMABLE_PIPELINES = ("WanPipeline", "WanImageToVideoPipeline", "WanVideoToVideoPipeline", "WanVACEPipeline")


@dataclass(frozen=True)
class Pacing:
    """When to write. ``every_steps``: every N steps (plus the forced ones) instead of by cost."""

    budget: float = 0.01
    max_interval_s: float = 180.0
    every_steps: int | None = None


def configure(setting: Any) -> Pacing | None:
    """``Generator(checkpoints=...)`` checked (raises ValueError) as the Pacing runs use; and, from
    the main thread, SIGTERM / SIGINT checkpoint the running tasks before they act (:func:`watch_signals`)."""
    pacing = pacing_for(setting)
    if pacing is not None:
        watch_signals()
    return pacing


def pacing_for(setting: Any) -> Pacing | None:
    """``Generator(checkpoints=...)``: "auto" (by cost), an int N (every N steps), False (never)."""
    if setting is False or setting is None:
        return None
    if isinstance(setting, Pacing):
        return setting
    if setting == "auto" or setting is True:
        return Pacing()
    if isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1:
        return Pacing(every_steps=setting)
    raise ValueError(f"checkpoints={setting!r}: pass 'auto' (paced by cost), a whole number N >= 1 "
                     "(every N steps) or False (none)")


# -- the scheduler's state -------------------------------------------------------------------------
_SKIPPED = ("_internal_dict",)  # the config: compared by value, not restored


def capture_scheduler(scheduler: Any) -> dict[str, Any]:
    """The scheduler's attributes as they are now: a shallow copy (lists copied, tensors shared).

    Schedulers replace their tensors at each step rather than writing into them, so holding the
    references is enough to keep the state of this step boundary.
    """
    return {k: list(v) if isinstance(v, list) else v for k, v in vars(scheduler).items() if k not in _SKIPPED}


def _to_saved(value: Any, where: str) -> Any:
    """A copy torch can save and load with ``weights_only=True`` (tensors on the CPU, tagged devices)."""
    import numpy as np
    import torch

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return {"__tensor__": value.detach().to("cpu", copy=True), "on_accelerator": value.device.type != "cpu"}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        out = [_to_saved(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return out if isinstance(value, list) else {"__tuple__": out}
    raise TypeError(f"scheduler attribute {where} is a {type(value).__name__}, which a checkpoint cannot keep")


def _from_saved(value: Any, device: Any) -> Any:
    if isinstance(value, dict):
        if "__tensor__" in value:
            return value["__tensor__"].to(device) if value["on_accelerator"] else value["__tensor__"]
        if "__ndarray__" in value:
            return value["__ndarray__"].numpy()
        if "__tuple__" in value:
            return tuple(_from_saved(v, device) for v in value["__tuple__"])
    if isinstance(value, list):
        return [_from_saved(v, device) for v in value]
    return value


def scheduler_config(scheduler: Any) -> str:
    return json.dumps(dict(scheduler.config), sort_keys=True, default=str)


def restore_scheduler(scheduler: Any, saved: dict[str, Any], device: Any) -> None:
    """Put ``saved`` back into a scheduler that ``set_timesteps`` has just prepared for the same run.

    Its fresh timesteps and sigmas must equal the saved ones: if not, the flow shift, the step
    count or the scheduler itself changed, and continuing would mix two schedules.
    """
    import torch

    if type(scheduler).__name__ != saved["class"]:
        raise ResumeError(f"the checkpoint was made with the {saved['class']} scheduler; this pipeline runs "
                          f"{type(scheduler).__name__}. Set the same scheduler (gen.run_on_worker) and resume again.")
    if scheduler_config(scheduler) != saved["config"]:
        raise ResumeError("the scheduler's configuration differs from the checkpoint's (flow_shift or "
                          "scheduler options changed); resume with the settings the run was started with")
    state = {k: _from_saved(v, device) for k, v in saved["state"].items()}
    for name in ("timesteps", "sigmas"):
        fresh, kept = getattr(scheduler, name, None), state.get(name)
        if isinstance(fresh, torch.Tensor) and isinstance(kept, torch.Tensor) \
                and not torch.equal(fresh.cpu(), kept.cpu()):
            raise ResumeError(f"the scheduler's {name} differ from the checkpoint's: the step count or the "
                              "schedule changed; resume with the run's own steps and flow_shift")
    for key, value in state.items():
        setattr(scheduler, key, value)


# -- skipping the steps already done -----------------------------------------------------------------
class SkipDoneSteps:
    """Stands in for the pipeline's ``_interrupt`` flag: true for the first ``done`` steps.

    The diffusers Wan pipelines start each step with ``if self.interrupt: continue``, and reset
    the flag before they prepare the timesteps. So :meth:`install` wraps the scheduler's
    ``set_timesteps`` to put this object in the flag right after the reset; the loop then asks
    it once per step. At its first question (the loop's start: timesteps set, begin index set)
    it restores the scheduler's saved state; the steps already done are skipped without running
    the transformer, and the callback sees the true step indices from step ``done`` on.
    """

    def __init__(self, pipe: Any, done: int, scheduler_state: dict[str, Any], device: Any) -> None:
        self.pipe, self.done, self.saved, self.device = pipe, done, scheduler_state, device
        self.asked = 0
        self._scheduler: Any = None

    def install(self) -> None:
        scheduler = self._scheduler = self.pipe.scheduler
        original = type(scheduler).set_timesteps

        def set_timesteps(*args: Any, **kwargs: Any) -> Any:
            out = original(scheduler, *args, **kwargs)
            self.pipe._interrupt = self  # after __call__ reset it: diffusers' own cancel flag
            return out

        scheduler.set_timesteps = set_timesteps

    def uninstall(self) -> None:
        if self._scheduler is not None:
            vars(self._scheduler).pop("set_timesteps", None)

    def __bool__(self) -> bool:
        self.asked += 1
        if self.asked == 1:
            restore_scheduler(self.pipe.scheduler, self.saved, self.device)
        return self.asked <= self.done


# -- reading a checkpoint -------------------------------------------------------------------------
def load_state(folder: Path) -> dict[str, Any]:
    """The checkpoint payload of run folder ``folder``; a clear ResumeError when it cannot be used."""
    import torch

    path = Path(folder) / files.STATE_NAME
    if not path.is_file():
        raise ResumeError(f"{folder} has no checkpoint ({files.STATE_NAME}): the run ended before its first "
                          "checkpoint, or checkpoints were off. Start it again with gen.rerun(folder).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ResumeError(f"{path} cannot be read ({type(exc).__name__}: {exc}); the file is damaged. Start "
                          "the run again with gen.rerun(folder) (the folder is left as it is).") from exc
    if not isinstance(payload, dict) or "format" not in payload:
        raise ResumeError(f"{path} is not a wan_nb checkpoint; start the run again with gen.rerun(folder)")
    if payload["format"] != files.FORMAT or payload.get("wan_nb_version") != __version__:
        raise ResumeError(f"{path} was written by wan_nb {payload.get('wan_nb_version')} (checkpoint format "
                          f"{payload['format']}); this is wan_nb {__version__} (format {files.FORMAT}). Resume it "
                          f"with wan_nb=={payload.get('wan_nb_version')}, or start it again with gen.rerun(folder).")
    missing = [k for k in ("latents", "scheduler", "rng_state", "step", "total_steps", "recipe_key") if k not in payload]
    if missing or not 0 < int(payload["step"]) <= int(payload["total_steps"]):
        raise ResumeError(f"{path} is incomplete ({', '.join(missing) or 'bad step count'}); start the run "
                          "again with gen.rerun(folder)")
    return payload


# -- watching a run --------------------------------------------------------------------------------
_LIVE: "weakref.WeakSet[RunCheckpoints]" = weakref.WeakSet()


class RunCheckpoints:
    """The checkpoints of one run: watch every step, write when due (see the module docstring)."""

    def __init__(self, task: Any, pacing: Pacing | None, *, recipe_key: str | None, decode: Callable[..., Any],
                 hashes: dict[str, Any] | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.task, self.pacing, self.recipe_key, self.decode = task, pacing, recipe_key, decode
        self.hashes = hashes or {}   # the model, LoRA files and inputs the run depends on
        self.folder: Path = task.run_dir
        self.total = int(task.params["steps"])
        self.clock = clock
        self.started = clock()
        self.last_written = self.started
        self.spent = 0.0
        self.cost: float | None = None
        self.latest: dict[str, Any] | None = None
        self.previous_latents: Any = None
        self.saved_step = 0
        self.stopped_at: int | None = None
        self.refused: str | None = None   # why this run cannot be checkpointed at all
        self._lock = threading.Lock()
        _LIVE.add(self)

    # -- every step --------------------------------------------------------------------------
    def step_end(self, step: int, pipe: Any, latents: Any, expert: str | None, generator: Any) -> dict[str, Any]:
        """Keep this step's state; write it if due. Returns fields for the step's progress event."""
        if self.pacing is None or latents is None or self.refused:
            return {}
        self.previous_latents = self.latest["latents"] if self.latest else None
        self.latest = {"step": step, "latents": latents, "expert": expert, "pipe": pipe,
                       "scheduler": capture_scheduler(pipe.scheduler), "scheduler_class": type(pipe.scheduler).__name__,
                       "scheduler_config": scheduler_config(pipe.scheduler), "rng": generator.get_state()}
        task = self.task
        stop = getattr(task, "stop_after", None)
        reason = ("stop_after" if stop == step else "pause" if task.pause_requested
                  else "cancel" if task.cancel_requested and getattr(task, "keep_checkpoint", False)
                  else "last step" if step == self.total else None)
        if reason is None and not self._due(step):
            return {}
        fields = self.save(reason or "paced")
        if reason == "stop_after" and fields.get("checkpoint", {}).get("saved"):
            self.stopped_at = step
            self.write_preview()
        return fields

    def _due(self, step: int) -> bool:
        pacing, now = self.pacing, self.clock()
        if pacing.every_steps is not None:
            return step % pacing.every_steps == 0
        if now - self.last_written >= pacing.max_interval_s:
            return True
        expected = self.cost if self.cost is not None else self._guess_cost()
        return self.spent + expected <= pacing.budget * (now - self.started)

    def _guess_cost(self) -> float:
        """Before the first write: ~200 MB/s plus a file's fixed costs (measured on the first write)."""
        latents = self.latest["latents"]
        return 0.02 + latents.numel() * latents.element_size() / 200e6

    # -- writing -----------------------------------------------------------------------------
    def save(self, reason: str) -> dict[str, Any]:
        """Write the latest state now; the ``checkpoint`` field of the step's event."""
        with self._lock:
            latest = self.latest
            if latest is None or self.refused:
                return {}
            if reason == "signal" and (latest["step"] <= self.saved_step or self.task.done()):
                return {}   # nothing newer to keep, or a run that ended (failed) and was not let go
            began = self.clock()
            try:
                size = self._write(latest, reason)
            except TypeError as exc:  # a scheduler attribute of an unknown kind: no checkpoints for this run
                self.refused = str(exc)
                return {"checkpoint": {"step": latest["step"], "saved": False, "error": self.refused}}
            except OSError as exc:  # a full disk: this checkpoint fails, the run goes on
                self.last_written = self.clock()
                log.warning("wan_nb: checkpoint of %s at step %s failed: %s", self.task.id, latest["step"], exc)
                return {"checkpoint": {"step": latest["step"], "saved": False,
                                       "error": f"{type(exc).__name__}: {exc}; the run goes on"}}
            cost = self.clock() - began
            self.cost, self.spent, self.last_written = cost, self.spent + cost, self.clock()
            self.saved_step = latest["step"]
        return {"checkpoint": {"step": latest["step"], "saved": True, "seconds": round(cost, 4),
                               "bytes": size, "reason": reason}}

    def _write(self, latest: dict[str, Any], reason: str) -> int:
        import torch

        payload = {"format": files.FORMAT, "wan_nb_version": __version__, "task_id": self.task.id,
                   "step": latest["step"], "total_steps": self.total, "expert": latest["expert"],
                   "latents": latest["latents"].detach().to("cpu", copy=True),
                   "scheduler": {"class": latest["scheduler_class"], "config": latest["scheduler_config"],
                                 "state": {k: _to_saved(v, k) for k, v in latest["scheduler"].items()}},
                   "rng_state": latest["rng"], "recipe_key": self.recipe_key, "hashes": self.hashes,
                   "reason": reason}
        # Straight into the temporary file (no second copy in memory); a failure removes it, and the
        # last good checkpoint stays where it was.
        size = replace_bytes(self.folder / files.STATE_NAME, lambda out: torch.save(payload, out), durable=True)
        files.write_summary(self.folder, {"format": files.FORMAT, "wan_nb_version": __version__,
                                          "task_id": self.task.id, "step": latest["step"], "total_steps": self.total,
                                          "expert": latest["expert"], "reason": reason, "bytes": size,
                                          "recipe_key": self.recipe_key, "hashes": self.hashes,
                                          "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        return size

    def write_preview(self) -> None:
        """``stop_after``: the whole clip as the sampler now sees it (its x0 estimate), as ``preview.mp4``."""
        from wan_nb.previews import estimate_clean

        latest = self.latest
        try:
            clean = estimate_clean(latest["latents"], self.previous_latents, latest["pipe"])
            self.decode(latest["pipe"], clean, self.folder / "preview.mp4")
        except Exception:
            log.warning("wan_nb: the x0 preview of %s could not be written", self.task.id, exc_info=True)

    # -- the run's end -----------------------------------------------------------------------
    def ending(self) -> dict[str, Any]:
        """Fields for the run's ``generation_cancelled``: whether (and where) it can be resumed."""
        _LIVE.discard(self)
        if self.stopped_at is not None:
            return {"stopped_after": self.stopped_at, "resumable": True, "checkpoint_step": self.saved_step,
                    "total_steps": self.total, "preview_path": str(self.folder / "preview.mp4")}
        if getattr(self.task, "keep_checkpoint", False) and self.saved_step:
            return {"resumable": True, "checkpoint_step": self.saved_step, "total_steps": self.total}
        self.discard()  # cancelled without keep=True: the user let it go
        return {}

    def discard(self) -> None:
        """After the video is saved (or a plain cancel): the checkpoint has nothing left to protect."""
        _LIVE.discard(self)
        for name in (files.STATE_NAME, files.SUMMARY_NAME):
            try:
                os.unlink(self.folder / name)
            except OSError:
                pass


class _NoCheckpoints:
    """A run before its denoising starts (or one that cannot be checkpointed): does nothing."""

    stopped_at = None

    def step_end(self, *args: Any) -> dict[str, Any]:
        return {}

    def ending(self) -> dict[str, Any]:
        return {}

    def discard(self) -> None:
        pass


NO_CHECKPOINTS = _NoCheckpoints()


# -- SIGTERM / SIGINT ------------------------------------------------------------------------------
_WATCHING: dict[int, Any] = {}


def _on_signal(signum: int, frame: Any) -> None:
    for run in list(_LIVE):
        try:
            run.save("signal")
        except Exception:
            log.warning("wan_nb: checkpoint on signal %s failed", signum, exc_info=True)
    previous = _WATCHING.pop(signum, signal.SIG_DFL)
    signal.signal(signum, previous)
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        os.kill(os.getpid(), signum)  # what the signal would have done: end the process


def watch_signals() -> None:
    """Checkpoint every live run on SIGTERM, and on SIGINT where Python's default handler is on
    (a script, the CLI), then do what the signal did before. Only the main thread can install
    handlers; elsewhere (and in kernels with their own SIGINT handling) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, replaceable in ((signal.SIGTERM, (signal.SIG_DFL,)), (signal.SIGINT, (signal.default_int_handler,))):
        current = signal.getsignal(signum)
        if current is _on_signal or current not in replaceable:
            continue
        _WATCHING[signum] = current
        signal.signal(signum, _on_signal)
