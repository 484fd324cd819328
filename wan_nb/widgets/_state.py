"""What a progress panel knows about one task, folded from its events (no widgets here).

Kept apart from the widgets so the folding is plain Python: the panel, the sweep cells and the
text fallback can share it, and tests can check it without a front end.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from typing import Any

from ..events import TERMINAL_STATUS, Event, EventType

__all__ = ["TaskState", "parse_timestamp", "TIMELINE"]

# The stages a run normally passes, in order; optional ones show only once seen.
TIMELINE = ("initializing", "downloading_model", "loading_model", "preparing_inputs", "applying_lora",
            "generating", "post_processing", "saving", "completed")
OPTIONAL_STAGES = frozenset({"downloading_model", "loading_model", "applying_lora"})
ENDINGS = TERMINAL_STATUS


def parse_timestamp(stamp: str) -> float:
    """Event timestamps (ISO-8601 UTC with ``Z``) as epoch seconds."""
    return _dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass
class TaskState:
    task_id: str | None = None
    prompt: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    status: str = "waiting"          # waiting (no task) | queued | running | completed | failed | cancelled
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
    output_path: str | None = None
    error: str | None = None
    last_seq: int = 0

    @classmethod
    def for_task(cls, task: Any) -> "TaskState":
        state = cls(task_id=task.id, prompt=getattr(task, "prompt", ""), status="queued")
        state.params = dict(getattr(task, "params", {}) or {})
        state.total_steps = int(state.params.get("steps") or 0)
        return state

    # -- folding ------------------------------------------------------------------------------
    def apply(self, event: Event) -> bool:
        """Fold one event in; False if it was already seen (replays overlap live delivery)."""
        if event.seq <= self.last_seq:
            return False
        self.last_seq = event.seq
        d, at = event.data, parse_timestamp(event.timestamp)
        if self.task_id is None:
            self.task_id = event.task_id
        kind = event.type
        if kind == EventType.GENERATION_STARTED:
            params = dict(d.get("params") or {})
            self.params = params or self.params
            self.prompt = params.get("prompt", self.prompt)
            self.total_steps = int(params.get("steps") or self.total_steps)
            if self.status == "waiting":
                self.status = "queued"
        elif kind == EventType.GENERATION_STAGE:
            stage = d["stage"]
            if not self.stages or self.stages[-1][0] != stage:
                self.stages.append((stage, at))
            self.stage, self.message = stage, d.get("stage_message", "") or self.message
        elif kind == EventType.DETAILED_GENERATION_PROGRESS:
            if self.status in ("waiting", "queued"):
                self.status, self.started_at = "running", at
            self.progress = max(self.progress, float(d.get("progress") or 0.0))
            self.message = d.get("message", self.message)
            self.eta = d.get("estimated_time_remaining")
            self.total_steps = int(d.get("total_steps") or self.total_steps)
            step = int(d.get("current_step") or 0)
            if d.get("stage") == "generating" and step > self.step:
                self.last_step = (step, at)
                if self.first_step is None:
                    self.first_step = (step, at)
            self.step = max(self.step, step)
        elif kind == EventType.MODEL_LOADING_PROGRESS:
            self.message = f"{d.get('status', '')} ({float(d.get('progress') or 0):.0f} %)"
        elif kind in ENDINGS:
            self.status = ENDINGS[kind]
            self.ended_at = at
            if self.started_at is None:
                self.started_at = at
            if kind == EventType.GENERATION_COMPLETED:
                self.progress, self.eta = 100.0, 0.0
                self.output_path = d.get("output_path")
                self.duration_s = d.get("duration_s")
                self.message = "Done"
            elif kind == EventType.GENERATION_FAILED:
                self.error = f"{d.get('error_type', 'Error')}: {d.get('error', '')}"
                self.message = f"Failed during {d.get('stage', self.stage)}: {self.error}"
                self.eta = None
            else:
                self.message = (f"Cancelled during {d.get('stage', self.stage)} "
                                f"after step {d.get('current_step', self.step)}")
                self.eta = None
        return True

    # -- derived values -----------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")

    def elapsed(self, now: float | None = None) -> float | None:
        if self.duration_s is not None:
            return float(self.duration_s)
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else (time.time() if now is None else now)
        return max(0.0, end - self.started_at)

    def steps_per_second(self) -> float | None:
        if self.first_step is None or self.last_step is None:
            return None
        (s0, t0), (s1, t1) = self.first_step, self.last_step
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
