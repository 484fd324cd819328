"""Is this process alive: the one answer (``wan_nb.protocol.processes``) against the ways it was asked before.

Every scan a Jupyter server makes (a second or so apart, each relay file's producer), every
listing of unfinished runs and every ``resume_queue`` asks whether a recorded process still runs.
This measures, in one process, over live children (with their start times) and reaped ones:

  owner        pid_alive(pid, create_time): /proc/<pid>/stat, no import
  psutil       psutil.Process(pid): status() and create_time(), what the relay's stale-file
               sweep and the server asked before (the baseline)
  os.kill      os.kill(pid, 0), what the history and the queue asked before: fastest, but it
               answers "alive" for a zombie and for a reused pid (no start time)

and, each in fresh interpreters, the import cost the first question pays: ``import psutil``
against ``import wan_nb.protocol.processes``, both after ``import wan_nb``.

    .venv/bin/python benchmarks/process_liveness.py [--children 20] [--rounds 200]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wan_nb.protocol.processes import pid_alive, process_start_time  # noqa: E402


def _psutil_alive(pid: int, create_time: float | None) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(process.create_time() - create_time) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _kill_alive(pid: int, create_time: float | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _per_question_us(ask, cases, rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        for pid, created in cases:
            ask(pid, created)
    return (time.perf_counter() - started) / (rounds * len(cases)) * 1e6


def _import_ms(statement: str, before: str = "pass", repeats: int = 5) -> float:
    """Median wall time of a fresh interpreter running ``before`` then ``statement``, less one
    running ``before`` alone."""
    def run(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        return time.perf_counter() - started
    bare = statistics.median(run(before) for _ in range(repeats))
    return max(0.0, statistics.median(run(f"{before}\n{statement}") for _ in range(repeats)) - bare) * 1e3


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)

    live = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(args.children)]
    gone = [subprocess.Popen([sys.executable, "-c", "pass"]) for _ in range(args.children)]
    try:
        for child in gone:
            child.wait()
        cases = [(c.pid, process_start_time(c.pid)) for c in live] + [(c.pid, None) for c in gone]
        assert all(pid_alive(*case) for case in cases[:len(live)]) and not any(pid_alive(*c) for c in cases[len(live):])
        owner = _per_question_us(pid_alive, cases, args.rounds)
        baseline = _per_question_us(_psutil_alive, cases, args.rounds)
        kill = _per_question_us(_kill_alive, cases, args.rounds)
    finally:
        for child in live:
            child.kill()
            child.wait()
    # Both after ``import wan_nb`` (which every asker has already paid): what the first question adds.
    psutil_import = _import_ms("import psutil", before="import wan_nb")
    owner_import = _import_ms("import wan_nb.protocol.processes", before="import wan_nb")
    rows = [
        {"case": "owner (/proc)", "us_per_question": owner, "ratio_to_psutil": owner / baseline},
        {"case": "psutil (baseline)", "us_per_question": baseline, "ratio_to_psutil": 1.0},
        {"case": "os.kill (no start time, zombies alive)", "us_per_question": kill, "ratio_to_psutil": kill / baseline},
    ]
    print(f"{len(cases)} pids ({len(live)} live with start times, {len(gone)} reaped), {args.rounds} rounds; "
          f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'way of asking':42} {'us / question':>14} {'vs psutil':>10}")
    for row in rows:
        print(f"{row['case']:42} {row['us_per_question']:14.2f} {row['ratio_to_psutil']:10.3f}")
    print(f"first question's import: psutil {psutil_import:.1f} ms, wan_nb.protocol.processes {owner_import:.1f} ms "
          f"(ratio {owner_import / psutil_import if psutil_import else float('nan'):.3f})")
    rows.append({"case": "import", "psutil_ms": psutil_import, "owner_ms": owner_import})
    return rows


if __name__ == "__main__":
    main()
