"""benchmarks/gpu_check.py's ``taehv`` section (benchmarks/gpu_post.py) runs on the CPU at toy
sizes: the full VAE decode, the TAEHV draft decode with its PSNR against it, and the preview time."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_taehv_section_writes_its_three_rows(tmp_path):
    env = dict(os.environ, WAN_NB_CACHE=str(tmp_path / "cache"), WAN_NB_RUNS_DIR=str(tmp_path / "runs"))
    env.pop("OUT", None)
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--smoke", "--section", "taehv",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    payload = json.loads((tmp_path / "gpu_check_taehv.json").read_text())
    assert payload["error"] is None and payload["smoke"] is True
    rows = {row["case"]: row for row in payload["rows"]}
    assert list(rows) == ["VAE decode (full)", "TAEHV decode (draft)", "TAEHV preview (256 px)"]
    draft = rows["TAEHV decode (draft)"]
    assert draft["frames"] == 9 and draft["weights"] == "random"       # 3 latent frames -> 9, as the VAE
    assert all(math.isfinite(rows[c]["s"]) and rows[c]["s"] > 0 for c in rows)
    assert math.isfinite(draft["psnr_vs_vae_db"]) and draft["speedup"] > 0
    assert "TAEHV against the Wan 2.1 VAE" in proc.stdout
