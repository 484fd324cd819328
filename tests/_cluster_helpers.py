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


def _hermetic_token() -> Path:
    """One auth mode and one token for every Ray process of this run (head, driver, workers): token
    authentication, with a fresh token in a file of the run's own (0600), never ``~/.ray/auth_token``.

    With Ray 2.60 a ``~/.ray/auth_token`` left by any earlier local cluster made ``ray start --head``
    require a token while the driver, connecting to an explicit address, sent none
    (``InvalidAuthToken``): the cluster tests and benchmarks/cluster.py failed on such machines.
    Setting RAY_AUTH_MODE and RAY_AUTH_TOKEN_PATH here, before Ray loads, makes them independent
    of whatever the user's home holds. The token is never printed.
    """
    import atexit
    import secrets
    import shutil
    import tempfile

    inherited = os.environ.get("WAN_NB_TESTS_RAY_TOKEN")
    if inherited and Path(inherited).is_file():   # a driver process this helper started: the run's token
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=inherited)
        return Path(inherited)
    folder = Path(tempfile.mkdtemp(prefix="wan_nb-ray-auth-"))
    atexit.register(shutil.rmtree, folder, True)
    token = folder / "auth_token"
    token.touch(mode=0o600)
    token.write_text(secrets.token_hex(32))
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = os.environ["WAN_NB_TESTS_RAY_TOKEN"] = str(token)
    os.environ.pop("RAY_AUTH_TOKEN", None)
    return token


RAY_TOKEN_FILE = _hermetic_token()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def local_ray(workdir: Path, num_cpus: int = 2, attempts: int = 3) -> Iterator[str]:
    """``ray start --head --block`` on 127.0.0.1 with ``num_cpus`` CPUs and no dashboard; yields its
    address. Every process it started is stopped by its pid afterwards.

    Ray gives its raylet 30 s to come up; on a loaded machine that can run out, so a failed
    start (its processes stopped) is tried again, ``attempts`` times in all.
    """
    seen: set = set()
    head = None
    try:
        for attempt in range(1, attempts + 1):
            head, address = _start_head(workdir, num_cpus, attempt, seen)
            if head is not None:
                break
            _stop(seen)
        else:
            raise RuntimeError(f"ray start failed {attempts} times; see {workdir}/ray-head-*.log")
        yield address
    finally:
        try:
            import ray as ray_module

            if ray_module.is_initialized():
                ray_module.shutdown()
        except ImportError:
            pass
        if head is not None:
            _note_children(head.pid, seen)
            if head.poll() is None:
                os.kill(head.pid, signal.SIGTERM)  # drains, then stops what it started
            try:
                head.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.kill(head.pid, signal.SIGKILL)
                head.wait()
        _stop(seen)


def _start_head(workdir: Path, num_cpus: int, attempt: int, seen: set):
    """(process, address) once Ray says it runs, or (None, None) if this start failed."""
    port = _free_port()
    log_path = workdir / f"ray-head-{attempt}.log"
    ray = Path(sys.executable).with_name("ray")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log_path, "w") as log:
        head = subprocess.Popen(
            [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
             f"--num-cpus={num_cpus}", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
             "--object-store-memory=100000000", f"--temp-dir={workdir / 'ray'}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in log_path.read_text():
        _note_children(head.pid, seen)
        if head.poll() is not None or time.monotonic() > deadline:
            if head.poll() is None:
                os.kill(head.pid, signal.SIGKILL)
                head.wait()
            return None, None
        time.sleep(0.3)
    _note_children(head.pid, seen)
    return head, f"127.0.0.1:{port}"


def _note_children(pid: int, seen: set) -> None:
    import psutil

    try:
        seen.update(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        pass


def _stop(processes: set) -> None:
    import psutil

    _, alive = psutil.wait_procs(list(processes), timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    processes.clear()


def start_driver(address: str, runs_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    """A separate driver process: a 1-worker cluster Generator running one long task (1,000 steps).

    It prints the task's worker (JSON) once the task is denoising, then waits to be killed.
    """
    return subprocess.Popen([sys.executable, __file__, "drive", address, str(runs_dir)],
                            env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)


def _drive(address: str, runs_dir: str) -> None:
    import json

    from wan_nb import Generator

    gen = Generator(model="tiny", cluster=address, workers=1, runs_dir=runs_dir, previews=False)
    task = gen.submit("a shot that outlasts its driver", steps=1000, seed=0)
    while task.current_step < 1:
        time.sleep(0.02)
    print(json.dumps(task.worker), flush=True)
    time.sleep(600)


if __name__ == "__main__":
    if sys.argv[1:2] == ["drive"]:
        _drive(*sys.argv[2:4])
