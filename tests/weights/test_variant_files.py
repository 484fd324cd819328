"""Single files of the VACE, FLF2V and Animate transformers (Comfy-Org's repackaged
``wan2.1_vace_14B_fp16.safetensors`` and the like) are recognised by their extra tensors: as
model= they resolve to their own preset (not T2V-14B / I2V-14B-480p, whose loading drops those
tensors), and as transformer= they are checked against the preset from the header alone.

The 14B files are written header-first with their real names and shapes and the data left as a
sparse hole (nothing but the header is read before loading); the tiny VACE and FLF2V transformers
are written whole, in the original layout, and loaded end to end."""
from __future__ import annotations

import json
import struct

import pytest
import torch

from _weights_helpers import tiny_folder, write_gguf, write_safetensors
from wan_nb import Generator
from wan_nb.weights.single_file import CheckpointError, detect, inspect

P = "model.diffusion_model."
BYTES = {"F16": 2, "BF16": 2, "F32": 4}


def header_only(path, tensors):
    """A .safetensors file with ``tensors`` (name -> (dtype, shape)) in its header, data sparse."""
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        size = BYTES[dtype]
        for n in shape:
            size *= n
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + offset)
    return path


def base(dim, ffn, blocks, in_channels):
    return {P + "patch_embedding.weight": ("F16", (dim, in_channels, 1, 2, 2)),
            P + "blocks.0.self_attn.q.weight": ("F16", (dim, dim)),
            P + "blocks.0.ffn.0.weight": ("F16", (ffn, dim)),
            P + f"blocks.{blocks - 1}.ffn.0.weight": ("F16", (ffn, dim)),
            P + "head.modulation": ("F32", (1, 2, dim))}


CLIP = {P + "img_emb.proj.0.weight": ("F32", (1280,)), P + "img_emb.proj.1.weight": ("F16", (1280, 1280)),
        P + "blocks.0.cross_attn.k_img.weight": ("F16", (5120, 5120))}


def vace(dim, ffn, blocks, vace_blocks):
    return {**base(dim, ffn, blocks, 16), P + "vace_patch_embedding.weight": ("F16", (dim, 96, 1, 2, 2)),
            P + "vace_blocks.0.before_proj.weight": ("F16", (dim, dim)),
            P + f"vace_blocks.{vace_blocks - 1}.after_proj.bias": ("F16", (dim,))}


LAYOUTS = {
    "wan2.1_vace_14B_fp16.safetensors": vace(5120, 13824, 40, 8),
    "wan2.1_vace_1.3B_fp16.safetensors": vace(1536, 8960, 30, 15),
    "wan2.1_flf2v_720p_14B_fp16.safetensors": {**base(5120, 13824, 40, 36), **CLIP,
                                               P + "img_emb.emb_pos": ("F16", (1, 514, 1280))},
    "wan2.2_animate_14B_bf16.safetensors": {
        **base(5120, 13824, 40, 36), **CLIP, P + "pose_patch_embedding.weight": ("BF16", (5120, 16, 1, 2, 2)),
        P + "motion_encoder.dec.direction.weight": ("BF16", (512, 20)),
        P + "face_encoder.conv1_local.conv.weight": ("BF16", (4096, 512, 3)),
        P + "face_adapter.fuser_blocks.0.linear1_kv.weight": ("BF16", (10240, 5120))},
    "wan2.1_t2v_14B_fp16.safetensors": base(5120, 13824, 40, 16),
    "wan2.1_i2v_480p_14B_fp16.safetensors": {**base(5120, 13824, 40, 36), **CLIP},
}
PRESET_OF = {"wan2.1_vace_14B_fp16.safetensors": "wan2.1-vace-14b",
             "wan2.1_vace_1.3B_fp16.safetensors": "wan2.1-vace-1.3b",
             "wan2.1_flf2v_720p_14B_fp16.safetensors": "wan2.1-flf2v-14b-720p",
             "wan2.2_animate_14B_bf16.safetensors": "wan2.2-animate-14b",
             "wan2.1_t2v_14B_fp16.safetensors": "wan2.1-t2v-14b",
             "wan2.1_i2v_480p_14B_fp16.safetensors": "wan2.1-i2v-14b-480p"}


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    folder = tmp_path_factory.mktemp("released")
    return {name: header_only(folder / name, tensors) for name, tensors in LAYOUTS.items()}


@pytest.mark.parametrize("name", sorted(PRESET_OF))
def test_a_file_alone_names_its_own_preset(name, released, runs_dir):
    assert detect(released[name]) == PRESET_OF[name]
    with Generator(model=str(released[name]), device="cpu", runs_dir=runs_dir, previews=False) as gen:
        assert gen.model == PRESET_OF[name]


def test_a_14b_vace_file_is_refused_on_the_1_3b_vace_preset(released, runs_dir):
    with pytest.raises(CheckpointError, match=r"does not fit wan2.1-vace-1.3b transformer.*width 5120.*VACE control "
                                              r"blocks.*width 1536.*use model='wan2.1-vace-14b'"):
        Generator(model="wan2.1-vace-1.3b", device="cpu", transformer=released["wan2.1_vace_14B_fp16.safetensors"],
                  runs_dir=runs_dir, previews=False)


