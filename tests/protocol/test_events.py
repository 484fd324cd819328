import json

import jsonschema
import pytest

from wan_nb.protocol.events import Event, EventType, Stage, schema, utc_now, validate


def test_stage_values_are_the_lowercase_names():
    assert [s.value for s in Stage] == [
        "initializing", "downloading_model", "loading_model", "preparing_inputs", "applying_lora",
        "generating", "post_processing", "saving", "completed", "failed", "cancelled"]
    assert f"{Stage.GENERATING}" == "generating"


def test_event_is_immutable_and_has_the_wire_frame():
    event = Event(type=EventType.DETAILED_GENERATION_PROGRESS, task_id="t1", seq=3, timestamp=utc_now(),
                  data={"stage": "generating", "progress": 45.0, "message": "Step 9/20",
                        "estimated_time_remaining": 30.5, "current_step": 9, "total_steps": 20})
    with pytest.raises(AttributeError):
        event.seq = 4
    with pytest.raises(TypeError):
        event.data["progress"] = 50
    frame = json.loads(event.to_json())
    assert frame["type"] == "detailed_generation_progress" and frame["seq"] == 3 and frame["task_id"] == "t1"
    assert frame["data"]["task_id"] == "t1" and frame["data"]["timestamp"].endswith("Z")
    assert frame["data"]["current_step"] == 9
    validate(frame)
    assert Event.from_frame(frame) == event


def test_schema_rejects_missing_fields_and_bad_values():
    base = {"type": "vram_monitoring", "seq": 1, "task_id": "t",
            "data": {"task_id": "t", "timestamp": utc_now(), "allocated_mb": 1.0, "reserved_mb": 1.0,
                     "free_mb": 1.0, "total_mb": 2.0, "allocated_percent": 50.0,
                     "warning_level": "normal", "device_name": "cpu"}}
    validate(base)
    broken = json.loads(json.dumps(base))
    del broken["data"]["free_mb"]
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    broken = json.loads(json.dumps(base))
    broken["data"]["warning_level"] = "panic"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    with pytest.raises(jsonschema.ValidationError):
        validate({**base, "seq": 0})


def test_schema_is_shipped_as_package_data():
    assert schema()["title"] == "wan_nb progress event frame"
    assert set(schema()["properties"]["type"]["enum"]) >= {t.value for t in EventType}


def test_terminal_events():
    ts = utc_now()
    assert Event("generation_completed", "t", 1, ts, {}).is_terminal
    assert not Event("generation_stage", "t", 1, ts, {}).is_terminal
    assert Event("storyboard_progress", "t", 1, ts, {"step": "complete", "status": "completed"}).is_terminal
    assert Event("storyboard_progress", "t", 1, ts, {"step": "videos", "status": "failed"}).is_terminal


def test_event_data_encodes_with_json_dumps_and_the_documented_encoder():
    import copy
    import pickle
    import types

    from wan_nb.protocol.events import dumps

    event = Event("generation_started", "t", 1, utc_now(),
                  {"model_type": "tiny", "estimated_duration": None,
                   "params": {"prompt": "a fox", "loras": {"style": 0.8}, "reference_images": ["a.png", "b.png"]}})
    expected = {"model_type": "tiny", "estimated_duration": None,
                "params": {"prompt": "a fox", "loras": {"style": 0.8}, "reference_images": ["a.png", "b.png"]}}
    assert json.loads(json.dumps(event.data)) == expected
    assert json.loads(dumps(event.data)) == expected
    assert json.loads(dumps(event.data["params"])) == expected["params"]
    # what other code may hold: a mapping proxy with tuples inside
    assert json.loads(dumps(types.MappingProxyType({"a": (1, 2), "b": types.MappingProxyType({"c": 3})}))) \
        == {"a": [1, 2], "b": {"c": 3}}
    # read-only all the way down, but a copy is an ordinary dict
    for change in (lambda d: d.__setitem__("x", 1), lambda d: d.update(x=1), lambda d: d.pop("model_type"),
                   lambda d: d["params"]["loras"].__setitem__("style", 1.0), lambda d: d.clear(),
                   lambda d: d.setdefault("x", 1), lambda d: d.__delitem__("model_type")):
        with pytest.raises(TypeError, match="read-only"):
            change(event.data)
    assert isinstance(event.data, dict) and event.data["params"]["reference_images"] == ("a.png", "b.png")
    mutable = event.data.copy()
    mutable["x"] = 1
    assert dict(event.data)["model_type"] == "tiny" and "x" not in event.data
    assert pickle.loads(pickle.dumps(event)) == event and copy.deepcopy(event.data) == event.data
