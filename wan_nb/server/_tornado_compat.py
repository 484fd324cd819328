"""Every tornado internal the server relies on, in one place.

The fan-out writes one pre-encoded frame to hundreds of sockets, so it bypasses tornado's
per-write machinery where that is safe. That needs four things tornado does not promise:

* ``RequestHandler._transforms`` and ``GZipContentEncoding._gzipping``: whether a response is
  being gzipped (then raw writes would corrupt it and the handler must write itself);
* ``WebSocketHandler.ws_connection.stream``: the IOStream under an open WebSocket;
* the WebSocket frame layout tornado's ``WebSocketProtocol13._write_frame`` writes (server
  frames are unmasked), reproduced by :func:`ws_text_frame` to encode once for every socket.

``tests/server/test_tornado_compat.py`` checks each against the installed tornado and fails
loudly, naming the private, when an upgrade changes one.
"""

from __future__ import annotations

import struct
from typing import Any

from tornado.iostream import IOStream

__all__ = ["is_gzipping", "ws_stream", "raw_socket", "ws_text_frame", "ws_close_frame"]


def is_gzipping(handler: Any) -> bool:
    """True if tornado's gzip transform will compress ``handler``'s response body."""
    return any(getattr(t, "_gzipping", False) for t in handler._transforms)


def ws_stream(handler: Any) -> IOStream:
    """The IOStream of an open WebSocket handler's connection."""
    return handler.ws_connection.stream


def raw_socket(stream: IOStream) -> Any:
    """The socket to ``send`` on directly, or None where bytes must go through the stream (TLS:
    an ``SSLIOStream`` encrypts in ``write``)."""
    return stream.socket if type(stream) is IOStream else None


def _frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, size)
    elif size <= 0xFFFF:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload


def ws_text_frame(payload: bytes) -> bytes:
    """An unmasked, uncompressed, final WebSocket text frame (RFC 6455 §5.2)."""
    return _frame(0x1, payload)


def ws_close_frame(code: int, reason: str = "") -> bytes:
    """A close frame (RFC 6455 §5.5.1); the reason is cut to fit the 125-byte control limit."""
    return _frame(0x8, struct.pack("!H", code) + reason.encode()[:123])
