"""Few-step presets: a preset plus a distilled LoRA (lightx2v, CausVid, Wan2.2-Lightning style).

``Generator(model="wan2.1-t2v-14b-4step")`` is the 14B preset with the lightx2v step- and
CFG-distilled LoRA loaded at weight 1.0 and the defaults the LoRA was distilled for: 4 steps,
guidance 1.0 (the LoRA has classifier-free guidance baked in: one transformer pass a step) and its
flow shift. A run may still override any of them. The LoRA is fetched in the model's loading
stage and stays on for every run (a run's ``loras={...}`` adds to it); recipes name the variant as
their model, which implies the LoRA, so they list only the LoRAs added to it.

Sources (Hugging Face repo / file; settings as their model cards and workflows use them):

* Wan 2.1 T2V 1.3B: ``Kijai/WanVideo_comfy`` ``Wan21_CausVid_bidirect2_T2V_1_3B_lora_rank32.safetensors``
  (CausVid, bidirectional; CC-BY-NC-4.0, non-commercial), 4 steps, guidance 1, shift 8.
* Wan 2.1 T2V 14B: ``lightx2v/Wan2.1-T2V-14B-StepDistill-CfgDistill-Lightx2v``
  ``loras/Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank64.safetensors``, 4 steps, guidance 1, shift 5.
* Wan 2.1 I2V 14B 480p/720p: ``lightx2v/Wan2.1-I2V-14B-480P-StepDistill-CfgDistill-Lightx2v``
  ``loras/Wan21_I2V_14B_lightx2v_cfg_step_distill_lora_rank64.safetensors``, 4 steps, guidance 1, shift 5.
* Wan 2.2 T2V / I2V A14B: ``lightx2v/Wan2.2-Lightning``, one LoRA per expert
  (``Wan2.2-T2V-A14B-4steps-lora-rank64-Seko-V1.1/{high,low}_noise_model.safetensors``, I2V:
  ``Wan2.2-I2V-A14B-4steps-lora-rank64-Seko-V1/...``), 4 steps, guidance 1 on both experts, shift 5.

The distilled LoRAs were trained against a flow-matching Euler schedule; with the diffusers
repos' UniPC scheduler 4 steps work, and the shift is the knob to turn if motion looks washed out.
``tiny-4step`` is the tests' variant: the tiny model with a random LoRA made for it on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

__all__ = ["FastPreset", "FAST_PRESETS", "SUFFIX", "did_you_mean", "base_preset", "variant_spec", "lora_source", "LORA_NAME"]

SUFFIX = "-4step"
LORA_NAME = "distill"


@dataclass(frozen=True)
class FastPreset:
    base: str                     # the preset (or tiny variant) it extends
    lora: tuple[str, ...]         # one source, or (high-noise, low-noise) for two experts
    steps: int
    guidance: float
    flow_shift: float
    license_note: str = ""


_KIJAI = "Kijai/WanVideo_comfy"
_LX_T2V = "lightx2v/Wan2.1-T2V-14B-StepDistill-CfgDistill-Lightx2v/loras/Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank64.safetensors"
_LX_I2V = "lightx2v/Wan2.1-I2V-14B-480P-StepDistill-CfgDistill-Lightx2v/loras/Wan21_I2V_14B_lightx2v_cfg_step_distill_lora_rank64.safetensors"
_LIGHTNING = "lightx2v/Wan2.2-Lightning"
_T2V_A14B = f"{_LIGHTNING}/Wan2.2-T2V-A14B-4steps-lora-rank64-Seko-V1.1"
_I2V_A14B = f"{_LIGHTNING}/Wan2.2-I2V-A14B-4steps-lora-rank64-Seko-V1"

FAST_PRESETS: dict[str, FastPreset] = {
    "wan2.1-t2v-1.3b-4step": FastPreset("wan2.1-t2v-1.3b",
                                        (f"{_KIJAI}/Wan21_CausVid_bidirect2_T2V_1_3B_lora_rank32.safetensors",),
                                        4, 1.0, 8.0, "CausVid LoRA: CC-BY-NC-4.0 (non-commercial)"),
    "wan2.1-t2v-14b-4step": FastPreset("wan2.1-t2v-14b", (_LX_T2V,), 4, 1.0, 5.0),
    "wan2.1-i2v-14b-480p-4step": FastPreset("wan2.1-i2v-14b-480p", (_LX_I2V,), 4, 1.0, 5.0),
    "wan2.1-i2v-14b-720p-4step": FastPreset("wan2.1-i2v-14b-720p", (_LX_I2V,), 4, 1.0, 5.0),
    "wan2.2-t2v-a14b-4step": FastPreset("wan2.2-t2v-a14b", (f"{_T2V_A14B}/high_noise_model.safetensors",
                                                            f"{_T2V_A14B}/low_noise_model.safetensors"), 4, 1.0, 5.0),
    "wan2.2-i2v-a14b-4step": FastPreset("wan2.2-i2v-a14b", (f"{_I2V_A14B}/high_noise_model.safetensors",
                                                            f"{_I2V_A14B}/low_noise_model.safetensors"), 4, 1.0, 5.0),
    # The tests' variant: a random LoRA written for the tiny transformer (tiny.make_lora) on first use.
    "tiny-4step": FastPreset("tiny", ("<tiny>",), 2, 1.0, 5.0),
}


def base_preset(name: str) -> str:
    """The preset a few-step variant extends (any other name unchanged)."""
    fast = FAST_PRESETS.get(str(name).lower())
    return fast.base if fast else str(name).lower()


def variant_spec(name: str, base: Any) -> Any:
    """The :class:`~wan_nb.models.specs.ModelSpec` of few-step variant ``name``, from its base preset's spec."""
    fast = FAST_PRESETS[name.lower()]
    defaults = dict(base.defaults, steps=fast.steps, guidance_scale=fast.guidance, flow_shift=fast.flow_shift)
    if "guidance_scale_2" in defaults:
        defaults["guidance_scale_2"] = fast.guidance
    return replace(base, name=name.lower(), defaults=defaults)


