"""`wan-nb history` says which runs folder it read, and the other folders the Lab sidebar lists
(the ones Jupyter servers remember), so the two never silently disagree."""
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def lasting_dir():
    path = ROOT / ".cache" / "test" / f"history-sources-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_history_names_its_folder_and_the_sidebars_others(tmp_path, lasting_dir):
    data = tmp_path / "jupyter-data"
    (data / "wan_nb").mkdir(parents=True)
    (data / "wan_nb" / "runs_dirs.json").write_text(json.dumps({"runs_dirs": [str(lasting_dir)]}))
    env = {**os.environ, "JUPYTER_DATA_DIR": str(data), "WAN_NB_RUNS_DIR": str(tmp_path / "runs")}
    proc = subprocess.run([str(BIN / "wan-nb"), "history"], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    said = proc.stderr.strip().splitlines()[-1]
    assert said.startswith(f"runs from {tmp_path / 'runs'}") and str(lasting_dir) in said
