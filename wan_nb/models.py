"""Which model to run and how to load it: the built-in ``tiny`` model, presets, local folders.

``resolve(name)`` turns what the user typed into a :class:`ModelSpec`; ``load_pipeline(spec,
...)`` returns a ready diffusers pipeline, reporting progress through ``report``.

The ``tiny`` model is a real ``WanPipeline`` with random weights, built in code once, written
with ``save_pretrained`` to the cache and from then on loaded with ``from_pretrained`` exactly
like a downloaded model: the loading code path is the real one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

__all__ = ["ModelSpec", "resolve", "load_pipeline", "cache_dir", "build_tiny"]

TINY_VERSION = 1

# report(kind, **fields): kind is "stage" (stage=..., message=...) or "loading"
# (progress=..., status=..., component=..., bytes_downloaded=..., bytes_total=...).
Report = Callable[..., None]


@dataclass(frozen=True)
class ModelSpec:
    """Everything the generator needs to know about a model before loading it."""

    name: str                      # what the user asked for ("tiny", a preset, a repo id, a path)
    source: str                    # repo id or local folder that from_pretrained reads
    pipeline_class: str = "WanPipeline"
    defaults: dict[str, Any] = field(default_factory=dict)
    spatial_factor: int = 16       # height and width must be multiples (VAE factor x patch size)
    temporal_factor: int = 4       # num_frames must be temporal_factor * k + 1
    is_local: bool = False
    kind: str = "t2v"              # "t2v" | "i2v" | "ti2v"
    builder: str | None = None     # name of the built-in builder for tiny models

    @property
    def accepts_image(self) -> bool:
        return self.kind in ("i2v", "ti2v")


TINY_DEFAULTS = {"height": 32, "width": 32, "num_frames": 9, "steps": 4, "guidance_scale": 1.0,
                 "fps": 8, "negative_prompt": "", "flow_shift": 3.0}


def cache_dir() -> Path:
    """Where wan_nb keeps built-in models and learned timings (``WAN_NB_CACHE`` overrides)."""
    root = os.environ.get("WAN_NB_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wan_nb"


_BUILTIN = {
    "tiny": ModelSpec(name="tiny", source="", defaults=TINY_DEFAULTS, is_local=True, builder="tiny"),
}


def resolve(model: str | os.PathLike) -> ModelSpec:
    """Map a model name, preset, repo id or folder to a :class:`ModelSpec`."""
    name = str(model)
    if name in _BUILTIN:
        spec = _BUILTIN[name]
        return replace(spec, source=str(cache_dir() / "models" / f"{name}-v{TINY_VERSION}"))
    path = Path(name).expanduser()
    if path.is_dir():
        return _spec_from_folder(name, path)
    raise ValueError(
        f"model={name!r} is neither a built-in model ({', '.join(sorted(_BUILTIN))}) nor a diffusers "
        f"folder with a model_index.json. Pass model='tiny' to try wan_nb without a download.")


def _spec_from_folder(name: str, path: Path) -> ModelSpec:
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise ValueError(f"model={name!r}: {path} has no model_index.json; point at a diffusers folder "
                         "(the one saved with save_pretrained or downloaded from the Hub).")
    index = json.loads(index_file.read_text())
    cls = index.get("_class_name", "WanPipeline")
    kind = "i2v" if "ImageToVideo" in cls else "t2v"
    return ModelSpec(name=name, source=str(path), pipeline_class=cls, defaults=dict(TINY_DEFAULTS),
                     is_local=True, kind=kind)


# ---------------------------------------------------------------------------------------------
# The built-in tiny model
# ---------------------------------------------------------------------------------------------
_build_lock = threading.Lock()


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # A word-level vocabulary made from letters and common words: deterministic, no download.
    words = ["<pad>", "</s>", "<unk>"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    words += ("a the of and in on with red blue green fox cat dog snow sea sky city night day "
              "running walking flying car bird tree forest mountain river light dark").split()
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=64)


def _tiny_components(seed: int = 0) -> dict[str, Any]:
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    tokenizer = _tiny_tokenizer()
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=16,
        out_channels=16, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=TINY_DEFAULTS["flow_shift"])
    return {"tokenizer": tokenizer, "text_encoder": text_encoder.eval(), "vae": vae.eval(),
            "transformer": transformer.eval(), "scheduler": scheduler}


def build_tiny(target: Path) -> Path:
    """Write the tiny model to ``target`` with ``save_pretrained`` (once; atomic)."""
    from diffusers import WanPipeline

    with _build_lock:
        if (target / "model_index.json").is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        try:
            WanPipeline(**_tiny_components()).save_pretrained(staging)
            try:
                staging.rename(target)
            except OSError:  # another process finished first: theirs is identical
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def load_pipeline(spec: ModelSpec, *, device: str, dtype: Any, report: Report) -> Any:
    """Load ``spec`` onto ``device`` in ``dtype``, reporting progress per component."""
    import diffusers

    if spec.builder == "tiny":
        build_tiny(Path(spec.source))
    pipeline_cls = getattr(diffusers, spec.pipeline_class, None) or diffusers.DiffusionPipeline
    report("loading", progress=0.0, status=f"Loading {spec.name} from {spec.source}")
    pipe = pipeline_cls.from_pretrained(spec.source, torch_dtype=dtype)
    report("loading", progress=90.0, status=f"Moving {spec.name} to {device}")
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    report("loading", progress=100.0, status="Model loaded")
    return pipe
