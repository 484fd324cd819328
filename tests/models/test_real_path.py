"""The real-model path on a GPU, reproduced on the CPU where only a GPU shows the fault.

A CPU-only torch has one other device, "meta" (shapes without storage): accelerate hooks whose
execution device is "meta" stand in for hooks that move weights to CUDA. Capability queries are
stubbed where the code asks torch about a GPU. Each test says what it stands in for.
"""
import logging

import pytest
import torch

from wan_nb import Generator
from wan_nb.models import devices
from wan_nb.models import loading
from wan_nb.models import specs as models
from wan_nb.models import tiny
from wan_nb.models.video_io import decode_latents
from _hub_server import HubServer


def test_decode_sends_the_latents_where_the_vae_hook_computes():
    """Stands in for offload="model" on a GPU: after the pipeline call, maybe_free_model_hooks has
    put the VAE's weights back on the CPU and its hook moves them to CUDA when decode starts. The
    latents must go to the hook's execution device ("meta" here), not to the weights' CPU."""
    from accelerate import cpu_offload_with_hook

    pipe = tiny.pipeline("tiny")
    cpu_offload_with_hook(pipe.vae, execution_device=torch.device("meta"))
    assert pipe.vae.device.type == "cpu"  # at rest, as after maybe_free_model_hooks
    real_decode = pipe.vae.decode
    seen = []

    class Decoded(Exception):
        pass

    def decode(z, **kwargs):
        seen.append(z.device.type)
        out = real_decode(z, **kwargs)[0]  # the hook moved the VAE to meta: it computes there
        seen.append(out.device.type)
        raise Decoded  # meta frames cannot become pixels; the device is what is tested

    pipe.vae.decode = decode
    with pytest.raises(Decoded):
        decode_latents(pipe, torch.randn(1, 16, 3, 4, 4))
    assert seen == ["meta", "meta"]


