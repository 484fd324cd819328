"""Where runs go when nobody says: ``$WAN_NB_RUNS_DIR`` if set, else ``wan_nb_runs`` beside the
notebook (the generator, the CLI, ``wan_nb.history()``) or in the Jupyter server's root (what the
server lists) — one rule, ``wan_nb.runs.layout.default_runs_dir``, so a notebook run in the
server's root is listed without any configuration."""
import subprocess
import sys

import pytest

import wan_nb
from wan_nb import Generator
from wan_nb.runs.layout import default_runs_dir


@pytest.fixture
def jp_server_config(monkeypatch):
    monkeypatch.delenv("WAN_NB_RUNS_DIR", raising=False)   # before the server starts
    return {"ServerApp": {"jpserver_extensions": {"wan_nb": True}}}


def test_without_the_variable_a_generator_writes_beside_the_notebook(tmp_path, monkeypatch):
    monkeypatch.delenv("WAN_NB_RUNS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with Generator(model="tiny", previews=False) as gen:
        assert gen.runs_dir == tmp_path / "wan_nb_runs" == default_runs_dir()
    assert default_runs_dir(tmp_path / "root") == tmp_path / "root" / "wan_nb_runs"


def test_the_variable_wins_for_the_generator_the_history_and_the_cli(tmp_path, monkeypatch):
    runs = tmp_path / "elsewhere"
    monkeypatch.setenv("WAN_NB_RUNS_DIR", str(runs))
    monkeypatch.chdir(tmp_path)
    with Generator(model="tiny", previews=False) as gen:
        assert gen.runs_dir == runs
        result = gen.generate("a fox", steps=1, height=32, width=32, num_frames=5, seed=0, progress=False)
    assert result.run_dir.parent == runs
    assert [r.task_id for r in wan_nb.history()] == [result.task_id]
    listed = subprocess.run([sys.executable, "-m", "wan_nb.cli.commands", "history"], capture_output=True,
                            text=True, cwd=tmp_path, timeout=120)
    assert result.task_id in listed.stdout, listed.stderr
    assert default_runs_dir(tmp_path / "root") == runs   # the server's default too


async def test_the_server_lists_the_runs_folder_of_its_root_by_the_same_rule(jp_serverapp, jp_root_dir):
    hub = jp_serverapp.web_app.settings["wan_nb_hub"]
    assert hub.configured_dirs == [jp_root_dir / "wan_nb_runs"] == [default_runs_dir(jp_root_dir)]
