"""Guidance methods (generate(guidance=..., guidance_options=...)) on the tiny model's real pipeline.

For each method the test captures, with its own hooks, the raw transformer predictions of a step
(conditional, unconditional, and the perturbed pass of skip-layer / perturbed-attention) and the
prediction the scheduler was given, and checks the latter against the method's published formula
written out here, not by calling the guider. The perturbed passes are recomputed independently
(the skipped block as the identity; the perturbed self-attention as to_out(to_v(x)), i.e. softmax
replaced by the identity matrix, as PAG defines it). Each method also changes the run against
classic CFG, except "cfg" itself, which must give the classic latents bit for bit.
"""
import math

import pytest
import torch

import wan_nb
from wan_nb.core.params import InvalidParameter
from wan_nb.models.guidance import GUIDERS
from wan_nb.protocol.errors import GenerationError

SCALE = 5.0
SHAPE = dict(steps=2, num_frames=1, height=32, width=32, guidance_scale=SCALE, seed=7)
LAYER = 1  # the tiny transformer has 2 blocks; methods with an extra pass default to the middle one


def _flat(x):
    return x.double().flatten()


def cfg(c, u, extra):
    return u + SCALE * (c - u)


def cfg_zero_star(c, u, extra):   # CFG-Zero* (arXiv 2503.18886): s* = <c, u> / |u|^2 scales u
    s = torch.dot(_flat(c), _flat(u)) / (torch.dot(_flat(u), _flat(u)) + 1e-8)
    return s * u + SCALE * (c - s * u)


def apg(c, u, extra):   # APG (arXiv 2410.02416), eta 0: keep the update orthogonal to c, norm <= 15
    d = c - u
    norm = d.norm()
    d = d * min(1.0, 15.0 / float(norm))
    unit = c / c.norm()
    parallel = (d * unit).sum() * unit
    return u + SCALE * (d - parallel)


def tangential(c, u, extra):   # TCFG (arXiv 2503.18137): u projected on the first right singular vector
    _, _, vh = torch.linalg.svd(torch.stack([_flat(c), _flat(u)]), full_matrices=False)
    u_proj = (torch.dot(_flat(u), vh[0]) * vh[0]).reshape(c.shape)
    return u_proj + SCALE * (c - u_proj)


def magnitude_aware(c, u, extra):   # MAMBO-G (arXiv 2508.03442), alpha 8
    ratio = float((c - u).norm() / u.norm())
    scale = 1.0 + (SCALE - 1.0) * math.exp(-8.0 * ratio)
    return u + scale * (c - u)


def perturbed(c, u, extra):   # SLG / PAG: u + w (c - u) + s (c - c_perturbed), s = 2.8
    return u + SCALE * (c - u) + 2.8 * (c - extra)


FORMULAS = {"cfg": cfg, "cfg-zero-star": cfg_zero_star, "apg": apg, "tangential": tangential,
            "magnitude-aware": magnitude_aware, "skip-layer": perturbed, "perturbed-attention": perturbed}
WINDOW = {"skip-layer": {"skip_layer_guidance_start": 0.0, "skip_layer_guidance_stop": 1.0},
          "perturbed-attention": {"perturbed_guidance_start": 0.0, "perturbed_guidance_stop": 1.0}}


class Capture:
    """Raw transformer outputs (with their inputs) and what the scheduler was given, per step."""

    def __init__(self):
        self.calls, self.combined, self.bounds, self.latents = [], [], [], None

    def transformer_hook(self, module, args, kwargs, output):
        self.calls.append((output[0].detach().clone(),
                           {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in kwargs.items()}))

    def install(self, pipe):
        original = pipe.scheduler.step

        def step(model_output, *args, **kwargs):
            self.combined.append(model_output.detach().clone())
            self.bounds.append(len(self.calls))
            return original(model_output, *args, **kwargs)

        pipe.scheduler.step = step
        return pipe.transformer.register_forward_hook(self.transformer_hook, with_kwargs=True)

    def step_calls(self, index):
        start = self.bounds[index - 1] if index else 0
        return self.calls[start:self.bounds[index]]


def generate(gen, **kwargs):
    capture = Capture()
    handle = gen.run_on_worker(capture.install)
    off = gen.add_step_hook(lambda task, step, t, latents, pipe: setattr(capture, "latents", latents.clone()))
    try:
        gen.generate("a red fox running through snow", progress=False, **SHAPE, **kwargs)
    finally:
        off()
        gen.run_on_worker(lambda pipe: (handle.remove(), vars(pipe.scheduler).pop("step", None)))
    return capture


def independent_perturbed(gen, method, inputs):
    """The conditional prediction with block LAYER perturbed, by our own patch of the module."""
    def run(pipe):
        block = pipe.transformer.blocks[LAYER]
        if method == "skip-layer":
            target, patched = block, lambda hidden_states, *a, **k: hidden_states
        else:
            attn = block.attn1
            target, patched = attn, lambda hidden_states, *a, **k: attn.to_out[1](attn.to_out[0](attn.to_v(hidden_states)))
        target.forward = patched
        try:
            with torch.no_grad():
                return pipe.transformer(**inputs)[0]
        finally:
            del target.forward
    return gen.run_on_worker(run)


@pytest.fixture(scope="module")
def classic(gen):
    gen.generate("warm up", progress=False, steps=1, num_frames=1)
    return generate(gen)


