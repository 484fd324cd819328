"""A slow client's queue: bounded, coalescing intermediate progress, never dropping the rest."""

from __future__ import annotations

import asyncio
import socket

from tornado.iostream import IOStream

from wan_nb.server.outbox import Outbox


def test_a_client_that_does_not_read_gets_coalesced_progress_and_every_terminal_event():
    asyncio.run(_slow_reader())


async def _slow_reader():
    writer, reader = socket.socketpair()
    writer.setblocking(False)
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    closed = []
    outbox = Outbox(IOStream(writer), limit=20, on_close=closed.append)
    payload = b"x" * 1000
    for step in range(2000):  # the kernel buffer fills at once; the rest queues
        outbox.push(b"progress %05d " % step + payload, key=("detailed_generation_progress", "t"))
        if step % 500 == 0:
            outbox.push(b"stage %05d " % step + payload)  # never coalesced
    outbox.push(b"terminal " + payload)
    assert len(outbox.queue) <= 20 + 5 and outbox.coalesced > 1000 and not closed
    reader.setblocking(False)
    received = b""
    for _ in range(400):  # now the client reads
        await asyncio.sleep(0.005)
        try:
            while chunk := reader.recv(1 << 20):
                received += chunk
        except BlockingIOError:
            pass
        if received.endswith(payload) and b"terminal" in received:
            break
    assert b"terminal " in received
    assert all(b"stage %05d " % s in received for s in range(0, 2000, 500))
    assert b"progress 01999 " in received  # the newest progress always survives
    writer.close()
    reader.close()


def test_a_client_that_never_reads_and_overflows_with_undroppable_events_is_closed():
    asyncio.run(_never_reads())


async def _never_reads():
    writer, reader = socket.socketpair()
    writer.setblocking(False)
    closed = []
    outbox = Outbox(IOStream(writer), limit=5, on_close=closed.append)
    for step in range(20000):
        outbox.push(b"stage " + b"y" * 2000)
        if closed:
            break
    assert closed, (len(outbox.queue), outbox.pending, outbox.sent)
    assert "slow" in closed[0]
    writer.close()
    reader.close()
