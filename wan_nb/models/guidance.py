"""Guidance methods: how a step's conditional and unconditional predictions become one.

``generate(..., guidance="apg", guidance_options={"eta": 0.0})`` names one of diffusers' guiders
(``diffusers.guiders``); ``guidance=None`` (the default) keeps the pipeline's own classic CFG.
The options are the guider's own ``__init__`` arguments, except ``guidance_scale`` (the generation
argument ``guidance_scale=``, and ``guidance_scale_2=`` for the low-noise expert, stay its owners)
and ``enabled``. How a guider reaches the diffusers pipeline's loop: :mod:`wan_nb.models.guided_call`.

Everything here runs at submit, before any model work: an unknown name, an option the guider
does not take, a value it rejects, or a run that makes no unconditional pass (guidance_scale 1,
as the few-step presets use) is refused with the fix named. Importing the guider classes to read
their signatures loads torch and diffusers, so it is done only when a method is named.
"""

from __future__ import annotations

import inspect
import json
import logging
import numbers
from typing import Any, Mapping

from wan_nb.protocol.errors import InvalidParameter

__all__ = ["GUIDERS", "EXTRA_PASS", "DEFAULT_LAYER", "WAN_DEFAULTS", "check_guidance", "guider_class", "build_guider",
           "accepted_options", "describe", "options_text"]

# name -> diffusers.guiders class. Each combines the conditional and unconditional predictions of
# a step; the last two also run a third, perturbed conditional pass (EXTRA_PASS).
GUIDERS: dict[str, str] = {
    "cfg": "ClassifierFreeGuidance",
    "cfg-zero-star": "ClassifierFreeZeroStarGuidance",
    "apg": "AdaptiveProjectedGuidance",
    "tangential": "TangentialClassifierFreeGuidance",
    "magnitude-aware": "MagnitudeAwareGuidance",
    "skip-layer": "SkipLayerGuidance",
    "perturbed-attention": "PerturbedAttentionGuidance",
}
# The guiders' option naming the blocks their extra pass perturbs.
EXTRA_PASS: dict[str, str] = {"skip-layer": "skip_layer_guidance_layers",
                              "perturbed-attention": "perturbed_guidance_layers"}
_CONFIG_OPTION = {"skip-layer": "skip_layer_config", "perturbed-attention": "perturbed_guidance_config"}
# The block skipped (or whose self-attention is made the identity) when no layers are given:
# Wan2GP's and Kijai's WanVideoWrapper's default skip-layer block for Wan 2.1 (30/40 blocks).
# A transformer with fewer blocks uses its middle one (wan_nb.models.guided_call).
DEFAULT_LAYER = 9
# Where diffusers' defaults do nothing on a Wan run, Wan users' defaults, filled into the run's
# options (so its recipe records them): APG's eta=1 keeps the parallel component and equals CFG
# until the update's norm passes 15 (the APG paper drops it: eta 0); skip-layer's SD 3.5 window
# (steps 1 %-20 %) holds no step of a short run: Wan2GP's 10 %-90 %, for perturbed attention too.
WAN_DEFAULTS: dict[str, dict[str, Any]] = {
    "apg": {"eta": 0.0},
    "skip-layer": {"skip_layer_guidance_start": 0.1, "skip_layer_guidance_stop": 0.9},
    "perturbed-attention": {"perturbed_guidance_start": 0.1, "perturbed_guidance_stop": 0.9},
}
# Options another argument owns: the fix each error names.
_OWNED = {"guidance_scale": "set it with guidance_scale= (and guidance_scale_2= for the low-noise expert)",
          "enabled": "leave guidance= out (None) for the pipeline's own classic CFG"}


