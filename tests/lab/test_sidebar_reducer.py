"""The Lab sidebar's reducer (js/src/state.ts) and readings, run by Node's own test runner on
the compiled module (`make setup` compiles it). About a second; skipped where there is no Node
(the shipped extension needs none). Among them, js/test/reducer_fixtures.test.js folds the
shared fixtures of tests/protocol/fixtures/ that the Python reducer folds too
(tests/protocol/test_reducer_fixtures.py): each must have run here, by name."""

import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).resolve().parents[2] / "js"
FIXTURES = Path(__file__).resolve().parents[1] / "protocol" / "fixtures"


def test_sidebar_state_handling():
    node = shutil.which("node")
    if node is None:
        pytest.skip("no Node here: the sidebar's unit tests run where the extension is built")
    if not (JS / "lib" / "state.js").is_file():
        pytest.fail(f"{JS / 'lib'} is missing: `make setup` compiles the extension's TypeScript")
    run = subprocess.run([node, "--test", "test/"], cwd=JS, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    fixtures = sorted(path.name for path in FIXTURES.glob("*.json"))
    assert fixtures, f"no shared reducer fixtures in {FIXTURES}"
    assert [name for name in fixtures if f"fixture {name}:" not in run.stdout] == [], \
        "fixtures the sidebar's reducer did not fold:\n" + run.stdout[-3000:]
