"""The server's webhook as configured: a real Jupyter server, a real producer process, a local
HTTP endpoint that first answers slowly and with an error; the summary arrives once, and the
server's own delivery does not wait for it."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests._server_helpers import start_producer, start_server, wait_producer_ready


class Endpoint:
    """A local webhook receiver: the first POST hangs past the timeout, the second gets a 500."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.answers: list[int] = []
        self.arrivals = 0
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint.lock:
                    attempt = endpoint.arrivals
                    endpoint.arrivals += 1
                if attempt == 0:
                    time.sleep(2.5)   # longer than webhook_timeout: the server gives up and retries
                code = 504 if attempt == 0 else 500 if attempt == 1 else 200
                endpoint.answers.append(code)
                endpoint.bodies.append(body)
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    found = Endpoint()
    yield found
    found.close()


def test_a_finished_task_is_posted_once_with_retries_and_never_delays_delivery(tmp_path, endpoint):
    runtime = tmp_path / "runtime"
    server = start_server(runtime, extra_args=[f"--WanNbExtension.webhook_url={endpoint.url}",
                                               "--WanNbExtension.webhook_timeout=1",
                                               "--WanNbExtension.webhook_retries=3"])
    producer = None
    try:
        producer = start_producer(runtime, tmp_path / "runs", "hooked-task", steps=5)
        wait_producer_ready(producer)
        done = server.wait_task("hooked-task", lambda s: s["status"] == "completed", timeout=60)
        finished_at = time.monotonic()
        assert done["status"] == "completed"   # listed as finished while the webhook still waits
        deadline = time.monotonic() + 30
        while 200 not in endpoint.answers and time.monotonic() < deadline:
            time.sleep(0.1)
        assert endpoint.arrivals == 3 and sorted(endpoint.answers) == [200, 500, 504]  # hung, 500, delivered
        assert time.monotonic() - finished_at > 1.0   # the posts came after the task was served as done
        summary = endpoint.bodies[endpoint.answers.index(200)]
        assert summary["task_id"] == "hooked-task" and summary["status"] == "completed"
        assert summary["event"] == "generation_completed" and summary["prompt"] == "a red fox running through snow"
        assert summary["text"].startswith("wan_nb: generation hooked-task finished")
        time.sleep(1.5)
        assert endpoint.arrivals == 3 and {b["task_id"] for b in endpoint.bodies} == {"hooked-task"}  # once
    finally:
        if producer is not None and producer.poll() is None:
            producer.kill()
            producer.wait()
        server.stop()


def test_a_bad_webhook_url_is_refused_by_the_config():
    from traitlets import TraitError

    from wan_nb.server.app import WanNbExtension

    with pytest.raises(TraitError, match=r"webhook_url='ftp://x'.*http:// or https://"):
        WanNbExtension(webhook_url="ftp://x")
    assert WanNbExtension(webhook_url="https://ntfy.sh/my-topic").webhook_url.startswith("https://")
