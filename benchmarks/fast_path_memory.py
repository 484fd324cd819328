"""Memory per quant mode: stored transformer bytes and peak host RSS, against bf16, same process layout.

A mid-size random Wan transformer (the transformer is what quantization shrinks: width 1024, 8
blocks, ffn 4096, text_dim 4096 as UMT5's; ~150 M parameters) is saved once as a diffusers folder,
as a city96-layout GGUF (Q8_0 and Q4_0, written with the ``gguf`` package). Then each mode loads it
in a fresh process through wan_nb's own loader path (``WeightOptions.load``, which
``loading.load_components`` calls for every component), so each peak RSS is that mode's alone:

- ``bf16``: plain ``from_pretrained``;
- ``fp8``: layerwise casting (float8_e4m3fn storage, bf16 compute);
- ``int8``: torchao weight-only int8 while loading;
- ``gguf-Q8_0`` / ``gguf-Q4_0``: ``from_single_file`` + ``GGUFQuantizationConfig``;
- ``nf4``: bitsandbytes, CUDA only (a "skipped" row on a machine without a GPU).

Figures per mode: bytes of the stored weights (``wan_nb.weights.quant.stored_dtypes``: what sits in GPU
memory), their ratio to bf16; host RSS growth over the process's RSS before loading (the
interpreter, torch and diffusers are the same in every process): resident after loading, peak by
the end of loading, peak after one forward pass; forward time and the relative error of the noise
prediction against bf16 (informational on a CPU: GPU speed is the GPU check's ``quant`` section).

    .venv/bin/python benchmarks/fast_path_memory.py [--quick]

``run(quick) -> rows`` is what ``benchmarks/fast_path.py`` calls.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODES = ("bf16", "fp8", "int8", "gguf-Q8_0", "gguf-Q4_0", "nf4")
MID = dict(patch_size=(1, 2, 2), num_attention_heads=8, attention_head_dim=128, in_channels=16, out_channels=16,
           text_dim=4096, freq_dim=256, ffn_dim=4096, num_layers=8, cross_attn_norm=True,
           qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
QUICK = dict(MID, num_layers=2, num_attention_heads=4)


class PeakRss:
    """Highest RSS seen while the block runs, sampled every 2 ms (ru_maxrss would also count the
    import peak, which comes before and would hide a small model's loading)."""

    def __enter__(self) -> "PeakRss":
        import threading

        self.peak, self._stop = _current_rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _current_rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _current_rss_mb())


def _current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _param_count(config: dict) -> dict[str, int]:
    import torch
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        model = WanTransformer3DModel(**config)
    return {"transformer": sum(p.numel() for p in model.parameters())}


def prepare(folder: Path, config: dict) -> None:
    """The random transformer as a diffusers folder and as GGUF files of two quant types."""
    import torch
    from diffusers import WanTransformer3DModel

    from wan_nb.weights import gguf as gguf_files
    from wan_nb.weights.single_file import original_state_dict

    torch.manual_seed(0)
    model = WanTransformer3DModel(**config).to(torch.bfloat16).eval()
    model.save_pretrained(folder / "transformer")
    state = original_state_dict(model)
    for qtype in ("Q8_0", "Q4_0"):
        gguf_files.write(state, folder / f"transformer-{qtype}.gguf", qtype=qtype)


def _inputs(config: dict):
    import torch

    gen = torch.Generator().manual_seed(1)
    latents = torch.randn(1, config["in_channels"], 3, 16, 16, generator=gen).to(torch.bfloat16)
    text = torch.randn(1, 64, config["text_dim"], generator=gen).to(torch.bfloat16)
    return latents, torch.tensor([700]), text


