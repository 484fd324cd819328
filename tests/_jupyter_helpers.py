"""Start a real Jupyter server (or JupyterLab) on 127.0.0.1 for a test, and stop it by its pid."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_jupyter(app: str, root_dir: Path, workdir: Path, env: dict[str, str],
                    extra_args: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """``app`` is "lab" or "server". Yields (base url, token); the server is stopped afterwards.

    ``env`` should set JUPYTER_RUNTIME_DIR to a folder of the test's own, so that only the
    kernels of this test find this server (and this server finds only them).
    """
    port, token = free_port(), secrets.token_hex(16)
    jupyter = Path(sys.executable).with_name("jupyter")
    log_path = workdir / f"jupyter-{app}-{port}.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [str(jupyter), app, "--no-browser", "--ip=127.0.0.1", f"--port={port}",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}", *extra_args]
            + (["--allow-root"] if os.geteuid() == 0 else []),
            cwd=root_dir, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if requests.get(f"{base}/api/status", params={"token": token}, timeout=2).ok:
                        break
                except requests.ConnectionError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter {app} did not start:\n" + log_path.read_text()[-3000:])
                time.sleep(0.3)
            yield base, token
        finally:
            if server.poll() is None:
                os.kill(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(server.pid, signal.SIGKILL)
                server.wait()
