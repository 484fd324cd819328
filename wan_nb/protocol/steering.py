"""The ways a client may steer a task, the one place they are listed.

``Generator.steer`` (``wan_nb.core.task.steer``), the relay's control socket
(``wan_nb.relay.protocol``) and the server's ``POST wan-nb/api/tasks/{id}/<action>`` routes all
accept exactly these; a new action is added here and then handled by each of them.
"""

from __future__ import annotations

__all__ = ["STEER_ACTIONS"]

# cancel: stop at the next step; pause / resume: hold at the next step boundary, go on;
# move: a queued task's new place in the queue ({"index": n}, 0 = runs next).
STEER_ACTIONS = ("cancel", "pause", "resume", "move")
