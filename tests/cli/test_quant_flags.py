"""`wan-nb generate --quant / --transformer` as a user runs it; `--from` remakes the video with the same weights."""
import json
import os
import subprocess
import sys
from pathlib import Path

from _weights_helpers import tiny_transformer, write_safetensors

BIN = Path(sys.executable).parent


def run_cli(*args, cwd):
    env = {**os.environ, "WAN_NB_RUNS_DIR": str(cwd / "runs")}
    return subprocess.run([str(BIN / "wan-nb"), *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_quant_and_transformer_flags_reach_the_recipe_and_from_reuses_them(tmp_path):
    checkpoint = write_safetensors(tiny_transformer(), tmp_path / "tiny_t2v.safetensors",
                                   prefix="model.diffusion_model.")
    out = tmp_path / "fox.mp4"
    made = run_cli("generate", "a fox", "--quant", "transformer=fp8,text_encoder=int8", "--transformer",
                   str(checkpoint), "--steps", "2", "--out", str(out), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    recipe = json.loads(run_cli("info", str(out), cwd=tmp_path).stdout)
    assert recipe["quant"] == {"text_encoder": "int8", "transformer": "fp8"}
    assert recipe["files"]["transformer"]["path"] == str(checkpoint)
    again = run_cli("generate", "--from", str(out), "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    done = json.loads(again.stdout.splitlines()[-1])
    assert done["type"] == "generation_completed"
    remade = json.loads(run_cli("info", done["data"]["output_path"], cwd=tmp_path).stdout)
    assert (remade["quant"], remade["files"]) == (recipe["quant"], recipe["files"])


def test_a_quant_mode_this_machine_cannot_run_is_one_line_and_status_2(tmp_path):
    proc = run_cli("generate", "a fox", "--quant", "nf4", cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "needs a CUDA GPU" in lines[0], proc.stderr
    bad = run_cli("generate", "a fox", "--quant", "transformer:fp8", cwd=tmp_path)
    assert bad.returncode == 2 and "is not a mode" in bad.stderr
