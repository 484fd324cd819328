"""Where relay sockets live and who may connect to them.

Every socket is an ``ipc://`` file in a directory only this user can enter (0700): the Jupyter
runtime directory, or — when its path is too long for a socket file (``sun_path`` holds ~104
bytes) — a short private directory of this user under the system's temporary folder. Other
users can then neither read events off a PUB socket nor send anything to a ROUTER.

Plain ``tcp://127.0.0.1`` is never used: where ipc is not available at all (Windows, or
``WAN_NB_RELAY_TRANSPORT=tcp``), a producer's sockets speak ZMQ CURVE, and only the client
key written into its 0600 producer file is let in (a ZAP handler checks it on every connect).
A server's doorbell has no keys to hand out, so it exists only over ipc (without it new tasks
show up at the next periodic scan).

Every receiving socket also gets ``zmq.MAXMSGSIZE``: a peer sending an outsized frame is
disconnected by zmq before the frame is held in memory.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)

__all__ = ["bind", "CurveServer", "secure_client", "private_socket_dir", "ipc_wanted",
           "RelayUnavailable", "MAX_CONTROL_REQUEST", "MAX_CONTROL_REPLY", "MAX_EVENT_FRAME",
           "MAX_DOORBELL", "check_curve", "unauthenticated"]

IPC_PATH_MAX = 100                  # sun_path is 104-108 bytes depending on the platform
MAX_CONTROL_REQUEST = 64 * 1024     # a steering request is a few hundred bytes
MAX_CONTROL_REPLY = 64 * 1024
MAX_EVENT_FRAME = 32 * 1024 * 1024  # the largest preview image is a few MB
MAX_DOORBELL = 64                   # b"rescan"


class RelayUnavailable(RuntimeError):
    """No private socket can be bound here (no ipc, and no keys to secure TCP with)."""


def ipc_wanted() -> bool:
    import zmq

    return zmq.has("ipc") and os.environ.get("WAN_NB_RELAY_TRANSPORT", "").lower() != "tcp"


def _private(path: Path) -> bool:
    try:
        info = os.lstat(path)
    except OSError:
        return False
    owner_ok = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return stat.S_ISDIR(info.st_mode) and owner_ok and not info.st_mode & 0o077


_short_dir: Path | None = None
_short_lock = threading.Lock()


def private_socket_dir() -> Path:
    """A short directory only this user can enter (``/tmp/wan_nb-<uid>``, else a fresh random
    one when that name is taken by something this user does not own, or is open to others)."""
    global _short_dir
    with _short_lock:
        if _short_dir is not None and _private(_short_dir):
            return _short_dir
        uid = os.getuid() if hasattr(os, "getuid") else 0
        candidate = Path(tempfile.gettempdir()) / f"wan_nb-{uid}"
        try:
            candidate.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError:
            candidate = None
        if candidate is None or not _private(candidate):
            candidate = Path(tempfile.mkdtemp(prefix="wan_nb-"))   # 0700, a name no one chose
        _short_dir = candidate
        return candidate


def _try_ipc(socket: Any, path: Path) -> str | None:
    import zmq

    if len(str(path)) > IPC_PATH_MAX:
        return None
    try:
        socket.bind(f"ipc://{path}")
    except zmq.ZMQError:
        return None
    return f"ipc://{path}"


def bind(socket: Any, directory: Path, role: str, curve: "CurveServer | None" = None) -> str:
    """Bind ``socket`` to an ipc file in ``directory`` or else in :func:`private_socket_dir`;
    where ipc is not to be had, to ``tcp://127.0.0.1`` secured by ``curve`` (no ``curve``:
    :class:`RelayUnavailable`). Returns the endpoint."""
    name = f"wan_nb-{os.getpid()}-{secrets.token_hex(3)}.{role}"
    if ipc_wanted():
        for folder in (directory, private_socket_dir()):
            endpoint = _try_ipc(socket, folder / name)
            if endpoint is not None:
                return endpoint
    if curve is None:
        raise RelayUnavailable(f"no private ipc socket for {role!r} here, and TCP is used only with "
                               "CURVE keys")
    curve.secure(socket)
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    log.info("wan_nb relay: %s socket on tcp://127.0.0.1:%s, CURVE-authenticated (no ipc here)", role, port)
    return f"tcp://127.0.0.1:{port}"


class CurveServer:
    """A producer's CURVE keys: a server key pair for its sockets, a client key pair for the
    servers it lets in (handed to them through the 0600 producer file), and the ZAP handler
    that admits that client key only. Started on first use: ipc needs none of it."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.server_public = self.server_secret = self.client_public = self.client_secret = b""
        self.authenticator: Any = None

    def secure(self, socket: Any) -> None:
        import zmq

        if not zmq.has("curve"):
            raise RelayUnavailable("this libzmq has no CURVE: no authenticated TCP without ipc")
        if self.authenticator is None:
            from zmq.auth.thread import ThreadAuthenticator

            self.server_public, self.server_secret = zmq.curve_keypair()
            self.client_public, self.client_secret = zmq.curve_keypair()

            self.authenticator = ThreadAuthenticator(self.context)
            self.authenticator.start()
            self.authenticator.configure_curve_callback("*", credentials_provider=self)
        socket.curve_secretkey = self.server_secret
        socket.curve_publickey = self.server_public
        socket.curve_server = True

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP: only the key this producer wrote into its own file gets in."""
        return secrets.compare_digest(key, self.client_public)

    def describe(self) -> dict[str, str] | None:
        if self.authenticator is None:
            return None
        return {"server_public": self.server_public.decode(), "client_public": self.client_public.decode(),
                "client_secret": self.client_secret.decode()}

    def stop(self) -> None:
        if self.authenticator is not None:
            self.authenticator.stop()
            self.authenticator = None


def check_curve(keys: Any) -> str | None:
    """What is wrong with a producer file's ``curve`` entry, or None."""
    if not isinstance(keys, Mapping):
        return "'curve' must be an object of keys"
    for name in ("server_public", "client_public", "client_secret"):
        value = keys.get(name)
        if not isinstance(value, str) or len(value) != 40:
            return f"'curve.{name}' must be a 40-character Z85 key"
    return None


def unauthenticated(info: Mapping[str, Any]) -> str | None:
    """Why a server must not connect to the producer ``info`` describes (plain TCP: anyone on
    the machine could read its events and reach its control socket), or None."""
    endpoints = [info.get(name) for name in ("pub", "control")]
    if any(isinstance(e, str) and e.startswith("tcp://") for e in endpoints) and not info.get("curve"):
        return "it relays over tcp:// without CURVE keys (unauthenticated); refused"
    return None


def secure_client(socket: Any, info: Mapping[str, Any]) -> None:
    """Give a socket that connects to the producer ``info`` describes its CURVE keys (when the
    producer uses TCP; over ipc the file's directory already keeps others out)."""
    keys = info.get("curve")
    if keys:
        socket.curve_serverkey = keys["server_public"].encode()
        socket.curve_publickey = keys["client_public"].encode()
        socket.curve_secretkey = keys["client_secret"].encode()
