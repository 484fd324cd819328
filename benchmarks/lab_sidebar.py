"""The Lab sidebar under load: 50 tasks stepping fast, in a real JupyterLab and headless Chromium.

A producer process (an EventBus with the relay, as a Generator has) runs ``--tasks`` tasks at
once, each publishing ``--rate`` progress events a second (plus a memory reading a second) for
``--seconds``; the page has the "Wan generations" sidebar open. Measured in the page: the most
redraws of one row's bar in any second (the store flushes at most every 100 ms), long tasks
(main-thread work over 50 ms, the browser's own jank measure) and the frame gaps of
requestAnimationFrame.

    python benchmarks/lab_sidebar.py                 # 50 tasks x 50 steps/s for 10 s
    python benchmarks/lab_sidebar.py --quick         # 20 tasks x 20 steps/s for 5 s
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _jupyter_helpers import running_jupyter  # noqa: E402

PRODUCER = r"""
import sys, time
from pathlib import Path
from wan_nb import relay
from wan_nb.core.bus import EventBus
runs, tasks, rate, seconds = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
bus = EventBus()
detach = relay.attach(bus, runs_dir=runs)
steps = int(rate * seconds)
ids = [f"bench-{n:03d}" for n in range(tasks)]
for n, task_id in enumerate(ids):
    bus.publish(task_id, "generation_started", model_type="bench", estimated_duration=seconds,
                params={"prompt": f"benchmark task {n}", "steps": steps, "seed": n})
    bus.publish(task_id, "generation_stage", stage="generating", stage_progress=0, stage_message="Denoising")
print("ready", flush=True)
time.sleep(2.0)  # the page lists them before the steps start
start = time.perf_counter()
for step in range(1, steps + 1):
    target = start + step / rate
    while time.perf_counter() < target:
        time.sleep(max(0.0, min(0.002, target - time.perf_counter())))
    for task_id in ids:
        bus.publish(task_id, "detailed_generation_progress", stage="generating",
                    progress=round(100.0 * step / steps, 2), message=f"Step {step}/{steps}",
                    estimated_time_remaining=(steps - step) / rate, current_step=step, total_steps=steps)
        if step % max(1, int(rate)) == 0:
            bus.publish(task_id, "vram_monitoring", allocated_mb=1000.0 + step, reserved_mb=1200.0,
                        free_mb=6000.0, total_mb=8192.0, allocated_percent=30.0 + 30.0 * step / steps,
                        warning_level="normal", device_name="bench")
for task_id in ids:
    bus.publish(task_id, "generation_completed", output_path=str(runs / task_id / "video.mp4"),
                duration_s=seconds, params={"steps": steps}, seed=0)
print("done", flush=True)
time.sleep(1.0)
detach()
"""

PROBE = """() => {
  const w = window.__bench = {updates: {}, longtasks: [], frames: []};
  new PerformanceObserver(list => { for (const e of list.getEntries()) w.longtasks.push(e.duration); })
    .observe({type: 'longtask', buffered: false});
  new MutationObserver(records => {
    const now = performance.now();
    for (const r of records) {
      const row = r.target.closest && r.target.closest('.wan-nb-Row');
      if (row) (w.updates[row.dataset.taskId] = w.updates[row.dataset.taskId] || []).push(now);
    }
  }).observe(document.querySelector('.wan-nb-Sidebar'), {subtree: true, attributes: true,
                                                        attributeFilter: ['aria-valuenow']});
  let last = performance.now();
  const tick = now => { w.frames.push(now - last); last = now; if (!w.stop) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}"""


def most_in_a_second(times: list[float]) -> int:
    return max((sum(1 for u in times if t <= u < t + 1000) for t in times), default=0)


def run(tasks: int, rate: float, seconds: float) -> dict:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="wan_nb-lab-bench-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "root").mkdir()
        (tmp / "jupyter_path" / "labextensions").mkdir(parents=True)
        (tmp / "jupyter_path" / "labextensions" / "wan-nb").symlink_to(ROOT / "wan_nb" / "labextension")
        env = {"JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "JUPYTER_PATH": str(tmp / "jupyter_path"),
               "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"), "JUPYTER_DATA_DIR": str(tmp / "data"),
               "PYTHONPATH": str(ROOT)}
        with running_jupyter("lab", tmp / "root", tmp, env, ("--LabApp.news_url=",)) as (base, token), \
                sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{base}/lab?token={token}")
            page.locator(".lm-TabBar-tab[data-id='wan-nb-generations']").click(timeout=60_000)
            page.wait_for_selector(".wan-nb-Sidebar[data-availability='ready']", timeout=30_000)
            script = tmp / "producer.py"
            script.write_text(PRODUCER)
            producer = subprocess.Popen([sys.executable, str(script), str(tmp / "runs"), str(tasks), str(rate),
                                         str(seconds)], env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
            try:
                assert producer.stdout.readline().strip() == "ready"
                page.wait_for_function(f"() => document.querySelectorAll('.wan-nb-Row').length >= {tasks}",
                                       timeout=30_000)
                page.evaluate(PROBE)
                assert producer.stdout.readline().strip() == "done"
                page.wait_for_function(f"() => document.querySelectorAll(\".wan-nb-Row[data-status='completed']\")"
                                       f".length >= {tasks}", timeout=30_000)
                result = page.evaluate("() => { window.__bench.stop = true; return window.__bench; }")
            finally:
                producer.wait(30)
                browser.close()
    frames = sorted(result["frames"][1:]) or [0.0]
    per_row = [most_in_a_second(times) for times in result["updates"].values()]
    return {"tasks": tasks, "events_per_s": tasks * rate,
            "row_redraws_max_per_s": max(per_row, default=0),
            "longtasks": len(result["longtasks"]), "longtask_ms_max": max(result["longtasks"], default=0.0),
            "frame_ms_median": statistics.median(frames),
            "frame_ms_p99": frames[min(len(frames) - 1, int(0.99 * len(frames)))]}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--rate", type=float, default=50.0, help="progress events a second per task")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.rate, args.seconds = 20, 20.0, 5.0
    if args.tasks < 1 or args.rate <= 0 or args.seconds <= 0:
        parser.error("--tasks, --rate and --seconds must be positive")
    row = run(args.tasks, args.rate, args.seconds)
    print(f"{row['tasks']} tasks, {row['events_per_s']:.0f} progress events/s in all, for {args.seconds:g} s")
    print(f"  most redraws of one row in a second: {row['row_redraws_max_per_s']}  (the store flushes every 100 ms)")
    print(f"  long tasks (> 50 ms): {row['longtasks']}, longest {row['longtask_ms_max']:.0f} ms")
    print(f"  frame gap: median {row['frame_ms_median']:.1f} ms, p99 {row['frame_ms_p99']:.1f} ms")
    return [row]


if __name__ == "__main__":
    main()
