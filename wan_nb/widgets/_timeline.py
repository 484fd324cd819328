"""The progress panel's stage timeline: one chip a stage, marked by how that stage ended."""

from __future__ import annotations

from wan_nb.protocol.statuses import ENDING_STAGES, RESUMABLE

from ._state import OPTIONAL_STAGES, TIMELINE, TaskState

__all__ = ["timeline_html", "STAGE_LABEL"]

STAGE_LABEL = {"initializing": "init", "downloading_model": "download", "loading_model": "load model",
               "preparing_inputs": "encode prompt", "applying_lora": "LoRA", "generating": "denoise",
               "post_processing": "decode", "saving": "save", "completed": "done", "failed": "failed",
               "cancelled": "cancelled"}

_COLOR = {"failed": "#c62828", "cancelled": "#e65100", "running": "#0072b2", "stopped": "#8e6c00"}  # else done: green
_MARK = {"failed": "✗", "cancelled": "■", "running": "▶", "stopped": "‖"}                  # else done: ✓


# The ending stage drawn in place of "done" for a run that ended otherwise (a stopped run's last
# stage event is "cancelled"; an interrupted one has none: its process died).
_ENDING_STAGE = {"failed": "failed", "cancelled": "cancelled", "stopped": "cancelled"}


def timeline_html(s: TaskState) -> str:
    """Each stage as a chip marked by how it ended: ✓ done, ▶ running, ■ cancelled,
    ‖ stopped / interrupted (resumable) or ✗ failed in it (the stage a run stopped in did not
    finish), ○ not reached."""
    seen = dict((stage, d) for stage, d in s.stage_durations())
    stopped_in = s.stage if s.status in ("failed", "cancelled", "lost", *RESUMABLE) else None
    chips = []
    for stage in TIMELINE:
        if stage == "completed" and s.status in _ENDING_STAGE:
            stage = _ENDING_STAGE[s.status]
        if stage in OPTIONAL_STAGES and stage not in seen:
            continue
        label = "stopped" if stage == "cancelled" and s.status == "stopped" else STAGE_LABEL.get(stage, stage)
        if stage not in seen:
            chips.append(f"<span style='color:#aaa'>○ {label}</span>")
            continue
        ending = stage in ENDING_STAGES
        current = stage == s.stage and not s.finished
        duration = seen[stage]
        extra = f" {duration:.1f}s" if duration is not None and duration >= 0.05 and not ending else ""
        if stage == stopped_in:
            how = "failed" if s.status in ("failed", "lost") else "stopped" if s.status in RESUMABLE else "cancelled"
        elif ending:
            how = "stopped" if s.status == "stopped" else stage if stage != "completed" else "done"
        else:
            how = "running" if current else "done"
        color, mark = _COLOR.get(how, "#2e7d32"), _MARK.get(how, "✓")
        weight = "bold" if current or ending or stage == stopped_in else "normal"
        chips.append(f"<span style='color:{color};font-weight:{weight}' data-stage='{stage}' "
                     f"data-ended='{how}'>{mark} {label}{extra}</span>")
        if stage == "post_processing":
            chips.extend(_post_chips(s, stopped_in == stage))
    return "<div class='wan-nb-timeline' style='font-size:90%'>" + " → ".join(chips) + "</div>"


def _post_chips(s: TaskState, stopped_here: bool) -> list[str]:
    """The post-processing steps after the decode (interpolate, upscale) with their count done."""
    chips = []
    for step, (done, total) in s.post_steps.items():
        if done >= total > 0:
            how = "done"
        elif stopped_here:
            how = "failed" if s.status in ("failed", "lost") else "cancelled"
        else:
            how = "running" if not s.finished else "done"
        color, mark = _COLOR.get(how, "#2e7d32"), _MARK.get(how, "✓")
        chips.append(f"<span style='color:{color}' data-post-step='{step}' data-ended='{how}'>"
                     f"{mark} {step} {done}/{total}</span>")
    return chips
