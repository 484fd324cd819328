"""Helpers shared by the storyboard tests."""
from __future__ import annotations

import threading

from wan_nb.events import Event
from wan_nb.storyboard import STEPS


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

    def children(self, storyboard_id: str) -> dict[str, list[Event]]:
        """Scene tasks of a storyboard (by their generation_started params), with their events."""
        with self.lock:
            ids = [e.task_id for e in self.events if e.type == "generation_started"
                   and e.data["params"].get("storyboard_id") == storyboard_id]
            return {task_id: [e for e in self.events if e.task_id == task_id] for task_id in ids}


def assert_seed_order(events: list[Event]) -> None:
    """Steps never go back (init -> story -> ... -> complete) and progress never decreases."""
    order = [STEPS.index(e.data["step"]) for e in events]
    assert order == sorted(order), [e.data["step"] for e in events]
    progress = [e.data["progress"] for e in events]
    assert progress == sorted(progress), progress
    assert [e.seq for e in events] == list(range(events[0].seq, events[0].seq + len(events)))
