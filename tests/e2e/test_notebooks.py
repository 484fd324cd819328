"""The notebooks run top to bottom and reproduce their stored outputs (nbval, strict mode).

Cells whose output is a live widget or depends on timing carry ``# NBVAL_IGNORE_OUTPUT``; the
rest must match, after ``notebooks/nbval_sanitize.cfg`` masks ids, paths, timings and memory.
Each notebook runs in a copy in a temporary folder, so its runs never land in the repository.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _jupyter_helpers import running_jupyter  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
OFFLINE = ["01_quickstart.ipynb", "02_prompts_and_loras.ipynb", "03_storyboard.ipynb", "05_history.ipynb",
           "06_preview_then_commit.ipynb", "07_experiments.ipynb"]


def run_nbval(notebook: str, tmp_path: Path, env: dict | None = None, timeout: int = 240):
    shutil.copy(NOTEBOOKS / notebook, tmp_path / notebook)
    shutil.copy(NOTEBOOKS / "nbval_sanitize.cfg", tmp_path / "nbval_sanitize.cfg")
    command = [sys.executable, "-m", "pytest", "--nbval", notebook, "--nbval-sanitize-with",
               "nbval_sanitize.cfg", "--nbval-current-env", "-p", "no:cacheprovider", "-q",
               "-o", "addopts=", "--rootdir", str(tmp_path), "--nbval-cell-timeout", "180"]
    # A runtime dir of the test's own: the kernels' relay files stay out of the user's.
    run_env = {**os.environ, "WAN_NB_RUNS_DIR": str(tmp_path / "wan_nb_runs"),
               "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), **(env or {})}
    return subprocess.run(command, cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("notebook", OFFLINE)
def test_notebook_matches_stored_outputs(notebook, tmp_path):
    done = run_nbval(notebook, tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
    left = sorted(p.name for p in tmp_path.iterdir())
    # Nothing written beside the notebook (02 used to leave grid.html there): runs go to the runs folder.
    assert not (tmp_path / "grid.html").exists() and not (tmp_path / "grid.mp4").exists(), left


@pytest.mark.slow
def test_server_events_notebook_against_a_running_server(tmp_path):
    """04_server_events finds the server through the runtime dir it shares with the kernel."""
    env = {"JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    with running_jupyter("server", tmp_path, tmp_path, env):
        done = run_nbval("04_server_events.ipynb", tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_notebooks_mark_every_widget_output_as_ignored():
    """A widget's stored output is a random model id: its cell must not be compared."""
    import nbformat

    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type != "code":
                continue
            widget = any("application/vnd.jupyter.widget-view+json" in out.get("data", {}) for out in cell.outputs)
            if widget:
                assert "NBVAL_IGNORE_OUTPUT" in cell.source, f"{path.name}: {cell.source[:60]!r}"
            errors = [out for out in cell.outputs if out.output_type == "error"]
            assert not errors, f"{path.name} was stored with an error in {cell.source[:60]!r}"


def test_committed_notebooks_open_without_stale_widgets_or_jargon():
    """A notebook opened before running shows no widget frozen at its first state (01 opened on
    ``ProgressPanel(... status='queued', progress=0%)``), no warning text and no internal terms."""
    import nbformat

    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        assert "widgets" not in notebook.metadata, path.name
        for cell in notebook.cells:
            text = cell.source
            if cell.cell_type == "code":
                shown = [out for out in cell.outputs if "application/vnd.jupyter.widget-view+json" in out.get("data", {})]
                assert not shown, f"{path.name}: stale widget output in {cell.source[:60]!r}"
                text += "".join(out.get("text", "") for out in cell.outputs if out.output_type == "stream")
            assert "requires torchvision" not in text, path.name
            assert not re.search(r"`00[02]`|\b00[02]\b seed|seed's front end", text), f"{path.name}: {text[:80]!r}"
            assert "to_html(\"grid.html\")" not in text, path.name


def test_image_to_video_models_load_without_the_torchvision_notice():
    """transformers' "CLIPImageProcessor requires torchvision" line (shown in notebook 03) is dropped."""
    code = ("import wan_nb, transformers\n"
            "from transformers import CLIPImageProcessor\n"
            "print(CLIPImageProcessor.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "requires torchvision" not in done.stderr, done.stderr[-1000:]
