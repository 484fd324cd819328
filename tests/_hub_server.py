"""A local stand-in for the Hugging Face Hub's file API, for download tests (127.0.0.1 only).

It serves folders as model repos through the endpoints ``huggingface_hub`` uses for
``snapshot_download`` / ``hf_hub_download``: repo info, recursive tree listing, and
``resolve`` (HEAD and GET with Range). Point the client at it with ``endpoint=server.url`` (or
``HF_ENDPOINT``). Unknown repos answer 404 with ``X-Error-Code: RepoNotFound`` like the Hub.

``chunk_delay`` slows file bodies down (seconds per 16 KiB chunk) so that a download lasts long
enough to produce several progress events. ``requests`` records every (method, path) served.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

CHUNK = 16 * 1024


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Repo:
    def __init__(self, folder: Path):
        self.files: dict[str, Path] = {
            p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
        self.oids = {name: _git_blob_sha1(p.read_bytes()) for name, p in self.files.items()}
        self.sha = hashlib.sha1("".join(self.oids.values()).encode()).hexdigest()

    def size(self, name: str) -> int:
        return self.files[name].stat().st_size


class HubServer:
    """``with HubServer({"org/name": folder}) as hub: ... hub.url ...``"""

    def __init__(self, repos: dict[str, Path], chunk_delay: float = 0.0):
        self.repos = {repo_id: _Repo(Path(folder)) for repo_id, folder in repos.items()}
        self.chunk_delay = chunk_delay
        self.requests: list[tuple[str, str]] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def total_bytes(self, repo_id: str) -> int:
        repo = self.repos[repo_id]
        return sum(repo.size(name) for name in repo.files)

    def downloads(self) -> list[str]:
        return [path for method, path in self.requests if method == "GET" and "/resolve/" in path]

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_HEAD(self):
                self._dispatch(head=True)

            def do_GET(self):
                self._dispatch(head=False)

            # -- routing ------------------------------------------------------------------
            def _dispatch(self, head: bool):
                path = unquote(urlparse(self.path).path)
                server.requests.append(("HEAD" if head else "GET", path))
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 4:
                    repo_id = "/".join(parts[2:4])
                    action, rest = (parts[4], parts[5:]) if len(parts) > 4 else ("revision", ["main"])
                    repo = self._repo(repo_id)
                    if repo is None:
                        return
                    if action == "revision":
                        return self._json({"id": repo_id, "modelId": repo_id, "sha": repo.sha,
                                           "private": False, "disabled": False, "gated": False,
                                           "siblings": [{"rfilename": n, "size": repo.size(n), "blobId": repo.oids[n]}
                                                        for n in repo.files]}, repo)
                    if action == "tree":
                        return self._json(self._tree(repo, "/".join(rest[1:])), repo)
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo = self._repo("/".join(parts[:2]))
                    if repo is None:
                        return
                    return self._file(repo, "/".join(parts[4:]), head)
                self._error(404, "EntryNotFound", f"no route for {path}")

            def _repo(self, repo_id: str):
                repo = server.repos.get(repo_id)
                if repo is None:
                    self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
                return repo

            # -- answers ------------------------------------------------------------------
            def _tree(self, repo: _Repo, prefix: str):
                entries, folders = [], set()
                for name in repo.files:
                    if prefix and not name.startswith(prefix.rstrip("/") + "/"):
                        continue
                    bits = name.split("/")
                    folders.update("/".join(bits[:i]) for i in range(1, len(bits)))
                    entries.append({"type": "file", "oid": repo.oids[name], "size": repo.size(name),
                                    "path": name})
                return [{"type": "directory", "oid": "0" * 40, "path": f} for f in sorted(folders)] + entries

            def _json(self, payload, repo: _Repo):
                body = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Repo-Commit", repo.sha)
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, code: str, message: str):
                body = json.dumps({"error": message}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _file(self, repo: _Repo, name: str, head: bool):
                if name not in repo.files:
                    return self._error(404, "EntryNotFound", f"{name} not found")
                data = repo.files[name].read_bytes()
                start, status = 0, 200
                ranged = self.headers.get("Range", "")
                if ranged.startswith("bytes=") and not head:
                    start = int(ranged[6:].split("-")[0] or 0)
                    status = 206
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", f'"{repo.oids[name]}"')
                self.send_header("X-Repo-Commit", repo.sha)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if head:
                    return
                for i in range(0, len(body), CHUNK):
                    if server.chunk_delay:
                        time.sleep(server.chunk_delay)
                    try:
                        self.wfile.write(body[i:i + CHUNK])
                    except (BrokenPipeError, ConnectionResetError):
                        return

        return Handler
