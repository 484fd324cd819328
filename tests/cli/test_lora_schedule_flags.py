"""`wan-nb generate --lora FILE:1.0-0.2` end to end: the ramp runs step by step, the recipe records it,
and `wan-nb generate --from` remakes the same video with the same weights at the same steps."""
import json

import numpy as np
import pytest

import wan_nb
from wan_nb.models import specs as models
from wan_nb.models import tiny
from wan_nb.models.video_io import read_frames

from test_generate_command import run_cli  # the CLI as a user runs it

SIZE = ["--steps", "3", "--frames", "5", "--height", "32", "--width", "32", "--seed", "7"]


def _frames(proc):
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _weights_per_step(frames):
    return [f["data"]["lora_weights"] for f in frames
            if f["type"] == "detailed_generation_progress" and "lora_weights" in f["data"]]


@pytest.fixture(scope="module")
def lora(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lora")
    transformer = models.load_pipeline(models.resolve("tiny"), device="cpu", dtype="fp32").transformer
    return tiny.make_lora(transformer, folder / "style.safetensors", seed=5)


def test_a_ramp_given_on_the_command_line_is_recorded_and_remade_by_from(tmp_path, lora):
    first = tmp_path / "fox.mp4"
    proc = run_cli("generate", "a fox", "--model", "tiny", "--lora", f"{lora}:1.0-0.2", *SIZE, "--json",
                   "--out", str(first), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    frames = _frames(proc)
    started = next(f for f in frames if f["type"] == "generation_started")
    (name, weight), = started["data"]["params"]["loras"].items()
    assert weight == "1-0.2"
    assert [w[name] for w in _weights_per_step(frames)] == pytest.approx([1.0, 0.6, 0.2])

    recipe = wan_nb.recipe(first)
    entry, = recipe["loras"]
    assert entry["schedule"] == "1-0.2" and entry["weight"] == 1.0    # weight: the highest it reaches

    again = tmp_path / "again.mp4"
    proc = run_cli("generate", "--from", str(first), "--json", "--out", str(again), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    frames = _frames(proc)
    assert [list(w.values())[0] for w in _weights_per_step(frames)] == pytest.approx([1.0, 0.6, 0.2])
    remade = wan_nb.recipe(again)
    assert remade["loras"][0]["schedule"] == "1-0.2" and remade["loras"][0]["sha256"] == entry["sha256"]
    assert np.array_equal(read_frames(again), read_frames(first))

    # The schedule decides the video: the same run at a constant 1.0 differs.
    constant = tmp_path / "constant.mp4"
    proc = run_cli("generate", "a fox", "--model", "tiny", "--lora", f"{lora}:1.0", *SIZE, "--out", str(constant),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "schedule" not in wan_nb.recipe(constant)["loras"][0]
    assert not np.array_equal(read_frames(constant), read_frames(first))


def test_a_per_step_list_of_the_wrong_length_is_one_line_before_any_model_work(tmp_path, lora):
    proc = run_cli("generate", "a fox", "--model", "tiny", "--lora", f"{lora}:1.0,0.5", *SIZE, cwd=tmp_path)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr
    assert "2 values for a run of 3 steps" in err[0] and "'1-0.5'" in err[0]
    assert not list((tmp_path / "runs").glob("*/video.mp4"))
