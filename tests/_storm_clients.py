"""Resuming clients that hang up at random: SSE per task (``Last-Event-ID``), SSE all tasks
(``Last-Event-ID: <boot>-<n>``) and WebSocket (``task:<id>`` with ``after``).

Raw asyncio sockets, as a browser's EventSource or a seed-000 client would speak them, so one
event loop drives dozens of clients. Every client records each event it *fully* received (a
line cut by the hang-up does not count) and resumes from the last one; the test then checks
that it saw every seq of the task exactly once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import struct
from dataclasses import dataclass, field

from _server_helpers import TOKEN


@dataclass
class Storm:
    """Shared budget of hang-ups: clients hang up until ``left`` reaches 0, then read to the end."""

    left: int
    done_at: float | None = None
    refused: int = 0            # reconnects answered 204 (finished task, nothing new)

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


@dataclass
class Client:
    kind: str                   # "sse", "sse_all" or "ws"
    port: int
    task_id: str
    rng: random.Random
    seqs: list[int] = field(default_factory=list)
    resume: str | None = None   # Last-Event-ID (SSE) of the last complete event
    disconnects: int = 0
    connects: int = 0
    ended: bool = False

    @property
    def last_seq(self) -> int:
        return self.seqs[-1] if self.seqs else 0


def _is_terminal(frame: dict) -> bool:
    return frame.get("type") in ("generation_completed", "generation_failed", "generation_cancelled")


async def _open(port: int, request: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request.encode())
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    return reader, writer, status


async def _chunked_lines(reader: asyncio.StreamReader):
    """Complete lines of an HTTP/1.1 chunked body; None at its last (zero-size) chunk.
    A connection cut mid-line raises ``IncompleteReadError``: that line never counts."""
    buffer = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        if size == 0:
            yield None
            return
        buffer += (await reader.readexactly(size + 2))[:-2]
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            yield line


async def _sse_session(client: Client, storm: Storm, budget: int) -> None:
    path = (f"/wan-nb/api/progress/{client.task_id}?vram=1" if client.kind == "sse"
            else "/wan-nb/api/events")
    resume = f"Last-Event-ID: {client.resume}\r\n" if client.resume else ""
    if client.kind == "sse_all" and not client.resume:
        path += "?replay=1"
    reader, writer, status = await _open(
        client.port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                     f"Authorization: token {TOKEN}\r\n{resume}\r\n")
    try:
        if status == 204:
            storm.refused += 1
            client.ended = True
            return
        assert status == 200, status
        pending_id = None
        lines = _chunked_lines(reader)
        while True:
            if budget <= 0 and storm.take():
                client.disconnects += 1
                return
            line = await lines.__anext__()
            if line is None:
                client.ended = True   # the server ended the response (after the final event)
                return
            if line.startswith(b"id: "):
                pending_id = line[4:].strip().decode()
            elif line.startswith(b"data: "):
                frame = json.loads(line[6:])
                if frame.get("task_id") != client.task_id:
                    continue
                budget -= 1
                client.seqs.append(frame["seq"])
                client.resume = pending_id
                if client.kind == "sse_all" and _is_terminal(frame):
                    client.ended = True
                    return
    finally:
        writer.transport.abort()  # a hang-up, not a polite close


async def _ws_session(client: Client, storm: Storm, budget: int) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    reader, writer, status = await _open(
        client.port, f"GET /wan-nb/api/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                     f"Authorization: token {TOKEN}\r\n\r\n")
    try:
        assert status == 101, status
        request = {"action": "subscribe", "topic": f"task:{client.task_id}", "after": client.last_seq}
        payload = json.dumps(request).encode()
        mask = os.urandom(4)
        writer.write(bytes((0x81, 0x80 | len(payload))) + mask
                     + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        await writer.drain()
        while True:
            if budget <= 0 and storm.take():
                client.disconnects += 1
                return
            head = await reader.readexactly(2)
            size = head[1] & 0x7F
            if size == 126:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", await reader.readexactly(8))[0]
            body = await reader.readexactly(size)
            if head[0] & 0x0F != 1:
                continue
            frame = json.loads(body)
            if frame.get("type") == "error":
                raise AssertionError(f"server answered {request} with {frame}")
            if frame.get("task_id") != client.task_id:
                continue
            budget -= 1
            client.seqs.append(frame["seq"])
            if _is_terminal(frame):
                client.ended = True
                return
    finally:
        writer.transport.abort()


async def run_client(client: Client, storm: Storm, *, mean_budget: int, deadline: float) -> None:
    """Connect, read a random number of events (or for a random moment), hang up, resume —
    until the storm is spent and the task's final event arrived."""
    loop = asyncio.get_running_loop()
    session = _ws_session if client.kind == "ws" else _sse_session
    while not client.ended:
        if loop.time() > deadline:
            raise AssertionError(f"{client.kind} client still reading at the deadline "
                                 f"({len(client.seqs)} events, last {client.last_seq})")
        client.connects += 1
        budget = client.rng.randint(0, 2 * mean_budget)
        if storm.left > 0 and client.rng.random() < 0.3:
            # Hang up after a random moment instead, wherever the stream is (mid-event too).
            try:
                await asyncio.wait_for(session(client, storm, 1 << 30),
                                       timeout=client.rng.uniform(0.001, 0.05))
            except asyncio.TimeoutError:
                storm.take()
                client.disconnects += 1
        else:
            try:
                await asyncio.wait_for(session(client, storm, budget), timeout=deadline - loop.time())
            except asyncio.TimeoutError:
                raise AssertionError(f"{client.kind} client waited for events until the deadline "
                                     f"({len(client.seqs)} events, last {client.last_seq}, "
                                     f"{client.disconnects} hang-ups)") from None
