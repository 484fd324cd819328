"""Honest time remaining: measured step rate now, plus what the stages still ahead took before.

A run's remaining time is (steps left x seconds per step) + (decode + save), where the step
time is measured in this run (per expert for Wan 2.2 two-expert models) and decode/save come
from earlier runs of the same model and shape, kept in a small JSON file in the cache.

Overall progress maps stages to fixed bands and steps linearly inside the generating band; it is
clamped so it never goes down and reaches 100 only on completion.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from wan_nb.runs.atomic import replace_text

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
    """Timings depend on the model and on the latent volume; steps are timed per step. A cache
    mode makes a different (faster) kind of step, so its runs are timed apart."""
    cache = params.get("cache")
    model = f"{model}+{cache}" if cache else model
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

    def reference(self, key: str) -> tuple[float, float, float] | None:
        """For a shape never run before: (decode + save seconds, seconds a step per classifier-
        free-guidance pass, this shape's volume / that shape's volume) of the same model's
        measured shape nearest in volume, or None.

        The first run of a new shape scales that tail by how much slower or faster its own steps
        are (:class:`StepClock`), which carries the fixed costs a line through volumes gets wrong
        when the known shapes are small.
        """
        if "post_processing" in self.get(key):
            return None
        model, volume = _split_key(key)
        if not volume:
            return None
        best: tuple[float, tuple[float, float]] | None = None
        with self._lock:
            for k, entry in self._data.items():
                m, v = _split_key(k)
                if m != model or not v or not all(n in entry for n in ("post_processing", "saving", "step_unit")):
                    continue
                if entry["step_unit"] <= 0:
                    continue
                distance = abs(math.log(v / volume))
                if best is None or distance < best[0]:
                    best = (distance, (entry["post_processing"] + entry["saving"], entry["step_unit"], volume / v))
        return best[1] if best else None

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
            replace_text(self._path, text)
        except OSError:
            pass  # timings are a nicety; never fail a run over them


class StepClock:
    """Measures denoising steps and predicts the time left.

    ``experts`` (optional) names the expert that runs each step (Wan 2.2 A14B); steps of an
    expert not yet seen are predicted at the rate of the one that has been.

    Constant time per step (running sums, prefix counts): a 10,000-step run must not spend
    longer estimating than denoising.
    """

    def __init__(self, total_steps: int, tail_seconds: float | None,
                 experts: Sequence[str | None] | None = None, *,
                 tail_reference: tuple[float, float, float] | None = None, passes: int = 1) -> None:
        self.total_steps = total_steps
        self.tail_seconds = tail_seconds
        # A new shape: (tail, seconds a step per pass, volume ratio) of a measured one, scaled by
        # this run's own step time once steps are timed (TimingStore.reference). ``passes``: 2 with
        # classifier-free guidance (two transformer passes a step, one decode).
        self.tail_reference = tail_reference
        self.passes = max(1, passes)
        # One expert (the common case): nothing is kept per step, so the clock costs the same for
        # 4 steps and for a billion. Two experts: the schedule and its prefix counts.
        self.experts: list[str | None] | None = list(experts) if experts and any(experts) else None
        # Per expert (and None = all steps): [count, sum of durations, first duration].
        self._stats: dict[str | None, list[float]] = {}
        self._all = [0, 0.0, 0.0]
        # _prefix[e][i]: how many of the first i steps run on expert e.
        self._prefix: dict[str | None, list[int]] = {}
        for expert in dict.fromkeys(self.experts or ()):
            counts, running = [0], 0
            for name in self.experts:
                running += name == expert
                counts.append(running)
            self._prefix[expert] = counts
        self._last = time.perf_counter()
        self.done = 0
        # With a cache mode: [count, sum, first] of computed and of reused steps, and the step
        # where reuse began (the modes compute every step of a warm-up first).
        self._kinds: dict[bool, list[float]] = {False: [0, 0.0, 0.0], True: [0, 0.0, 0.0]}
        self._reuse_began: int | None = None

    def start(self) -> None:
        self._last = time.perf_counter()

    def step_done(self, step: int, reused: bool | None = None) -> None:
        now = time.perf_counter()
        self.record(step, now - self._last, reused)
        self._last = now

    def record(self, step: int, duration: float, reused: bool | None = None) -> None:
        """Count ``step`` (1-based) as done, having taken ``duration`` seconds; ``reused``: with a
        cache mode, whether the step reused cached work (None: no cache mode)."""
        if reused is not None:
            stats = self._kinds[bool(reused)]
            if stats[0] == 0:
                stats[2] = duration
            stats[0] += 1
            stats[1] += duration
            if reused and self._reuse_began is None:
                self._reuse_began = step
        expert = self.experts[step - 1] if self.experts and 0 < step <= len(self.experts) else None
        for stats in (self._stats.setdefault(expert, [0, 0.0, 0.0]), self._all):
            if stats[0] == 0:
                stats[2] = duration
            stats[0] += 1
            stats[1] += duration
        self.done = step

    @staticmethod
    def _mean(stats: list[float]) -> float | None:
        count, total, first = stats
        if count == 0:
            return None
        # The first step carries one-off warm-up (allocations, kernel selection): drop it once
        # there is something better. The mean over every steady step, not a recent window: step
        # times jitter (other processes, the allocator), and a short window turns each hiccup
        # into a jump of the estimate; a real change of pace (the other expert) is timed apart.
        if count > 2:
            return (total - first) / (count - 1)
        return total / count

    def _rate(self, expert: str | None) -> float | None:
        stats = self._stats.get(expert)
        if stats is not None and stats[0]:
            return self._mean(stats)
        return self._mean(self._all)

    def _cached_rate(self) -> float | None:
        """Seconds a step from here on with a cache mode: computed and reused steps at their own
        rates, mixed in the share reused since reuse began (none seen yet: every step computed)."""
        computed, reused = self._kinds[False], self._kinds[True]
        rate_c, rate_r = self._mean(computed), self._mean(reused)
        if rate_r is None or self._reuse_began is None:
            return rate_c if rate_c is not None else rate_r
        since = self.done - self._reuse_began + 1
        share = min(reused[0] / since, 1.0) if since > 0 else 0.0
        return share * rate_r + (1.0 - share) * (rate_c if rate_c is not None else rate_r)

    def remaining(self) -> float | None:
        if self.done == 0:
            return None
        if self._kinds[False][0] or self._kinds[True][0]:
            rate = self._cached_rate()
            return None if rate is None else max(self.total_steps - self.done, 0) * rate + self.tail()
        if self.experts is None:
            rate = self._rate(None)
            return None if rate is None else max(self.total_steps - self.done, 0) * rate + self.tail()
        done = min(self.done, len(self.experts))
        steps_left = 0.0
        for expert, counts in self._prefix.items():
            left = counts[-1] - counts[done]
            if left:
                rate = self._rate(expert)
                if rate is None:
                    return None
                steps_left += left * rate
        return steps_left + self.tail()

    def tail(self) -> float:
        """Seconds for what follows the steps (VAE decode and export)."""
        rate = self._rate(None) or 0.0
        if self.tail_reference is not None and rate > 0:
            reference_tail, reference_step, volume_ratio = self.tail_reference
            # The decode grows at most linearly with the volume (its fixed costs make it grow
            # less); a step can grow faster (attention is quadratic in the tokens). So the step
            # ratio is trusted only between "no change" and "proportional to the volume".
            scale = (rate / self.passes) / reference_step
            low, high = min(1.0, volume_ratio), max(1.0, volume_ratio)
            return reference_tail * min(max(scale, low), high)
        if self.tail_seconds is not None:
            return self.tail_seconds
        # No run of this model measured yet: a VAE decode plus export costs roughly two steps
        # at these sizes; corrected after the first run.
        return 2.0 * rate


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
