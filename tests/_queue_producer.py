"""A producer process with one running task and tasks waiting behind it, for the queue's clients.

``python tests/_queue_producer.py --runs-dir D --prefix P --queued N`` publishes, through a real
``EventBus``, run journal and relay (as a Generator's process does), the events the contract
gives a generator's queue (DESIGN.md): ``generation_started`` then ``generation_queued``
for each waiting task, ``generation_queued`` again for every task whose place a move changes,
``generation_stage(initializing, "Starting")`` when one is taken. It answers the server's steering
(pause, resume, move, cancel) the way ``Generator.steer`` does and notes each request in
``<runs_dir>/steered.jsonl``. The running task steps slowly until the file ``<runs_dir>/finish``
appears; then it completes and the next task starts. Prints ``ready`` once attached.

This stands in for the generator only until the core's engine publishes these events itself;
``tests/lab/test_queue_across_processes.py`` runs the same checks against a real Generator.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

PROMPT = "task {n} of the queue"


class QueueProducer:
    def __init__(self, runs_dir: Path, prefix: str, queued: int) -> None:
        from wan_nb.core.bus import EventBus
        from wan_nb.runs.journal import Journal, write_task_file

        self.runs_dir = runs_dir
        self.bus = EventBus()
        self.journal = Journal()
        self.bus.add_sink(self.journal)
        self.lock = threading.Lock()
        self.ids = [f"{prefix}-{n}" for n in range(queued + 1)]
        self.running = self.ids[0]
        self.waiting = self.ids[1:]
        self.paused = threading.Event()
        self.cancelled: set[str] = set()
        self.step = 0
        for n, task_id in enumerate(self.ids):
            write_task_file(runs_dir / task_id, {"task_id": task_id, "prompt": PROMPT.format(n=n)})
            self.journal.open(task_id, runs_dir / task_id)

    def publish_submits(self) -> None:
        for n, task_id in enumerate(self.ids):
            self.bus.publish(task_id, "generation_started", model_type="tiny",
                             params={"prompt": PROMPT.format(n=n), "steps": 100_000, "seed": n},
                             estimated_duration=None)
            if task_id != self.running:
                position = self.waiting.index(task_id)
                self.bus.publish(task_id, "generation_queued", queue_position=position, ahead=position + 1)
        self._start(self.running)

    def _start(self, task_id: str) -> None:
        self.bus.publish(task_id, "generation_stage", stage="initializing", stage_progress=0,
                         stage_message="Starting")
        self.bus.publish(task_id, "generation_stage", stage="generating", stage_progress=0,
                         stage_message="Denoising")

    def _requeue(self, before: list[str]) -> None:
        """generation_queued for every waiting task whose place changed (lock held)."""
        for position, task_id in enumerate(self.waiting):
            if task_id not in before or before.index(task_id) != position:
                self.bus.publish(task_id, "generation_queued", queue_position=position, ahead=position + 1)

    def steer(self, task_id: str, action: str, **arguments) -> bool:
        with open(self.runs_dir / "steered.jsonl", "a") as handle:
            handle.write(json.dumps({"task_id": task_id, "action": action, **arguments}) + "\n")
        with self.lock:
            if action == "move":
                if task_id not in self.waiting:
                    return False
                before = list(self.waiting)
                self.waiting.remove(task_id)
                self.waiting.insert(min(arguments["index"], len(self.waiting)), task_id)
                self._requeue(before)
                return True
            if action in ("pause", "resume"):
                if task_id != self.running or self.paused.is_set() == (action == "pause"):
                    return False
                (self.paused.set if action == "pause" else self.paused.clear)()
                # as wan_nb.core.run says a pause that gave the accelerator's memory back
                freed = {"release_memory": True} if action == "pause" and arguments.get("release_memory") else {}
                self.bus.publish(task_id, f"generation_{action}d", stage="generating", current_step=self.step,
                                 **freed)
                return True
            if action == "cancel":
                self.cancelled.add(task_id)
                return True
        return False

    def run(self) -> None:
        self.publish_submits()
        finish = self.runs_dir / "finish"
        while True:
            task_id, self.step = self.running, 0
            while not (finish.exists() or task_id in self.cancelled):
                if not self.paused.is_set():
                    self.step += 1
                    self.bus.publish(task_id, "detailed_generation_progress", stage="generating",
                                     progress=min(90.0, self.step / 10), message=f"Step {self.step}",
                                     estimated_time_remaining=None, current_step=self.step,
                                     total_steps=100_000)
                time.sleep(0.1)
            finish.unlink(missing_ok=True)
            with self.lock:
                if task_id in self.cancelled:
                    self.bus.publish(task_id, "generation_cancelled", stage="generating", current_step=self.step)
                else:
                    self.bus.publish(task_id, "generation_completed", output_path=None, duration_s=1.0,
                                     params={}, seed=0)
                self.journal.close(task_id)
                if not self.waiting:
                    return
                before = list(self.waiting)
                self.running = self.waiting.pop(0)
                self._start(self.running)
                self._requeue(before)


def main() -> None:
    from wan_nb import relay

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--queued", type=int, default=2)
    args = parser.parse_args()
    producer = QueueProducer(Path(args.runs_dir), args.prefix, args.queued)
    detach = relay.attach(producer.bus, runs_dir=args.runs_dir, steer=producer.steer)
    print("ready", flush=True)
    producer.run()
    producer.bus.drain(timeout=2.0)
    time.sleep(0.3)  # let the last frames leave the relay socket
    detach()


if __name__ == "__main__":
    main()