def one(mode: str, folder: Path, config: dict) -> dict:
    """Load ``mode`` the way the loader does, one forward pass; runs in its own process."""
    import torch
    from diffusers import WanTransformer3DModel

    from wan_nb.weights import quant
    from wan_nb.weights import options as weights

    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    before = _current_rss_mb()
    if mode == "nf4" and not torch.cuda.is_available():
        return {"mode": mode, "status": "skipped: needs a CUDA GPU (bitsandbytes)"}
    if mode.startswith("gguf-"):
        options = weights.WeightOptions(modes={"transformer": "gguf"},
                                        files={"transformer": folder / f"transformer-{mode[5:]}.gguf"})
    else:
        options = weights.WeightOptions(modes={} if mode == "bf16" else {"transformer": mode})
    started = time.perf_counter()
    with PeakRss() as loading:
        model = options.load("transformer", WanTransformer3DModel, folder, {"subfolder": "transformer",
                                                                            "torch_dtype": torch.bfloat16}, torch.bfloat16)
    load_s = time.perf_counter() - started
    after_load, load_peak = _current_rss_mb(), loading.peak
    stored = quant.stored_dtypes(model)
    inputs = _inputs(config)
    with torch.no_grad(), PeakRss() as forward:
        started = time.perf_counter()
        out = model(*inputs, return_dict=False)[0].float()
        forward_s = time.perf_counter() - started
    torch.save(out, folder / f"out-{mode}.pt")
    return {"mode": mode, "status": "ok", "stored_mb": round(sum(stored.values()) / 2**20, 1),
            "stored_kinds": {k: round(v / 2**20, 1) for k, v in sorted(stored.items(), key=lambda kv: -kv[1])},
            "load_s": round(load_s, 2), "forward_s": round(forward_s, 2), "rss_before_mb": round(before, 1),
            "resident_mb": round(after_load - before, 1), "load_peak_growth_mb": round(max(0.0, load_peak - before), 1),
            "peak_growth_mb": round(max(0.0, forward.peak - before), 1),
            "peak_rss_mb": round(max(load_peak, forward.peak), 1)}


def run(quick: bool = False) -> list[dict]:
    import wan_nb  # noqa: F401  (first: its filters quiet torchao's CPU-only notices)
    import torch

    config = QUICK if quick else MID
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="fast_path_memory_") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        prepare(folder, config)
        print(f"  prepared folder and GGUF files in {time.perf_counter() - started:.1f} s", flush=True)
        for mode in MODES:
            proc = subprocess.run([sys.executable, __file__, "--one", mode, "--folder", str(folder),
                                   *(["--quick"] if quick else [])], capture_output=True, text=True, timeout=600,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
            if proc.returncode != 0:
                rows.append({"mode": mode, "status": "failed: " + proc.stderr.strip().splitlines()[-1][:200]})
                continue
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        base = next(r for r in rows if r["mode"] == "bf16")
        reference = torch.load(folder / "out-bf16.pt")
        for row in rows:
            if row.get("status") != "ok":
                continue
            row["stored_vs_bf16"] = round(row["stored_mb"] / base["stored_mb"], 3)
            row["load_peak_vs_bf16"] = (round(row["load_peak_growth_mb"] / base["load_peak_growth_mb"], 3)
                                        if base["load_peak_growth_mb"] > 0 else None)
            out = torch.load(folder / f"out-{row['mode']}.pt")
            row["rel_error"] = round(float((out - reference).norm() / reference.norm()), 4)
    return rows


def print_rows(rows: list[dict]) -> None:
    columns = ["mode", "status", "stored_mb", "stored_vs_bf16", "resident_mb", "load_peak_growth_mb",
               "load_peak_vs_bf16", "peak_growth_mb", "load_s", "forward_s", "rel_error"]
    table = [columns] + [["" if r.get(c) is None else str(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(columns))]
    for n, line in enumerate(table):
        print("  " + "  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip())
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))
    for r in rows:
        if r.get("stored_kinds"):
            print(f"  {r['mode']}: stored {r['stored_kinds']}")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 2-block transformer (checks the script)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    config = QUICK if args.quick else MID
    if args.one:
        from wan_nb.protocol import quiet_imports

        quiet_imports.install()
        print(json.dumps(one(args.one, args.folder, config)))
        return []
    rows = run(args.quick)
    params = sum(v for v in _param_count(config).values())
    print(f"\nfast path memory: random Wan transformer (width {config['num_attention_heads'] * 128}, "
          f"{config['num_layers']} blocks, {params / 1e6:.0f} M parameters), one process per mode; "
          "resident = RSS after loading - before (safetensors pages are mapped, counted once touched); load peak "
          "growth = peak RSS by the end of loading - before; peak growth = the same after one forward pass")
    print_rows(rows)
    return rows


if __name__ == "__main__":
    main()
