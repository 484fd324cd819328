"""A new process's first task reaches Jupyter servers before torch is imported (issue 27, item
16: time to first event of a new process went from 3.6 ms to ~1.3 s, because the run recorder's
first recipe imports torch and the relay, a later sink of the same bus, sent nothing until then).

The script below runs in a fresh process: it makes ``import torch`` wait until a zmq subscriber
of the producer's PUB socket has received the task's ``generation_started``. With the relay
after the recorder the frame can only leave after that import, so the wait runs out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import importlib.abc, json, sys, threading, time
import zmq
from wan_nb import Generator
from wan_nb.relay import producer as relay_producer

gen = Generator(model="tiny", runs_dir=sys.argv[1], previews=False)
torch_before_submit = "torch" in sys.modules
relayed = threading.Event()
socket = zmq.Context.instance().socket(zmq.SUB)
socket.setsockopt(zmq.SUBSCRIBE, b"")
socket.connect(relay_producer.current().pub_endpoint)
time.sleep(0.3)   # the subscription reaches the publisher

def receive():
    while True:
        if json.loads(socket.recv())["type"] == "generation_started":
            relayed.set()
            return

class HoldTorch(importlib.abc.MetaPathFinder):
    waited = None
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and HoldTorch.waited is None:
            HoldTorch.waited = relayed.wait(8)   # True: the frame left before torch was imported
        return None

threading.Thread(target=receive, daemon=True).start()
sys.meta_path.insert(0, HoldTorch())
task = gen.submit("a red fox", seed=0, height=32, width=32, num_frames=5, steps=2)
task.result(timeout=120)
print(json.dumps({"torch_before_submit": torch_before_submit, "relayed_before_torch": HoldTorch.waited,
                  "status": task.status}))
gen.close()
"""


def test_a_new_process_relays_its_first_event_before_importing_torch(tmp_path):
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"), "PYTHONPATH": str(ROOT)}
    env.pop("JUPYTER_PLATFORM_DIRS", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "runs")], env=env,
                          capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["torch_before_submit"] is False     # else this test no longer sees the path
    assert result["relayed_before_torch"] is True, result
    assert result["status"] == "completed"
