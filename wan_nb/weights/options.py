"""How each component's weights are loaded: quantized (``quant=``) or from a single file (``transformer=``).

``resolve(model, quant=, transformer=, device=)`` runs when a Generator is made: it parses both
arguments, checks that this machine can run every mode, reads each file's header and checks its
architecture against the model (``model=`` may itself be a checkpoint file: its preset is found
from its shapes). All of that is cheap and comes before any download, so bad input is refused
first. The :class:`WeightOptions` it returns then drives the loader (:meth:`WeightOptions.load`,
called by ``loading.load_components`` for every component), tells the download which weights to
leave out (a transformer given as a file is not downloaded), and describes itself for the recipe.

Two experts (Wan 2.2 A14B): ``transformer=(high_noise_file, low_noise_file)`` (either may be None:
that expert comes from the model's own files), or ``quant={"transformer": "gguf:high.gguf",
"transformer_2": "gguf:low.gguf"}``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from wan_nb.weights import quant as _quant
from wan_nb.weights import single_file

__all__ = ["WeightOptions", "resolve", "model_spec", "for_model", "for_options", "check_offload", "placeable", "refuse_for_pipeline", "recipe_fields", "generator_args", "key_fields", "check_rerun",
           "NONE"]

EXPERTS = ("transformer", "transformer_2")


@dataclass(frozen=True)
class WeightOptions:
    """Per component: a quant mode (``fp8`` / ``int8`` / ``nf4`` / ``gguf``) and/or a single file."""

    modes: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, Path] = field(default_factory=dict)
    two_experts: bool = False   # so that "transformer" alone is not read back as both experts

    def __bool__(self) -> bool:
        return bool(self.modes or self.files)

    def skip_patterns(self) -> list[str]:
        """Download patterns of weights replaced by files (the file's config.json is still fetched)."""
        return [f"{name}/*.safetensors" for name in self.files]

    def sizes(self) -> dict[str, int]:
        return {name: path.stat().st_size for name, path in self.files.items() if path.is_file()}

    def as_arguments(self) -> dict[str, Any]:
        """``quant=`` / ``transformer=`` that rebuild these options (a Ray worker's Generator)."""
        quant: dict[str, Any] = {n: m for n, m in self.modes.items() if m != "gguf"}
        quant.update({n: f"gguf:{p}" for n, p in self.files.items() if p.suffix.lower() == ".gguf"})
        if self.two_experts and "transformer" in quant and "transformer_2" not in quant:
            quant["transformer_2"] = None  # the low-noise expert as the model ships it
        plain = {n: str(p) for n, p in self.files.items() if p.suffix.lower() != ".gguf"}
        transformer: Any = None
        if plain:
            transformer = plain["transformer"] if list(plain) == ["transformer"] else (
                plain.get("transformer"), plain.get("transformer_2"))
        return {"quant": quant or None, "transformer": transformer}

    def recipe_fields(self) -> dict[str, Any]:
        """``quant`` ({component: mode}) and ``files`` ({component: {path, sha256}}) for a recipe."""
        from wan_nb.runs.file_digest import file_sha256

        return {"quant": dict(self.modes) or None,
                "files": {name: {"path": str(path), "sha256": file_sha256(path)}
                          for name, path in self.files.items()} or None}

    def load(self, name: str, cls: Any, folder: Path, kwargs: dict[str, Any], dtype: Any) -> Any:
        """Load component ``name`` of ``folder`` as these options say (``kwargs``: from_pretrained's)."""
        mode, path = self.modes.get(name), self.files.get(name)
        library = "diffusers" if cls.__module__.startswith("diffusers") else "transformers"
        if path is not None and name == "text_encoder":
            from wan_nb.weights.gguf import load_text_encoder

            return load_text_encoder(path, cls, folder, component=name, dtype=dtype)
        if path is not None:
            single_file.check(path, _FolderSpec(folder), folder=folder, component=name)
            if mode == "gguf":
                from wan_nb.weights.gguf import load_transformer as load_gguf

                return load_gguf(path, cls, folder, component=name, dtype=dtype)
            # int8: from_single_file takes a TorchAoConfig but leaves the weights as they are
            # (diffusers 0.42), so torchao quantizes the loaded model instead.
            extra = _quant.load_kwargs(mode, library, dtype) if mode and mode != "int8" else {}
            part = single_file.load_transformer(path, cls, folder, component=name, dtype=dtype,
                                                quantization_config=extra.get("quantization_config"))
            if mode == "int8":
                _quant.quantize_int8(part)
        else:
            extra = _quant.load_kwargs(mode, library, dtype) if mode else {}
            part = cls.from_pretrained(folder, **kwargs, **extra)
        if mode:
            _quant.after_load(part, mode, dtype)
        return part


NONE = WeightOptions()


def placeable(weights: WeightOptions | None, load_options: Any) -> Any:
    """``load_options`` (a :class:`~wan_nb.core.engine.LoadOptions`), once its offload mode can place
    ``weights`` (:func:`check_offload`)."""
    check_offload(weights, load_options.offload)
    return load_options


def check_offload(weights: WeightOptions | None, offload: str) -> None:
    """Refuse an offload mode these weights cannot be placed with, before anything is loaded.

    ``sequential`` is accelerate's ``cpu_offload``: it re-creates every parameter as
    ``type(param)(data, requires_grad=...)`` when it moves it, and a diffusers ``GGUFParameter``
    made that way has lost its quant type, so the first forward fails after every weight was read
    (``KeyError: None`` on a GPU; diffusers #14691). ``group`` and ``model`` move whole modules
    and keep the parameters as they are.
    """
    if offload != "sequential" or not weights:
        return
    gguf = [f"{name} ({weights.files[name].name})" if name in weights.files else name
            for name, mode in weights.modes.items() if mode == "gguf"]
    if gguf:
        raise ValueError(f"offload='sequential' cannot place GGUF weights ({', '.join(gguf)}): accelerate "
                         "rebuilds each parameter layer by layer and drops its GGUF quant type (diffusers "
                         "#14691). Use offload='group' (about as little GPU memory) or offload='model' (where "
                         "plan='auto' chose sequential, pass offload='group' in its place).")


@dataclass(frozen=True)
class _FolderSpec:
    """Just enough of a ModelSpec for the load-time check (the folder's config decides)."""

    folder: Path

    @property
    def name(self) -> str:
        return str(self.folder)


def _transformer_files(transformer: Any, two_experts: bool) -> dict[str, Path]:
    if transformer is None:
        return {}
    if isinstance(transformer, (str, os.PathLike)):
        if two_experts:
            raise ValueError("this model has two experts (high noise, low noise): pass "
                             "transformer=(HIGH_NOISE_FILE, LOW_NOISE_FILE); None in either place keeps "
                             "that expert from the model's own files")
        files = {"transformer": transformer}
    elif isinstance(transformer, Mapping):
        files = dict(transformer)
    elif isinstance(transformer, (tuple, list)):
        if not two_experts:
            raise ValueError(f"transformer= got {len(transformer)} files, but this model has one transformer; "
                             "pass one file")
        if len(transformer) != 2:
            raise ValueError("transformer=(HIGH_NOISE_FILE, LOW_NOISE_FILE): give exactly two (None keeps one)")
        files = dict(zip(EXPERTS, transformer))
    else:
        raise ValueError(f"transformer={transformer!r}: pass the path of a .safetensors or .gguf file")
    allowed = EXPERTS if two_experts else EXPERTS[:1]
    out = {}
    for name, value in files.items():
        if name not in allowed:
            raise ValueError(f"transformer=: {name!r} is not a transformer of this model ({', '.join(allowed)})")
        if value is None:
            continue
        if not single_file.is_checkpoint(value):
            raise ValueError(f"transformer={str(value)!r}: pass a .safetensors or .gguf file (a diffusers "
                             "folder goes in model=)")
        out[name] = Path(value).expanduser().resolve()
    return out


def resolve(model: Any, *, quant: Any = None, transformer: Any = None, device: Any = "auto") -> tuple[Any, WeightOptions]:
    """(ModelSpec, WeightOptions) in one call: :func:`model_spec`, then :func:`for_model`."""
    spec, transformer = model_spec(model, transformer)
    return spec, for_model(spec, quant=quant, transformer=transformer, device=device)


def model_spec(model: Any, transformer: Any = None) -> tuple[Any, Any]:
    """(ModelSpec, transformer=) for ``model=``; a transformer file given as the model names its
    preset by its shapes and becomes the ``transformer=``."""
    from wan_nb.models import specs as models

    if single_file.is_checkpoint(model):
        if transformer is not None:
            raise ValueError(f"model={str(model)!r} is a transformer file and transformer= names another; "
                             "pass model=PRESET with transformer=FILE, or the file alone as model=")
        transformer = model
        model = single_file.detect(model)  # also refuses a file that is no Wan transformer
    return models.resolve(model), transformer


def for_model(spec: Any, *, quant: Any = None, transformer: Any = None, device: Any = "auto") -> WeightOptions:
    """The WeightOptions of ``quant=`` / ``transformer=`` for ``spec``: the one resolution a Generator
    makes (after plan="auto" chose its quant); every check that needs no loading is done here."""
    two_experts = len(spec.experts) >= 2
    files = _transformer_files(transformer, two_experts)
    modes = _quant.parse(quant, two_experts=two_experts)
    plain_mode = quant if isinstance(quant, (str, os.PathLike)) else None
    for name, mode in list(modes.items()):
        if mode.startswith(_quant.GGUF_PREFIX):
            if name in files:
                raise ValueError(f"{name}: both transformer= ({files[name].name}) and quant='gguf:...' name a "
                                 "file; give it once")
            files[name] = Path(mode[len(_quant.GGUF_PREFIX):])
            modes[name] = "gguf"
    for name, path in files.items():
        if path.suffix.lower() == ".gguf":
            explicit = modes.get(name) not in (None, "gguf") and plain_mode is None
            if explicit:
                raise ValueError(f"{name}: {path.name} is a GGUF file, already quantized; drop quant[{name!r}]")
            modes[name] = "gguf"
    _quant.check_runnable(modes, device)
    for name, path in files.items():
        if name == "text_encoder":
            from wan_nb.weights.gguf import check_text_encoder

            check_text_encoder(path, _text_encoder_config(spec))
        else:
            single_file.check(path, spec, component=name)
    return WeightOptions(modes=dict(sorted(modes.items())), files=dict(sorted(files.items())),
                         two_experts=two_experts)


def _text_encoder_config(spec: Any) -> Mapping[str, Any] | None:
    """The text encoder's shape before loading: a local folder's config, UMT5-XXL for presets,
    None where only the loaded folder can tell (a tiny model not built yet, a repo not downloaded)."""
    import json

    folder = Path(spec.source) if spec.is_local else None
    config_file = folder / "text_encoder" / "config.json" if folder is not None else None
    if config_file is not None and config_file.is_file():
        return json.loads(config_file.read_text())
    if spec.preset:
        from wan_nb.weights.gguf import UMT5_XXL

        return UMT5_XXL
    return None


def refuse_for_pipeline(quant: Any, transformer: Any) -> WeightOptions:
    """``Generator.from_pipeline`` uses the pipeline as built: quant= / transformer= cannot apply."""
    if quant is not None or transformer is not None:
        raise ValueError("quant= and transformer= apply when wan_nb loads the model; a pipeline you pass in is "
                         "used as built (quantize its components before Generator.from_pipeline)")
    return NONE


def for_options(spec: Any, options: Any) -> WeightOptions | None:
    """The weights a :class:`~wan_nb.core.engine.LoadOptions` carries (None: the model as it ships).
    Resolved once, when the Generator was made; nothing is parsed again here (``spec``: unused,
    kept for callers of the earlier signature). The offload check runs again: a Ray worker's
    options were never checked in its own process."""
    weights = getattr(options, "weights", None) or None
    check_offload(weights, getattr(options, "offload", "none"))
    return weights


# ---------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------
def recipe_fields(options: WeightOptions | None) -> dict[str, Any]:
    """``quant`` ({component: mode}) and ``files`` ({component: {path, sha256}}) for a recipe; {} if none."""
    return options.recipe_fields() if options else {}


def key_fields(recipe: Mapping[str, Any]) -> dict[str, Any] | None:
    """What of the weights decides the video (see :func:`wan_nb.recipe.weights_key`)."""
    from wan_nb.runs.recipe import weights_key

    return weights_key(recipe)


def generator_args(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """``quant=`` / ``transformer=`` that make a Generator like the one that made ``recipe``."""
    modes, files = dict(recipe.get("quant") or {}), recipe.get("files") or {}
    paths = {name: Path(entry["path"]) for name, entry in files.items()}
    try:
        from wan_nb.models.specs import resolve as resolve_model

        two_experts = len(resolve_model((recipe.get("model") or {}).get("name") or "tiny").experts) >= 2
    except ValueError:
        two_experts = "transformer_2" in modes or "transformer_2" in paths
    return WeightOptions(modes=modes, files=paths, two_experts=two_experts).as_arguments()


def check_rerun(generator: Any, recipe: Mapping[str, Any]) -> None:
    """Refuse a rerun on a generator whose weights differ from the recipe's (naming the Generator to make)."""
    from wan_nb.runs.recipe import RecipeError

    want = key_fields(recipe)
    have = key_fields(recipe_fields(getattr(generator, "weights", None)))
    if want == have:
        return
    have_files = (have or {}).get("files") or {}
    for name, entry in (recipe.get("files") or {}).items():
        if not Path(entry["path"]).is_file():
            raise RecipeError(f"this recipe's {name} file {entry['path']} is no longer there; put it back "
                              "to remake the video")
        if name in have_files and have_files[name] != entry.get("sha256"):
            raise RecipeError(f"the {name} file differs from the one this recipe was made with (sha256 "
                              f"{str(have_files[name])[:12]}…, recorded {str(entry.get('sha256'))[:12]}…); "
                              f"put the original back at {entry['path']}")
    arguments = ", ".join(f"{k}={v!r}" for k, v in generator_args(recipe).items() if v is not None)
    raise RecipeError(f"this recipe was made with other weights ({arguments or 'no quant, no files'}); "
                      f"use Generator(model={generator.model!r}{', ' + arguments if arguments else ''}).rerun(...)")
