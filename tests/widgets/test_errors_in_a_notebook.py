"""wan_nb's errors in a real Jupyter kernel: the message first, one line of the user's code,
none of wan_nb's internals; errors that are not wan_nb's keep IPython's full traceback."""
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("WAN_NB_TRACEBACKS", None)
    manager, client = start_new_kernel(kernel_name="python3", env=env, cwd=str(tmp_path_factory.mktemp("nb")))
    yield client
    client.stop_channels()
    manager.shutdown_kernel(now=True)


def _run(client, code):
    """(reply status, the error message's traceback lines without colour codes)."""
    msg_id = client.execute(code)
    error = None
    while True:
        msg = client.get_iopub_msg(timeout=120)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "error":
            error = [ANSI.sub("", line) for line in msg["content"]["traceback"]]
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    while True:
        reply = client.get_shell_msg(timeout=120)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]["status"], error


def test_an_unknown_model_is_its_message_and_the_users_line(kernel):
    status, lines = _run(kernel, "import wan_nb\ngen = wan_nb.Generator(model='wan2.1-t2v-1.3bb')")
    assert status == "error"                                  # Run All still stops here
    assert lines[0].startswith("ValueError: model='wan2.1-t2v-1.3bb' is not a known model")
    assert "Did you mean 'wan2.1-t2v-1.3b'" in lines[0]
    assert len(lines) == 2 and "wan_nb.Generator(model='wan2.1-t2v-1.3bb')" in lines[1]
    assert not any("site-packages" in line or "wan_nb/" in line for line in lines)


def test_a_real_model_without_a_gpu_is_refused_once_at_the_generator(kernel):
    status, lines = _run(kernel, "gen = wan_nb.Generator(model='wan2.1-t2v-1.3b')")
    assert status == "error" and lines[0].startswith("NoGpu: ")
    assert "\n".join(lines).count("needs a GPU") == 1


def test_other_errors_keep_the_full_traceback(kernel):
    status, lines = _run(kernel, "def f():\n    return {}['missing']\nf()")
    assert status == "error"
    text = "\n".join(lines)
    assert "KeyError" in text and "return {}['missing']" in text and len(lines) >= 3
