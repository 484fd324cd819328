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

__all__ = ["cached_trace", "trace_dir", "TRACE_VERSION", "read_cached", "write_cached"]

TRACE_VERSION = 2  # 2: attention forced to SDPA's fused kernels (1 could hold math-attention traces)


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
              "dtype": dtype_name, "tiled": tiled,
              # the VAE shapes the transformer's and decode's inputs
              "vae": vae if kind != "umt5" and kind != "clip" else None}
    stored = read_cached(fields)
    try:
        return PartTrace(**stored["trace"])  # type: ignore[index]
    except (TypeError, KeyError):
        pass
    found = trace_part(kind, config, what, pipeline_kind, vae, shape, dtype_name, tiled)
    write_cached(fields, {"trace": found.to_dict()})
    return found


def _path(fields: dict[str, Any]) -> Path:
    return trace_dir() / f"{_key(dict(fields, versions=_versions(), trace_version=TRACE_VERSION))}.json"


def read_cached(fields: dict[str, Any]) -> dict[str, Any] | None:
    """What :func:`write_cached` kept for ``fields`` (with this torch/diffusers/transformers), or None."""
    try:
        found = json.loads(_path(fields).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def write_cached(fields: dict[str, Any], value: dict[str, Any]) -> None:
    from wan_nb.runs.atomic import replace_text

    path = _path(fields)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_text(path, json.dumps({"key": fields, **value}, default=list, indent=1))
    except OSError:
        pass  # a cache that cannot be written only costs the next plan its traces
