"""benchmarks/gpu_check.py --section quant runs end to end on the CPU at toy sizes (--smoke): every
mode that runs here loads through Generator(quant=...) and writes a row; nf4 is a skipped row."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quant_section_smoke(tmp_path):
    env = dict(os.environ, WAN_NB_CACHE=str(tmp_path / "cache"), WAN_NB_RUNS_DIR=str(tmp_path / "runs"),
               GPU_QUANT_MODES="bf16,fp8,int8,nf4,gguf-Q4_0,fp8 all")
    env.pop("OUT", None)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--section", "quant",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=400, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    payload = json.loads((tmp_path / "gpu_check_quant.json").read_text())
    assert payload["error"] is None and payload["smoke"] is True
    rows = {row["case"]: row for row in payload["rows"]}
    assert list(rows) == ["bf16", "fp8", "int8", "nf4", "gguf-Q4_0", "fp8 all"]
    assert rows["nf4"]["status"].startswith("skipped")
    for case in ("bf16", "fp8", "int8", "gguf-Q4_0", "fp8 all"):
        assert rows[case]["status"] == "completed", rows[case]
        assert rows[case]["s_per_step"] > 0
    # The quantized transformers store less than the unquantized one; "fp8 all" shrinks the encoder too.
    assert rows["gguf-Q4_0"]["transformer_mb"] < rows["fp8"]["transformer_mb"] < rows["bf16"]["transformer_mb"]
    assert rows["fp8 all"]["text_encoder_mb"] < rows["fp8"]["text_encoder_mb"]
    assert 0 < rows["fp8"]["rel_error"] < 0.1 and rows["bf16"]["rel_error"] == 0
    assert "**quant: wan2.1-1.3b" in (tmp_path / "gpu_check_summary.md").read_text()