def _capabilities(monkeypatch, table, name="Tesla T4"):
    """Stands in for a machine with GPUs of the given compute capabilities (no CUDA here)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(table))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: table[index or 0])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: name)
    # What the first version asked: true on a T4 too (bf16 emulated), and about the current device.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


def test_auto_dtype_follows_the_chosen_gpus_compute_capability(monkeypatch, caplog):
    _capabilities(monkeypatch, [(9, 0), (7, 5)])
    assert devices.resolve_device_dtype("cuda:0", "auto") == ("cuda:0", torch.bfloat16)
    assert devices.resolve_device_dtype("cuda", "auto") == ("cuda", torch.bfloat16)
    with caplog.at_level(logging.WARNING, logger="wan_nb"):
        assert devices.resolve_device_dtype("cuda:1", "auto") == ("cuda:1", torch.float16)
    assert "capability 7.5" in caplog.text and "float16" in caplog.text
    assert devices.resolve_device_dtype("cuda:1", "bf16") == ("cuda:1", torch.bfloat16)  # asked for: kept


def test_a_real_model_without_a_gpu_is_refused_before_any_download(runs_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with HubServer({}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        # Refused where the user wrote it, Generator(...), not at the first generate() (issue 28):
        # no task, no run folder, no download.
        with pytest.raises(Exception, match="needs a GPU.*device='cpu'") as failure:
            Generator(model="wan2.1-t2v-1.3b", runs_dir=runs_dir, previews=False)
        assert type(failure.value).__name__ == "NoGpu"
        assert failure.value.__cause__ is None and failure.value.__context__ is None   # said once
        assert not any(runs_dir.iterdir())
        assert hub.requests == []
        # device="cpu" insists: the run goes on to the Hub (which here has no such repo).
        gen = Generator(model="wan2.1-t2v-1.3b", device="cpu", runs_dir=runs_dir, previews=False)
        try:
            with pytest.raises(Exception, match="not found"):
                gen.submit("a fox").result(timeout=60)
            assert hub.requests
        finally:
            gen.close()


def test_test_sized_folders_still_run_with_device_auto(tmp_path):
    folder = tiny.build("tiny", tmp_path / "small-wan")
    assert models.needs_gpu(models.resolve(str(folder))) is None
    assert models.needs_gpu(models.resolve("wan2.2-t2v-a14b")) == "wan2.2-t2v-a14b"


def test_offload_none_moves_each_component_as_soon_as_it_is_loaded(tmp_path):
    """Stands in for loading onto a GPU: "meta" as the target shows where each component is when
    the next one starts loading. Host RAM then holds one component at a time."""
    folder = tiny.build("tiny", tmp_path / "placed")
    placed_when_next_started = {}
    loaded = {}

    def report(kind, **fields):
        if kind == "loading" and str(fields.get("status", "")).startswith("Loading"):
            placed_when_next_started[fields["component"]] = {
                name: next(part.parameters()).device.type for name, part in loaded.items()
                if isinstance(part, torch.nn.Module)}

    real_load_one = loading._load_one

    def load_one(folder, name, entry, sizes, done, total, dtype, fp32, report_, into, *rest):
        result = real_load_one(folder, name, entry, sizes, done, total, dtype, fp32, report_, into, *rest)
        loaded[name] = into[name]
        return result

    loading._load_one, saved = load_one, loading._load_one
    try:
        components, _ = loading.load_components(folder, dtype=torch.float32, report=report, device="meta")
    finally:
        loading._load_one = saved
    assert placed_when_next_started["vae"] == {"text_encoder": "meta", "transformer": "meta"}
    assert all(next(p.parameters()).device.type == "meta" for p in components.values()
               if isinstance(p, torch.nn.Module))


def test_group_offload_uses_block_groups_without_pinning_everything():
    """diffusers pins every offloaded weight up front when a CUDA stream is used, unless
    low_cpu_mem_usage; the hook configuration is what decides it (no CUDA here to pin with)."""
    from diffusers.hooks import HookRegistry

    pipe = tiny.pipeline("tiny")
    loading._group_offload(pipe, torch.device("cpu"))
    groups = []
    for module in pipe.transformer.modules():
        registry = getattr(module, "_diffusers_hook", None)
        hook = registry.get_hook("group_offloading") if isinstance(registry, HookRegistry) else None
        if hook is not None:
            groups.append(hook.group)
    blocks = [g for g in groups if [type(m).__name__ for m in g.modules] == ["WanTransformerBlock"]]
    assert len(blocks) == len(pipe.transformer.blocks)   # one block a group
    assert all(g.low_cpu_mem_usage for g in blocks)      # pinned only while copied


def _hooks(pipe):
    return list(getattr(pipe, "_all_hooks", []))  # the objects (kept alive, so no id is reused)


def _shared(a, b):
    return [h for h in a if any(h is k for k in b)]


def _cancel_at_step(step):
    def hook(task, at, timestep, latents, pipe):
        if at == step:
            task.cancel()
    return hook


def test_offload_hooks_are_put_back_to_rest_after_a_cancel(runs_dir):
    """On a GPU under offload="model", a run cancelled mid-denoise left the transformer resident:
    nothing called maybe_free_model_hooks. What that call does (on the CPU as on a GPU) is put
    every component back on the CPU and re-arm fresh hooks; the fresh hooks are what is observed."""
    pipe = tiny.pipeline("tiny")
    pipe.enable_model_cpu_offload(device="cpu")
    gen = Generator.from_pipeline(pipe, "tiny-offloaded", runs_dir=runs_dir, previews=False,
                                  defaults={"height": 32, "width": 32, "num_frames": 5, "steps": 4})
    try:
        gen.add_step_hook(_cancel_at_step(2))
        before = _hooks(pipe)
        with pytest.raises(Exception, match="cancelled"):
            gen.submit("a fox").result(timeout=120)
        after = _hooks(pipe)
        assert before and after and not _shared(before, after)
    finally:
        gen.close()


def test_ti2v_image_runs_release_the_shared_modules(runs_dir):
    """TI2V turns an image into video through a twin pipeline that shares the modules but has no
    hooks of its own, so its end-of-call release did nothing: the original's hooks must be reset."""
    import numpy as np

    pipe = tiny.pipeline("tiny-ti2v")
    pipe.enable_model_cpu_offload(device="cpu")
    gen = Generator.from_pipeline(pipe, "tiny-ti2v-offloaded", runs_dir=runs_dir, previews=False,
                                  defaults={"height": 32, "width": 32, "num_frames": 5, "steps": 2})
    try:
        before = _hooks(pipe)
        gen.submit("a fox", image=np.zeros((32, 32, 3), dtype=np.uint8)).result(timeout=120)
        assert before and not _shared(before, _hooks(pipe))
    finally:
        gen.close()


def test_latents_that_go_non_finite_fail_before_the_decode_naming_the_step(runs_dir):
    """A denoiser whose output overflows from its second call on (as fp16 overflow or a broken
    LoRA does): the run fails naming step 2 and never decodes."""
    pipe = tiny.pipeline("tiny")
    calls = []

    def overflow(module, args, output):
        calls.append(1)
        if len(calls) >= 2:
            sample = output[0] if isinstance(output, tuple) else output.sample
            sample.fill_(float("inf"))
        return output

    pipe.transformer.register_forward_hook(overflow)
    gen = Generator.from_pipeline(pipe, "tiny-overflow", runs_dir=runs_dir, previews=False,
                                  defaults={"height": 32, "width": 32, "num_frames": 5, "steps": 4,
                                            "guidance_scale": 1.0})  # one transformer call a step
    try:
        task = gen.submit("a fox")
        with pytest.raises(Exception, match="NaN or infinite at step 2 of 4") as failure:
            task.result(timeout=120)
        assert failure.value.error_type == "NonFiniteLatents"
        stages = [e.data["stage"] for e in task.events if e.type == "generation_stage"]
        assert "post_processing" not in stages
    finally:
        gen.close()


def test_flow_shift_is_a_generation_argument(runs_dir):
    gen = Generator(model="tiny", runs_dir=runs_dir, previews=False)
    try:
        result = gen.generate("a fox", steps=2, flow_shift=7.5, progress=False)
        assert result.params["flow_shift"] == 7.5
        assert gen.pipeline.scheduler.config.shift == 7.5
        gen.generate("a fox", steps=2, progress=False)
        assert gen.pipeline.scheduler.config.shift == 3.0  # the model's default again
    finally:
        gen.close()
