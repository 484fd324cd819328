"""Frame interpolation: 81 frames x2 -> 161 (x4 -> 321), the originals where they were, progress in frame
pairs; ffmpeg's motion interpolation needs no weights."""
import numpy as np
import pytest

from wan_nb.post.interpolation import expected_frames, interpolate_ffmpeg, interpolate_pairs


def moving_square(count: int, size: int = 48) -> np.ndarray:
    """A white square crossing a dark background, one pixel a frame: motion to interpolate."""
    frames = np.full((count, size, size + 32, 3), 30, dtype=np.uint8)
    for t in range(count):
        frames[t, 16:32, t % 32: t % 32 + 16] = 230
    return frames


@pytest.mark.parametrize("factor, wanted", [(2, 161), (4, 321)])
def test_ffmpeg_interpolation_makes_the_frames_and_keeps_the_originals(factor, wanted):
    frames = moving_square(81)
    reports = []
    out = interpolate_ffmpeg(frames, 16.0, 16.0 * factor, report=lambda done, total: reports.append((done, total)))
    assert out.shape == (wanted, *frames.shape[1:]) and wanted == expected_frames(81, factor)
    assert np.array_equal(out[::factor], frames)          # every original frame at its place
    between = out[1].astype(int)
    assert not np.array_equal(between, frames[0]) or not np.array_equal(between, frames[1])
    assert reports[-1] == (80, 80) and all(t == 80 for _, t in reports)
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)   # never backwards


def test_ffmpeg_to_any_rate_keeps_the_clips_length():
    out = interpolate_ffmpeg(moving_square(17), 16.0, 24.0)
    assert len(out) == expected_frames(17, 1.5) == 25


def test_a_pair_function_fills_the_gaps_in_order():
    frames = np.stack([np.full((2, 2, 3), v, np.uint8) for v in (0, 100, 200)])
    seen = []
    out = interpolate_pairs(frames, 4, lambda a, b, t: ((1 - t) * a + t * b).astype(np.uint8),
                            report=lambda done, total: seen.append((done, total)))
    assert out[:, 0, 0, 0].tolist() == [0, 25, 50, 75, 100, 125, 150, 175, 200]
    assert seen == [(1, 2), (2, 2)]
