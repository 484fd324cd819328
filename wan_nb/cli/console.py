"""Plain-text progress for terminals and for places where widgets cannot render."""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from typing import Any, TextIO

from wan_nb.protocol.events import Event, EventType
from wan_nb.protocol.state import TaskState

__all__ = ["TextProgress", "follow_in_background", "format_seconds", "cli_wording"]

# Python keyword arguments a message may suggest, and the wan-nb flag that sets each.
_FLAGS = {"device": "--device", "model": "--model", "dtype": "--dtype", "offload": "--offload",
          "steps": "--steps", "num_frames": "--frames", "height": "--height", "width": "--width",
          "seed": "--seed", "quant": "--quant", "fps": "--fps", "plan": "--plan", "attention": "--attention",
          "cache": "--cache", "guidance_scale": "--guidance", "flow_shift": "--flow-shift"}
# A suggestion ("pass device='cpu'", "or steps=4"): name='value' after a word that offers it. A
# parameter being named ("num_frames=10: must be ...") or code ("Generator(model='x')") stays.
_KEYWORD = re.compile(r"\b(pass|use|try|with|or|set) (" + "|".join(_FLAGS)
                      + r")=(?:'([^']*)'|\"([^\"]*)\"|([\w.:-]+))")


def cli_wording(message: str) -> str:
    """An error message as a terminal user acts on it: one line, and suggestions in flag syntax
    (``pass device='cpu'`` -> ``pass --device cpu``)."""
    one_line = " ".join(str(message).split())

    def flag(match: re.Match[str]) -> str:
        value = next(v for v in match.groups()[2:] if v is not None)
        return f"{match.group(1)} {_FLAGS[match.group(2)]} {value}"

    return _KEYWORD.sub(flag, one_line)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class TextProgress:
    """Renders a task's events as one self-overwriting line (a tty) or plain lines (a log).

    Redraws at most ``max_fps`` times a second; stage changes and the end always print.
    """

    def __init__(self, stream: TextIO | None = None, max_fps: float = 10.0, live: bool | None = None,
                 say_errors: bool = True) -> None:
        self.stream = stream or sys.stderr
        # The CLI prints a failure itself, once, as its one error line: it passes False here.
        self.say_errors = say_errors
        self.last_eta: tuple[float, float] | None = None   # (seconds left, when it was said)
        self.live = self.stream.isatty() if live is None else live
        self.min_interval = 1.0 / max_fps
        self.last_draw = 0.0
        self.state: dict[str, Any] = {"stage": "initializing", "progress": 0.0, "message": "",
                                      "eta": None, "step": 0, "steps": 0, "memory": ""}
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.core = TaskState()   # the one reducer; this class only draws it

    def __call__(self, event: Event) -> None:
        with self.lock:
            self._handle(event)

    def _handle(self, event: Event) -> None:
        d, s = event.data, self.state
        if self.core.task_id not in (None, event.task_id):
            self.core = TaskState()           # the next task of a generator: start over
            self.last_eta = None
        if not self.core.apply(event):
            return
        core = self.core
        s.update(stage=self._stage_label(core, d), progress=core.progress, message=core.message,
                 eta=self._eta(core), step=core.current_step or 0, steps=core.total_steps or 0)
        force = False
        if event.type == EventType.GENERATION_STAGE:
            s["message"] = d.get("stage_message", "")
            force = True
        elif event.type == EventType.GENERATION_QUEUED:   # waiting for the worker: say where it stands
            s["message"] = core.message
            force = True
        elif event.type == EventType.MODEL_LOADING_PROGRESS:
            s["message"] = f"{d.get('component') or 'model'}: {d['status']} ({d['progress']:.0f}%)"
        elif event.type == EventType.VRAM_MONITORING:
            label = "RAM" if d["device_name"] == "cpu" else "VRAM"
            s["memory"] = f"{label} {d['allocated_percent']:.0f}%"
        elif event.type in (EventType.GENERATION_PAUSED, EventType.GENERATION_RESUMED):
            paused = event.type == EventType.GENERATION_PAUSED
            s["message"] = f"paused after step {d['current_step']}" if paused else "resumed"
            force = True
        elif event.type == EventType.GENERATION_COMPLETED:
            self._draw(final=f"done in {d['duration_s']:.1f}s -> {d['output_path']}")
            return
        elif event.type == EventType.GENERATION_FAILED:
            self._draw(final=f"FAILED in {d['stage']}: {d['error_type']}: {d['error']}" if self.say_errors else "")
            return
        elif event.type == EventType.GENERATION_CANCELLED:
            self._draw(final=f"cancelled during {d['stage']} at step {d['current_step']}")
            return
        now = time.monotonic()
        if force and not self.live:
            self._draw()
        elif self.live and (force or now - self.last_draw >= self.min_interval):
            self._draw()

    @staticmethod
    def _stage_label(core: TaskState, data: Any) -> str:
        """What the stage column says: a task waits as "queued (#n)" until the worker starts it
        (not "initializing" first, as if it had started, then "queued", then "initializing")."""
        if core.status == "queued":
            return "queued" if core.queue_position is None else f"queued (#{core.queue_position + 1})"
        if core.status == "paused":
            return "paused"
        return core.stage or data.get("stage") or "initializing"

    def _eta(self, core: TaskState) -> float | None:
        """Seconds left: the newest estimate, counted down by the clock while the stages after the
        steps (decode, save) send none, instead of turning into "--:--" just before the end."""
        now = time.monotonic()
        if core.estimated_time_remaining is not None:
            self.last_eta = (float(core.estimated_time_remaining), now)
            return float(core.estimated_time_remaining)
        if self.last_eta is None or core.status != "running":
            return None
        left, said_at = self.last_eta
        return max(0.0, left - (now - said_at))

    def _line(self) -> str:
        s = self.state
        width = 24
        filled = int(width * s["progress"] / 100)
        bar = "#" * filled + "-" * (width - filled)
        steps = f" step {s['step']}/{s['steps']}" if s["steps"] else ""
        elapsed = format_seconds(time.monotonic() - self.started)
        parts = [f"[{bar}] {s['progress']:5.1f}%", f"{s['stage']:<17}", steps.strip(),
                 f"elapsed {elapsed}", f"left {format_seconds(s['eta'])}", s["memory"]]
        return "  ".join(p for p in parts if p)

    def _draw(self, final: str | None = None) -> None:
        self.last_draw = time.monotonic()
        line = self._line()
        columns = shutil.get_terminal_size((100, 20)).columns
        if final is not None:
            text = "\n".join(part for part in ((line if self.live else ""), final) if part)
            if text:
                self.stream.write(("\r\x1b[K" if self.live else "") + text + "\n")
        elif self.live:
            self.stream.write("\r\x1b[K" + line[: columns - 1])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def follow_in_background(task: Any, stream: TextIO | None = None) -> Any:
    """Print ``task``'s progress as it runs; returns the unsubscribe function."""
    return task.subscribe(TextProgress(stream), replay=True)
