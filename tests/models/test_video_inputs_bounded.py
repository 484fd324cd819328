"""Video inputs cost the frames a run uses, not the file's length, and only videos are taken.

Real files throughout: MP4s encoded by ffmpeg, a real text file, the tiny model's generator.
"""
import subprocess
import tracemalloc

import imageio_ffmpeg
import numpy as np
import pytest

from wan_nb import Generator
from wan_nb.core.params import InvalidParameter
from wan_nb.models import user_inputs
from wan_nb.models.video_io import read_frames

LONG_FRAMES = 4000


def _encode(path, frames: int, size: str = "160x96", rate: int = 16):
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=size={size}:rate={rate}", "-frames:v", str(frames), "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """A 4,000-frame 160x96 MP4: 184 MB as decoded pixels (the issue's 100,000 frames were 4.6 GB)."""
    return _encode(tmp_path_factory.mktemp("clips") / "long.mp4", LONG_FRAMES)


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    with Generator("tiny", runs_dir=tmp_path_factory.mktemp("runs"), previews=False) as generator:
        yield generator


def test_the_probe_counts_frames_and_reads_the_size_without_decoding(long_clip):
    from wan_nb.models.video_io import probe_video

    probe = probe_video(long_clip)
    assert (probe.frames, probe.width, probe.height, probe.codec) == (LONG_FRAMES, 160, 96, "h264")
    assert read_frames(long_clip, 5).shape == (5, 96, 160, 3)


def test_a_long_video_costs_only_the_frames_the_run_uses(gen, long_clip):
    tracemalloc.start()
    try:
        params = gen.check("a fox", video=long_clip, num_frames=9, strength=0.5, height=96, width=160)
        video = params["video"]
        digest = video.sha256                       # what the recipe records: decodes the frames used
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(video) == LONG_FRAMES and video.frames.shape == (9, 96, 160, 3)
    assert digest == user_inputs.pixels_sha256(read_frames(long_clip, 9))
    assert peak < 20e6, f"peak {peak / 1e6:.0f} MB: more than the 9 frames used (0.4 MB) plus overhead"


def test_without_num_frames_a_video_longer_than_a_run_is_refused_before_decoding(gen, long_clip):
    tracemalloc.start()
    try:
        with pytest.raises(InvalidParameter, match=r"4,000 frames, more than the 1025 .*pass num_frames="):
            gen.check("a fox", video=long_clip, strength=0.5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20e6


def test_frames_that_would_not_fit_in_memory_are_refused_with_a_count_that_fits(gen, long_clip, monkeypatch):
    """The cap is 4 GiB of decoded pixels; lowered here to 20 frames of this clip so a test can reach it."""
    monkeypatch.setattr(user_inputs, "MAX_DECODED_BYTES", 160 * 96 * 3 * 20)
    with pytest.raises(InvalidParameter, match=r"first 81 frames at 160x96 .* pass num_frames=17 or fewer"):
        gen.check("a fox", video=long_clip, num_frames=81, strength=0.5)
    assert gen.check("a fox", video=long_clip, num_frames=17, strength=0.5)["video"].frames.shape[0] == 17


def test_a_text_file_passed_as_a_video_is_refused(gen, tmp_path):
    """ffmpeg reads a .txt (or .nfo, .asc ...) file as ANSI art: 640x400 frames of rendered text,
    which a run then took as its control video."""
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list: eggs, milk, bread\n" * 400)
    with pytest.raises(InvalidParameter, match=r"video=.*is not a readable video \(ffmpeg reads it as text art"):
        gen.check("a fox", video=notes, strength=0.5)
    garbage = tmp_path / "random.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(InvalidParameter, match=r"is not a readable video"):
        gen.check("a fox", video=garbage, strength=0.5)


def test_a_rerun_of_a_run_that_used_the_first_frames_of_a_longer_video(gen, tmp_path):
    clip = _encode(tmp_path / "thirteen.mp4", 13, size="32x32", rate=8)
    first = gen.generate("a fox", video=clip, num_frames=9, strength=0.5, steps=1, seed=2, progress=False)
    again = gen.rerun(first, progress=False)
    assert np.array_equal(read_frames(again.video_path), read_frames(first.video_path))
    from wan_nb.runs.recipe import recipe

    recorded = recipe(first)["inputs"]["video"]
    assert recorded["sha256"] == user_inputs.pixels_sha256(read_frames(clip, 9))
    assert recorded["source_size"] == clip.stat().st_size
