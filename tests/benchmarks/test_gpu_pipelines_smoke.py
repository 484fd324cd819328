"""benchmarks/gpu_pipelines.py: the v2v, vace, flf2v and animate sections of gpu_check.py run end to
end on the CPU at toy sizes (--smoke), and their real-size architectures have the released models'
parameter counts (built on "meta": no memory, no download)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("v2v", "vace", "flf2v", "animate")


def _modules():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("gpu_check_for_pipelines", ROOT / "benchmarks" / "gpu_check.py")
    check = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = check
    spec.loader.exec_module(check)
    import gpu_pipelines

    return check, gpu_pipelines


@pytest.mark.parametrize("name, low, high, blocks", [
    ("vace-1.3b", 2.0, 2.3, 30), ("vace-14b", 17.0, 17.7, 40), ("flf2v-14b", 16.2, 16.6, 40),
    ("animate-14b", 17.0, 17.6, 40)])
def test_real_architectures_have_the_released_sizes(name, low, high, blocks):
    import diffusers
    from accelerate import init_empty_weights

    check, pipelines = _modules()
    cls, config = pipelines._transformer(name, check, smoke=False)
    with init_empty_weights():
        model = getattr(diffusers, cls)(**config)
    assert low < sum(p.numel() for p in model.parameters()) / 1e9 < high
    assert len(model.blocks) == blocks
    if name.startswith("vace"):
        assert len(model.vace_blocks) == (15 if name == "vace-1.3b" else 8)


def test_the_sections_are_registered_in_gpu_check():
    check, _ = _modules()
    assert set(SECTIONS) <= set(check.SECTIONS) and set(SECTIONS) <= set(check.RUNNERS)


@pytest.mark.slow
def test_every_pipeline_section_runs_in_smoke(tmp_path):
    env = dict(os.environ, WAN_NB_CACHE=str(tmp_path / "cache"), WAN_NB_RUNS_DIR=str(tmp_path / "runs"))
    env.pop("OUT", None)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--section",
                           ",".join(SECTIONS), "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cases = {}
    for section in SECTIONS:
        payload = json.loads((tmp_path / f"gpu_check_{section}.json").read_text())
        assert payload["error"] is None and payload["smoke"] is True
        for row in payload["rows"]:
            assert row["status"] == "completed" and row["frames"] == 9, row
            cases.setdefault(section, []).append(f"{row['arch']}: {row['case']}")
    assert cases == {"v2v": ["wan2.1-t2v-1.3b: text-to-video", "wan2.1-t2v-1.3b: video-to-video 0.5"],
                     "vace": ["vace-1.3b: control + mask + reference", "vace-1.3b: reference only",
                              "vace-14b: control + mask + reference"],
                     "flf2v": ["flf2v-14b: first + last frame"],
                     "animate": ["animate-14b: animate", "animate-14b: replace"]}
