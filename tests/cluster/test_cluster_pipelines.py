"""Video-to-video on a Ray worker (a real local cluster): the input travels to the worker, the run
folder on the driver keeps it, and the frames are those of a local run with the same seed."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _cluster_helpers import local_ray  # noqa: E402  (sets Ray's loopback switch before Ray loads)

pytest.importorskip("ray")

from wan_nb import Generator  # noqa: E402
from wan_nb.models.video_io import read_frames  # noqa: E402

pytestmark = pytest.mark.timeout(600)


def test_video_to_video_on_a_worker_matches_a_local_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ray")   # short: Ray's socket paths must stay under 108 bytes
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, size=(9, 32, 32, 3), dtype=np.uint8)
    args = dict(video=clip, strength=0.5, steps=2, seed=3, progress=False)
    with local_ray(tmp_path, num_cpus=1) as address:
        with Generator(model="tiny", cluster=address, workers=1, runs_dir=tmp_path / "runs") as gen:
            remote = gen.generate("a fox", **args)
    with Generator(model="tiny", runs_dir=tmp_path / "local", previews=False) as local:
        here = local.generate("a fox", **args)
    assert np.array_equal(read_frames(remote.video_path), read_frames(here.video_path))
    kept = json.loads((remote.run_dir / "task.json").read_text())["inputs"]["video"]
    assert kept["files"] == ["inputs/video.mp4"] and remote.inputs["video"][0].is_file()
    assert kept["sha256"] == json.loads((here.run_dir / "task.json").read_text())["inputs"]["video"]["sha256"]
