"""Shared test set-up: one model cache for the whole run, so the tiny model is built once."""
import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("WAN_NB_CACHE", str(ROOT / ".cache" / "test"))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every process the tests start (kernels, producers, servers) advertises its relay files in a
# runtime dir of this run, never in the user's; tests that need their own still set theirs.
os.environ["JUPYTER_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="wan_nb-tests-runtime-")


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    """A tiny-model generator shared by one module's tests (a module may define its own ``gen``)."""
    from wan_nb import Generator

    with Generator(model="tiny", runs_dir=tmp_path_factory.mktemp("runs"), monitor_interval=0.05,
                   previews=False) as generator:
        yield generator


@pytest.fixture
def recorder(gen):
    """Every event of the module's ``gen`` from now on (``recorder.of(task_id)``)."""
    from _storyboard_helpers import Recorder

    rec = Recorder()
    off = gen.subscribe(rec)
    yield rec
    off()


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path

# jupyter_server's fixtures (jp_fetch, jp_ws_fetch, ...). Its autouse fixture gives every test
# isolated Jupyter dirs, so tests that look up the runtime dir must use jupyter_core's paths.
pytest_plugins = ["pytest_jupyter.jupyter_server"]
