"""History of 10,000 runs: how long ``wan_nb.history()`` takes to list them. Target: under 1 s.

Writes N run folders as the recorder leaves them (task.json with a full recipe, events journal,
a video file), then measures, each in a process of its own where a fresh process is the case:

  rebuild   no index yet: every folder read once and the index written (happens once)
  cold      a new process lists every run from the index (what a server or kernel start pays)
  warm      the same process lists them again (the index is read incrementally)
  filtered  a prompt filter with limit=50 (what a gallery page asks for)
  find_by_key  the lookup a grid cell does before it renders

    .venv/bin/python benchmarks/history.py [--runs 10000]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wan_nb.presets import WAN_NEGATIVE_PROMPT  # noqa: E402

PROMPTS = ["a red fox running through snow", "an owl at dusk over a frozen lake", "a lantern-lit street in the rain",
           "a paper boat drifting down a gutter", "a hummingbird hovering at a flower"]


def make_runs(folder: Path, count: int) -> None:
    start = 1_790_000_000
    for i in range(count):
        ts = start + i * 7
        task_id = time.strftime("%Y%m%d-%H%M%S-", time.gmtime(ts)) + f"{i:08x}"
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
        params = {"prompt": PROMPTS[i % 5] + f" #{i}", "negative_prompt": WAN_NEGATIVE_PROMPT, "height": 480,
                  "width": 832, "num_frames": 81, "steps": 50, "guidance_scale": 5.0, "guidance_scale_2": None,
                  "seed": i, "image": None, "fps": 16, "loras": {"style": 0.8} if i % 3 == 0 else {}}
        recipe = {"format": "wan_nb.recipe/1", **{k: v for k, v in params.items() if k not in ("image", "loras")},
                  "flow_shift": 3.0, "model": {"name": "wan2.1-t2v-1.3b", "repo_id": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
                                               "revision": "0" * 40, "kind": "t2v"},
                  "dtype": "bfloat16", "loras": [], "image": None, "versions": {"wan_nb": "0.1.0"},
                  "task_id": task_id, "created_at": created}
        status = "failed" if i % 50 == 0 else "completed"
        info = {"task_id": task_id, "model": "wan2.1-t2v-1.3b", "prompt": params["prompt"], "params": params,
                "seed": i, "parent_id": None, "loras": {}, "created_at": created, "pid": 1, "status": status,
                "created_ts": ts, "recipe": recipe, "recipe_key": f"{i:032x}", "finished_at": created,
                "duration_s": 61.5, "video": "video.mp4" if status == "completed" else None,
                "error": "OutOfMemoryError" if status == "failed" else None}
        run = folder / task_id
        run.mkdir()
        (run / "task.json").write_text(json.dumps(info))
        (run / "events.jsonl").write_text('{"type": "generation_started"}\n')
        if status == "completed":
            (run / "video.mp4").write_bytes(b"\0")


CHILD = """
import sys, time
t0 = time.perf_counter()
from wan_nb.history import history, find_by_key
t1 = time.perf_counter()
runs = history(sys.argv[1])
t2 = time.perf_counter()
again = history(sys.argv[1])
t3 = time.perf_counter()
page = history(sys.argv[1], prompt="owl", status="completed", limit=50)
t4 = time.perf_counter()
found = find_by_key(sys.argv[1], "%032x" % 7)
t5 = time.perf_counter()
assert len(runs) == len(again) and len(page) == 50 and found is not None
print(len(runs), t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)
"""


def _child(folder: Path) -> list[float]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder)], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return [float(x) for x in done.stdout.split()]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="new processes to time (the median is reported)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="wan_nb-bench-history-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        make_runs(folder, args.runs)
        print(f"wrote {args.runs:,} run folders in {time.perf_counter() - started:.1f} s")
        from wan_nb.history import INDEX_NAME, history

        started = time.perf_counter()
        listed = history(folder)
        rebuild = time.perf_counter() - started
        assert len(listed) == args.runs
        size = (folder / INDEX_NAME).stat().st_size
        print(f"rebuild (no index; every task.json read once): {rebuild:.3f} s, index {size / 2**20:.1f} MiB")
        rows.append({"case": "rebuild, no index", "runs": args.runs, "seconds": round(rebuild, 4)})
        samples = sorted((_child(folder) for _ in range(args.repeat)), key=lambda s: s[2])
        n, imported, cold, warm, filtered, found = samples[len(samples) // 2]
        assert int(n) == args.runs
        print(f"new process: import {imported * 1000:.1f} ms; list all {cold:.3f} s (cold), {warm:.3f} s (warm); "
              f"prompt filter + limit 50: {filtered:.3f} s; find_by_key: {found:.3f} s")
        for case, seconds in (("cold, new process", cold), ("warm, same process", warm),
                              ("prompt filter, limit 50", filtered), ("find_by_key", found)):
            rows.append({"case": case, "runs": args.runs, "seconds": round(seconds, 4)})
    print(f"{'case':<28} {'runs':>7} {'seconds':>9}")
    for row in rows:
        print(f"{row['case']:<28} {row['runs']:>7,} {row['seconds']:>9.3f}")
    return rows


if __name__ == "__main__":
    main()
