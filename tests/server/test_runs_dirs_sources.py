"""runs_dirs.json, the runs folders a server keeps listing after their producers exit: a folder
that no longer exists is forgotten, a temporary one (pytest's, the system temp dir's) never
remembered, the user can forget one, and GET wan-nb/api/runs-dirs says where runs come from."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from wan_nb.runs import sources
from wan_nb.server.discovery import RememberedDirs

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def lasting_dir():
    """A runs folder outside every temp dir (the checkout's ignored .cache), removed afterwards."""
    path = ROOT / ".cache" / "test" / f"runs-sources-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def remembered(jp_data_dir, lasting_dir, tmp_path):
    file = Path(jp_data_dir) / "wan_nb" / "runs_dirs.json"
    file.parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "scratch-runs").mkdir()
    file.write_text(json.dumps({"runs_dirs": [str(lasting_dir), str(lasting_dir.parent / "deleted-since"),
                                              str(tmp_path / "scratch-runs")]}))
    return file


@pytest.fixture
def jp_server_config(tmp_path, remembered):
    return {"ServerApp": {"jpserver_extensions": {"wan_nb": True}},
            "WanNbExtension": {"producer_dir": str(tmp_path / "producers"), "runs_dirs": [str(tmp_path / "mine")]}}


def test_temporary_folders_are_never_remembered(tmp_path):
    assert sources.is_temporary(tmp_path) and not sources.is_temporary(ROOT)
    kept = RememberedDirs(tmp_path / "runs_dirs.json")
    kept.add([tmp_path])
    assert list(kept) == [] and not (tmp_path / "runs_dirs.json").exists()


async def test_the_server_lists_its_sources_and_forgets_gone_temporary_and_removed_ones(
        jp_serverapp, jp_fetch, remembered, lasting_dir, tmp_path):
    listed = json.loads((await jp_fetch("wan-nb", "api", "runs-dirs")).body)["runs_dirs"]
    assert {"path": str(lasting_dir), "source": "remembered"} in listed
    assert {"path": str(tmp_path / "mine"), "source": "configured"} in listed
    paths = [entry["path"] for entry in listed]
    assert not any("deleted-since" in p or "scratch-runs" in p for p in paths), paths
    assert json.loads(remembered.read_text())["runs_dirs"] == [str(lasting_dir)]   # the file is cleaned too

    response = await jp_fetch("wan-nb", "api", "runs-dirs", method="DELETE", params={"path": str(lasting_dir)})
    assert response.code == 204
    paths = [e["path"] for e in json.loads((await jp_fetch("wan-nb", "api", "runs-dirs")).body)["runs_dirs"]]
    assert str(lasting_dir) not in paths and json.loads(remembered.read_text())["runs_dirs"] == []
    assert lasting_dir.is_dir()                     # forgetting a folder never deletes it
    with pytest.raises(HTTPClientError) as refused:
        await jp_fetch("wan-nb", "api", "runs-dirs", method="DELETE", params={"path": str(tmp_path / "mine")})
    assert refused.value.code == 404                # a configured folder is not the user's to forget here
