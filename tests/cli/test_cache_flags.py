"""`wan-nb generate --cache` with the new modes as a user runs it: text-kv alone or added to a
reusing mode reaches the recipe, and `--from` remakes the video with the same cache."""
import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def run_cli(*args, cwd):
    env = {**os.environ, "WAN_NB_RUNS_DIR": str(cwd / "runs")}
    return subprocess.run([str(BIN / "wan-nb"), *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_cache_text_kv_combined_reaches_the_recipe_and_from_keeps_it(tmp_path):
    out = tmp_path / "fox.mp4"
    made = run_cli("generate", "a fox", "--cache", "sea+text-kv", "--cache-threshold", "0.4", "--steps", "4",
                   "--out", str(out), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    recipe = json.loads(run_cli("info", str(out), cwd=tmp_path).stdout)
    assert (recipe["cache"], recipe["cache_threshold"]) == ("sea+text-kv", 0.4)
    again = run_cli("generate", "--from", str(out), "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    done = json.loads(again.stdout.splitlines()[-1])
    remade = json.loads(run_cli("info", done["data"]["output_path"], cwd=tmp_path).stdout)
    assert (remade["cache"], remade["cache_threshold"]) == ("sea+text-kv", 0.4)


def test_an_unknown_cache_value_lists_the_choices(tmp_path):
    bad = run_cli("generate", "a fox", "--cache", "mag+sea", cwd=tmp_path)
    assert bad.returncode == 2 and "first-block+text-kv" in bad.stderr and "invalid choice" in bad.stderr
