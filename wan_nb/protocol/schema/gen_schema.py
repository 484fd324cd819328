"""Writes events.schema.json (run by hand after changing a field; the JSON is what ships)."""
import json
from pathlib import Path

num = {"type": "number"}
num_or_null = {"type": ["number", "null"]}
pct = {"type": "number", "minimum": 0, "maximum": 100}
string = {"type": "string"}
stages = ["initializing", "downloading_model", "loading_model", "preparing_inputs", "applying_lora",
          "generating", "post_processing", "saving", "completed", "failed", "cancelled"]
stage = {"type": "string", "enum": stages}

types = {
    "generation_started": ({"model_type": string, "params": {"type": "object"},
                            "estimated_duration": num_or_null}, ["model_type", "params", "estimated_duration"]),
    "generation_stage": ({"stage": stage, "stage_progress": pct, "stage_message": string},
                         ["stage", "stage_progress", "stage_message"]),
    "detailed_generation_progress": ({"stage": stage, "progress": pct, "message": string,
                                      "estimated_time_remaining": num_or_null,
                                      "current_step": {"type": "integer", "minimum": 0},
                                      "total_steps": {"type": "integer", "minimum": 0},
                                      "expert": {"type": ["string", "null"]},
                                      "step_reused": {"type": "boolean"}},
                                     ["stage", "progress", "message", "estimated_time_remaining",
                                      "current_step", "total_steps"]),
    "model_loading_progress": ({"model_type": string, "progress": pct, "status": string,
                                "component": {"type": ["string", "null"]},
                                "bytes_downloaded": {"type": "integer", "minimum": 0},
                                "bytes_total": {"type": ["integer", "null"], "minimum": 0},
                                "rate": num_or_null},
                               ["model_type", "progress", "status"]),
    "vram_monitoring": ({"allocated_mb": num, "reserved_mb": num, "free_mb": num, "total_mb": num,
                         "allocated_percent": pct,
                         "warning_level": {"enum": ["normal", "warning", "critical"]},
                         "device_name": string},
                        ["allocated_mb", "reserved_mb", "free_mb", "total_mb", "allocated_percent",
                         "warning_level", "device_name"]),
    "generation_completed": ({"output_path": string, "duration_s": num, "params": {"type": "object"},
                              "seed": {"type": "integer"}},
                             ["output_path", "duration_s", "params", "seed"]),
    "generation_failed": ({"stage": stage, "error_type": string, "error": string},
                          ["stage", "error_type", "error"]),
    "generation_cancelled": ({"stage": stage, "current_step": {"type": "integer", "minimum": 0}},
                             ["stage", "current_step"]),
    "generation_paused": ({"stage": stage, "current_step": {"type": "integer", "minimum": 0},
                           "release_memory": {"type": "boolean"}},
                          ["stage", "current_step"]),
    "generation_resumed": ({"stage": stage, "current_step": {"type": "integer", "minimum": 0}},
                           ["stage", "current_step"]),
    "generation_queued": ({"queue_position": {"type": "integer", "minimum": 0},
                           "ahead": {"type": "integer", "minimum": 0}},
                          ["queue_position", "ahead"]),
    "storyboard_progress": ({"step": {"enum": ["init", "story", "scenes", "video_params", "videos",
                                               "stitch", "complete"]},
                             "status": {"enum": ["in_progress", "completed", "failed", "cancelled"]},
                             "progress": pct, "message": string, "data": {"type": "object"}},
                            ["step", "status", "progress", "message", "data"]),
    "preview": ({"step": {"type": "integer", "minimum": 1}, "total_steps": {"type": "integer", "minimum": 1},
                 "mime": {"type": "string", "pattern": "^image/"},
                 "frames": {"type": "integer", "minimum": 1},
                 "width": {"type": "integer", "minimum": 1, "maximum": 256},
                 "height": {"type": "integer", "minimum": 1, "maximum": 256},
                 "bytes": {"type": "integer", "minimum": 1},
                 "projection": string, "data_b64": {"type": "string", "minLength": 1}},
                ["step", "mime", "data_b64"]),
}

common = {"task_id": string, "timestamp": {"type": "string",
          "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"}}

branches = []
for name, (props, required) in types.items():
    branches.append({
        "if": {"properties": {"type": {"const": name}}},
        "then": {"properties": {"data": {"type": "object", "properties": {**common, **props},
                                         "required": ["task_id", "timestamp", *required]}}},
    })

doc = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://wan-nb.invalid/events.schema.json",
    "title": "wan_nb progress event frame",
    "type": "object",
    "required": ["type", "seq", "task_id", "data"],
    "properties": {
        "type": {"enum": list(types)},
        "seq": {"type": "integer", "minimum": 1},
        "task_id": {"type": "string", "minLength": 1},
        "data": {"type": "object"},
    },
    "allOf": branches,
}
Path(__file__).with_name("events.schema.json").write_text(json.dumps(doc, indent=1) + "\n")
