"""`wan-nb generate --from` and `wan-nb info` on MP4s whose recipe someone else wrote: one line on
stderr, a non-zero status, and nothing downloaded, loaded or run."""
import json
import os
import shutil
from pathlib import Path

import pytest

import wan_nb
from wan_nb import Generator
from wan_nb.runs.recipe import embed

from _recipe_helpers import tagged_mp4  # an MP4 carrying any tag
from test_generate_command import run_cli  # the CLI as a user runs it


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("made")
    with Generator("tiny", runs_dir=folder / "runs", previews=False) as gen:
        result = gen.generate("a fox", height=16, width=16, num_frames=1, steps=1, seed=1, progress=False)
    return result.video_path, wan_nb.recipe(result)


def _with_recipe(made, tmp_path, change) -> Path:
    video, recipe = made
    copy = tmp_path / "sent.mp4"
    shutil.copyfile(video, copy)
    changed = json.loads(json.dumps(recipe))
    change(changed)
    embed(copy, changed)
    return copy


def _one_line_refusal(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wan-nb: error:"), proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_a_recipe_naming_a_model_that_is_not_a_preset_needs_model(made, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")   # and were it tried, no download could start
    sent = _with_recipe(made, tmp_path, lambda r: r["model"].update(name="someone/any-wan-model",
                                                                    repo_id="someone/any-wan-model"))
    cache = Path(os.environ["WAN_NB_CACHE"])
    before = sorted(p.name for p in (cache / "models").glob("*")) if (cache / "models").is_dir() else []
    proc = run_cli("generate", "--from", str(sent), cwd=tmp_path)
    _one_line_refusal(proc, "'someone/any-wan-model'", "not a preset", "--model")
    after = sorted(p.name for p in (cache / "models").glob("*")) if (cache / "models").is_dir() else []
    assert after == before and not (tmp_path / "runs").exists()
    folder = _with_recipe(made, tmp_path, lambda r: r["model"].update(name=str(tmp_path)))
    _one_line_refusal(run_cli("generate", "--from", str(folder), cwd=tmp_path), "not a preset", "--model")


def test_a_recipe_lora_entry_without_a_name_is_one_line(made, tmp_path):
    sent = _with_recipe(made, tmp_path, lambda r: r.update(loras=[{"weight": 1.0, "path": "/nowhere.safetensors"}]))
    _one_line_refusal(run_cli("generate", "--from", str(sent), cwd=tmp_path), "LoRA entry 1", "no usable name")


def test_info_refuses_a_huge_or_deeply_nested_tag_in_one_line(tmp_path):
    deep = tagged_mp4(tmp_path / "deep.mp4", "[" * 100_000)
    proc = run_cli("info", str(deep), cwd=tmp_path)
    _one_line_refusal(proc, "nests too deeply")
    assert proc.stdout == ""
    huge = tagged_mp4(tmp_path / "huge.mp4", json.dumps({"format": "wan_nb.recipe/1", "prompt": "x" * 3_000_000}))
    proc = run_cli("info", str(huge), cwd=tmp_path)
    _one_line_refusal(proc, "larger than 1,048,576 bytes")
    assert proc.stdout == ""
