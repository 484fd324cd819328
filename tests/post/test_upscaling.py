"""Upscaling: Lanczos with per-frame progress; networks run in tiles that give the same picture as one
pass over the whole frame."""
import numpy as np
import torch

from wan_nb.post.upscaling import tiled, upscale_lanczos


def test_lanczos_doubles_every_frame_and_reports_each():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (5, 24, 40, 3), dtype=np.uint8)
    seen = []
    out = upscale_lanczos(frames, (48, 80), report=lambda done, total: seen.append((done, total)))
    assert out.shape == (5, 48, 80, 3) and out.dtype == np.uint8
    assert seen == [(i, 5) for i in range(1, 6)]
    small = out.reshape(5, 24, 2, 40, 2, 3).mean(axis=(2, 4))
    assert np.abs(small - frames).mean() < 20      # the same picture, bigger


def test_tiles_give_the_same_result_as_the_whole_frame():
    torch.manual_seed(0)
    # a real (small) super-resolution-shaped network: conv, 2x pixel shuffle, conv
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2),
                                  torch.nn.Conv2d(3, 3, 3, padding=1)).eval()
    image = torch.rand(1, 3, 70, 90)
    with torch.no_grad():
        whole = network(image)
        pieces = tiled(network, image, 2, tile=32, overlap=8)
    assert pieces.shape == whole.shape == (1, 3, 140, 180)
    assert torch.allclose(pieces, whole, atol=1e-5)
