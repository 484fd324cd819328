"""What a terminal user reads: an error is one line, said once, with its fix in flag syntax
(``--device cpu``, not ``device='cpu'``); a mistyped preset gets a suggestion; a missing LoRA
says where it was looked for; the progress line does not flicker initializing -> queued ->
initializing, nor turn its time left into "--:--" just before the end."""
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from wan_nb.cli.console import TextProgress, cli_wording

BIN = Path(sys.executable).parent
SMALL = dict(height=32, width=32, num_frames=9, steps=4)


def run_cli(*args, cwd):
    env = {**os.environ, "WAN_NB_RUNS_DIR": str(cwd / "runs"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(BIN / "wan-nb"), *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def _one_error_line(proc):
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("wan-nb: error: ")
    return lines[0]


def test_a_real_model_on_a_cpu_only_machine_is_one_line_in_flag_syntax(tmp_path):
    proc = run_cli("generate", "a fox", "--model", "wan2.1-t2v-1.3b", cwd=tmp_path)
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert line.count("needs a GPU") == 1
    assert "--device cpu" in line and "device='cpu'" not in line and "--model tiny" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_mistyped_preset_gets_a_suggestion_and_the_list_has_the_few_step_ones(tmp_path):
    line = _one_error_line(run_cli("generate", "a fox", "--model", "wan2.1-t2v-1.3bb", cwd=tmp_path))
    assert "Did you mean 'wan2.1-t2v-1.3b'" in line
    assert re.search(r"wan2\.[12]-[\w.-]+-4step", line), line


def test_the_presets_command_lists_the_few_step_variants_too(tmp_path):
    proc = run_cli("presets", cwd=tmp_path)
    assert proc.returncode == 0 and "wan2.1-t2v-1.3b-4step" in proc.stdout and "wan2.2-t2v-a14b-4step" in proc.stdout


def test_a_missing_lora_file_says_where_it_looked(tmp_path):
    line = _one_error_line(run_cli("generate", "a fox", "--lora", "loras/ink.safetensors", cwd=tmp_path))
    assert str(tmp_path / "loras" / "ink.safetensors") in line
    assert "make_lora" in line


def test_python_suggestions_become_flags_but_code_stays_code():
    assert cli_wording("or pass device='cpu' to run") == "or pass --device cpu to run"
    assert cli_wording("try model='tiny'\n  or steps=4") == "try --model tiny or --steps 4"
    assert cli_wording("use Generator(model='x').rerun(...)") == "use Generator(model='x').rerun(...)"


def _frames(stream):
    """The successive states of a live (self-overwriting) line."""
    return [f for f in re.split(r"\r\x1b\[K|\n", stream.getvalue()) if f.strip()]


def test_a_queued_task_reads_queued_until_it_starts_then_never_again(gen):
    gen.pause()
    out = io.StringIO()
    try:
        task = gen.submit("a fox", seed=0, **SMALL)
        off = task.subscribe(TextProgress(out, live=True, max_fps=1000), replay=True)
        gen.bus.drain()
    finally:
        gen.resume()
    task.result(timeout=120)
    gen.bus.drain()
    off()
    stages = [m.group(1) for m in (re.search(r"%\s+(\S+(?: \(#\d+\))?)", f) for f in _frames(out)) if m]
    first_start = next(i for i, s in enumerate(stages) if s == "initializing")
    assert all(s.startswith("queued") for s in stages[:first_start]), stages
    assert not any(s.startswith("queued") for s in stages[first_start:]), stages


def test_time_left_counts_down_through_decode_instead_of_turning_unknown(gen):
    out = io.StringIO()
    task = gen.submit("a fox", seed=1, **SMALL)
    off = task.subscribe(TextProgress(out, live=True, max_fps=1000), replay=True)
    task.result(timeout=120)
    gen.bus.drain()
    off()
    frames = [f for f in _frames(out) if "left" in f]
    known = [i for i, f in enumerate(frames) if "left --:--" not in f]
    assert known, frames
    after = frames[known[0]:]
    assert not [f for f in after if "left --:--" in f], after


def test_the_cli_progress_leaves_the_failure_to_its_one_error_line(gen):
    out = io.StringIO()
    task = gen.submit("cannot be saved", seed=2, **SMALL)
    (task.run_dir / "video.mp4" / "occupied").mkdir(parents=True)   # saving fails for real
    off = task.subscribe(TextProgress(out, live=False, say_errors=False), replay=True)
    with pytest.raises(Exception):
        task.result(timeout=120)
    gen.bus.drain()
    off()
    assert "FAILED" not in out.getvalue()
