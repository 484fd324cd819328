"""`wan-nb info`, `wan-nb generate --from` and `wan-nb history` as a user runs them."""
import json

import numpy as np

import wan_nb
from wan_nb import Generator
from wan_nb.models.video_io import read_frames
from test_generate_command import run_cli  # the CLI as a user runs it: a subprocess with its own runs dir


def test_info_remake_with_an_override_and_list(tmp_path):
    with Generator(model="tiny", runs_dir=tmp_path / "runs", previews=False) as gen:
        first = gen.generate("a fox in the snow", seed=1, steps=3, progress=False)
    shared = tmp_path / "shared.mp4"
    shared.write_bytes(first.video_path.read_bytes())  # a copy, away from its run folder

    info = run_cli("info", str(shared), cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    printed = json.loads(info.stdout)
    assert printed == wan_nb.recipe(first) and printed["steps"] == 3

    out = tmp_path / "again.mp4"
    again = run_cli("generate", "--from", str(shared), "--seed", "5", "--out", str(out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    remade = wan_nb.recipe(out)
    # Only the override and the new run's identity differ (created_at has one-second resolution,
    # so two runs in the same second share it).
    assert {"seed", "task_id"} <= {k for k in printed if printed[k] != remade[k]} <= {"seed", "task_id", "created_at"}
    assert remade["seed"] == 5 and remade["steps"] == 3 and remade["model"]["name"] == "tiny"

    same = run_cli("generate", "--from", str(shared), "--json", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    done = json.loads(same.stdout.splitlines()[-1])
    assert done["type"] == "generation_completed"
    assert np.array_equal(read_frames(done["data"]["output_path"]), read_frames(first.video_path))

    listed = run_cli("history", "--limit", "2", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    runs = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(runs) == 2 and runs[0]["task_id"] == done["task_id"] and runs[1]["seed"] == 5
    table = run_cli("history", cwd=tmp_path)
    assert table.returncode == 0 and len(table.stdout.splitlines()) == 1 + 3
    assert "a fox in the snow" in table.stdout and "completed" in table.stdout


def test_cli_errors_are_one_line(tmp_path):
    missing = run_cli("info", str(tmp_path / "nope.mp4"), cwd=tmp_path)
    assert missing.returncode == 2 and "nope.mp4" in missing.stderr and len(missing.stderr.splitlines()) == 1
    neither = run_cli("generate", cwd=tmp_path)
    assert neither.returncode == 2 and "--from" in neither.stderr
    bad = run_cli("history", "--since", "someday", cwd=tmp_path)
    assert bad.returncode == 2 and "since='someday'" in bad.stderr
