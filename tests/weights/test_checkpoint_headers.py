"""Malformed safetensors headers: every one is refused as a CheckpointError that says the file is
unreadable, never a TypeError / OverflowError / AttributeError / ValueError from inside the shape
checks (issue 27, item 12). Headers are valid JSON of the wrong shape, fuzzed with hypothesis
around the real layout of a Wan transformer file."""
from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wan_nb.weights.single_file import Architecture, CheckpointError, inspect, is_scaled_fp8

# The header of a tiny original-layout Wan transformer: what a real file's first bytes hold.
VALID = {
    "__metadata__": {"format": "pt"},
    "patch_embedding.weight": {"dtype": "F32", "shape": [32, 16, 1, 2, 2], "data_offsets": [0, 8192]},
    "blocks.0.ffn.0.weight": {"dtype": "F32", "shape": [64, 32], "data_offsets": [8192, 16384]},
    "blocks.1.ffn.0.weight": {"dtype": "F32", "shape": [64, 32], "data_offsets": [16384, 24576]},
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
# Numbers JSON can carry but no tensor has: huge, negative, fractional, infinite (json writes
# Infinity), and booleans (true == 1 in Python).
odd_numbers = st.sampled_from([10 ** 400, -1, 1.5, float("inf"), True, 2 ** 64, "32"])


def _write(header_text: str, folder: Path) -> Path:
    data = header_text.encode()
    path = folder / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(data)) + data + b"\0" * 64)
    return path


def _read(header_text: str):
    with tempfile.TemporaryDirectory() as folder:
        path = _write(header_text, Path(folder))
        try:
            return inspect(path)
        except CheckpointError as exc:
            assert str(exc) and "model.safetensors" in str(exc)
            return exc


@pytest.mark.parametrize("header", [
    "[]", "3", '"x"', "null",
    json.dumps({"__metadata__": [1, 2], **{k: v for k, v in VALID.items() if k != "__metadata__"}}),
    json.dumps({**VALID, "patch_embedding.weight": [32, 16, 1, 2, 2]}),
    json.dumps({**VALID, "patch_embedding.weight": {"dtype": "F32", "shape": "32,16,1,2,2"}}),
    json.dumps({**VALID, "patch_embedding.weight": {"dtype": "F32", "shape": [1e400, 16, 1, 2, 2]}}),
    json.dumps({**VALID, "patch_embedding.weight": {"dtype": "F32", "shape": [10 ** 400, 16, 1, 2, 2]}}),
    json.dumps({**VALID, "blocks.0.ffn.0.weight": {"dtype": "F32", "shape": []}}),
    json.dumps({**VALID, "blocks.0.ffn.0.weight": {"shape": [64, 32]}}),
    "[" * 100_000 + "]" * 100_000,
])
def test_each_known_bad_shape_is_a_checkpoint_error(header):
    assert isinstance(_read(header), CheckpointError)


def test_the_valid_header_reads():
    assert _read(json.dumps(VALID)) == Architecture(32, 16, 2, 64, False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(whole=json_values)
def test_any_json_as_the_whole_header(whole):
    assert isinstance(_read(json.dumps(whole)), (Architecture, CheckpointError))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(VALID)), field=st.sampled_from(["", "dtype", "shape", "data_offsets"]),
       value=json_values | odd_numbers | st.lists(odd_numbers | st.integers(), max_size=6),
       position=st.integers(0, 4))
def test_one_field_of_a_real_header_replaced(name, field, value, position):
    header = json.loads(json.dumps(VALID))
    if not field:
        header[name] = value
    elif name == "__metadata__":
        header[name] = {field: value}
    elif field == "shape" and isinstance(value, (int, float, str)) and position < len(header[name]["shape"]):
        header[name]["shape"][position] = value   # one dimension wrong, the rest real
    else:
        header[name][field] = value
    outcome = _read(json.dumps(header))
    assert isinstance(outcome, (Architecture, CheckpointError)), outcome


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, encoded=st.booleans())
def test_any_quantization_metadata(value, encoded):
    """ComfyUI's _quantization_metadata (a JSON string in the metadata, per its format) of any shape."""
    header = {**VALID, "__metadata__": {"_quantization_metadata": json.dumps(value) if encoded else value}}
    outcome = _read(json.dumps(header))
    assert isinstance(outcome, (Architecture, CheckpointError)), outcome


def test_the_scaled_fp8_probe_refuses_the_same_headers(tmp_path):
    path = _write(json.dumps({**VALID, "blocks.0.ffn.0.weight": {"dtype": "F32", "shape": ["a"]}}), tmp_path)
    with pytest.raises(CheckpointError, match="not a readable .safetensors"):
        is_scaled_fp8(path)
