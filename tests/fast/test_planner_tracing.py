"""The planner's traces: the real modules under FakeTensorMode against the same modules run for
real on this CPU, the VAE's frame line against a full trace, FLOPs against the arithmetic, and
the trace cache."""
import json

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from wan_nb.fast import trace_cache, tracing
from wan_nb.fast.arch_configs import ARCHS, CLIP_VIT_H, UMT5_XXL
from wan_nb.fast.fake_modules import build_fake
from wan_nb.fast.tracing import trace_part

VAE = ARCHS["wan2.1-t2v-1.3b"]["vae"][1]
T2V_1_3B = ARCHS["wan2.1-t2v-1.3b"]["transformer"][1]


def allocator_peak(fn):
    """Peak bytes the CPU allocator held while ``fn`` ran: the profiler's memory records (every
    allocation and free, in time order), summed."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    records = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                     key=lambda e: e.start_ns())
    live = peak = 0
    for record in records:
        live += record.nbytes()
        peak = max(peak, live)
    return peak


def real_model(kind, config, dtype):
    torch.manual_seed(0)
    return build_fake(kind, config, getattr(torch, dtype))  # outside a fake mode: real random weights


def real_run(kind, config, what, pipeline_kind, shape, dtype):
    """The part run for real on the CPU, once: (the tensors' peak under the planner's tracker, the
    CPU allocator's peak under the profiler). Its inputs are made inside the measurement as the
    traced part counts them. The tracker and the profiler watch the same run: the tracker keeps no
    tensor alive, so the allocator's peak is the one of a plain run (measured equal to the byte on
    both VAE cases against a separate run without the tracker)."""
    model = real_model(kind, config, dtype)
    tensors = {}

    def run():
        call, kwargs = tracing.real_call(model, what, config, pipeline_kind, VAE, shape, getattr(torch, dtype))
        # the real run takes the kernel the trace prices, whatever an earlier test left chosen
        with tracing.priced_attention():
            tensors["peak"] = tracing.run_traced(model, call, kwargs).activation_bytes

    allocated = allocator_peak(run)
    return tensors["peak"], allocated


@pytest.mark.parametrize("kind, config, what, pipeline_kind, shape, dtype, within", [
    # the 1.3B's real block widths, 2 of its 30 blocks (the peak is one block's: they run in turn)
    ("transformer", dict(T2V_1_3B, num_layers=2), "forward", "t2v", dict(height=96, width=160, num_frames=9), "bfloat16",
     0.10),
    # UMT5-XXL's widths, 2 of 24 layers, a small vocabulary (the embedding is a lookup)
    ("umt5", dict(UMT5_XXL, num_layers=2, vocab_size=1024), "encode_text", "t2v", dict(height=96, width=160, num_frames=9),
     "bfloat16", 0.10),
    ("clip", dict(CLIP_VIT_H, num_hidden_layers=2), "encode_image", "flf2v", dict(height=96, width=160, num_frames=9),
     "bfloat16", 0.10),
    # the real Wan 2.1 VAE, whole: every down- and upsampling stage runs at 96 x 160 (latents
    # 12 x 20), and the kernels' share below is the same as at 128 x 224, which takes twice as long
    ("vae", VAE, "decode", "t2v", dict(height=96, width=160, num_frames=9), "float32", 0.10),
    ("vae", VAE, "encode", "i2v", dict(height=96, width=160, num_frames=9), "float32", 0.12),
], ids=["transformer", "umt5", "clip", "vae_decode", "vae_encode"])
def test_the_trace_matches_a_real_cpu_run(kind, config, what, pipeline_kind, shape, dtype, within):
    """Fake trace vs the same module run for real, same shape and dtype: the tensors the real run
    makes peak at exactly the traced bytes, and the CPU allocator's peak is within 10 %.

    The allocator also holds what CPU kernels allocate inside themselves, which no tensor shows:
    for the VAE's 3D convolutions, oneDNN's reordered weights and im2col scratch. In the decode
    that is ~8 % (measured 7.9 % at 96 x 160, 7.7 % at 128 x 224); the encode's strided
    convolutions make it ~10 % (measured 10.5 % at 96 x 160, 10.3 % at 128 x 224), so the encode
    is held to 12 %. On CUDA, cuDNN's workspaces replace them and are priced apart (``wan_nb.fast.cards.WORKSPACES_GB``)."""
    traced = tracing.trace_part(kind, config, what, pipeline_kind, VAE, shape, dtype)
    tensors, real = real_run(kind, config, what, pipeline_kind, shape, dtype)
    assert tensors == traced.activation_bytes
    assert real > 0
    assert abs(traced.activation_bytes / real - 1) <= within, (traced.activation_bytes, real)


