"""The one place the task statuses and the stages a task ends in are spelled out.

Everyone else imports these: the reducer (:mod:`wan_nb.protocol.state`), the run history, the
server's run listing, the recorder, the widgets. The Lab's TypeScript reducer (``js/src/state.ts``)
cannot import Python; ``tests/protocol/test_status_owners.py`` holds its ``FINISHED`` to this one.
"""

from __future__ import annotations

__all__ = ["TASK_STATUSES", "FINISHED_STATUSES", "FINISHED", "ENDING_STAGES", "RESUMABLE"]

# Every status a snapshot, a run listing or ``task.status`` may read.
TASK_STATUSES = ("queued", "running", "paused", "completed", "failed", "cancelled", "stopped", "interrupted", "lost")

# A task with one of these will never change again (``lost``: its process died before it ended).
# ``stopped`` (``stop_after=k``, ``cancel(keep=True)``) and ``interrupted`` (its process died after a
# checkpoint) ended too, but kept a checkpoint: ``gen.resume_run`` finishes them as a new task.
# Ordered as listings show them; FINISHED is the same set, for ``in``.
FINISHED_STATUSES = ("completed", "failed", "cancelled", "stopped", "interrupted", "lost")
FINISHED = frozenset(FINISHED_STATUSES)

# The finished statuses a run can be resumed from (its checkpoint kept): what shows a Resume button.
RESUMABLE = frozenset({"stopped", "interrupted"})

# The stages (wan_nb.protocol.events.Stage values) a task's last event names: the generation
# reached its end, one way or the other. A lost task has no last event, so no stage of its own.
ENDING_STAGES = frozenset({"completed", "failed", "cancelled"})
