"""One test per tornado internal the server uses (see wan_nb/server/_tornado_compat.py): each
fails, naming the private, when a tornado upgrade changes it."""

from __future__ import annotations

import asyncio
import socket

import pytest
from tornado import httputil, web, websocket
from tornado.iostream import IOStream

from wan_nb.server import _tornado_compat as compat


def _handler(accept_encoding: str) -> web.RequestHandler:
    app = web.Application(compress_response=True)
    connection = type("Connection", (), {"set_close_callback": lambda self, cb: None})()
    request = httputil.HTTPServerRequest(method="GET", uri="/", connection=connection,
                                         headers=httputil.HTTPHeaders({"Accept-Encoding": accept_encoding}))
    handler = web.RequestHandler(app, request)
    handler._transforms = [t(request) for t in app.transforms]
    return handler


def test_private_transforms_and_gzipping_tell_a_gzipped_response():
    assert hasattr(web.RequestHandler, "_transforms") or "_transforms" in web.RequestHandler.__annotations__, \
        "tornado no longer has RequestHandler._transforms"
    gzipped, plain = _handler("gzip"), _handler("identity")
    assert any(hasattr(t, "_gzipping") for t in gzipped._transforms), \
        "tornado's GZipContentEncoding no longer has _gzipping"
    assert compat.is_gzipping(gzipped) and not compat.is_gzipping(plain)


def test_private_ws_connection_stream_is_the_sockets_iostream():
    async def check():
        left, right = socket.socketpair()
        stream = IOStream(left)
        handler = type("H", (), {})()
        protocol = websocket.WebSocketProtocol13.__new__(websocket.WebSocketProtocol13)
        protocol.stream = stream
        handler.ws_connection = protocol
        assert compat.ws_stream(handler) is stream
        stream.close()
        right.close()

    asyncio.run(check())
    source = websocket.WebSocketProtocol13._accept_connection.__code__.co_names
    assert "stream" in source and "_detach_stream" in source, \
        "tornado's WebSocketProtocol13 no longer keeps its IOStream in .stream"


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_raw_frames_match_the_frames_tornado_writes(size):
    """Server frames are unmasked: ours must be byte for byte what tornado's _write_frame sends."""
    written = []
    protocol = websocket.WebSocketProtocol13.__new__(websocket.WebSocketProtocol13)
    protocol.mask_outgoing = False
    protocol._wire_bytes_out = 0
    protocol.stream = type("S", (), {"write": lambda self, data: written.append(data)})()
    assert hasattr(protocol, "_write_frame"), "tornado's WebSocketProtocol13._write_frame is gone"
    payload = b"x" * size
    protocol._write_frame(True, 0x1, payload)
    assert written == [compat.ws_text_frame(payload)]
    written.clear()
    protocol._write_frame(True, 0x8, compat.ws_close_frame(1001, "bye")[2:])
    assert written == [compat.ws_close_frame(1001, "bye")]


def test_raw_socket_only_for_plain_tcp_streams():
    left, right = socket.socketpair()
    try:
        assert compat.raw_socket(IOStream(left)) is left
        assert IOStream.writing, "tornado's IOStream.writing() is gone"
    finally:
        left.close()
        right.close()
