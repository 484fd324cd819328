"""Honest time remaining: measured step rate now, plus what the stages still ahead took before.

A run's remaining time is (steps left x seconds per step) + (decode + save), where the step
time is measured in this run (per expert for Wan 2.2 two-expert models) and decode/save come
from earlier runs of the same model and shape, kept in a small JSON file in the cache.

Overall progress maps stages to fixed bands and steps linearly inside the generating band; it is
clamped so it never goes down and reaches 100 only on completion.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["TimingStore", "StepClock", "ProgressScale", "shape_key"]

# Overall-progress band (start, end) of each stage, in percent.
BANDS: dict[str, tuple[float, float]] = {
    "initializing": (0.0, 1.0),
    "downloading_model": (1.0, 6.0),
    "loading_model": (6.0, 9.0),
    "preparing_inputs": (9.0, 10.0),
    "applying_lora": (10.0, 11.0),
    "generating": (11.0, 90.0),
    "post_processing": (90.0, 97.0),
    "saving": (97.0, 99.5),
}


def shape_key(model: str, params: dict[str, Any]) -> str:
    """Timings depend on the model and on the latent volume; steps are timed per step."""
    return f"{model}|{params['height']}x{params['width']}x{params['num_frames']}"


def _split_key(key: str) -> tuple[str, float]:
    """("model", megavoxels) from a :func:`shape_key`."""
    model, _, shape = key.rpartition("|")
    try:
        height, width, frames = (int(x) for x in shape.split("x"))
    except ValueError:
        return model, 0.0
    return model, height * width * frames / 1e6


class TimingStore:
    """Remembers how long decode and save (and load) took per model and shape."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, float]] = {}
        if path is not None and path.is_file():
            try:
                self._data = json.loads(path.read_text())
            except (OSError, ValueError):
                self._data = {}  # a damaged cache only costs one run without history

    def get(self, key: str) -> dict[str, float]:
        with self._lock:
            return dict(self._data.get(key, {}))

    def tail_seconds(self, key: str) -> float | None:
        """Decode + save seconds for this shape: measured before, else predicted from the other
        shapes of the same model, else None.

        Decode and save grow with the pixel volume plus a fixed cost: with two or more shapes
        measured, a least-squares line ``a + b * volume`` through them; with one, proportional.
        """
        known = self.get(key)
        if "post_processing" in known and "saving" in known:
            return known["post_processing"] + known["saving"]
        model, volume = _split_key(key)
        if not volume:
            return None
        with self._lock:
            samples = [(v, entry["post_processing"] + entry["saving"])
                       for k, entry in self._data.items()
                       for m, v in [_split_key(k)]
                       if m == model and v and "post_processing" in entry and "saving" in entry]
        if not samples:
            return None
        volumes = {v for v, _ in samples}
        if len(volumes) == 1:
            (v, t), = samples[:1]
            return t * volume / v
        n = len(samples)
        mean_v = sum(v for v, _ in samples) / n
        mean_t = sum(t for _, t in samples) / n
        slope = (sum((v - mean_v) * (t - mean_t) for v, t in samples)
                 / sum((v - mean_v) ** 2 for v, _ in samples))
        slope = max(slope, 0.0)
        intercept = max(mean_t - slope * mean_v, 0.0)
        return intercept + slope * volume

    def record(self, key: str, durations: dict[str, float]) -> None:
        with self._lock:
            entry = self._data.setdefault(key, {})
            for stage, seconds in durations.items():
                previous = entry.get(stage)
                # Weighted towards the newest run, but one outlier doesn't erase history.
                entry[stage] = seconds if previous is None else 0.6 * seconds + 0.4 * previous
            snapshot = json.dumps(self._data)
        self._save(snapshot)

    def _save(self, text: str) -> None:
        if self._path is None:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".timings.")
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.replace(tmp, self._path)
        except OSError:
            pass  # timings are a nicety; never fail a run over them


class StepClock:
    """Measures denoising steps and predicts the time left.

    ``experts`` (optional) names the expert that runs each step (Wan 2.2 A14B); steps of an
    expert not yet seen are predicted at the rate of the one that has been.
    """

    def __init__(self, total_steps: int, tail_seconds: float | None,
                 experts: Sequence[str | None] | None = None) -> None:
        self.total_steps = total_steps
        self.tail_seconds = tail_seconds
        self.experts = list(experts) if experts else [None] * total_steps
        self._durations: dict[str | None, list[float]] = {}
        self._last = time.perf_counter()
        self.done = 0

    def start(self) -> None:
        self._last = time.perf_counter()

    def step_done(self, step: int) -> None:
        now = time.perf_counter()
        expert = self.experts[step - 1] if 0 < step <= len(self.experts) else None
        self._durations.setdefault(expert, []).append(now - self._last)
        self._last = now
        self.done = step

    def _rate(self, expert: str | None) -> float | None:
        samples = self._durations.get(expert) or [d for ds in self._durations.values() for d in ds]
        if not samples:
            return None
        # The first step carries one-off warm-up (allocations, kernel selection): drop it once
        # there is something better. The mean over every steady step, not a recent window: step
        # times jitter (other processes, the allocator), and a short window turns each hiccup
        # into a jump of the estimate; a real change of pace (the other expert) is timed apart.
        steady = samples[1:] if len(samples) > 2 else samples
        return sum(steady) / len(steady)

    def remaining(self) -> float | None:
        if self.done == 0:
            return None
        steps_left = 0.0
        for expert in self.experts[self.done:]:
            rate = self._rate(expert)
            if rate is None:
                return None
            steps_left += rate
        tail = self.tail_seconds
        if tail is None:
            # No earlier run of this shape: a VAE decode plus export costs roughly two steps at
            # these sizes; corrected after the first run.
            tail = 2.0 * (self._rate(None) or 0.0)
        return steps_left + tail


class ProgressScale:
    """Overall progress in percent that never decreases."""

    def __init__(self) -> None:
        self.value = 0.0

    def at(self, stage: str, fraction: float = 0.0) -> float:
        start, end = BANDS.get(stage, (self.value, self.value))
        fraction = min(max(fraction, 0.0), 1.0)
        self.value = max(self.value, round(start + (end - start) * fraction, 2))
        return self.value

    def complete(self) -> float:
        self.value = 100.0
        return self.value
