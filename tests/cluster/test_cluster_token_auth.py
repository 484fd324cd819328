"""Generator(cluster="<address>") against a Ray cluster that requires token authentication.

The head runs with RAY_AUTH_MODE=token (the tests' own token file: tests/_cluster_helpers.py).
Each driver is a separate process, as a user's kernel or script is, with RAY_AUTH_MODE unset:
Ray's driver sends its token by itself only for ``address="auto"``, so an explicit address failed
with ``InvalidAuthToken`` although the user had the token.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _cluster_helpers import RAY_TOKEN_FILE, ROOT, local_ray  # noqa: E402  (sets Ray's switches before Ray loads)

pytest.importorskip("ray")
pytestmark = pytest.mark.timeout(600)

DRIVER = """
import sys
from wan_nb import Generator
with Generator(model="tiny", cluster=sys.argv[1], workers=1, runs_dir=sys.argv[2], previews=False) as gen:
    result = gen.generate("a fox in the snow", height=16, width=16, num_frames=1, steps=1, seed=0, progress=False)
print(result.video_path, flush=True)
"""


@pytest.fixture(scope="module")
def token_cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("tok")   # short: Ray's socket paths under it must stay within 107 bytes
    assert os.environ["RAY_AUTH_MODE"] == "token"
    with local_ray(work, num_cpus=1) as address:
        yield address, work


def _drive(address: str, runs_dir: Path, home: Path, **auth: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               **auth)
    return subprocess.run([sys.executable, "-c", DRIVER, address, str(runs_dir)], env=env, capture_output=True,
                          text=True, timeout=400)


def test_a_driver_with_the_users_token_runs_on_a_token_cluster_and_never_shows_it(token_cluster, tmp_path):
    address, _ = token_cluster
    home = tmp_path / "home"
    home.mkdir()
    done = _drive(address, tmp_path / "runs", home, RAY_AUTH_TOKEN_PATH=str(RAY_TOKEN_FILE))
    assert done.returncode == 0, done.stderr[-3000:]
    video = Path(done.stdout.strip().splitlines()[-1])
    assert video.is_file() and video.stat().st_size > 0
    token = RAY_TOKEN_FILE.read_text().strip()
    assert token not in done.stdout and token not in done.stderr
    for path in (tmp_path / "runs").rglob("*"):   # run folders: task.json, events, recipe in the MP4
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


def test_a_driver_without_a_token_is_told_how_to_give_it(token_cluster, tmp_path):
    address, _ = token_cluster
    home = tmp_path / "home"        # no ~/.ray/auth_token there
    home.mkdir()
    done = _drive(address, tmp_path / "runs", home)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "ClusterUnavailable" in last and "refused this connection" in last and "RAY_AUTH_TOKEN_PATH" in last, \
        done.stderr[-3000:]