def lora_source(name: str, pipe: Any = None, cache: Path | None = None) -> Any:
    """What ``Generator.load_lora`` takes for variant ``name``: a path or repo file, or the pair of
    expert files; for ``tiny-4step`` the LoRA file is written for ``pipe``'s transformer first,
    into ``cache`` (wan_nb's cache folder)."""
    fast = FAST_PRESETS[name.lower()]
    if fast.lora == ("<tiny>",):
        from wan_nb.models import tiny

        path = Path(cache) / "models" / f"tiny-4step-lora-v{tiny.TINY_VERSION}.safetensors"
        if not path.is_file():
            tiny.make_lora(pipe.transformer, path.with_suffix(".tmp.safetensors"), seed=4, scale=0.5)
            path.with_suffix(".tmp.safetensors").replace(path)
        return str(path)
    return fast.lora[0] if len(fast.lora) == 1 else tuple(fast.lora)


def attach_lora(model: str, registry: Any, pipe: Any, experts: tuple[str, ...] = (),
                cache: Path | None = None) -> None:
    """Register variant ``model``'s distilled LoRA in ``registry`` (a LoraRegistry) once the pipeline
    is loaded (downloads it if needed); nothing for other models."""
    if model not in FAST_PRESETS or LORA_NAME in registry.entries:
        return
    registry.load(lora_source(model, pipe, cache), LORA_NAME, 1.0, pipe, experts=None, model_experts=experts)


def implied(model: str, name: str) -> bool:
    """True for the distilled LoRA of a few-step variant: the model's name implies it (recipes
    leave it out, reruns keep it on)."""
    return name == LORA_NAME and model in FAST_PRESETS


def run_weights(model: str, registry: Any, weights: dict[str, float]) -> dict[str, float]:
    """A run's LoRA weights: the distilled LoRA stays on unless the run sets its weight itself."""
    entry = registry.entries.get(LORA_NAME) if model in FAST_PRESETS else None
    if entry is None or LORA_NAME in weights:
        return weights
    return {LORA_NAME: entry.weight, **weights}


def did_you_mean(name: str, others: Any = ()) -> str:
    """" Did you mean 'wan2.1-t2v-1.3b'?" for a mistyped model name among ``others`` and the
    few-step presets ('' when nothing is close)."""
    import difflib

    close = difflib.get_close_matches(str(name).lower(), [*others, *FAST_PRESETS], n=3, cutoff=0.75)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
