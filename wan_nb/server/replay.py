"""Streaming a task's past events to one connection, as fast as that connection drains.

A finished task may have 150,000 events (a 40 MB journal). Reading all of them, encoding all of
them and queueing all of them for a client costs the server that much memory per replay and
blocks its loop while it encodes; a byte cap on that queue closed such replays instead. Here
the journal is read in chunks of :data:`~.store.CHUNK_BYTES` on a worker thread, each chunk is
encoded and queued only when the connection has sent the one before, and memory fills what the
journal lacks (a full disk) in seq order. Live events of the task that arrive meanwhile wait,
bounded, behind the replay (see :class:`~.fanout.Subscriber`).
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable

from .store import JournalCursor, Rec, Store, TaskEntry, missing_ranges

MEMORY_BATCH = 2000           # events of a replay served from memory per step

ReadChunk = Callable[[JournalCursor], Awaitable["tuple[list[Rec], list[tuple[int, int]]] | None"]]


class ReplayStream:
    def __init__(self, store: Store, task: TaskEntry, after: int, read_chunk: ReadChunk) -> None:
        self.store, self.task, self.after, self.read_chunk = store, task, after, read_chunk
        self.sent: list[int] = []          # seqs yielded, for the missing ranges

    async def batches(self) -> AsyncIterator[list[Rec]]:
        """Lists of events in seq order; ``task.missing`` is set once the last one is given."""
        task, after = self.task, self.after
        if self.store.replay_source(task) is None:
            recs = self.store.replay(task, after)          # memory has it all, or is all there is
            for start in range(0, len(recs), MEMORY_BATCH):
                yield recs[start:start + MEMORY_BATCH]
            return
        memory = [r for r in task.events if r.seq > after]     # fills holes, adds server-made events
        position = 0
        cursor = JournalCursor(task.task_id)
        while not cursor.done:
            chunk = await self.read_chunk(cursor)
            if chunk is None:
                if not self.sent and cursor.offset == 0:   # no journal after all: memory, marked
                    for batch in self._memory_only():
                        yield batch
                    return
                break
            batch: list[Rec] = []
            for rec in chunk[0]:
                while position < len(memory) and memory[position].seq <= rec.seq:
                    if memory[position].seq < rec.seq:
                        batch.append(memory[position])
                    position += 1
                batch.append(rec)
            self.sent.extend(r.seq for r in batch)
            if batch:
                yield batch
        rest = memory[position:]
        if self.sent:
            rest = [r for r in rest if r.seq > self.sent[-1]]
        self.sent.extend(r.seq for r in rest)
        if rest:
            yield rest
        before = [(a, min(b, after)) for a, b in cursor.gaps if a <= after]   # a resume's past
        task.missing = before + missing_ranges(self.sent, task.last_seq, start=after + 1)

    def _memory_only(self) -> list[list[Rec]]:
        task = self.task
        self.store.log.warning("wan_nb: replaying %s from memory with gaps: its journal is not found",
                               task.task_id)
        task.missing = missing_ranges((r.seq for r in task.events), task.last_seq)
        recs = [r for r in task.events if r.seq > self.after]
        return [recs[i:i + MEMORY_BATCH] for i in range(0, len(recs), MEMORY_BATCH)]


async def until_drained(sub: Any, loop: Any) -> None:
    """Wait until ``sub``'s replayed events have all gone to its connection (or it closed)."""
    while sub.backlog and not sub.outbox.closed:
        future = loop.create_future()
        sub.outbox.when_drained(lambda: future.done() or future.set_result(None))
        await future
        sub.pump()
