"""gen.resume_queue(): what a killed process left queued or running is submitted again from its recipes."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import wan_nb
from wan_nb import Generator

PRODUCER = textwrap.dedent("""
    import sys, time, wan_nb
    gen = wan_nb.Generator(model="tiny", runs_dir=sys.argv[1], previews=False)
    slow = gen.submit("a slow fox", seed=1, steps=5000)
    queued = [gen.submit("an owl", seed=2, steps=2), gen.submit("a cat", seed=3, steps=3)]
    print(slow.id, *(t.id for t in queued), flush=True)
    while slow.current_step < 2:
        time.sleep(0.02)
    print("running", flush=True)
    time.sleep(120)
""")


@pytest.fixture
def killed(tmp_path):
    """A process with one task denoising and two queued, killed with SIGKILL."""
    proc = subprocess.Popen([sys.executable, "-c", PRODUCER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        ids = proc.stdout.readline().split()
        assert proc.stdout.readline().strip() == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    return tmp_path, ids


def test_a_killed_kernels_queue_is_submitted_again(killed):
    runs, (slow, owl, cat) = killed
    assert {r.task_id: r.status for r in wan_nb.history(runs)} == {slow: "lost", owl: "lost", cat: "lost"}
    with Generator(model="tiny", runs_dir=runs, previews=False) as gen:
        tasks = gen.resume_queue()
        assert [(t.prompt, t.seed, t.params["steps"]) for t in tasks] == [
            ("a slow fox", 1, 5000), ("an owl", 2, 2), ("a cat", 3, 3)]
        tasks[0].cancel()  # the one that was running starts over; no need to wait for it here
        for old, task in zip((owl, cat), tasks[1:]):
            result = task.result(timeout=120)
            before, after = wan_nb.recipe(runs / old), wan_nb.recipe(result)
            assert {k for k in before if before[k] != after[k]} == {"task_id", "created_at"}
            assert (runs / old / "resumed_as").read_text() == task.id
        # Taken over once: a second call (or another process) finds nothing left to resume.
        assert gen.resume_queue() == []
    assert subprocess.run([sys.executable, "-c", "import sys, wan_nb; g = wan_nb.Generator('tiny', runs_dir=sys.argv[1]);"
                           "print(len(g.resume_queue()))", str(runs)], capture_output=True, text=True,
                          timeout=120).stdout.strip() == "0"


def test_runs_of_other_models_and_unrunnable_recipes_are_left(killed, tmp_path):
    runs, (slow, owl, cat) = killed
    os.unlink(runs / owl / "task.json")
    (runs / owl / "task.json").write_text('{"task_id": "%s", "model": "tiny", "status": "queued", "pid": 999999999}' % owl)
    with Generator(model="tiny-i2v", runs_dir=runs, previews=False) as other:
        assert other.resume_queue() == []           # not its model: left for a tiny generator
    with Generator(model="tiny", runs_dir=runs, previews=False) as gen:
        with pytest.warns(RuntimeWarning, match=f"cannot resume {owl}.*no wan_nb recipe"):
            tasks = gen.resume_queue()
        assert [t.prompt for t in tasks] == ["a slow fox", "a cat"]
        for task in tasks:
            task.cancel()
