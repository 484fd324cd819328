"""Traces kept on disk: one JSON file per (architecture, part, shape, dtype, tiling, versions).

A trace depends only on the module's code and config and on the input shapes, so it is computed
once per machine: the second ``wan-nb plan`` of a model and shape reads files (milliseconds). The
key holds torch's, diffusers' and transformers' versions (a new release may allocate differently)
and :data:`TRACE_VERSION` (bumped when what a trace records changes). Files live in
``<wan_nb cache>/planner_traces/`` (``WAN_NB_CACHE`` moves it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from wan_nb.fast.tracing import PartTrace, trace_part

__all__ = ["cached_trace", "trace_dir", "TRACE_VERSION"]

TRACE_VERSION = 1


def trace_dir() -> Path:
    from wan_nb.models.specs import cache_dir

    return cache_dir() / "planner_traces"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "diffusers", "transformers"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "none"
    return found


def _key(fields: dict[str, Any]) -> str:
    text = json.dumps(fields, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cached_trace(kind: str, config: dict[str, Any], what: str, pipeline_kind: str, vae: dict[str, Any],
                 shape: dict[str, int], dtype_name: str = "bfloat16", tiled: bool = False) -> PartTrace:
    """:func:`wan_nb.fast.tracing.trace_part`, read from the cache when it was traced before."""
    fields = {"kind": kind, "config": config, "what": what, "pipeline": pipeline_kind, "shape": shape,
              "dtype": dtype_name, "tiled": tiled, "versions": _versions(), "trace_version": TRACE_VERSION,
              # the VAE shapes the transformer's and decode's inputs
              "vae": vae if kind != "umt5" and kind != "clip" else None}
    path = trace_dir() / f"{_key(fields)}.json"
    try:
        return PartTrace(**json.loads(path.read_text())["trace"])
    except (OSError, ValueError, TypeError, KeyError):
        pass
    found = trace_part(kind, config, what, pipeline_kind, vae, shape, dtype_name, tiled)
    path.parent.mkdir(parents=True, exist_ok=True)
    from wan_nb.runs.atomic import replace_text

    replace_text(path, json.dumps({"key": fields, "trace": found.to_dict()}, default=list, indent=1))
    return found
