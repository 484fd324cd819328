"""LoRA schedules on Ray workers: what travels to a worker is the schedule's JSON form, which the
worker's own parameter check reads back unchanged, so it applies the weights the driver recorded."""
import pickle

from wan_nb.cluster.worker import generation_kwargs
from wan_nb.core import lora_schedule
from wan_nb.core.params import build_params
from wan_nb.models import specs


def test_a_drivers_schedule_reaches_the_worker_as_recorded(tmp_path):
    spec = specs.resolve("tiny-a14b")

    def fade(step, total, expert):
        return (1.0 - step / total) if expert == "high" else 0.5

    driver = build_params(spec, "a fox", {"steps": 4, "loras": {"ink": fade, "ramp": "1.0-0.2", "pair": (1.0, 0.0)}},
                          known_loras={"ink": 1.0, "ramp": 1.0, "pair": 1.0})
    assert driver["loras"]["ink"] == {"high": [1.0, 0.75, 0.5, 0.25], "low": [0.5] * 4, "from": "callable " + fade.__qualname__}
    sent = pickle.loads(pickle.dumps(generation_kwargs(driver)))  # no function travels: its values do
    worker = build_params(spec, "a fox", sent, known_loras={"ink": 1.0, "ramp": 1.0, "pair": 1.0})
    assert worker["loras"] == driver["loras"]
    for name, form in worker["loras"].items():
        for expert in ("high", "low"):
            assert lora_schedule.per_step(form, 4, expert) == lora_schedule.per_step(driver["loras"][name], 4, expert)


def test_a_loaded_schedule_keys_the_workers_lora_set(tmp_path):
    # A worker's LoRA set is keyed by weight (cluster.backend): every form must give a stable, hashable key.
    keys = {lora_schedule.key(w) for w in (1.0, [1.0, 0.5], "1-0.2", {"high": 1.0, "low": 0.0})}
    assert len(keys) == 4 and lora_schedule.key([1.0, 0.5]) == lora_schedule.key([1.0, 0.5])
