"""The Python reducer against the shared fixtures in tests/protocol/fixtures/: event sequences and
the state each one must leave, as the server's snapshot (``GET wan-nb/api/tasks/{id}``) reports it.

The Lab sidebar's TypeScript reducer reads the same files (js/test/reducer_fixtures.test.js, run
by node's test runner from tests/lab/test_sidebar_reducer.py), so the two cannot drift apart: a
change to either that the other does not follow fails one of the two runs.
"""
import json
from pathlib import Path

import pytest

from wan_nb.protocol.snapshot import TaskSnapshot

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("*.json"))
# Fields each step may expect, as the snapshot names them; the TypeScript runner maps the same
# names onto its own (eta, step, ...). Beyond the snapshot: queue_ahead and finished.
# checkpoint_step and resumable: a stopped / interrupted run (docs/resume.md).
SHARED_FIELDS = {"kind", "status", "stage", "progress", "message", "estimated_time_remaining", "current_step",
                 "total_steps", "model_type", "prompt", "params", "seed", "storyboard_id", "created_at",
                 "updated_at", "output_path", "scene_videos", "error", "duration_s", "last_seq", "queue_position",
                 "queue_ahead", "finished", "checkpoint_step", "resumable"}


def state_of(task: TaskSnapshot) -> dict:
    return {**task.to_dict(), "queue_ahead": task.queue_ahead, "finished": task.finished}


def test_there_are_fixtures_and_each_ends_by_naming_every_shared_field():
    assert len(FIXTURES) >= 8
    for path in FIXTURES:
        steps = json.loads(path.read_text())["steps"]
        assert set(steps[-1]["expect"]) == SHARED_FIELDS, path.name
        assert all(set(step.get("expect", {})) <= SHARED_FIELDS for step in steps), path.name


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_the_python_reducer_folds_each_fixture_to_its_expected_states(path):
    case = json.loads(path.read_text())
    task = TaskSnapshot()
    for number, step in enumerate(case["steps"], 1):
        task.apply_frame(step["frame"])
        state = state_of(task)
        got = {name: state[name] for name in step.get("expect", {})}
        assert got == step.get("expect", {}), f"{path.name}, after step {number} ({step['frame']['type']})"
