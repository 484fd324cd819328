"""Issue 27's attacks on inputs and recipes, measured: wall time, peak memory and outcome of each,
beside a control (the same call with a harmless input) run the same way on the same machine.

Every case runs in a process of its own (peak RSS: the child's VmHWM), on the tiny model:

- ``long_video``: ``video=`` a 10,000-frame 160x96 MP4, ``num_frames=9`` (control: a 9-frame MP4);
- ``text_video``: ``video=`` a 400-line text file (control: the 9-frame MP4);
- ``huge_output``: ``height=4096, width=4096, num_frames=1025`` checked (control: 32x32x9);
- ``huge_tag``: ``wan_nb.recipe()`` of an MP4 whose tag is a 20 MB recipe (control: a 1 KB one);
- ``deep_tag``: ``wan_nb.recipe()`` of ``[`` x 100,000;
- ``sparse_lora``: ``gen.rerun`` of a run whose LoRA file became a 4 GB sparse file (bytes read
  from /proc/self/io; control: the rerun with the original file back).

    .venv/bin/python benchmarks/attacks_inputs.py [--only long_video,huge_tag]
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
os.environ.setdefault("WAN_NB_CACHE", str(ROOT / ".cache" / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
CASES = ("long_video", "text_video", "huge_output", "huge_tag", "deep_tag", "sparse_lora")


def _encode(path: Path, frames: int, size: str = "160x96") -> Path:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=size={size}:rate=16", "-frames:v", str(frames), "-c:v", "libx264", "-preset",
                    "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def _peak_rss_kb() -> int:
    """This process's peak resident memory (VmHWM: reset at exec, unlike ru_maxrss, which a child
    inherits from the parent it was forked from)."""
    with open("/proc/self/status") as handle:
        return int(next(line for line in handle if line.startswith("VmHWM:")).split()[1])


def _read_bytes() -> int:
    with open("/proc/self/io") as handle:
        return int(next(line for line in handle if line.startswith("rchar:")).split()[1])


def _outcome(call) -> str:
    try:
        value = call()
    except BaseException as exc:   # the outcome is the figure: any exception type is reported
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:110]}" if str(exc) else type(exc).__name__
    return "accepted" if value is not None else "None"


def _tagged(case: str, attack: bool, path: Path) -> Path:
    from _recipe_helpers import tagged_mp4

    if case == "huge_tag":
        text = json.dumps({"format": "wan_nb.recipe/1", "prompt": "a fox " * (3_500_000 if attack else 100)})
    else:
        text = "[" * 100_000 if attack else json.dumps({"format": "wan_nb.recipe/1", "prompt": "a fox"})
    return tagged_mp4(path, text)


def run_case(case: str, arm: str, work: Path) -> dict:
    """One case in this process; ``arm`` is ``attack`` or ``control``."""
    from wan_nb import Generator

    attack = arm == "attack"
    setup_reads = 0
    if case in ("long_video", "text_video", "huge_output"):
        gen = Generator("tiny", runs_dir=work / "runs", previews=False)
        if case == "long_video":
            clip = _encode(work / "clip.mp4", 10_000 if attack else 9)
            call = lambda: gen.check("a fox", video=clip, num_frames=9, strength=0.5)["video"].sha256  # noqa: E731
        elif case == "text_video":
            notes = work / "notes.txt"
            notes.write_text("shopping list: eggs, milk, bread\n" * 400)
            clip = notes if attack else _encode(work / "clip.mp4", 9, "32x32")
            call = lambda: gen.check("a fox", video=clip, strength=0.5)  # noqa: E731
        else:
            size = dict(height=4096, width=4096, num_frames=1025) if attack else dict(height=32, width=32, num_frames=9)
            call = lambda: gen.check("a fox", **size)  # noqa: E731
    elif case in ("huge_tag", "deep_tag"):
        import wan_nb.runs.recipe

        path = Path(os.environ["WAN_NB_ATTACK_FILE"])   # made by the parent: its memory is not this case's
        call = lambda: wan_nb.recipe(path)  # noqa: E731
    else:
        from wan_nb.models import specs, tiny

        transformer = specs.load_pipeline(specs.resolve("tiny"), device="cpu", dtype="fp32").transformer
        lora = tiny.make_lora(transformer, work / "ink.safetensors", seed=1)
        gen = Generator("tiny", runs_dir=work / "runs", previews=False)
        gen.load_lora(lora, name="ink")
        first = gen.generate("a fox", height=16, width=16, num_frames=1, steps=1, progress=False)
        gen.unload_lora("ink")
        if attack:
            with open(lora, "wb") as handle:
                handle.truncate(4 << 30)
        setup_reads = _read_bytes()
        call = lambda: gen.rerun(first, progress=False)  # noqa: E731
    started = time.perf_counter()
    outcome = _outcome(call)
    seconds = time.perf_counter() - started
    read = _read_bytes() - setup_reads if case == "sparse_lora" else None
    return {"case": case, "arm": arm, "seconds": round(seconds, 3), "outcome": outcome,
            "peak_rss_mb": round(_peak_rss_kb() / 1024, 1),
            "read_mb": None if read is None else round(read / 1e6, 1)}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated cases: " + ",".join(CASES))
    parser.add_argument("--case")
    parser.add_argument("--arm")
    args = parser.parse_args(argv)
    if args.case:   # a child: one case, one arm
        with tempfile.TemporaryDirectory(prefix="wan_nb-attack-") as tmp:
            print(json.dumps(run_case(args.case, args.arm, Path(tmp))))
        return []
    rows = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    files = Path(tempfile.mkdtemp(prefix="wan_nb-attack-files-"))
    for case in (args.only.split(",") if args.only else CASES):
        for arm in ("control", "attack"):
            if case in ("huge_tag", "deep_tag"):
                env["WAN_NB_ATTACK_FILE"] = str(_tagged(case, arm == "attack", files / f"{case}-{arm}.mp4"))
            done = subprocess.run([sys.executable, __file__, "--case", case, "--arm", arm], capture_output=True,
                                  text=True, env=env)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            row = json.loads(lines[-1]) if lines else {"case": case, "arm": arm, "seconds": None, "peak_rss_mb": None,
                                                       "read_mb": None, "outcome": f"child died ({done.returncode}): "
                                                       + (done.stderr.strip().splitlines() or ["?"])[-1][:100]}
            rows.append(row)
    import shutil

    shutil.rmtree(files, ignore_errors=True)
    print(f"{'case':<12} {'arm':<8} {'seconds':>8} {'peak RSS MB':>11} {'read MB':>8}  outcome")
    for row in rows:
        print(f"{row['case']:<12} {row['arm']:<8} {row['seconds'] if row['seconds'] is not None else '-':>8} "
              f"{row['peak_rss_mb'] if row['peak_rss_mb'] is not None else '-':>11} "
              f"{row['read_mb'] if row['read_mb'] is not None else '-':>8}  {row['outcome']}")
    by = {(r["case"], r["arm"]): r for r in rows}
    print("\nattack / control (same machine, same run):")
    for case in dict.fromkeys(r["case"] for r in rows):
        a, c = by.get((case, "attack")), by.get((case, "control"))
        if a and c and a["seconds"] and c["seconds"] and a["peak_rss_mb"] and c["peak_rss_mb"]:
            print(f"  {case:<12} time x{a['seconds'] / c['seconds']:.1f}, peak RSS x{a['peak_rss_mb'] / c['peak_rss_mb']:.2f}")
    return rows


if __name__ == "__main__":
    main()
