"""Live previews: the whole clip, every latent frame, while it denoises.

After a denoising step the current latents go through a *linear* latent-to-RGB projection (a
3 x C matrix and a bias: no VAE, so it costs almost nothing next to a step), are scaled to at most
256 px on the longest side and encoded as one animated WebP (GIF where Pillow lacks WebP), which
a browser shows directly. Each preview is published as a ``preview`` event::

    {"step", "total_steps", "mime", "data_b64", "frames", "width", "height", "bytes", "projection"}

What is projected is not the noisy latent itself but the estimate of the clean result the
sampler is heading for (``x0``), extrapolated from the last two latents and the scheduler's
sigmas; with a flow-matching sampler that is exactly ``x_t - sigma_t * velocity``. At the last
step (sigma 0) it *is* the final latent, so the last preview shows what the VAE will decode.

Projections: Wan 2.1-style 16-channel latents and Wan 2.2 TI2V 48-channel latents use the
published factors (the ones ComfyUI ships); other channel counts get a projection fitted by
least squares against the model's own VAE, cached per model in the wan_nb cache folder.

Rate (``Generator(preview_every=...)``):

* an ``int`` N: every N steps, plus the last step;
* a ``float`` S: at most one every S seconds, plus the last step;
* ``None`` (default, adaptive): at most one a second, *and* previews may take at most 3 % of
  the denoising time so far (each preview's cost is predicted from what the previous one cost,
  the first from a one-off calibration, and the preview is skipped if it would break the
  budget). The last step gets a preview when the budget allows it (the one-a-second rule does
  not apply there), so on any run where previews are affordable the final state is shown.
  Step 1 never gets an adaptive preview: there is no step time measured and no x0 estimate yet.

Front ends: :func:`latest_preview` gives the newest preview of a task, :func:`preview_bytes`
the image bytes of a preview event (e.g. for ``ipywidgets.Image(format="webp")``).

The parts: :mod:`.projection` (latents to RGB), :mod:`.encoding` (RGB to an animated image),
:mod:`.rate` (which steps get one); this module makes the step hook out of them.
``import wan_nb.previews`` does not import torch; the functions that need it import it lazily.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .choice import PreviewChoice, choose
from .encoding import MAX_BYTES, encode, frame_durations, webp_supported
from .projection import (MAX_SIZE, WAN21, WAN22, Projection, fit_projection, preview_size, project,
                         projection_for)
from .rate import DEFAULT_BUDGET, DEFAULT_MIN_INTERVAL, CostModel, RateLimiter, check_every

__all__ = [
    "MAX_SIZE", "MAX_BYTES", "DEFAULT_BUDGET", "DEFAULT_MIN_INTERVAL",
    "Projection", "WAN21", "WAN22", "projection_for", "fit_projection", "preview_size",
    "project", "encode", "frame_durations", "RateLimiter", "Previewer", "install",
    "latest_preview", "preview_bytes", "webp_supported", "PreviewChoice", "choose",
]


@dataclass
class _RunState:
    task_id: str
    limiter: RateLimiter
    previous: Any = None  # latents after the previous step (for the x0 estimate)
    projection: Projection | None = None
    kind: str = "latent2rgb"        # what this run's previews are made with: "latent2rgb" | "taehv" | "off"
    taehv: Any = None               # a TaehvPreview when kind is "taehv"
    fallback: str | None = None     # why a run that asked for TAEHV gets latent2rgb
    cost_key: str = ""              # the TAEHV cost model this run uses (per file and device)


class Previewer:
    """The step hook that turns latents into ``preview`` events for one generator."""

    def __init__(self, publish: Callable[..., Any], every: int | float | None = None, *,
                 budget: float = DEFAULT_BUDGET, min_interval: float = DEFAULT_MIN_INTERVAL,
                 max_size: int = MAX_SIZE, max_bytes: int = MAX_BYTES, model: str | None = None,
                 choice: PreviewChoice | None = None) -> None:
        self.publish = publish
        self.choice = choice or PreviewChoice("latent2rgb")
        self.every = check_every(every)
        self.budget, self.min_interval = budget, min_interval
        self.max_size, self.max_bytes = max_size, max_bytes
        self.model = model
        self._state: _RunState | None = None  # one worker thread runs one task at a time
        self._cost = CostModel()  # learned across this generator's runs (sizes rarely change)
        self._taehv_costs: dict[str, CostModel] = {}  # per TAEHV file: its own calibration and pace

    def __call__(self, task: Any, step: int, timestep: Any, latents: Any, pipe: Any) -> None:
        if latents is None:
            return
        total = int(task.params["steps"])
        state = self._state
        if state is None or state.task_id != task.id or step == 1:
            state = self._state = _RunState(task.id, RateLimiter(
                self.every, budget=self.budget, min_interval=self.min_interval))
            self.choose_kind(state, task.params.get("previews"), latents)
        p = task.params
        out_h, out_w = preview_size(int(p["height"]), int(p["width"]), self.max_size)
        lat_frames = int(latents.shape[2])
        if state.kind == "taehv":  # the decoder's work grows with the latent cells, not the preview's pixels
            cost_model, pixels = self._taehv_costs[state.cost_key], int(latents[0, 0].numel())
        else:
            cost_model, pixels = self._cost, lat_frames * out_h * out_w
        expected = cost_model.predict(pixels) if state.limiter.mode == "adaptive" and state.kind != "off" else 0.0
        try:
            if state.kind != "off" and state.limiter.due(step, total, expected):
                started = time.perf_counter()
                self.make_preview(task, step, total, latents, pipe, state)
                cost = time.perf_counter() - started
                cost_model.learn(pixels, cost)
                state.limiter.spent(cost)
        finally:
            # Keep this step's latents for the next step's x0 estimate (a copy: a scheduler may
            # update its tensors in place). Dropped at the last step.
            state.previous = latents.detach().clone() if step < total else None
            if step >= total:
                self._state = None

    def choose_kind(self, state: _RunState, asked: Any, latents: Any) -> None:
        """What this run's previews are made with: its own ``previews=`` or the generator's choice;
        TAEHV only from a file that is here already (see :mod:`.choice`)."""
        mode = self.choice.mode if asked is None else asked
        channels = int(latents.shape[1])
        if mode is False:
            state.kind = "off"
            return
        if mode not in ("auto", "taehv"):
            return
        path = PreviewChoice(mode, self.choice.source).taehv_file(channels)
        if path is None:
            if mode == "taehv":
                state.fallback = ("no TAEHV checkpoint is cached for these latents; Generator(previews='taehv') "
                                  "downloads it once, before any run")
            return
        try:
            from .taehv_preview import TaehvPreview

            state.taehv = TaehvPreview(path, channels)
        except (ValueError, OSError) as exc:  # another architecture, or latents of another model
            state.fallback = str(exc)
            return
        state.kind = "taehv"
        preview, device = state.taehv, state.taehv.device_for(latents)
        state.cost_key = f"{path}@{device}"
        if state.cost_key not in self._taehv_costs:  # calibrated on the device its previews will use
            self._taehv_costs[state.cost_key] = CostModel(lambda: preview.calibration(device))

    def make_preview(self, task: Any, step: int, total: int, latents: Any, pipe: Any,
                     state: _RunState) -> dict[str, Any]:
        clean = estimate_clean(latents, state.previous, pipe)
        p = task.params
        size = (int(p["height"]), int(p["width"]))
        if state.kind == "taehv":
            frames = state.taehv.frames(clean, size, self.max_size)
            name = f"taehv:{state.taehv.path.stem}"
        else:
            if state.projection is None:
                state.projection = projection_for(pipe, channels=int(latents.shape[1]), model=self.model)
            frames = project(clean, state.projection, size=size, max_size=self.max_size)
            name = state.projection.name
        # a projected latent frame stands for `temporal` video frames; TAEHV gives every video frame
        temporal = 1 if state.kind == "taehv" else int(getattr(pipe, "vae_scale_factor_temporal", 4) or 4)
        data, mime, (height, width) = encode(frames, frame_durations(len(frames), p.get("fps") or 16, temporal),
                                             max_bytes=self.max_bytes)
        fields = {"step": step, "total_steps": total, "mime": mime,
                  "data_b64": base64.b64encode(data).decode("ascii"), "frames": len(frames),
                  "width": width, "height": height, "bytes": len(data), "projection": name}
        if state.fallback:
            fields["fallback"] = state.fallback
        self.publish(task, fields)
        return fields


def estimate_clean(latents: Any, previous: Any, pipe: Any) -> Any:
    """The sampler's current estimate of the clean latents (x0), or ``latents`` if unknown.

    With ``x_t = (1 - sigma) x0 + sigma * noise`` the last step's move ``x_t - x_prev`` is
    ``(sigma_t - sigma_prev) * velocity`` (exactly for Euler, approximately for multistep
    solvers), and ``x0 = x_t - sigma_t * velocity``.
    """
    scheduler = getattr(pipe, "scheduler", None)
    index = getattr(scheduler, "step_index", None)
    sigmas = getattr(scheduler, "sigmas", None)
    if previous is None or index is None or sigmas is None or not 1 <= index < len(sigmas) \
            or previous.shape != latents.shape:
        return latents
    sigma_t, sigma_prev = float(sigmas[index]), float(sigmas[index - 1])
    if abs(sigma_t - sigma_prev) < 1e-6:
        return latents
    x_t = latents.float()
    velocity = (x_t - previous.to(x_t.device, x_t.dtype)) / (sigma_t - sigma_prev)
    return x_t - sigma_t * velocity


def install(sink: Any, add_step_hook: Callable[[Any], Any], every: int | float | None = None, *,
            model: str | None = None, choice: PreviewChoice | None = None) -> Previewer:
    """A :class:`Previewer` publishing ``preview`` events into ``sink`` (a bus), added with
    ``add_step_hook`` (``Generator(previews=True)`` does this; so does a Ray worker)."""

    def publish(task: Any, fields: Mapping[str, Any]) -> None:
        sink.publish(task.id, "preview", **fields)

    previewer = Previewer(publish, every, model=model, choice=choice)
    add_step_hook(previewer)
    return previewer


# -- front-end helpers ---------------------------------------------------------------------------
def latest_preview(task: Any) -> dict[str, Any] | None:
    """The data of the newest ``preview`` event of a task (None if it has none yet)."""
    for event in reversed(task.events):
        if event.type == "preview":
            return dict(event.data)
    return None


def preview_bytes(preview: Any) -> bytes:
    """The image bytes of a preview event (or its data dict), ready for an ``<img>`` or
    ``ipywidgets.Image(format=...)`` (format: the part of ``mime`` after ``image/``)."""
    data = getattr(preview, "data", preview)
    return base64.b64decode(data["data_b64"])
