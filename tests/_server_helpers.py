"""Real Jupyter servers, real producer processes, and clients written to the seeds' protocols.

* :func:`start_server` runs ``jupyter server`` with the extension on 127.0.0.1 with a token and
  a private runtime dir; :class:`Server` stops it by its pid.
* ``python tests/_server_helpers.py produce ...`` is a producer process: an ``EventBus`` with
  the run journal and :func:`wan_nb.relay.attach`, publishing the event sequence a generation
  publishes (it honours cancel requests from a server).
* :class:`EventSourceClient` parses ``text/event-stream`` the way a browser's EventSource does
  (and reconnects with ``Last-Event-ID``); :func:`ws_connect` opens the WebSocket.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TOKEN = "wan-nb-test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def isolated_env(runtime_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    base = runtime_dir.parent
    env.update(JUPYTER_RUNTIME_DIR=str(runtime_dir), JUPYTER_CONFIG_DIR=str(base / "jupyter_config"),
               JUPYTER_DATA_DIR=str(base / "jupyter_data"), PYTHONPATH=str(ROOT), **extra)
    env.pop("JUPYTER_PLATFORM_DIRS", None)
    return env


def install_config(config_dir: Path) -> None:
    """Enable the extension the way an installed package does: the shipped config file."""
    target = config_dir / "jupyter_server_config.d"
    target.mkdir(parents=True, exist_ok=True)
    shipped = ROOT / "jupyter-config" / "jupyter_server_config.d" / "wan_nb.json"
    (target / "wan_nb.json").write_text(shipped.read_text())
    # Other installed extensions only slow the test servers' start.
    others = {name: False for name in ("jupyterlab", "notebook", "jupyter_lsp", "notebook_shim",
                                       "jupyter_server_terminals")}
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": others}}))


class Server:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://127.0.0.1:{port}/"
        self.headers = {"Authorization": f"token {TOKEN}"}

    def api(self, path: str) -> str:
        return f"{self.url}wan-nb/api/{path}"

    def get(self, path: str, **kwargs: Any):
        import requests

        kwargs.setdefault("headers", self.headers)
        return requests.get(self.api(path), timeout=kwargs.pop("timeout", 10), **kwargs)

    def post(self, path: str, **kwargs: Any):
        import requests

        kwargs.setdefault("headers", self.headers)
        return requests.post(self.api(path), timeout=10, **kwargs)

    def wait_task(self, task_id: str, predicate=lambda s: True, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            response = self.get(f"tasks/{task_id}")
            if response.status_code == 200:
                last = response.json()
                if predicate(last):
                    return last
            time.sleep(0.05)
        raise AssertionError(f"task {task_id} never matched; last snapshot {last}")

    def stop(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start_server(runtime_dir: Path, *, port: int | None = None, extra_args: list[str] = ()) -> Server:
    import requests

    runtime_dir.mkdir(parents=True, exist_ok=True)
    install_config(runtime_dir.parent / "jupyter_config")
    port = port or free_port()
    log = runtime_dir.parent / f"server-{port}.log"
    args = [PY, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={runtime_dir.parent}",
            "--WanNbExtension.scan_interval=0.2", *extra_args]
    handle = open(log, "wb")
    proc = subprocess.Popen(args, env=isolated_env(runtime_dir), stdout=handle, stderr=subprocess.STDOUT,
                            cwd=str(runtime_dir.parent))
    server = Server(proc, port, log)
    # Generous: on a loaded 2-core machine the server's first answer can take several seconds
    # (its first listing of the runs folders), and a short per-request timeout never sees it.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter server exited: {log.read_text()[-3000:]}")
        try:
            if requests.get(server.api("tasks"), headers=server.headers, timeout=15).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.1)
    server.stop(kill=True)
    raise RuntimeError(f"jupyter server did not start: {log.read_text()[-3000:]}")


# -- producer processes --------------------------------------------------------------------------
def start_producer(runtime_dir: Path, runs_dir: Path, task_id: str, *, steps: int = 20,
                   interval: float = 0.02, hold: float = 0.0, storyboard: bool = False,
                   wait_for_go: Path | None = None, hold_until: Path | None = None,
                   steer: bool = False) -> subprocess.Popen:
    args = [PY, str(Path(__file__).resolve()), "produce", "--runs-dir", str(runs_dir),
            "--task-id", task_id, "--steps", str(steps), "--interval", str(interval),
            "--hold", str(hold)]
    if storyboard:
        args.append("--storyboard")
    if steer:
        args.append("--steer")
    if wait_for_go:
        args += ["--wait-for", str(wait_for_go)]
    if hold_until:
        args += ["--hold-until", str(hold_until)]
    return subprocess.Popen(args, env=isolated_env(runtime_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_producer_ready(proc: subprocess.Popen, timeout: float = 30) -> None:
    """The producer prints 'ready' once attached (its file is in the runtime dir)."""
    line = proc.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"producer failed: {line}{proc.stderr.read()}")


def stop_producers(*procs: subprocess.Popen) -> None:
    """Kill producer processes, waking any that were stopped (SIGSTOP) first so none is left frozen."""
    for proc in procs:
        try:
            os.kill(proc.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        proc.kill()
        proc.wait()


def _produce(args: argparse.Namespace) -> None:
    from wan_nb import relay
    from wan_nb.core.bus import EventBus
    from wan_nb.runs.journal import Journal, write_task_file

    runs_dir = Path(args.runs_dir)
    bus = EventBus()
    journal = Journal()
    bus.add_sink(journal)
    cancelled = threading.Event()
    task_id = args.task_id
    run_dir = runs_dir / task_id  # as Generator.submit: the run folder exists before the id is known
    cancel = lambda tid: tid == task_id and not cancelled.set()  # noqa: E731

    def steer(tid: str, action: str, **arguments) -> bool:
        """As Generator.steer: True if the action was taken; each one noted in the run folder."""
        if tid != task_id:
            return False
        with open(run_dir / "steered.jsonl", "a") as handle:
            handle.write(json.dumps({"action": action, **arguments}) + "\n")
        return cancel(tid) if action == "cancel" else True

    detach = relay.attach(bus, runs_dir=runs_dir, cancel=cancel, **({"steer": steer} if args.steer else {}))
    write_task_file(run_dir, {"task_id": task_id, "prompt": "a red fox running through snow"})
    journal.open(task_id, run_dir)
    print("ready", flush=True)
    if args.wait_for:
        while not Path(args.wait_for).exists():
            time.sleep(0.01)
    if args.storyboard:
        _produce_storyboard(bus, task_id, run_dir, args)
    else:
        _produce_generation(bus, task_id, run_dir, args, cancelled)
    journal.close(task_id)
    time.sleep(0.3)  # let the last frames leave the PUB socket
    detach()


def _produce_generation(bus, task_id: str, run_dir: Path, args, cancelled: threading.Event) -> None:
    steps = args.steps
    params = {"prompt": "a red fox running through snow", "steps": steps, "seed": 0, "height": 64,
              "width": 64, "num_frames": 9}
    bus.publish(task_id, "generation_started", model_type="tiny", params=params, estimated_duration=None)
    for stage, text in (("initializing", "Starting"), ("loading_model", "Loading tiny")):
        bus.publish(task_id, "generation_stage", stage=stage, stage_progress=0, stage_message=text)
    bus.publish(task_id, "model_loading_progress", model_type="tiny", progress=100, status="Model loaded")
    bus.publish(task_id, "generation_stage", stage="generating", stage_progress=0, stage_message="Denoising")
    for step in range(1, steps + 1):
        if cancelled.is_set():
            bus.publish(task_id, "generation_stage", stage="cancelled", stage_progress=0,
                        stage_message="Cancelled during generating")
            bus.publish(task_id, "generation_cancelled", stage="generating", current_step=step - 1)
            return
        bus.publish(task_id, "detailed_generation_progress", stage="generating",
                    progress=round(10 + 80 * step / steps, 2), message=f"Step {step}/{steps}",
                    estimated_time_remaining=round((steps - step) * args.interval, 3),
                    current_step=step, total_steps=steps, sent_at=time.time())
        if step == steps // 2:
            bus.publish(task_id, "vram_monitoring", allocated_mb=10.0, reserved_mb=12.0, free_mb=90.0,
                        total_mb=100.0, allocated_percent=10.0, warning_level="normal", device_name="cpu")
            if args.hold:
                time.sleep(args.hold)
            while args.hold_until and not Path(args.hold_until).exists():  # paused mid-task
                time.sleep(0.01)
        time.sleep(args.interval)
    bus.publish(task_id, "generation_stage", stage="saving", stage_progress=0, stage_message="Writing MP4")
    video = run_dir / "video.mp4"
    video.write_bytes(bytes(range(256)) * 64)  # 16 KiB whose bytes are checkable by Range
    bus.publish(task_id, "generation_stage", stage="completed", stage_progress=100, stage_message="Done")
    bus.publish(task_id, "generation_completed", output_path=str(video), duration_s=1.0, params=params, seed=0)


def _produce_storyboard(bus, task_id: str, run_dir: Path, args) -> None:
    scenes_dir = run_dir / "scenes"
    scenes_dir.mkdir(parents=True, exist_ok=True)
    steps = [("init", 0, "Starting generation..."), ("story", 15, "Generating story..."),
             ("scenes", 55, "Generated 2 scenes"), ("video_params", 65, "Prepared 2 parameter sets"),
             ("videos", 70, "Generating scene videos...")]
    for step, progress, message in steps:
        bus.publish(task_id, "storyboard_progress", step=step, status="in_progress", progress=progress,
                    message=message, data={})
        time.sleep(args.interval)
    scenes = []
    for n in (1, 2):
        path = scenes_dir / f"scene_{n:02d}.mp4"
        path.write_bytes(bytes([n]) * 1000)
        scenes.append(str(path))
    final = run_dir / "final.mp4"
    final.write_bytes(b"final" * 200)
    bus.publish(task_id, "storyboard_progress", step="stitch", status="in_progress", progress=95,
                message="Videos generated and stitched successfully!", data={"scene_videos": scenes})
    bus.publish(task_id, "storyboard_progress", step="complete", status="completed", progress=100,
                message="Generation complete!", data={"scene_videos": scenes, "final_video_path": str(final)})


# -- clients -------------------------------------------------------------------------------------
class EventSourceClient:
    """A blocking EventSource: parses the stream per the HTML spec, remembers the last id, and
    reconnects with ``Last-Event-ID`` (a 204 ends it, as in browsers)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url, self.headers = url, dict(headers)
        self.last_event_id: str | None = None
        self.comments = 0
        self.status: int | None = None
        self.response = None

    def connect(self, timeout: float = 20):
        import requests

        headers = dict(self.headers)
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        self.response = requests.get(self.url, headers=headers, stream=True, timeout=timeout)
        self.status = self.response.status_code
        return self.response

    def events(self, max_events: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield ``{"event", "id", "data"}`` for each dispatched event of the current response."""
        name, data, count = None, [], 0
        for raw in self.response.iter_lines(chunk_size=1, decode_unicode=True):
            line = raw if raw is not None else ""
            if line == "":
                if data:
                    count += 1
                    yield {"event": name or "message", "id": self.last_event_id, "data": "\n".join(data)}
                    if max_events is not None and count >= max_events:
                        return
                name, data = None, []
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                self.last_event_id = value

    def close(self) -> None:
        if self.response is not None:
            self.response.close()


def ws_connect(server: Server, origin: str | None = None, cookie: str | None = None, token: bool = True):
    import websocket

    header = [f"Authorization: token {TOKEN}"] if token else []
    if cookie:
        header.append(f"Cookie: {cookie}")
    url = server.api("ws").replace("http://", "ws://")
    return websocket.create_connection(url, header=header, origin=origin, timeout=10)


def ws_recv_until(ws, predicate, timeout: float = 15) -> list[dict]:
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws.settimeout(max(0.05, deadline - time.monotonic()))
        message = json.loads(ws.recv())
        got.append(message)
        if predicate(message):
            return got
    raise AssertionError(f"no matching WebSocket message; got {got[-5:]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["produce"])
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--task-id", required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--hold", type=float, default=0.0)
    parser.add_argument("--storyboard", action="store_true")
    parser.add_argument("--wait-for", default=None)
    parser.add_argument("--hold-until", default=None)
    parser.add_argument("--steer", action="store_true", help="answer pause/resume/move too")
    _produce(parser.parse_args())
