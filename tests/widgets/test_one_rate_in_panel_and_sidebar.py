"""The notebook panel and the Lab sidebar give one rate, in one unit, for the same run at the
same moment: both fold the run's real events (the sidebar's reducer run by Node on its compiled
module, js/lib) and must print the same "N it/s" / "N s/it"."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from wan_nb.widgets._state import TaskState, format_rate

JS = Path(__file__).resolve().parents[2] / "js"
SIDEBAR_RATE = """
import { readFileSync } from 'node:fs';
import { rate } from './lib/format.js';
import { TaskState } from './lib/state.js';
const frames = JSON.parse(readFileSync(0, 'utf8'));
const task = new TaskState(frames[0].task_id);
for (const f of frames) task.apply(f);
process.stdout.write(rate(task.rate));
"""


def test_panel_and_sidebar_print_the_same_rate(gen):
    node = shutil.which("node")
    if node is None:
        pytest.skip("no Node here: the sidebar's reducer runs where the extension is built")
    if not (JS / "lib" / "state.js").is_file():
        pytest.fail(f"{JS / 'lib'} is missing: `cd js && npx tsc` compiles the extension's TypeScript")
    task = gen.submit("a fox", seed=0, height=32, width=32, num_frames=9, steps=12)
    task.result(timeout=120)
    events = [e for e in task.events if e.type != "vram_monitoring"]
    last_step = max(i for i, e in enumerate(events)
                    if e.type == "detailed_generation_progress" and e.data.get("stage") == "generating")
    upto = events[: last_step + 1]            # the moment of the last denoising step, still running
    panel = TaskState.for_task(task)
    for event in upto:
        panel.apply(event)
    frames = [json.loads(e.to_json()) for e in upto]
    sidebar = subprocess.run([node, "--input-type=module", "-e", SIDEBAR_RATE], cwd=JS, input=json.dumps(frames),
                             capture_output=True, text=True, timeout=60)
    assert sidebar.returncode == 0, sidebar.stderr
    shown = format_rate(panel.steps_per_second())
    assert shown and shown == sidebar.stdout, (shown, sidebar.stdout)
    assert shown.endswith(("it/s", "s/it"))


def test_the_rate_wording():
    assert format_rate(2.44) == "2.4 it/s" and format_rate(11.2) == "11 it/s"
    assert format_rate(0.25) == "4.0 s/it" and format_rate(None) == ""
