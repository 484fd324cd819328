"""The short JSON summary of a task's end that notifications send (``Generator(notify=)``, the
server's webhook): who ended, how, and the few facts a phone notification or a chat line needs.

Standard library only: the Jupyter server builds the same summary from the events it relays.
"""

from __future__ import annotations

from typing import Any, Mapping

from wan_nb.protocol.events import TERMINAL_STATUS, is_terminal
from wan_nb.protocol.state import PRODUCER_LOST

__all__ = ["terminal_summary"]


def _status(type_: str, data: Mapping[str, Any]) -> str:
    if type_ == "storyboard_progress":
        return "completed" if data.get("step") == "complete" else str(data.get("status"))
    status = TERMINAL_STATUS[type_]
    if data.get("error_type") == PRODUCER_LOST:
        return "lost"
    if status == "cancelled" and data.get("stopped_after"):
        return "stopped"
    return status


def terminal_summary(type_: str, task_id: str, data: Mapping[str, Any],
                     about: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The summary of a terminal event (None for any other event). ``about``: what is known of
    the task besides the event (``prompt``, ``model``, ``kind``), e.g. its snapshot."""
    if not is_terminal(type_, data):
        return None
    about = about or {}
    status = _status(type_, data)
    prompt = str(about.get("prompt") or (data.get("params") or {}).get("prompt") or "")
    output = data.get("output_path") or (data.get("data") or {}).get("final_video_path") or data.get("preview_path")
    error = data.get("error") or (data.get("message") if status == "failed" else None)
    words = {"completed": "finished", "failed": "failed", "cancelled": "was cancelled", "lost": "was lost",
             "stopped": f"stopped after step {data.get('stopped_after')}"}.get(status, status)
    short = prompt if len(prompt) <= 80 else prompt[:77] + "..."
    text = f"wan_nb: {about.get('kind') or 'generation'} {task_id} {words}" + (f": {short}" if short else "")
    if error:
        text += f" ({error})"
    return {"task_id": task_id, "event": type_, "status": status, "kind": about.get("kind") or "generation",
            "prompt": prompt, "model": about.get("model") or about.get("model_type"), "output_path": output,
            "duration_s": data.get("duration_s"), "error": error, "resumable": bool(data.get("resumable")),
            "timestamp": data.get("timestamp"), "text": text, "content": text}
