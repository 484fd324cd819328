"""A real local Ray cluster for the cluster tests: started by the test, on 127.0.0.1, stopped by pid.

Ray normally advertises the machine's network address even when told 127.0.0.1; with
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` it runs as a single-node cluster on the loopback
interface only. The driver (the test process) needs the same setting before it imports Ray,
so this module sets it on import.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def local_ray(workdir: Path, num_cpus: int = 2) -> Iterator[str]:
    """``ray start --head --block`` on 127.0.0.1 with ``num_cpus`` CPUs and no dashboard; yields its
    address. Every process it started is stopped by its pid afterwards."""
    import psutil

    port = _free_port()
    log_path = workdir / "ray-head.log"
    ray = Path(sys.executable).with_name("ray")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log_path, "w") as log:
        head = subprocess.Popen(
            [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
             f"--num-cpus={num_cpus}", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
             "--object-store-memory=100000000", f"--temp-dir={workdir / 'ray'}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in log_path.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ray start failed:\n" + log_path.read_text()[-3000:])
            time.sleep(0.3)
        yield address
    finally:
        try:
            import ray as ray_module

            if ray_module.is_initialized():
                ray_module.shutdown()
        except ImportError:
            pass
        try:
            children = psutil.Process(head.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        if head.poll() is None:
            os.kill(head.pid, signal.SIGTERM)  # drains, then stops what it started
        try:
            head.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.kill(head.pid, signal.SIGKILL)
            head.wait()
        _, alive = psutil.wait_procs(children, timeout=10)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
