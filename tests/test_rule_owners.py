"""One owner per rule: each rule below is spelled out in one module, and every other module imports it.

Each test reads every wan_nb module with ``ast`` and fails on a second spelling of its rule, naming
the file and line, so a copy cannot creep back in. ``test_the_checks_see_what_they_look_for`` plants
one copy of each rule in a throwaway module and checks that every test would catch it.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules(root: Path) -> dict[str, ast.Module]:
    return {str(p.relative_to(root)): ast.parse(p.read_text(encoding="utf-8"))
            for p in sorted((root / "wan_nb").rglob("*.py"))}


MODULES = _modules(ROOT)


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes (text about a rule is not a copy of it)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _collections_holding(modules, values: set[str], owner: str, dict_keys: bool = True) -> list[str]:
    """Set/list/tuple (and, with ``dict_keys``, dict-key) literals outside ``owner`` holding every
    one of ``values``."""
    hits = []
    for where, tree in modules.items():
        if where == owner or where.endswith("gen_schema.py"):   # the JSON schema generator writes enums
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Set, ast.List, ast.Tuple)) or (dict_keys and isinstance(node, ast.Dict)):
                items = node.keys if isinstance(node, ast.Dict) else node.elts
                if values <= {n.value for n in items if isinstance(n, ast.Constant)}:
                    hits.append(f"{where}:{node.lineno}")
    return hits


# -- the statuses -------------------------------------------------------------------------------
STATUSES_OWNER = "wan_nb/protocol/statuses.py"


# A dict keyed by every status (a colour, a label for each) draws statuses; it does not decide
# which ones are finished, so dict keys are not counted here.
def finished_status_copies(modules) -> list[str]:
    return _collections_holding(modules, {"completed", "failed", "cancelled", "lost"}, STATUSES_OWNER, False)


def ending_stage_copies(modules) -> list[str]:
    return _collections_holding(modules, {"completed", "failed", "cancelled"}, STATUSES_OWNER, False)


def test_the_finished_statuses_and_ending_stages_are_spelled_out_once():
    assert finished_status_copies(MODULES) == []
    assert ending_stage_copies(MODULES) == []


def test_the_lab_reducer_finishes_on_the_same_statuses():
    """TypeScript cannot import the Python set: its literal is held to it here (and the shared
    reducer fixtures check what each reducer does with every ending, tests/protocol/fixtures)."""
    from wan_nb.protocol.statuses import FINISHED, TASK_STATUSES

    source = (ROOT / "js" / "src" / "state.ts").read_text(encoding="utf-8")
    finished = re.search(r"export const FINISHED[^=]*=\s*new Set\(\[(.*?)\]\)", source, re.S)
    status_type = re.search(r"export type Status =(.*?);", source, re.S)
    assert finished and status_type, "js/src/state.ts no longer declares FINISHED / Status where this test looks"
    assert set(re.findall(r"'([a-z_]+)'", finished.group(1))) == set(FINISHED)
    assert set(re.findall(r"'([a-z_]+)'", status_type.group(1))) == set(TASK_STATUSES)


# -- the steering actions -----------------------------------------------------------------------
STEERING_OWNER = "wan_nb/protocol/steering.py"


def steer_action_copies(modules) -> list[str]:
    return _collections_holding(modules, {"cancel", "pause", "resume", "move"}, STEERING_OWNER)


def test_the_steering_actions_are_listed_once():
    assert steer_action_copies(MODULES) == []
    from wan_nb.core import task
    from wan_nb.protocol.steering import STEER_ACTIONS
    from wan_nb.relay import protocol

    assert task.STEER_ACTIONS is protocol.STEER_ACTIONS is STEER_ACTIONS


# -- the run folder's file names ----------------------------------------------------------------
LAYOUT_OWNER = "wan_nb/runs/layout.py"
RUN_FILE_NAMES = {"task.json", "events.jsonl", "video.mp4", "index.jsonl", "queue.json", "input.png", "wan_nb_runs",
                  "WAN_NB_RUNS_DIR"}
# Strings equal to a run file's name that are not about run folders.
NOT_RUN_FOLDERS = {
    ("wan_nb/widgets/player.py", "video.mp4"): "the name a browser offers when saving any shown video",
    ("wan_nb/server/handlers.py", "video.mp4"): "the download name when a path has no usable one",
}


def run_file_name_copies(modules) -> list[str]:
    hits = []
    for where, tree in modules.items():
        if where == LAYOUT_OWNER:
            continue
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in RUN_FILE_NAMES and id(node) not in docs \
                    and (where, node.value) not in NOT_RUN_FOLDERS:
                hits.append(f"{where}:{node.lineno} {node.value!r}")
    return hits


def test_the_run_folder_file_names_and_default_folder_have_one_owner():
    assert run_file_name_copies(MODULES) == []


def runs_dir_rule_copies(modules) -> list[str]:
    """A ``def default_runs_dir`` (or ``_default_runs_dirs``...) outside runs/layout.py that decides
    for itself instead of calling the owner's ``default_runs_dir``."""
    hits = []
    for where, tree in modules.items():
        if where == LAYOUT_OWNER:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "runs_dir" in node.name \
                    and node.name.lstrip("_").startswith("default") and "default_runs_dir" not in \
                    {_call_name(c) for c in ast.walk(node) if isinstance(c, ast.Call)}:
                hits.append(f"{where}:{node.lineno} def {node.name}")
    return hits


def test_the_default_runs_folder_is_decided_once():
    assert runs_dir_rule_copies(MODULES) == []


# -- file hashing -------------------------------------------------------------------------------
DIGEST_OWNER = "wan_nb/runs/file_digest.py"


