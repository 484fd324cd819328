"""Where a Generator's tasks run: the engine interface, and what loading a pipeline takes.

A :class:`~wan_nb.generator.Generator` is a facade: it checks arguments, writes the run folder
and the journal, and hands each :class:`~wan_nb.core.task.Task` to its **engine**. Two engines
implement :class:`Engine`:

* :class:`wan_nb.core.local_engine.LocalEngine`: one worker thread in this process, one pipeline;
* :class:`wan_nb.cluster.backend.RayEngine`: Ray actors, each hosting a ``LocalEngine``.

An engine publishes every event of the tasks it runs into an :class:`EventSink` (the
generator's bus) and reports each task's end to ``on_ended``; it never sees the Generator.

Loading options travel as one :class:`LoadOptions` value, built once by the facade and given to
the pipeline holder (and, on a cluster, to every worker): a new option is one field here.

It depends on the vocabulary only (events, task), so any engine and the facade may import it.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from wan_nb.protocol.events import Event
from wan_nb.core.task import Task
from wan_nb.weights.options import NONE as AS_SHIPPED, WeightOptions

__all__ = ["Engine", "EventSink", "LoadOptions", "OFFLOAD_MODES", "queue_fields"]

OFFLOAD_MODES = ("none", "model", "sequential", "group")


@dataclass(frozen=True)
class LoadOptions:
    """How a generator loads and places its pipeline (``Generator(device=, dtype=, offload=, ...)``)."""

    device: str = "auto"
    dtype: Any = "auto"
    offload: str = "none"
    vae_tiling: bool = False
    vae_slicing: bool = False
    attention: str | None = None    # diffusers attention backend (wan_nb.fast.attention), checked by the facade
    compile: bool = False           # compile the repeated transformer blocks once loaded
    # Quantized / single-file weights: Generator(quant=, transformer=) resolved once, when the
    # Generator was made (wan_nb.weights.options.for_model); frozen, so it pickles to Ray workers.
    weights: WeightOptions = AS_SHIPPED

    def __post_init__(self) -> None:
        if self.offload not in OFFLOAD_MODES:
            raise ValueError(f"offload={self.offload!r}: choose 'none', 'model', 'sequential' or 'group'")

    @property
    def placement_requested(self) -> bool:
        """True when a given pipeline must be moved, offloaded or tiled rather than used as it is."""
        return self.offload != "none" or self.vae_tiling or self.vae_slicing

    def as_kwargs(self) -> dict[str, Any]:
        """The options as ``LoadOptions(**kwargs)`` takes them (for other processes): the fields
        themselves, ``weights`` still a WeightOptions (``dataclasses.asdict`` would make it a dict)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


class EventSink(Protocol):
    """Where an engine publishes (an :class:`~wan_nb.core.bus.EventBus` is one)."""

    def publish(self, task_id: str, type: str, /, **data: Any) -> Event: ...

    def publish_event(self, event: Event) -> Event: ...

    def last_seq(self, task_id: str) -> int: ...


def queue_fields(position: int, running: int) -> dict[str, int]:
    """The data of a ``generation_queued`` event for a task at ``position`` among the waiting ones."""
    return {"queue_position": position, "ahead": position + running}


class Engine(abc.ABC):
    """Runs the tasks a Generator submits; publishes their events into its sink.

    ``submit`` publishes ``generation_started`` and ``generation_queued`` at once; the task's
    run publishes ``generation_stage(initializing, "Starting")`` when it is taken, every waiting
    task whose place changed gets a new ``generation_queued``. Exactly one terminal event ends
    each task, after which the engine calls ``on_ended(task)``.
    """

    #: the Task subclass this engine's tasks are made of
    task_class: type = Task
    #: how many tasks run at once
    count: int = 1

    @abc.abstractmethod
    def submit(self, task: Task, *, retries: int = 0, started: dict[str, Any] | None = None) -> Task:
        """Queue ``task`` (its folder and journal exist); ``started``: its ``generation_started`` data."""

    @abc.abstractmethod
    def cancel(self, task: Task) -> None:
        """Stop ``task``: at once while it waits, within one denoising step while it runs."""

    @abc.abstractmethod
    def steer(self, task: Task, action: str, **kw: Any) -> bool:
        """``pause`` (``release_memory=``) or ``resume`` a task; False where it does not apply now."""

    @abc.abstractmethod
    def move(self, task: Task, index: int) -> None:
        """Put a waiting task at ``index`` of the queue (0 runs next, -1 last); raises TaskNotQueued."""

    @property
    @abc.abstractmethod
    def queued(self) -> list[Task]:
        """The waiting tasks in run order."""

    @property
    @abc.abstractmethod
    def running(self) -> list[Task]:
        """The tasks running now."""

    @abc.abstractmethod
    def pause(self) -> None:
        """Take no more queued tasks until :meth:`resume` (running ones go on)."""

    @abc.abstractmethod
    def resume(self) -> None: ...

    @property
    @abc.abstractmethod
    def paused(self) -> bool: ...

    @abc.abstractmethod
    def run_on_worker(self, fn: Callable[[Any], Any], timeout: float | None = None) -> Any:
        """``fn(pipeline)`` where the pipeline lives, between tasks; its result."""

    @abc.abstractmethod
    def close(self, timeout: float = 60.0) -> None:
        """Stop taking work and let the threads end."""