def test_cfg_through_the_guider_is_the_pipelines_classic_cfg_bit_for_bit(gen, classic):
    guided = generate(gen, guidance="cfg")
    assert torch.equal(guided.latents, classic.latents)
    assert len(guided.calls) == len(classic.calls) == 2 * SHAPE["steps"]   # no extra pass


@pytest.mark.parametrize("method", [m for m in GUIDERS if m != "cfg"])
def test_each_method_follows_its_formula_and_changes_the_run(gen, classic, method):
    capture = generate(gen, guidance=method, guidance_options=WINDOW.get(method))
    assert len(capture.combined) == SHAPE["steps"]
    calls = capture.step_calls(1)   # the second step: every method's window includes it
    (c, cond_inputs), (u, _) = calls[0], calls[1]
    extra = None
    if method in WINDOW:
        assert len(calls) == 3, "one perturbed conditional pass"
        extra = independent_perturbed(gen, method, cond_inputs)
        assert torch.allclose(calls[2][0], extra, atol=1e-6)   # the guider's pass perturbed just that
        assert not torch.allclose(extra, c, atol=1e-4)          # ... and it did perturb
    else:
        assert len(calls) == 2
    expected = FORMULAS[method](c.double(), u.double(), None if extra is None else extra.double())
    got = capture.combined[1].double()
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max())), \
        f"{method}: max error {float((got - expected).abs().max()):.3g}"
    if method == "cfg-zero-star":   # zero-init: the first step's prediction is zero
        assert torch.count_nonzero(capture.combined[0]) == 0
    assert not torch.allclose(capture.latents, classic.latents, atol=1e-6), f"{method} ran as classic CFG"


# -- refused before any model work ------------------------------------------------------------
@pytest.fixture(scope="module")
def idle(tmp_path_factory):
    with wan_nb.Generator(model="tiny", runs_dir=tmp_path_factory.mktemp("idle"), previews=False) as generator:
        yield generator
        assert generator.pipeline is None, "a refusal loaded the model"


@pytest.mark.parametrize("kwargs, says", [
    ({"guidance": "nag"}, "choose one of 'cfg', 'cfg-zero-star', 'apg'"),
    ({"guidance": "apg", "guidance_options": {"momentum": 0.5}},
     "takes no option 'momentum'; it takes: adaptive_projected_guidance_momentum"),
    ({"guidance": "apg", "guidance_options": {"guidance_scale": 3}}, "set it with guidance_scale="),
    ({"guidance": "cfg", "guidance_options": {"start": 2.0}}, "ClassifierFreeGuidance refused them"),
    ({"guidance": "cfg", "guidance_options": {"start": object()}}, "must be JSON"),
    ({"guidance_options": {"eta": 0.0}}, "applies to a guidance method"),
    ({"guidance": "skip-layer", "guidance_options": {"skip_layer_guidance_layers": [-1]}}, "a block index"),
])
def test_bad_guidance_is_refused_naming_the_fix(idle, kwargs, says):
    with pytest.raises(InvalidParameter, match=None) as caught:
        idle.check("a fox", guidance_scale=SCALE, **kwargs)
    assert says in str(caught.value)


def test_guidance_at_scale_1_is_refused_before_any_work(idle):
    with pytest.raises(InvalidParameter) as caught:
        idle.check("a fox", guidance="apg")   # the tiny preset's default guidance_scale is 1
    assert "no unconditional pass" in str(caught.value) and "guidance_scale=5.0" in str(caught.value)


def test_a_few_step_model_says_its_guidance_is_distilled(tmp_path):
    with wan_nb.Generator(model="tiny-4step", runs_dir=tmp_path, previews=False) as fast:
        with pytest.raises(InvalidParameter) as caught:
            fast.check("a fox", guidance="cfg-zero-star")
        assert "distilled" in str(caught.value)
        assert fast.pipeline is None


def test_blocks_the_model_lacks_fail_the_run_before_denoising(gen):
    with pytest.raises(GenerationError) as caught:
        gen.generate("a fox", progress=False, guidance="skip-layer",
                     guidance_options={"skip_layer_guidance_layers": [5]}, **SHAPE)
    assert "blocks 0 to 1" in str(caught.value)
    leftover = gen.run_on_worker(lambda pipe: [m for m in pipe.transformer.modules()
                                               if getattr(m, "_diffusers_hook", None) is not None
                                               and any(n.startswith("SkipLayer") for n in m._diffusers_hook.hooks)])
    assert leftover == []


def test_each_expert_of_a_two_expert_model_gets_its_own_scale(tmp_path):
    """guidance="cfg" on Wan 2.2's two experts: bit for bit the pipeline's classic CFG with its
    guidance_scale / guidance_scale_2 split, so each expert's guider has its own scale."""
    with wan_nb.Generator(model="tiny-a14b", runs_dir=tmp_path, previews=False) as two:
        finals = []
        for guidance in (None, "cfg"):
            latents = {}
            off = two.add_step_hook(lambda task, step, t, x, pipe: latents.update(last=x.clone()))
            try:
                two.generate("a fox", progress=False, guidance=guidance, guidance_scale_2=2.0,
                             **{**SHAPE, "steps": 4})
            finally:
                off()
            finals.append(latents["last"])
        assert torch.equal(finals[0], finals[1])
