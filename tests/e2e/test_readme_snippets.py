"""The README's notebook snippets run as pasted, top to bottom in one fresh Python, on the tiny
model (Usage, sweeps and the gallery with a LoRA made on the spot, grids, storyboards, steering
and history). The sections about real models need a GPU and are left out."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _usage_snippets() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    usage = text[text.index("## Usage"):text.index("## Event protocol")]
    return re.findall(r"```python\n(.*?)```", usage, flags=re.S)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_usage_snippets_run_as_pasted(tmp_path):
    snippets = _usage_snippets()
    assert len(snippets) >= 5
    script = "\n".join(snippets)
    assert "import wan_nb" in script.split("wan_nb.gallery")[0]       # imported before its first use
    # One torch thread: the tiny model's tensors are too small to gain from a second one, and when
    # anything else wants the CPU, OpenMP's threads wait on each other at every op (measured on a
    # loaded 2-core box: 145 s with two threads, 34 s with one; ~15 s either way when idle).
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=1150, env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
                                            "WAN_NB_RUNS_DIR": str(tmp_path / "wan_nb_runs"),
                                            "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "grid.mp4").is_file() and (tmp_path / "grid.html").is_file()


def test_the_command_line_block_lists_every_command():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index("**Command line**"):]
    block = block[:block.index("```", block.index("```bash") + 3)]
    for command in ("generate", "info", "history", "presets", "plan"):
        assert f"wan-nb {command}" in block, command
