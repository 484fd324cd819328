"""cache="text-kv": the cross-attention's text/image K/V projections computed once per guidance
pass and reused, bit-for-bit the uncached run (t2v, i2v, the two-expert tiny-a14b, alone and with a
reusing mode); the saving counted from the matrix multiplies torch really ran (FlopCounterMode),
recomputed when the prompt tensor or a LoRA scale changes, and gone after every run."""
import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import wan_nb
from wan_nb.fast import text_kv_cache
from wan_nb.fast.cache import cache_for_run
from wan_nb.models import tiny
from wan_nb.protocol.errors import InvalidParameter

IMAGE = (np.random.RandomState(0).rand(32, 32, 3) * 255).astype("uint8")


def final_latents(gen, **kwargs):
    """The last step's latents of one generation (read at the step hook, before decoding)."""
    seen = {}
    off = gen.add_step_hook(lambda task, step, t, latents, pipe: seen.update(latents=latents.clone()))
    try:
        result = gen.generate("a red fox running through snow", seed=3, progress=False, **kwargs)
    finally:
        off()
    return seen["latents"], result


def hooks_left(pipe):
    return sum(getattr(m, "_diffusers_hook", None) is not None and
               m._diffusers_hook.get_hook(text_kv_cache.HOOK) is not None
               for t in (pipe.transformer, getattr(pipe, "transformer_2", None)) if t is not None
               for m in t.modules())


@pytest.mark.parametrize("model, extra", [("tiny", {}), ("tiny-i2v", {"image": IMAGE}), ("tiny-a14b", {})])
def test_text_kv_is_bit_identical_to_the_uncached_run(tmp_path, model, extra):
    with wan_nb.Generator(model, runs_dir=tmp_path, previews=False) as gen:
        kwargs = dict(steps=5, guidance_scale=4.0, **extra)
        if model == "tiny-a14b":
            kwargs["guidance_scale_2"] = 3.0
        plain, _ = final_latents(gen, **kwargs)
        exact, result = final_latents(gen, cache="text-kv", **kwargs)
        assert torch.equal(plain, exact)
        assert result.params["cache"] == "text-kv" and wan_nb.recipe(result)["cache"] == "text-kv"
        # combined with a reusing mode it changes nothing of that mode's output
        lossy, _ = final_latents(gen, cache="first-block", cache_threshold=0.3, **kwargs)
        both, combined = final_latents(gen, cache=("first-block", "text-kv"), cache_threshold=0.3, **kwargs)
        assert torch.equal(lossy, both) and combined.params["cache"] == "first-block+text-kv"
        assert gen.run_on_worker(hooks_left) == 0  # nothing of the cache is left for the next run


def projection_flops(pipe, params, *, cached):
    """FLOPs torch ran in every block's attn2.to_k / to_v over one real pipeline call."""
    embeds = pipe.encode_prompt("a red fox", negative_prompt="blurry", do_classifier_free_guidance=True,
                                device="cpu")
    with FlopCounterMode(display=False) as counter:
        with cache_for_run(pipe, params, "tiny") if cached else _nothing():
            pipe(prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1], height=32, width=32,
                 num_frames=9, num_inference_steps=params["steps"], guidance_scale=params["guidance_scale"],
                 generator=torch.Generator().manual_seed(0), output_type="latent")
    counts = counter.get_flop_counts()
    return {name: sum(ops.values()) for name, ops in counts.items()
            if name.endswith(("attn2.to_k", "attn2.to_v"))}


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_each_projection_runs_once_per_pass_and_is_reused_after():
    pipe = tiny.pipeline("tiny")
    pipe.set_progress_bar_config(disable=True)
    params = {"cache": "text-kv", "cache_threshold": None, "steps": 4, "guidance_scale": 3.0}
    plain = projection_flops(pipe, params, cached=False)
    cached = projection_flops(pipe, params, cached=True)
    assert plain and set(plain) == set(cached)
    for name, flops in plain.items():  # 4 steps x 2 passes uncached, once per pass (cond, uncond) with text-kv
        assert flops > 0 and cached[name] * 4 == flops, (name, flops, cached[name])


def test_a_new_prompt_tensor_a_changed_one_and_a_changed_lora_scale_recompute(tmp_path):
    """Reuse is keyed on the prompt tensor (its identity and in-place version) and on each
    projection's weights and adapter scales: any change recomputes, so outputs stay exact."""
    pipe = tiny.pipeline("tiny")
    pipe.load_lora_weights(str(tiny.make_lora(pipe.transformer, tmp_path / "style.safetensors")),
                           adapter_name="style")
    transformer = pipe.transformer
    latents = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    text = torch.randn(1, 512, 32, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([500])

    def forward(embeds):
        with torch.no_grad():
            return transformer(hidden_states=latents, timestep=t, encoder_hidden_states=embeds, return_dict=False)[0]

    def uncached(embeds, scale):
        pipe.set_adapters(["style"], [scale])
        return forward(embeds)

    expected = [uncached(text, 1.0), uncached(text, 0.3), uncached(text * 2, 0.3), uncached(text + 1, 0.3)]
    pipe.set_adapters(["style"], [1.0])
    cache = text_kv_cache.apply(transformer)
    try:
        got = [forward(text), forward(text)]                      # the second call reuses
        reused_once = cache.hits
        pipe.set_adapters(["style"], [0.3])                       # a LoRA weight changed between steps
        got.append(forward(text))
        text.mul_(2)                                              # the same tensor changed in place
        got.append(forward(text))
        got.append(forward(text / 2 + 1))                         # another prompt tensor
    finally:
        cache.close()
    assert reused_once > 0
    for have, want in zip(got, [expected[0], *expected]):
        assert torch.equal(have, want)
    assert hooks_left(pipe) == 0 and not cache.entries


@pytest.mark.parametrize("kwargs, fix", [
    ({"cache": "first-block+mag"}, "at most one reusing mode"),
    ({"cache": ("text-kv", "text-kv")}, "at most one reusing mode"),
    ({"cache": "fast+text-kv"}, "choose one of"),
    ({"cache": "text-kv", "cache_threshold": 0.1}, "takes no threshold"),
    ({"cache": 3}, "choose one of"),
])
def test_bad_text_kv_arguments_are_refused_at_submit(gen, kwargs, fix):
    with pytest.raises(InvalidParameter, match=fix):
        gen.submit("a fox", **kwargs)


def test_text_kv_is_a_grid_axis_with_its_labels(gen):
    grid = gen.grid("a fox in the snow", x=("cache", [None, "text-kv", ("sea", "text-kv")]), seed=2, steps=4)
    results = grid.results()
    assert [r.params["cache"] for r in results] == [None, "text-kv", "sea+text-kv"]
    assert list(grid.x.labels) == ["no cache", "text-kv", "sea+text-kv"]
    from wan_nb.widgets.grid import differing_labels, format_label

    assert [format_label(label, i) for i, label in enumerate(differing_labels(results))] == \
        ["cache=None", "cache=text-kv", "cache=sea+text-kv"]
