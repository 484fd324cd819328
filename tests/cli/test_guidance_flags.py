"""`wan-nb generate --guidance NAME --guidance-option K=V`: the method reaches the run and its recipe;
`--guidance 5` still sets the scale; bad input is one line, before any model work."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import wan_nb
from wan_nb.cli import commands as cli

BIN = Path(sys.executable).parent


def test_a_guidance_method_and_its_options_reach_the_run_and_the_recipe(tmp_path):
    out = tmp_path / "fox.mp4"
    env = {**os.environ, "WAN_NB_RUNS_DIR": str(tmp_path / "runs")}
    proc = subprocess.run([str(BIN / "wan-nb"), "generate", "a fox", "--steps", "2", "--frames", "1", "--json",
                           "--guidance", "apg", "--guidance-option", "eta=0.5", "--guidance-option",
                           "adaptive_projected_guidance_momentum=-0.5", "--guidance", "apg", "--guidance-scale", "4",
                           "--out", str(out)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    started = next(json.loads(l) for l in proc.stdout.splitlines() if '"generation_started"' in l)
    params = started["data"]["params"]
    assert params["guidance"] == "apg" and params["guidance_scale"] == 4.0
    assert params["guidance_options"] == {"adaptive_projected_guidance_momentum": -0.5, "eta": 0.5}
    frames = [json.loads(l) for l in proc.stdout.splitlines()]
    generating = [f["data"]["message"] for f in frames if f["type"] == "detailed_generation_progress"
                  and f["data"]["message"].startswith("Denoising")]
    assert "guidance apg (adaptive_projected_guidance_momentum=-0.5, eta=0.5)" in generating[0]
    made = wan_nb.recipe(out)
    assert (made["guidance"], made["guidance_options"]["eta"], made["guidance_scale"]) == ("apg", 0.5, 4.0)


@pytest.mark.parametrize("flags, says", [
    (["--guidance", "apg"], "set --guidance 5.0"),   # tiny's default scale is 1: no unconditional pass
    (["--guidance", "nag", "--guidance-scale", "5"], "choose one of 'cfg'"),
    (["--guidance", "cfg", "--guidance-scale", "5", "--guidance-option", "eta=1"], "it takes: guidance_rescale"),
    (["--guidance", "6", "--guidance-scale", "5"], "given twice"),
    (["--guidance", "7", "--guidance-option", "eta=1"], "applies to a guidance method"),  # 7 is the scale
])
def test_bad_guidance_flags_are_one_line_before_any_model_work(tmp_path, capsys, monkeypatch, flags, says):
    monkeypatch.setenv("WAN_NB_RUNS_DIR", str(tmp_path / "runs"))
    code = cli.main(["generate", "a fox", "--steps", "1", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and says in err[0], err
    assert not list((tmp_path / "runs").glob("*/video.mp4"))
