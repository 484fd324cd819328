"""Small helpers shared by the core tests."""
from __future__ import annotations

import threading

from wan_nb.protocol.events import Event


class Recorder:
    """A subscriber that keeps every event it is given."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, task_id: str) -> list[Event]:
        with self.lock:
            return [e for e in self.events if e.task_id == task_id]

    def types(self, task_id: str) -> list[str]:
        return [e.type for e in self.of(task_id)]


def stages(events: list[Event]) -> list[str]:
    return [e.data["stage"] for e in events if e.type == "generation_stage"]
