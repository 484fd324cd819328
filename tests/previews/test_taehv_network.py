"""TAEHV written in wan_nb: the published checkpoint layout loads unchanged, decodes Wan-shaped latents to
4k+1 frames in [0, 1], the same in any chunking, and anything else is refused with the file to use named."""
import pickle

import numpy as np
import pytest
import torch

from _taehv_helpers import taehv_state, write_taehv
from wan_nb.previews import taehv
from wan_nb.previews.taehv_files import check_source, layout_of, load_decoder, read_shapes
from wan_nb.protocol.errors import CheckpointError


def test_the_key_layout_is_the_published_one():
    state = taehv_state()
    # indices as in the published nn.Sequential: convs at 1 and 22, memory blocks' convs at .conv.0/2/4,
    # temporal grows at 7 / 13 / 19 (1x1, no bias)
    assert state["decoder.1.weight"].shape == (256, 16, 3, 3)
    assert state["decoder.3.conv.0.weight"].shape == (256, 512, 3, 3)
    assert state["decoder.3.conv.4.bias"].shape == (256,)
    assert state["decoder.13.conv.weight"].shape == (256, 128, 1, 1)
    assert state["decoder.20.weight"].shape == (64, 64, 3, 3) and "decoder.20.bias" not in state
    assert state["decoder.22.weight"].shape == (3, 64, 3, 3)
    assert state["encoder.0.weight"].shape == (64, 3, 3, 3)
    assert state["encoder.2.conv.weight"].shape == (64, 128, 1, 1)   # a stride-2 temporal pool
    assert state["encoder.17.weight"].shape == (16, 64, 3, 3)


@pytest.mark.parametrize("channels, patch, suffix", [(16, 1, ".safetensors"), (48, 2, ".pth")])
def test_checkpoints_of_both_wan_families_load_and_decode(tmp_path, channels, patch, suffix):
    path = write_taehv(tmp_path / f"taew{suffix}", channels, patch)
    layout = layout_of(read_shapes(path))
    assert (layout.latent_channels, layout.patch_size, layout.time_factor) == (channels, patch, 4)
    model = load_decoder(path, channels=channels)
    for key, tensor in taehv_state(channels, patch).items():   # the weights are the file's, unchanged
        assert torch.equal(model.state_dict()[key], tensor), key
    latents = torch.randn(1, channels, 3, 4, 6, generator=torch.Generator().manual_seed(1))
    video = model.decode(latents)
    space = 8 * patch
    assert video.shape == (1, 9, 3, 4 * space, 6 * space)   # 3 latent frames -> 4*2+1 video frames
    assert 0.0 <= float(video.min()) and float(video.max()) <= 1.0


def test_chunked_decoding_matches_the_whole_clip(tmp_path):
    model = load_decoder(write_taehv(tmp_path / "taew2_1.safetensors", seed=3))
    latents = torch.randn(1, 16, 5, 3, 4, generator=torch.Generator().manual_seed(2))
    whole = model.decode(latents, chunk=100)[0]
    in_twos = model.decode(latents, chunk=2)[0]
    streamed = torch.cat([frames for _, frames in model.decode_chunks(latents, chunk=1)])
    assert whole.shape[0] == 17
    assert torch.allclose(whole, in_twos, atol=1e-5) and torch.allclose(whole, streamed, atol=1e-5)
    assert float(whole.std()) > 0   # not a constant picture


def test_a_stride2_grow_at_stage0_is_cut_to_its_last_frame_channels(tmp_path):
    state = taehv_state(stage0_stride2=True, decoder_only=True)
    path = write_taehv(tmp_path / "taehv_like.safetensors", stage0_stride2=True, decoder_only=True)
    model = load_decoder(path, channels=16)
    assert torch.equal(model.decoder[7].conv.weight, state["decoder.7.conv.weight"][-256:])


def test_other_architectures_are_refused_naming_the_right_file(tmp_path):
    from safetensors.torch import save_file

    taesd = tmp_path / "taesd_decoder.safetensors"   # an image TAESD: decoder.layers.N keys
    save_file({"decoder.layers.1.weight": torch.zeros(64, 4, 3, 3)}, str(taesd))
    with pytest.raises(CheckpointError, match="not a TAEHV checkpoint.*taew2_1"):
        check_source(str(taesd))
    vae = tmp_path / "wan_vae.safetensors"   # the Wan VAE's own keys
    save_file({"decoder.conv_in.weight": torch.zeros(384, 16, 3, 3, 3)}, str(vae))
    with pytest.raises(CheckpointError, match="not a TAEHV checkpoint"):
        check_source(str(vae))
    five_b = write_taehv(tmp_path / "taew2_2.safetensors", 48, 2)
    with pytest.raises(CheckpointError, match="48-channel latents but this model makes 16"):
        check_source(str(five_b), channels=16)
    with pytest.raises(CheckpointError, match="no TAEHV checkpoint at"):
        check_source(str(tmp_path / "missing.safetensors"))


def test_a_pth_with_pickled_code_is_not_run(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must not run",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"decoder.1.weight": Payload()}, f)
    with pytest.raises(CheckpointError, match="cannot read"):   # weights_only=True refuses the global
        read_shapes(path)


def test_the_layout_predicts_the_wan_frame_count():
    layout = taehv.TaehvLayout()
    assert [layout.frames_out(n) for n in (1, 2, 21)] == [1, 5, 81]
    assert taehv.TaehvLayout(48, 2).space_factor == 16
    assert np.isclose(layout.space_factor, 8)
