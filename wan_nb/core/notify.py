"""``Generator(..., notify=callable)``: call ``notify(summary)`` when a task of the generator ends.

``summary`` is :func:`wan_nb.protocol.notice.terminal_summary` (task_id, status — completed,
failed, cancelled, stopped —, prompt, model, output_path, duration_s, error, resumable, text).
It is called on a subscriber thread of its own, so a slow or failing callable never delays the
run or any other listener; what it raises is logged.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from wan_nb.protocol.events import TERMINAL_STATUS, EventType
from wan_nb.protocol.notice import terminal_summary

__all__ = ["attach"]

log = logging.getLogger(__name__)

_ENDING_TYPES = (*TERMINAL_STATUS, EventType.STORYBOARD_PROGRESS.value)  # a storyboard's last one ends it


def attach(gen: Any, notify: Callable[[dict[str, Any]], Any] | None) -> Callable[[], None] | None:
    """Subscribe ``notify`` to ``gen``'s task endings; the ``off()``, or None without one."""
    if notify is None:
        return None
    if not callable(notify):
        raise TypeError(f"notify={notify!r}: pass a function that takes one dict (the summary of a task's end)")

    def on_event(event: Any) -> None:
        try:
            task = gen.task(event.task_id)
            about = {"prompt": task.prompt, "model": gen.model, "kind": "generation"}
        except KeyError:  # a storyboard's own events
            about = {"model": gen.model, "kind": "storyboard"}
        summary = terminal_summary(event.type, event.task_id, event.data, about)
        if summary is None:
            return
        try:
            notify(summary)
        except Exception:
            log.warning("wan_nb: notify(%s) raised", event.task_id, exc_info=True)

    return gen.subscribe(on_event, types=_ENDING_TYPES)