class _ExperimentalNotice(logging.Filter):
    """diffusers warns "Guiders are currently an experimental feature" on every guider built; a
    grid of guidance methods would print it per cell. The API is pinned by our tests instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "experimental feature" not in record.getMessage()


_quieted = False


def guider_class(name: str) -> Any:
    global _quieted
    import diffusers.guiders

    if not _quieted:
        logging.getLogger("diffusers.guiders.guider_utils").addFilter(_ExperimentalNotice())
        _quieted = True
    return getattr(diffusers.guiders, GUIDERS[name])


def accepted_options(name: str) -> list[str]:
    """The options guider ``name`` takes: its ``__init__`` arguments less the owned ones."""
    parameters = inspect.signature(guider_class(name).__init__).parameters
    return [p for p in parameters if p != "self" and p not in _OWNED]


def _layers(value: Any) -> list[int]:
    return [value] if isinstance(value, int) else list(value)


def build_guider(name: str, options: Mapping[str, Any], guidance_scale: float,
                 default_layers: list[int] | None = None) -> Any:
    """The diffusers guider of a run (one per transformer: each expert has its own scale)."""
    kwargs = dict(options)
    if name in EXTRA_PASS:
        layers_option, config_option = EXTRA_PASS[name], _CONFIG_OPTION[name]
        if kwargs.get(config_option) is None:
            layers = kwargs.pop(layers_option, None)
            layers = _layers(layers) if layers is not None else (default_layers or [DEFAULT_LAYER])
            if name == "skip-layer":
                # diffusers 0.42 builds LayerSkipConfig(layer) per layer, whose ``indices`` is then an
                # int and fails when applied (len() of an int): one config naming the list instead,
                # with the guider's defaults for what is skipped (attention and feed-forward).
                kwargs[config_option] = {"indices": layers, "fqn": "blocks"}
            else:
                kwargs[layers_option] = layers
    return guider_class(name)(guidance_scale=guidance_scale, **kwargs)


def _json_safe(value: Any) -> bool:
    try:
        return json.loads(json.dumps(value, allow_nan=False)) == value
    except (TypeError, ValueError):
        return False


def check_guidance(name: Any, options: Any, guidance_scale: float, *,
                   few_step: bool = False) -> tuple[str | None, dict[str, Any] | None]:
    """``(name, options)`` validated before any model work; raises ``InvalidParameter``."""
    if name is None or name is False:
        if options:
            raise InvalidParameter("guidance_options", options, "applies to a guidance method; pass "
                                   "guidance='cfg' (or another: " + ", ".join(GUIDERS) + ") with it, or drop it")
        return None, None
    if not isinstance(name, str) or name.strip().lower() not in GUIDERS:
        raise InvalidParameter("guidance", name, "choose one of " + ", ".join(map(repr, GUIDERS))
                               + " (or None for the pipeline's classic CFG)")
    name = name.strip().lower()
    if options is None:
        options = {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise InvalidParameter("guidance_options", options, "must be a dict of option name -> value, e.g. "
                               "{'start': 0.1}; the options of " + repr(name) + ": " + ", ".join(accepted_options(name)))
    if guidance_scale <= 1.0:
        why = ("this few-step model has classifier-free guidance distilled into its LoRA (guidance_scale=1: "
               "one transformer pass a step, no unconditional prediction)") if few_step else \
            f"guidance_scale={guidance_scale:g} makes no unconditional pass for it to combine"
        raise InvalidParameter("guidance", name, f"needs the conditional and unconditional predictions, but {why}; "
                               "set guidance_scale=5.0 (any value above 1) or drop guidance=")
    accepted = accepted_options(name)
    for key in options:
        if key in _OWNED:
            raise InvalidParameter("guidance_options", dict(options), f"{key!r} is not a guidance option here: {_OWNED[key]}")
        if key not in accepted:
            raise InvalidParameter("guidance_options", dict(options), f"{GUIDERS[name]} ({name!r}) takes no option "
                                   f"{key!r}; it takes: {', '.join(accepted)}")
        if not _json_safe(options[key]):
            raise InvalidParameter("guidance_options", dict(options), f"the value of {key!r} must be JSON (numbers, "
                                   "booleans, text, lists, dicts; a LayerSkipConfig as its dict) so the recipe "
                                   "can record it")
    given = {**WAN_DEFAULTS.get(name, {}), **options}
    checked = {k: given[k] for k in sorted(given)}
    layers = checked.get(EXTRA_PASS.get(name, ""))
    if layers is not None and not (isinstance(layers, numbers.Integral) and not isinstance(layers, bool) and layers >= 0
                                   or isinstance(layers, list) and layers and all(
                                       isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in layers)):
        raise InvalidParameter("guidance_options", checked, f"{EXTRA_PASS[name]!r} takes a block index or a "
                               f"non-empty list of them (Wan's blocks are blocks.0 ... blocks.N-1), e.g. [{DEFAULT_LAYER}]")
    try:  # the guider checks its own values (ranges, exclusive options) when built
        build_guider(name, checked, guidance_scale)
    except (TypeError, ValueError) as exc:
        raise InvalidParameter("guidance_options", checked, f"{GUIDERS[name]} refused them: {exc}") from None
    return name, checked


def options_text(options: Mapping[str, Any] | None) -> str:
    """``"eta=0, start=0.1"`` (``""`` for none)."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in (options or {}).items())


def describe(name: str | None, options: Mapping[str, Any] | None = None) -> str:
    """A short label: ``"apg (eta=0)"``, ``"classic CFG"`` for None."""
    if not name:
        return "classic CFG"
    shown = options_text(options)
    return f"{name} ({shown})" if shown else name