@pytest.mark.parametrize("model, name, fits", [
    ("wan2.1-t2v-14b", "wan2.1_vace_14B_fp16.safetensors", "wan2.1-vace-14b"),     # its control blocks dropped
    ("wan2.1-vace-14b", "wan2.1_t2v_14B_fp16.safetensors", "wan2.1-t2v-14b"),      # no control blocks to load
    ("wan2.1-i2v-14b-720p", "wan2.1_flf2v_720p_14B_fp16.safetensors", "wan2.1-flf2v-14b-720p"),
    ("wan2.1-flf2v-14b-720p", "wan2.1_i2v_480p_14B_fp16.safetensors", "wan2.1-i2v-14b-480p"),
    ("wan2.1-i2v-14b-480p", "wan2.2_animate_14B_bf16.safetensors", "wan2.2-animate-14b"),
    ("wan2.2-animate-14b", "wan2.1_flf2v_720p_14B_fp16.safetensors", "wan2.1-flf2v-14b-720p"),
])
def test_a_file_of_the_neighbouring_pipeline_is_refused_naming_its_own(model, name, fits, released, runs_dir):
    with pytest.raises(CheckpointError, match=f"does not fit {model} transformer.*use model='{fits}'"):
        Generator(model=model, device="cpu", transformer=released[name], runs_dir=runs_dir, previews=False)


# -- the tiny VACE and FLF2V transformers, written whole and loaded -----------------------------
def _transformer(name):
    import diffusers

    folder = tiny_folder(name)
    cls = getattr(diffusers, json.loads((folder / "transformer" / "config.json").read_text())["_class_name"])
    return cls.from_pretrained(folder, subfolder="transformer").eval()


def _same_weights(a, b) -> bool:
    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_a_vace_file_in_comfyuis_layout_loads_its_control_blocks(tmp_path, runs_dir):
    from safetensors import safe_open

    reference = _transformer("tiny-vace")
    path = write_safetensors(reference, tmp_path / "wan2.1_vace_tiny.safetensors", prefix=P)
    with safe_open(str(path), "pt") as handle:
        names = set(handle.keys())
    assert {P + "vace_blocks.0.before_proj.weight", P + "vace_blocks.1.after_proj.bias"} <= names   # real names
    assert inspect(path).variant == "vace"
    with Generator(model="tiny-vace", transformer=path, runs_dir=runs_dir, previews=False) as gen:
        gen.generate("a fox", seed=0, progress=False)
        assert _same_weights(gen.pipeline.transformer, reference)
    with pytest.raises(CheckpointError, match="does not fit tiny transformer.*VACE control blocks"):
        Generator(model="tiny", transformer=path, runs_dir=runs_dir, previews=False)


@pytest.mark.parametrize("kind", ["safetensors", "gguf"])
def test_an_flf2v_file_keeps_its_position_embedding(kind, tmp_path, runs_dir):
    reference = _transformer("tiny-flf2v")
    if kind == "gguf":
        path = write_gguf(reference, tmp_path / "wan2.1-flf2v-tiny-Q8_0.gguf")
    else:
        path = write_safetensors(reference, tmp_path / "wan2.1_flf2v_tiny.safetensors", prefix=P)
        from safetensors import safe_open

        with safe_open(str(path), "pt") as handle:
            assert P + "img_emb.emb_pos" in set(handle.keys())   # the original name diffusers' converter lacks
    assert inspect(path).variant == "flf2v"
    with Generator(model="tiny-flf2v", transformer=path, runs_dir=runs_dir, previews=False) as gen:
        gen.run_on_worker(lambda pipe: None)
        loaded = gen.pipeline.transformer.condition_embedder.image_embedder.pos_embed
        assert torch.equal(loaded.float(), reference.condition_embedder.image_embedder.pos_embed.float())
    with pytest.raises(CheckpointError, match="does not fit tiny-i2v transformer.*first-last-frame position"):
        Generator(model="tiny-i2v", transformer=path, runs_dir=runs_dir, previews=False)


def test_an_animate_file_in_the_original_layout_loads_its_encoders(tmp_path, runs_dir):
    from safetensors import safe_open

    reference = _transformer("tiny-animate")
    path = write_safetensors(reference, tmp_path / "wan2.2_animate_tiny.safetensors", prefix=P)
    with safe_open(str(path), "pt") as handle:
        names = set(handle.keys())
    # The authors' names, which diffusers' converter reads: stacked key/value, numbered convolutions.
    assert {P + "face_adapter.fuser_blocks.0.linear1_kv.weight", P + "motion_encoder.dec.direction.weight",
            P + "motion_encoder.enc.net_app.convs.1.conv1.1.bias", P + "face_encoder.conv1_local.conv.weight"} <= names
    assert inspect(path).variant == "animate"
    with Generator(model="tiny-animate", transformer=path, runs_dir=runs_dir, previews=False) as gen:
        gen.run_on_worker(lambda pipe: None)
        assert _same_weights(gen.pipeline.transformer, reference)   # no encoder dropped or left random
    with pytest.raises(CheckpointError, match="does not fit tiny-i2v transformer.*Animate pose/motion/face"):
        Generator(model="tiny-i2v", transformer=path, runs_dir=runs_dir, previews=False)
