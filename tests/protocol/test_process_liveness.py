"""``wan_nb.protocol.processes``: whether a recorded process still runs, asked of real processes.

The run history, the queue file, the relay's stale-file sweep and the server all ask this one
module; tests/test_rule_owners.py keeps them from asking their own way again.
"""
import os
import subprocess
import sys

import psutil
import pytest

from wan_nb.protocol.processes import pid_alive, process_start_time

from _process_helpers import zombie


def test_this_process_is_alive_and_its_start_time_is_the_one_psutil_reports():
    started = process_start_time(os.getpid())
    assert started == pytest.approx(psutil.Process().create_time(), abs=1.0)
    assert pid_alive(os.getpid()) and pid_alive(os.getpid(), started)


def test_a_reused_pid_is_not_the_process_that_was_recorded():
    """The pid runs, but it started at another time: another program got the recorded pid."""
    started = process_start_time(os.getpid())
    assert not pid_alive(os.getpid(), started - 3600)


def test_an_exited_and_reaped_child_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = process_start_time(child.pid)
    child.wait()
    assert not pid_alive(child.pid) and not pid_alive(child.pid, started)
    assert process_start_time(child.pid) is None


def test_a_zombie_is_dead():
    """Exited but not reaped: ``os.kill(pid, 0)`` still succeeds (how the history and the queue
    used to ask), yet the process will never write again."""
    child = zombie()
    try:
        os.kill(child.pid, 0)   # what made it look alive
        assert not pid_alive(child.pid)
    finally:
        child.wait()


@pytest.mark.parametrize("pid", [None, 0, -1, True, "12", 1.5])
def test_anything_but_a_positive_int_is_no_process(pid):
    assert not pid_alive(pid)
    assert process_start_time(pid) is None
