"""A run whose process dies mid-denoise is finished by a new process, bit-identical (CPU).

Real processes: a child runs a real tiny generation with slowed steps; the test kills it with
SIGKILL (nothing can run: the last paced checkpoint is what is left) or SIGTERM (the handler
checkpoints the last step done, then the process ends as SIGTERM ends it), and this process
resumes the run: through ``resume_queue()`` (the dead process left it in ``queue.json``) and
``resume_run(task_id)``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import wan_nb
from wan_nb import Generator
from wan_nb.runs import checkpoint_file

from tests.core.test_resume_identity import PROMPT, LastLatents

STEPS = 8
CHILD = """
import sys, time
from wan_nb import Generator
gen = Generator("tiny", device="cpu", runs_dir=sys.argv[1], previews=False, checkpoints=int(sys.argv[2]))
gen.add_step_hook(lambda task, step, *rest: time.sleep(0.5))  # slow steps: the parent ends it mid-denoise
task = gen.submit(%r, seed=11, steps=%d)
print(task.id, flush=True)
task.wait()
""" % (PROMPT, STEPS)


def run_child_until(runs: Path, checkpoints: int, step: int, sig: int) -> tuple[str, int]:
    """Start the child, wait until it has done ``step`` steps, send ``sig``; (task id, exit code)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(runs), str(checkpoints)], env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        task_id = child.stdout.readline().strip()
        journal = runs / task_id / "events.jsonl"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if journal.is_file() and f'"current_step":{step},' in journal.read_text():
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the child never reached step {step}")
        child.send_signal(sig)
        return task_id, child.wait(60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    runs = tmp_path_factory.mktemp("killed-runs")
    gen = Generator("tiny", device="cpu", runs_dir=runs, previews=False)
    last = LastLatents()
    gen.add_step_hook(last)
    full = gen.generate(PROMPT, progress=False, seed=11, steps=STEPS)
    yield gen, last, last.by_task[full.task_id], runs
    gen.close()


def test_sigkill_mid_denoise_then_resume_queue_in_a_new_process(parent):
    gen, last, uninterrupted, runs = parent
    task_id, code = run_child_until(runs, 1, 3, signal.SIGKILL)
    assert code == -signal.SIGKILL
    summary = checkpoint_file.read_summary(runs / task_id)
    assert 3 <= summary["step"] < STEPS
    listed = {run.task_id: run for run in wan_nb.history(runs)}[task_id]
    assert (listed.status, listed.checkpoint_step) == ("interrupted", summary["step"])

    resumed = gen.resume_queue()   # the dead process's queue entry, continued from its checkpoint
    assert [t.params["seed"] for t in resumed] == [11]
    result = resumed[0].result()
    assert last.steps[result.task_id][0] == summary["step"] + 1
    assert torch.equal(last.by_task[result.task_id], uninterrupted)
    assert gen.resume_queue() == []   # taken once


def test_sigterm_checkpoints_the_last_step_then_ends_the_process(parent):
    """No paced checkpoint (every 1000 steps): what is there, SIGTERM's handler wrote."""
    gen, last, uninterrupted, runs = parent
    task_id, code = run_child_until(runs, 1000, 2, signal.SIGTERM)
    assert code == -signal.SIGTERM
    summary = checkpoint_file.read_summary(runs / task_id)
    assert summary["reason"] == "signal" and 2 <= summary["step"] < STEPS
    result = gen.resume_run(task_id, progress=False)
    assert torch.equal(last.by_task[result.task_id], uninterrupted)
