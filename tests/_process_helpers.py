"""Real processes in the states a liveness check must judge."""
import subprocess
import sys
import time

import psutil


def zombie() -> subprocess.Popen:
    """A child that has exited and that nobody has reaped yet (Popen reaps only when asked);
    the caller reaps it with ``.wait()``."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.02)
    return child
