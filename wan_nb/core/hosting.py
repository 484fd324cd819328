"""Tasks a generator hosts without running them (storyboards): their events, journal and steering.

A storyboard renders its scenes as ordinary generator tasks, but is a task of its own too: it
publishes on the generator's bus under its own id, keeps a journal in its folder and answers
pause/cancel from any client. :class:`HostedTasks` is the generator's registry of such tasks;
:meth:`HostedTasks.open` gives the task its :class:`HostedTask` channel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from wan_nb.core.bus import EventBus
from wan_nb.protocol.events import Event
from wan_nb.runs import journal

__all__ = ["HostedTasks", "HostedTask"]


class HostedTasks:
    """The hosted tasks of one generator, by id, with the bus and journal they publish through."""

    def __init__(self, bus: EventBus, run_journal: journal.Journal) -> None:
        self.bus = bus
        self.journal = run_journal
        self.handles: dict[str, Any] = {}

    def get(self, task_id: str) -> Any:
        return self.handles.get(task_id)

    def open(self, handle: Any, folder: Path, info: Mapping[str, Any]) -> "HostedTask":
        return HostedTask(self, handle, folder, info)


class HostedTask:
    """What :meth:`Generator.open_task` returns: publish under the task's id, then close."""

    def __init__(self, hosts: HostedTasks, handle: Any, folder: Path, info: Mapping[str, Any]) -> None:
        self.hosts, self.handle, self.task_id = hosts, handle, handle.id
        try:
            folder.mkdir(parents=True, exist_ok=True)
            journal.write_task_file(folder, dict(info))
            continue_numbering(hosts.bus, handle.id, folder / journal.JOURNAL_NAME)
            hosts.journal.open(handle.id, folder)
        except OSError as exc:
            raise OSError(f"cannot write the run folder {folder}: {exc}. Pass the Generator a writable "
                          "runs_dir= (or set WAN_NB_RUNS_DIR).") from exc
        hosts.handles[handle.id] = handle

    def publish(self, type: str, **data: Any) -> Event:
        return self.hosts.bus.publish(self.task_id, type, **data)

    def close(self) -> None:
        """Stop journaling and steering it (after its last event)."""
        if self.hosts.handles.get(self.task_id) is self.handle:
            del self.hosts.handles[self.task_id]
        self.hosts.journal.close(self.task_id)


def continue_numbering(bus: EventBus, task_id: str, journal_file: Path) -> None:
    """Resuming in a new process: go on from the journal's last seq, so ids stay unique."""
    if bus.last_seq(task_id) or not journal_file.is_file():
        return
    last = max((event.seq for event in journal.read_events(journal_file)), default=0)
    if last:
        bus.continue_seq(task_id, last)
