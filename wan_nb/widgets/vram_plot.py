"""A live memory chart: allocated, reserved and used memory as a share of the device, with the
75 % and 90 % warning lines and a band for each stage.

An anywidget: the drawing is plain JavaScript and CSS shipped in ``static/`` (no build step), so
it renders wherever anywidget's front end is installed — JupyterLab 4 and Notebook 7 alike.
Without a GPU the readings are RAM (``device_name == "cpu"``) and the chart says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import anywidget
import traitlets

__all__ = ["VramPlot", "format_mib"]

STATIC = Path(__file__).with_name("static")


def format_mib(mib: float) -> str:
    """A memory figure in MiB as the chart's legend writes it (``static/vram_plot.js``'s ``mib``):
    binary units, one decimal above 1 GiB, so the header and the legend name the same number."""
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{round(mib)} MiB"


class VramPlot(anywidget.AnyWidget):
    _esm = STATIC / "vram_plot.js"
    _css = STATIC / "vram_plot.css"

    samples = traitlets.List(traitlets.Dict()).tag(sync=True)   # {t, allocated, reserved, used, total} (MB)
    bands = traitlets.List(traitlets.Dict()).tag(sync=True)     # {stage, start, end|None} (epoch s)
    label = traitlets.Unicode("Memory: waiting for the first reading").tag(sync=True)
    kind = traitlets.Unicode("").tag(sync=True)                 # "gpu" | "ram" | "" (no reading yet)
    window_s = traitlets.Float(300.0).tag(sync=True)            # how far back the chart looks
    warning_percent = traitlets.Float(75.0).tag(sync=True)
    critical_percent = traitlets.Float(90.0).tag(sync=True)

    def __init__(self, window_s: float = 300.0, max_samples: int = 1200, **kwargs: Any) -> None:
        super().__init__(window_s=window_s, **kwargs)
        self.max_samples = max_samples

    @staticmethod
    def reading(at: float, data: Mapping[str, Any]) -> dict[str, Any]:
        """One ``vram_monitoring`` event's data as a chart sample."""
        total = float(data.get("total_mb") or 0.0)
        used = data.get("used_mb")
        if used is None:  # not a contract field: other producers may leave it out
            used = total - float(data.get("free_mb") or 0.0)
        return {"t": round(at, 3), "allocated": float(data.get("allocated_mb") or 0.0),
                "reserved": float(data.get("reserved_mb") or 0.0), "used": round(float(used), 1),
                "total": total}

    @staticmethod
    def describe(data: Mapping[str, Any]) -> tuple[str, str]:
        """(kind, label) for a reading: RAM is labelled as RAM, never passed off as VRAM."""
        name = str(data.get("device_name") or "")
        total = format_mib(float(data.get("total_mb") or 0.0))
        if name == "cpu" or data.get("source") == "ram":
            return "ram", f"RAM (no GPU) · {total} machine · process = this Python process"
        return "gpu", f"GPU memory · {name} · {total}"

    def set_series(self, samples: list[dict[str, Any]], bands: list[dict[str, Any]],
                   kind: str, label: str) -> None:
        """Replace what is drawn (one comm message: the traits change together)."""
        samples = samples[-self.max_samples:]
        with self.hold_sync():
            if samples != self.samples:
                self.samples = samples
            if bands != self.bands:
                self.bands = bands
            if kind and kind != self.kind:
                self.kind = kind
            if label and label != self.label:
                self.label = label
