"""When a preview is made: every N steps, every S seconds, or adaptively within a time budget.

:class:`RateLimiter` decides per step; :class:`CostModel` predicts what a preview will cost, so
the adaptive mode can skip one that would break the budget (see ``wan_nb.previews``).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable

from .encoding import encode
from .projection import WAN21, project

__all__ = ["DEFAULT_BUDGET", "DEFAULT_MIN_INTERVAL", "check_every", "RateLimiter", "CostModel"]

DEFAULT_BUDGET = 0.03          # adaptive mode: share of denoising time previews may use
DEFAULT_MIN_INTERVAL = 1.0     # adaptive mode: seconds between previews (last step excepted)


def check_every(every: Any) -> int | float | None:
    if every is None:
        return None
    if isinstance(every, bool) or not isinstance(every, (int, float)):
        raise ValueError(f"preview_every={every!r}: give None (adaptive), an int number of steps "
                         "(e.g. 5) or a float number of seconds (e.g. 2.0)")
    if isinstance(every, int):
        if every < 1:
            raise ValueError(f"preview_every={every}: a number of steps must be at least 1")
        return every
    if not math.isfinite(every) or every <= 0:
        raise ValueError(f"preview_every={every}: a number of seconds must be positive")
    return float(every)


class RateLimiter:
    """Decides at which steps of one run a preview is made (see the module doc for the rules).

    Call :meth:`due` after every step with the predicted cost of a preview, and
    :meth:`spent` with the real cost of each preview made. ``clock`` is injectable for tests.
    """

    def __init__(self, every: int | float | None = None, *, budget: float = DEFAULT_BUDGET,
                 min_interval: float = DEFAULT_MIN_INTERVAL,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.every = check_every(every)
        self.budget = budget
        self.min_interval = min_interval
        self.clock = clock
        self.first_step_at: float | None = None
        self.last_preview_at: float | None = None
        self.spent_s = 0.0
        self.count = 0

    @property
    def mode(self) -> str:
        if self.every is None:
            return "adaptive"
        return "steps" if isinstance(self.every, int) else "seconds"

    def step_time(self, step: int) -> float | None:
        """Mean denoising step time so far, preview time excluded (None before step 2)."""
        if self.first_step_at is None or step < 2:
            return None
        return max(0.0, self.clock() - self.first_step_at - self.spent_s) / (step - 1)

    def allowance(self, step: int) -> float | None:
        """Seconds of preview work the budget allows up to and including ``step``."""
        mean = self.step_time(step)
        return None if mean is None else self.budget * mean * step

    def due(self, step: int, total: int, expected_cost: float = 0.0) -> bool:
        now = self.clock()
        if self.first_step_at is None:
            self.first_step_at = now  # steps are timed from the end of the first one we see
        last = step >= total
        if self.mode == "steps":
            return last or step % int(self.every) == 0  # type: ignore[arg-type]
        since = now - (self.last_preview_at if self.last_preview_at is not None else self.first_step_at)
        if self.mode == "seconds":
            return last or since >= float(self.every)  # type: ignore[arg-type]
        allowance = self.allowance(step)
        if allowance is None or self.spent_s + expected_cost > allowance:
            return False
        return last or since >= self.min_interval

    def spent(self, seconds: float) -> None:
        self.spent_s += max(0.0, seconds)
        self.count += 1
        self.last_preview_at = self.clock()


class CostModel:
    """Predicts a preview's seconds from its output pixels (all frames).

    Before any real preview of this generator: ``overhead + per_pixel * pixels`` from a one-off
    calibration (real projection + encode of two small synthetic clips, once per process), times
    a safety factor, because a preview that breaks the budget is worse than one that comes a step
    late. After that: the measured cost per pixel of the previous previews.
    """

    SAFETY = 2.0
    _calibrated: tuple[float, float] | None = None  # (overhead s, s per pixel), per process
    _lock = threading.Lock()

    def __init__(self, calibrate: Callable[[], tuple[float, float]] | None = None) -> None:
        self.per_pixel: float | None = None
        # another preview kind's one-off calibration (TAEHV: its own decoder, per latent cell)
        self.calibrate = calibrate

    @classmethod
    def calibration(cls) -> tuple[float, float]:
        import torch

        with cls._lock:
            if cls._calibrated is None:
                generator = torch.Generator().manual_seed(0)

                def timed(frames: int, grid: int, size: int) -> tuple[float, int]:
                    latents = torch.randn(16, frames, grid, grid, generator=generator) * 0.3
                    best = math.inf
                    for _ in range(2):  # the first pass also warms up torch and the codec
                        started = time.perf_counter()
                        encode(project(latents, WAN21, size=(size, size)), 100)
                        best = min(best, time.perf_counter() - started)
                    return best, frames * size * size

                small_s, small_px = timed(2, 4, 32)
                large_s, large_px = timed(5, 16, 128)
                per_pixel = max(large_s - small_s, 1e-9) / (large_px - small_px)
                cls._calibrated = (max(0.0, small_s - per_pixel * small_px), per_pixel)
            return cls._calibrated

    def predict(self, pixels: int) -> float:
        if self.per_pixel is not None:
            return self.per_pixel * pixels
        overhead, per_pixel = self.calibrate() if self.calibrate is not None else self.calibration()
        return self.SAFETY * (overhead + per_pixel * pixels)

    def learn(self, pixels: int, seconds: float) -> None:
        rate = seconds / max(1, pixels)
        self.per_pixel = rate if self.per_pixel is None else 0.5 * self.per_pixel + 0.5 * rate