def file_hash_copies(modules) -> list[str]:
    """A function outside the owner that opens a file and feeds it to a sha256."""
    hits = []
    for where, tree in modules.items():
        if where == DIGEST_OWNER:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            calls = {_call_name(c) for c in ast.walk(node) if isinstance(c, ast.Call)}
            if node.name == "file_sha256" or ("sha256" in calls and "open" in calls):
                hits.append(f"{where}:{node.lineno} def {node.name}")
    return hits


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def test_files_are_hashed_in_one_place():
    assert file_hash_copies(MODULES) == []
    from wan_nb.models import user_inputs
    from wan_nb.runs import file_digest, recipe

    assert recipe.file_sha256 is user_inputs.file_sha256 is file_digest.file_sha256


# -- a run's kept inputs ------------------------------------------------------------------------
KEPT_OWNER = "wan_nb/runs/kept_inputs.py"


def _reads_files_entry(node: ast.expr) -> bool:
    """``x.get("files", ...)`` or ``x["files"]`` (possibly ``... or ()``)."""
    if isinstance(node, ast.BoolOp):
        return any(_reads_files_entry(v) for v in node.values)
    if isinstance(node, ast.Call) and _call_name(node) == "get" and node.args:
        key = node.args[0]
    elif isinstance(node, ast.Subscript):
        key = node.slice
    else:
        return False
    return isinstance(key, ast.Constant) and key.value == "files"


def kept_input_readers(modules) -> list[str]:
    """Code outside the owner turning the ``"files"`` a task.json lists for an input into paths
    in the run folder: a comprehension over ``entry.get("files")`` / ``entry["files"]`` that joins
    with ``/`` (or a ``def kept_files``)."""
    hits = []
    for where, tree in modules.items():
        if where == KEPT_OWNER:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "kept_files":
                hits.append(f"{where}:{node.lineno} def {node.name}")
            elif isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp)) \
                    and any(_reads_files_entry(g.iter) for g in node.generators) \
                    and any(isinstance(b, ast.BinOp) and isinstance(b.op, ast.Div) for b in ast.walk(node.elt)):
                hits.append(f"{where}:{node.lineno} joins a run folder with its listed files")
    return hits


def test_a_runs_kept_inputs_are_found_in_one_place():
    assert kept_input_readers(MODULES) == []


# -- is this process alive ----------------------------------------------------------------------
PROCESSES_OWNER = "wan_nb/protocol/processes.py"


def liveness_copies(modules) -> list[str]:
    """``os.kill(pid, 0)``, ``psutil.Process(pid)`` / ``pid_exists`` or a ``/proc/<pid>`` path outside
    the owner (``psutil.Process()``, this process's own figures, is no liveness question)."""
    hits = []
    for where, tree in modules.items():
        if where == PROCESSES_OWNER:
            continue
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = _call_name(node)
                signal_zero = len(node.args) == 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value == 0
                if (name == "kill" and signal_zero) or name == "pid_exists" or (name == "Process" and node.args):
                    hits.append(f"{where}:{node.lineno} {name}()")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _names_a_pid_folder(node.value) \
                    and id(node) not in docs:
                hits.append(f"{where}:{node.lineno} {node.value!r}")
    return hits


def _names_a_pid_folder(text: str) -> bool:
    """``"/proc/"`` before a pid (``f"/proc/{pid}/stat"``, ``"/proc/" + str(pid)``), not a fixed
    file such as ``/proc/driver/nvidia/version`` (whether a driver is installed)."""
    return text.rstrip("/").endswith("/proc") or any(f"/proc/{c}" in text for c in "0123456789")


def test_whether_a_process_is_alive_is_decided_once():
    assert liveness_copies(MODULES) == []
    from wan_nb.protocol.processes import pid_alive
    from wan_nb.relay import stale_files
    from wan_nb.server import runs

    assert stale_files.pid_alive is runs.process_alive is pid_alive


# -- the checks themselves ----------------------------------------------------------------------
PLANTED = '''
import hashlib, os, psutil
DONE = ("completed", "failed", "cancelled", "lost")
ACTIONS = {"cancel": 1, "pause": 2, "resume": 3, "move": 4}
TASK = "task.json"
def default_runs_dir():
    return os.environ.get("WAN_NB_RUNS_DIR")
def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
def kept_files(run_dir, entry):
    return [run_dir / f for f in entry.get("files", ())]
def alive(pid):
    os.kill(pid, 0)
    return psutil.Process(pid).is_running() and open(f"/proc/{pid}/stat")
'''


@pytest.mark.parametrize("check, expected", [
    (finished_status_copies, ["wan_nb/planted.py:3"]),
    (ending_stage_copies, ["wan_nb/planted.py:3"]),
    (steer_action_copies, ["wan_nb/planted.py:4"]),
    (run_file_name_copies, ["wan_nb/planted.py:5 'task.json'", "wan_nb/planted.py:7 'WAN_NB_RUNS_DIR'"]),
    (runs_dir_rule_copies, ["wan_nb/planted.py:6 def default_runs_dir"]),
    (file_hash_copies, ["wan_nb/planted.py:8 def digest"]),
    (kept_input_readers, ["wan_nb/planted.py:11 def kept_files",
                          "wan_nb/planted.py:12 joins a run folder with its listed files"]),
    (liveness_copies, ["wan_nb/planted.py:14 kill()", "wan_nb/planted.py:15 Process()",
                       "wan_nb/planted.py:15 '/proc/'"]),
])
def test_the_checks_see_what_they_look_for(tmp_path, check, expected):
    (tmp_path / "wan_nb").mkdir()
    (tmp_path / "wan_nb" / "planted.py").write_text(PLANTED)
    assert sorted(check(_modules(tmp_path))) == sorted(expected)
