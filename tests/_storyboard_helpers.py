"""Helpers shared by the storyboard tests."""
from __future__ import annotations

import _core_helpers
from wan_nb.protocol.events import Event
from wan_nb.storyboard import STEPS


class Recorder(_core_helpers.Recorder):
    """The core tests' recorder, plus a storyboard's scene tasks."""

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


def _produce(args) -> None:
    """A script that renders a small storyboard (a producer process for the server tests)."""
    import time

    from wan_nb import Generator, Scene, Storyboard
    from wan_nb.storyboard import StoryboardCancelled

    with Generator(model="tiny", runs_dir=args.runs_dir, previews=False) as gen:
        board = Storyboard(gen, ["a fox wakes", Scene("the fox runs", num_frames=9), "the fox sleeps"],
                           id=args.id, seed=0, num_frames=5, steps=args.steps, progress_interval=0.02)
        handle = board.submit()
        print("started", flush=True)
        try:
            handle.result(timeout=300)
            print("completed", flush=True)
        except StoryboardCancelled:
            print("cancelled", flush=True)
        time.sleep(0.5)  # let the last frames leave the relay socket


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["produce"])
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--steps", type=int, default=2)
    _produce(parser.parse_args())
