"""Kernel/script -> Jupyter server transport: :mod:`.protocol` is what both sides agree on,
:mod:`.producer` the process side (``relay.attach(bus, runs_dir, cancel=, steer=)``).

Importing this package loads neither zmq nor Jupyter: the generator imports it eagerly.
"""

from __future__ import annotations

from typing import Any

from .producer import attach, shutdown
from .producer import shutdown as _shutdown  # noqa: F401  (the first name, still used by tests)
from .protocol import (PRODUCER_PREFIX, SERVER_PREFIX, producer_files, read_producer_file,
                       ring_doorbells, runtime_dir, send_control)

__all__ = ["attach", "shutdown", "runtime_dir", "producer_files", "PRODUCER_PREFIX", "read_producer_file",
           "send_control", "SERVER_PREFIX", "ring_doorbells"]


def __getattr__(name: str) -> Any:
    if name == "_producer":   # the process's relay, if one is attached (tools and tests look)
        from . import producer

        return producer.current()
    raise AttributeError(name)
