"""`wan-nb generate` as a user runs it: a real subprocess, real MP4, JSON events on stdout."""
import json
import os
import subprocess
import sys
from pathlib import Path

from wan_nb.protocol.events import validate
from wan_nb.models.video_io import frame_count

BIN = Path(sys.executable).parent


def run_cli(*args, cwd):
    env = {**os.environ, "WAN_NB_RUNS_DIR": str(cwd / "runs")}
    return subprocess.run([str(BIN / "wan-nb"), *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_json_events_validate_in_stage_order_and_the_mp4_has_the_frames(tmp_path):
    out = tmp_path / "fox.mp4"
    proc = run_cli("generate", "a fox", "--model", "tiny", "--out", str(out), "--json",
                   "--frames", "13", "--steps", "5", "--seed", "4", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    frames = [json.loads(line) for line in proc.stdout.splitlines()]
    for frame in frames:
        validate(frame)
        assert set(frame) == {"type", "seq", "task_id", "data"}
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    stage_order = [f["data"]["stage"] for f in frames if f["type"] == "generation_stage"]
    assert stage_order == ["initializing", "loading_model", "preparing_inputs", "generating",
                           "post_processing", "saving", "completed"]
    steps = [f["data"]["current_step"] for f in frames
             if f["type"] == "detailed_generation_progress" and f["data"]["stage"] == "generating"]
    assert [s for s in steps if s] == [1, 2, 3, 4, 5]
    assert frames[-1]["type"] == "generation_completed"
    assert frame_count(out) == 13


def test_bad_input_is_one_line_on_stderr_and_nonzero(tmp_path):
    proc = run_cli("generate", "a fox", "--frames", "10", cwd=tmp_path)
    assert proc.returncode != 0 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "num_frames=10" in lines[0] and "9" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_terminal_progress_goes_to_stderr(tmp_path):
    proc = run_cli("generate", "a cat", "--steps", "2", "--out", str(tmp_path / "cat.mp4"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "generating" in proc.stderr and "done in" in proc.stderr
    assert (tmp_path / "cat.mp4").exists()


def test_real_model_settings_reach_the_run(tmp_path, monkeypatch):
    from wan_nb import generator
    from wan_nb.cli import commands as cli

    made = []

    class Recording(generator.Generator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(generator, "Generator", Recording)
    monkeypatch.setenv("WAN_NB_RUNS_DIR", str(tmp_path / "runs"))
    code = cli.main(["generate", "a fox", "--model", "tiny-a14b", "--steps", "2", "--frames", "5",
                     "--guidance-2", "2.0", "--flow-shift", "4.0", "--vae-tiling", "--vae-slicing"])
    assert code == 0
    gen, = made
    assert gen.vae_tiling and gen.vae_slicing
    assert gen.pipeline.vae.use_tiling and gen.pipeline.vae.use_slicing
    task, = gen.tasks
    assert task.params["guidance_scale_2"] == 2.0 and task.params["flow_shift"] == 4.0


def test_guidance_2_on_a_one_expert_model_is_refused_up_front(tmp_path):
    proc = run_cli("generate", "a fox", "--guidance-2", "3", cwd=tmp_path)
    assert proc.returncode == 2
    assert "guidance_scale_2" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_lora_experts_picks_the_expert(tmp_path):
    from wan_nb.models import specs as models
    from wan_nb.models import tiny

    path = tiny.make_lora(models.load_pipeline(models.resolve("tiny-a14b"), device="cpu").transformer_2,
                          tmp_path / "late.safetensors", seed=2)
    proc = run_cli("generate", "a fox", "--model", "tiny-a14b", "--steps", "2", "--frames", "5",
                   "--lora", f"{path}:0.7", "--lora-experts", "low", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("generate", "a fox", "--lora", str(path), "--lora-experts", "low", cwd=tmp_path)
    assert proc.returncode == 2 and "two-expert models" in proc.stderr
