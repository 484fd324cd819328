"""What a progress panel knows about one task (no widgets here): the core reducer's state
(:mod:`wan_nb.protocol.state`) plus the panel's own timeline and timing.

Kept apart from the widgets so it is plain Python, testable without a front end.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from typing import Any

from wan_nb.protocol.events import Event, EventType
from wan_nb.protocol.state import TaskState as CoreState
from wan_nb.protocol.statuses import RESUMABLE

__all__ = ["TaskState", "parse_timestamp", "TIMELINE", "format_rate", "RATE_WINDOW"]

# Step samples the rate is measured over: the same window, clock (the events' timestamps) and
# wording as the Lab sidebar's reducer (js/src/state.ts RATE_WINDOW, js/src/format.ts rate()), so
# the panel and the sidebar give one figure for one run.
RATE_WINDOW = 8


def format_rate(steps_per_second: float | None) -> str:
    """"2.4 it/s" when fast, "3.1 s/it" when slow, '' when unknown (as the sidebar writes it)."""
    if steps_per_second is None or not steps_per_second > 0:
        return ""
    if steps_per_second >= 1:
        return f"{steps_per_second:.{0 if steps_per_second >= 10 else 1}f} it/s"
    per_step = 1 / steps_per_second
    return f"{per_step:.{0 if per_step >= 10 else 1}f} s/it"

# The stages a run normally passes, in order; optional ones show only once seen.
TIMELINE = ("initializing", "downloading_model", "loading_model", "preparing_inputs", "applying_lora",
            "generating", "post_processing", "saving", "completed")
OPTIONAL_STAGES = frozenset({"downloading_model", "loading_model", "applying_lora"})


def parse_timestamp(stamp: str) -> float:
    """Event timestamps (ISO-8601 UTC with ``Z``) as epoch seconds."""
    return _dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass
class TaskState:
    """The panel's view of a task: :class:`wan_nb.protocol.state.TaskState` (the one reducer) plus what
    only a panel draws — the stage timeline, step timing and its own wording."""

    task_id: str | None = None
    prompt: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    status: str = "waiting"          # waiting (no task) | queued | running | paused | completed | failed | cancelled
    #                                  | stopped | interrupted (resumable from a checkpoint) | lost
    stage: str = "initializing"
    message: str = ""
    progress: float = 0.0
    eta: float | None = None
    step: int = 0
    total_steps: int = 0
    started_at: float | None = None  # epoch s of the first running event (queue time excluded)
    ended_at: float | None = None
    duration_s: float | None = None
    first_step: tuple[int, float] | None = None   # (step, time) of the first denoising step seen
    last_step: tuple[int, float] | None = None
    stages: list[tuple[str, float]] = field(default_factory=list)  # (stage, entered at)
    post_steps: dict[str, tuple[int, int]] = field(default_factory=dict)  # interpolate / upscale: (done, total)
    step_samples: list[tuple[int, float]] = field(default_factory=list)  # the last RATE_WINDOW (step, time)
    output_path: str | None = None
    error: str | None = None
    last_seq: int = 0
    queue_position: int | None = None  # while queued: 0 = runs next (the reducer's figure)
    core: CoreState = field(default_factory=CoreState, repr=False, compare=False)

    @classmethod
    def for_task(cls, task: Any) -> "TaskState":
        state = cls(task_id=task.id, prompt=getattr(task, "prompt", ""), status="queued")
        state.params = dict(getattr(task, "params", {}) or {})
        state.total_steps = int(state.params.get("steps") or 0)
        state.core.task_id = task.id
        return state

    # -- folding ------------------------------------------------------------------------------
    def apply(self, event: Event) -> bool:
        """Fold one event in; False if it was already seen (replays overlap live delivery)."""
        core = self.core
        if not core.apply(event):
            return False
        d, at = event.data, parse_timestamp(event.timestamp)
        self.last_seq = core.last_seq
        self.task_id = self.task_id or core.task_id
        self.prompt = core.prompt if core.prompt is not None else self.prompt
        self.params = dict(core.params) if core.params else self.params
        self.total_steps = int(core.total_steps or self.total_steps)
        self.progress = float(core.progress)
        self.eta = core.estimated_time_remaining
        # a resumable run is at its checkpoint's step (an interrupted one may have gone further unsaved)
        step = int(core.current_step or 0)
        self.step = step if core.status in RESUMABLE else max(self.step, step)
        self.output_path, self.duration_s = core.output_path, core.duration_s
        ended = core.finished
        if self.status != "waiting" or core.status != "queued" or event.type == EventType.GENERATION_STARTED:
            self.status = core.status
        self.queue_position = core.queue_position
        if core.status == "running" and self.started_at is None:
            self.started_at = at
        self.stage = (core.error_stage if core.status in ("failed", "cancelled", "lost", *RESUMABLE) else core.stage) \
            or self.stage
        kind = event.type
        if kind == EventType.GENERATION_STAGE:
            if not self.stages or self.stages[-1][0] != d["stage"]:
                self.stages.append((d["stage"], at))
        elif kind == EventType.DETAILED_GENERATION_PROGRESS and d.get("post_step"):  # wan_nb.post's steps
            self.post_steps = {**self.post_steps, d["post_step"]: (int(d.get("post_done") or 0),
                                                                   int(d.get("post_total") or 0))}
        elif kind == EventType.DETAILED_GENERATION_PROGRESS and d.get("stage") == "generating":
            step = int(d.get("current_step") or 0)
            if step > (self.last_step[0] if self.last_step else 0):
                self.last_step = (step, at)
                if self.first_step is None:
                    self.first_step = (step, at)
            if self.step_samples and step < self.step_samples[-1][0]:
                self.step_samples.clear()   # a second pass (two-expert models count again): measure afresh
            self.step_samples = [*self.step_samples, (step, at)][-RATE_WINDOW:]
        self.message = self._wording(kind, d) if ended or kind == EventType.MODEL_LOADING_PROGRESS \
            else (core.message or self.message)
        if ended and self.ended_at is None:
            self.ended_at = at
            if self.started_at is None:
                self.started_at = at
        return True

    def _wording(self, kind: str, d: Any) -> str:
        core = self.core
        if kind == EventType.MODEL_LOADING_PROGRESS:
            return f"{d.get('status', '')} ({float(d.get('progress') or 0):.0f} %)"
        if core.status == "completed":
            self.eta = 0.0
            return "Done"
        if core.status in RESUMABLE:  # "Stopped at step 3/8: resumable", as everywhere else
            return core.message
        if core.status in ("failed", "lost"):
            self.error = f"{core.error_type or 'Error'}: {core.error or ''}"
            return f"Failed during {core.error_stage or self.stage}: {self.error}"
        if core.status == "cancelled":
            return f"Cancelled during {core.error_stage or self.stage} after step {core.current_step or self.step}"
        return self.message

    # -- derived values -----------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.core.finished

    @property
    def resumable(self) -> bool:
        """Stopped or interrupted with a checkpoint: ``gen.resume_run`` can finish it."""
        return self.core.status in RESUMABLE

    @property
    def memory_released(self) -> bool:
        """Paused with ``release_memory=True``: the pipeline is off the accelerator while it holds."""
        return self.core.status == "paused" and self.core.memory_released

    def elapsed(self, now: float | None = None) -> float | None:
        if self.duration_s is not None:
            return float(self.duration_s)
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else (time.time() if now is None else now)
        return max(0.0, end - self.started_at)

    def steps_per_second(self) -> float | None:
        """Steps a second over the last :data:`RATE_WINDOW` step events (None until two are seen)."""
        if len(self.step_samples) < 2:
            return None
        (s0, t0), (s1, t1) = self.step_samples[0], self.step_samples[-1]
        if s1 <= s0 or t1 <= t0:
            return None
        return (s1 - s0) / (t1 - t0)

    def stage_durations(self) -> list[tuple[str, float | None]]:
        """Each stage entered with how long it lasted (None for the one still running)."""
        out: list[tuple[str, float | None]] = []
        for index, (stage, at) in enumerate(self.stages):
            if index + 1 < len(self.stages):
                out.append((stage, self.stages[index + 1][1] - at))
            else:
                out.append((stage, None))
        return out