@pytest.mark.parametrize("what, tiled", [("decode", False), ("decode", True), ("encode", False)])
def test_the_vae_frame_line_equals_a_full_trace(what, tiled):
    """A long clip's VAE is traced at 3 and 4 latent frames and extended: the same numbers as
    tracing all of its frames."""
    shape = dict(height=64, width=320, num_frames=25)  # 7 latent frames; tiled: 2 tiles across
    extended = trace_part("vae", VAE, what, "i2v", VAE, shape, "float32", tiled)
    full = tracing.trace_once(("vae", VAE, what, "i2v", VAE), shape, "float32", tiled)
    assert extended == full


def test_flops_count_attention_and_every_linear_layer():
    """One block's traced FLOPs = 2 x its linear weights x tokens (+ cross-attention's text side)
    + 4 x tokens^2 x width of self-attention: the counter sees the attention kernel too."""
    shape = dict(height=96, width=160, num_frames=9)
    one, two = (trace_part("transformer", dict(T2V_1_3B, num_layers=n), "forward", "t2v", VAE, shape).flops
                for n in (1, 2))
    tokens = 3 * (96 // 16) * (160 // 16)  # latent frames x patches
    width = 12 * 128
    with torch.device("meta"):
        block = build_fake("transformer", dict(T2V_1_3B, num_layers=1), torch.bfloat16).blocks[0]
    linears = {n: m.weight.numel() for n, m in block.named_modules() if isinstance(m, torch.nn.Linear)}
    kv_text = sum(v for n, v in linears.items() if n in ("attn2.to_k", "attn2.to_v"))
    expected = (2 * (sum(linears.values()) - kv_text) * tokens + 2 * kv_text * tracing.TEXT_TOKENS
                + 4 * tokens * tokens * width + 4 * tokens * tracing.TEXT_TOKENS * width)
    assert abs((two - one) / expected - 1) < 0.02, (two - one, expected)


def test_a_trace_is_made_once_then_read(tmp_path, monkeypatch):
    monkeypatch.setenv("WAN_NB_CACHE", str(tmp_path))
    shape = dict(height=64, width=64, num_frames=5)
    first = trace_cache.cached_trace("clip", dict(CLIP_VIT_H, num_hidden_layers=1), "encode_image", "i2v", VAE, shape)
    files = list((tmp_path / "planner_traces").glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["trace"] == first.to_dict()

    def no_tracing(*args, **kwargs):
        raise AssertionError("traced again")

    monkeypatch.setattr(trace_cache, "trace_part", no_tracing)
    again = trace_cache.cached_trace("clip", dict(CLIP_VIT_H, num_hidden_layers=1), "encode_image", "i2v", VAE, shape)
    assert again == first


def test_a_trace_prices_the_fused_kernel_whatever_the_process_chose_and_leaves_the_choice_alone():
    """A process that disabled the flash kernel or chose diffusers' math backend still gets the
    fused kernel priced, and keeps its own choice afterwards. With the defaults in place the trace
    touches neither global: entering a save-and-restore context while another thread is inside
    one of diffusers' (its math backend wraps every call in one) can restore that thread's
    temporary choice for good, which is how a CI run once left flash disabled for later tests."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry as registry
    from diffusers.models.attention_dispatch import attention_backend

    part = ("transformer", dict(T2V_1_3B, num_layers=1), "forward", "t2v", VAE)
    shape = dict(height=96, width=160, num_frames=9)
    default = tracing.trace_once(part, shape, "bfloat16", tiled=False)
    assert torch.backends.cuda.flash_sdp_enabled()
    try:
        torch.backends.cuda.enable_flash_sdp(False)
        with attention_backend("_native_math"):
            assert tracing.trace_once(part, shape, "bfloat16", tiled=False) == default
            assert str(registry.get_active_backend()[0].value) == "_native_math"
        assert not torch.backends.cuda.flash_sdp_enabled()
    finally:
        torch.backends.cuda.enable_flash_sdp(True)
    # the defaults: neither global is set, so no other thread's context can be undone
    calls = []
    real_enable = torch._C._set_sdp_use_flash
    try:
        torch._C._set_sdp_use_flash = lambda value: calls.append(value) or real_enable(value)
        tracing.trace_once(part, shape, "bfloat16", tiled=False)
    finally:
        torch._C._set_sdp_use_flash = real_enable
    assert calls == []
