import threading
import time

from wan_nb.core.bus import EventBus


def test_seq_has_no_gaps_per_task_under_concurrent_publishers():
    bus = EventBus()
    seen = []
    bus.add_sink(seen.append)

    def publish(task):
        for i in range(500):
            bus.publish(task, "detailed_generation_progress", n=i)

    threads = [threading.Thread(target=publish, args=(t,)) for t in ("a", "a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for task, count in (("a", 1000), ("b", 500)):
        seqs = [e.seq for e in seen if e.task_id == task]
        assert seqs == list(range(1, count + 1))  # sinks see them in order too


def test_raising_subscriber_is_isolated_and_logged_once(caplog):
    bus = EventBus()
    good = []

    def bad(event):
        raise RuntimeError("subscriber bug")

    bus.subscribe(bad)
    bus.subscribe(good.append)
    for i in range(5):
        bus.publish("t", "generation_stage", stage="generating")
    assert bus.drain(2.0)
    assert len(good) == 5
    assert sum("subscriber bug" in r.getMessage() or "raised" in r.getMessage() for r in caplog.records) == 1


def test_slow_subscriber_gets_latest_progress_and_every_terminal_event():
    bus = EventBus()
    got = []

    def slow(event):
        time.sleep(0.01)
        got.append(event)

    bus.subscribe(slow, max_pending=5)
    started = time.perf_counter()
    for i in range(200):
        bus.publish("t", "detailed_generation_progress", progress=i / 2)
    bus.publish("t", "generation_completed", output_path="x")
    publish_time = time.perf_counter() - started
    assert publish_time < 0.5  # publishing never waited for the 10 ms callback
    assert bus.drain(5.0)
    assert got[-1].type == "generation_completed"
    progress = [e for e in got if e.type == "detailed_generation_progress"]
    assert progress[-1].data["progress"] == 99.5  # the newest state survived coalescing
    assert len(progress) < 200


def test_history_replay_and_task_filter():
    bus = EventBus()
    for i in range(3):
        bus.publish("a", "generation_stage", i=i)
    bus.publish("b", "generation_stage", i=0)
    got = []
    off = bus.subscribe(got.append, task_id="a", replay=True)
    bus.publish("a", "generation_stage", i=3)
    bus.publish("b", "generation_stage", i=1)
    assert bus.drain(2.0)
    off()
    assert [e.seq for e in got] == [1, 2, 3, 4] and {e.task_id for e in got} == {"a"}
    assert [e.seq for e in bus.history("a", after=2)] == [3, 4]


def test_history_is_bounded():
    bus = EventBus(history_per_task=10, max_tasks=3)
    for task in "abcd":
        for _ in range(20):
            bus.publish(task, "generation_stage")
    assert bus.task_ids() == ["b", "c", "d"]
    assert [e.seq for e in bus.history("d")] == list(range(11, 21))


def test_history_keeps_only_the_newest_preview_of_a_task():
    bus = EventBus()
    for step in range(1, 6):
        bus.publish("t", "detailed_generation_progress", step=step)
        bus.publish("t", "preview", step=step, data_b64="x" * 1000)
    previews = [e for e in bus.history("t") if e.type == "preview"]
    assert [e.data["step"] for e in previews] == [5]
    assert len(bus.history("t")) == 6


def test_drain_called_from_a_subscriber_does_not_wait_for_itself():
    import threading

    bus = EventBus()
    drained = []
    done = threading.Event()

    def handler(event):
        drained.append(bus.drain(timeout=5.0))  # e.g. task.result() inside an event handler
        done.set()

    off = bus.subscribe(handler)
    bus.publish("t", "generation_started", model_type="x", params={}, estimated_duration=None)
    assert done.wait(10)
    off()
    assert drained == [True]  # everything else is idle; it did not time out waiting for itself
