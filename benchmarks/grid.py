"""Comparison grids: how far apart the lockstep player's videos drift, and what to_mp4 costs.

    .venv/bin/python benchmarks/grid.py [--seconds 6] [--frames 33] [--runs 3]

Renders a 4x4 grid of tiny clips (seed x guidance, 32x32 px), then

* ``to_mp4`` seconds for the 16 clips (median of ``--runs``);
* the player (``to_html``'s page, the notebook widget's own module) in headless Chromium,
  served from 127.0.0.1: press Play, and on every animation frame for ``--seconds`` read each
  video's ``currentTime``. The drift is the spread between the earliest and the latest video at
  that instant (ms), and each video's distance from the master clock; also after a scrub.
  A frame at the clips' fps is the target.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHROMIUM = "/usr/bin/chromium"

# Runs in the page: samples every animation frame, ignoring frames where the clock just wrapped
# (a loop restart seeks every video at once; the spread of that one frame is not drift).
SAMPLE_JS = """async (seconds) => {
  const root = document.querySelector('.wan-nb-lockstep');
  const videos = Array.from(root.querySelectorAll('video.wan-nb-ls-video'));
  const spreads = [], offsets = [];
  const end = performance.now() + seconds * 1000;
  let previous = Number(root.dataset.clock);
  await new Promise((done) => {
    const step = () => {
      const clock = Number(root.dataset.clock);
      const times = videos.map((v) => v.currentTime);
      if (clock >= previous && !videos.some((v) => v.seeking)) {
        spreads.push((Math.max(...times) - Math.min(...times)) * 1000);
        for (const t of times) offsets.push(Math.abs(t - clock) * 1000);
      }
      previous = clock;
      if (performance.now() < end) requestAnimationFrame(step); else done();
    };
    requestAnimationFrame(step);
  });
  return { spreads, offsets };
}"""


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _serve(folder: Path):
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def measure_player(page_path: Path, seconds: float, cells: int) -> dict:
    from playwright.sync_api import sync_playwright

    server = _serve(page_path.parent)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{server.server_port}/{page_path.name}")
            page.wait_for_function(
                f"() => {{ const v = document.querySelectorAll('video.wan-nb-ls-video');"
                f" return v.length === {cells} && Array.from(v).every((x) => x.readyState >= 2); }}", timeout=60_000)
            page.click(".wan-nb-ls-play")
            page.wait_for_timeout(500)
            playing = page.evaluate(SAMPLE_JS, seconds)
            page.click(".wan-nb-ls-play")  # pause, scrub to the middle, play on
            page.evaluate("() => { const s = document.querySelector('.wan-nb-ls-scrub');"
                          " s.value = String(Number(s.max) / 2); s.dispatchEvent(new Event('input')); }")
            page.click(".wan-nb-ls-play")
            page.wait_for_timeout(300)
            scrubbed = page.evaluate(SAMPLE_JS, min(seconds, 1.0))
            browser.close()
    finally:
        server.shutdown()
    spreads = playing["spreads"]
    return {"samples": len(spreads), "spread_p50_ms": _percentile(spreads, 0.5),
            "spread_p95_ms": _percentile(spreads, 0.95), "spread_max_ms": max(spreads) if spreads else float("nan"),
            "clock_offset_p95_ms": _percentile(playing["offsets"], 0.95),
            "after_scrub_spread_max_ms": max(scrubbed["spreads"]) if scrubbed["spreads"] else float("nan")}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="playback measured (s)")
    parser.add_argument("--frames", type=int, default=17, help="frames a clip (4k+1)")
    parser.add_argument("--runs", type=int, default=3, help="to_mp4 repetitions")
    args = parser.parse_args(argv)

    from wan_nb import Generator

    with tempfile.TemporaryDirectory(prefix="wan_nb-bench-grid-") as tmp:
        tmp = Path(tmp)
        with Generator(model="tiny", runs_dir=tmp / "runs", previews=False) as gen:
            started = time.perf_counter()
            grid = gen.grid(prompt="a red fox in the snow", x=("seed", "0-3"), y=("guidance_scale", "1-4"),
                            height=32, width=32, num_frames=args.frames, steps=2)
            grid.results()
            render_s = time.perf_counter() - started
            times = []
            for run in range(args.runs):
                started = time.perf_counter()
                grid.to_mp4(tmp / f"grid{run}.mp4")
                times.append(time.perf_counter() - started)
            # Inlined: http.server answers no Range requests, and a browser cannot seek a video
            # served without them (Jupyter's own routes and any real web server do answer them).
            page = grid.to_html(tmp / "grid.html", tile_width=96, inline=True)
            fps = grid.results()[0].params["fps"]
            player = measure_player(page, args.seconds, len(grid.cells))
    row = {"case": "4x4 tiny clips", "cells": 16, "frames": args.frames, "fps": fps,
           "frame_ms": round(1000 / fps, 1), "render_16_cells_s": round(render_s, 2),
           "to_mp4_s": round(statistics.median(times), 3), **{k: round(v, 2) if isinstance(v, float) else v
                                                             for k, v in player.items()}}
    print(f"4x4 grid of {args.frames}-frame 32x32 clips at {fps} fps (one frame = {row['frame_ms']} ms)")
    print(f"  rendering the 16 cells:      {row['render_16_cells_s']:.2f} s")
    print(f"  to_mp4 (median of {args.runs}):       {row['to_mp4_s']:.3f} s")
    print(f"  player drift, {row['samples']} frames: spread p50 {row['spread_p50_ms']:.1f} / p95 "
          f"{row['spread_p95_ms']:.1f} / max {row['spread_max_ms']:.1f} ms; video-to-clock p95 "
          f"{row['clock_offset_p95_ms']:.1f} ms; after a scrub max {row['after_scrub_spread_max_ms']:.1f} ms")
    return row


if __name__ == "__main__":
    main(sys.argv[1:])
