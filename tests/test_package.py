"""The package's shape: what ``import wan_nb`` costs, where public names live, how big rooms get."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import wan_nb

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("wan_nb.generator", "wan_nb.models.specs", "torch", "diffusers")


def _loaded_after(code: str) -> list[str]:
    probe = code + f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_package_and_the_server_extension_loads_no_generator_torch_or_diffusers():
    assert _loaded_after("import wan_nb") == []
    assert _loaded_after("import wan_nb.server.app") == []
    assert _loaded_after("from wan_nb import Event, EventType, Stage, errors") == []


def test_public_names_load_on_first_use_and_keep_their_old_homes():
    from wan_nb import Generator, Result, Task
    from wan_nb import generator
    from wan_nb.core import task

    assert Generator is generator.Generator
    assert generator.Task is Task is task.Task and generator.Result is Result
    assert wan_nb.GenerationError is generator.GenerationError is wan_nb.protocol.errors.GenerationError
    assert set(wan_nb.__all__) <= set(dir(wan_nb))


def test_the_module_paths_design_md_names_still_import_after_the_move_into_layer_folders():
    """``wan_nb.events``, ``.errors``, ``.task``, ``.recipe``, ``.history``: the very modules, not copies."""
    code = ("import sys\n"
            "from wan_nb.events import Event\n"
            "from wan_nb.errors import GenerationError\n"
            "from wan_nb.task import Task\n"
            "import wan_nb.recipe, wan_nb.history\n"
            "import wan_nb.protocol.events, wan_nb.protocol.errors, wan_nb.core.task, wan_nb.core.recipes\n"
            "assert sys.modules['wan_nb.events'] is wan_nb.protocol.events\n"
            "assert Event is wan_nb.protocol.events.Event and GenerationError is wan_nb.protocol.errors.GenerationError\n"
            "assert Task is wan_nb.core.task.Task and wan_nb.recipe is wan_nb.core.recipes\n"
            "assert wan_nb.protocol.events.__spec__.name == 'wan_nb.protocol.events'\n"
            "assert callable(wan_nb.recipe) and callable(wan_nb.history)\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_every_error_the_api_raises_is_in_wan_nb_errors_and_at_the_top():
    from wan_nb import storyboard
    from wan_nb.protocol import errors
    from wan_nb.core.params import InvalidParameter

    assert wan_nb.StoryboardError is storyboard.StoryboardError is errors.StoryboardError
    assert wan_nb.StoryboardCancelled is storyboard.StoryboardCancelled
    assert wan_nb.InvalidParameter is errors.InvalidParameter is InvalidParameter
    assert issubclass(wan_nb.TaskNotQueued, RuntimeError)


def test_presets_is_a_function_even_after_the_preset_data_module_is_imported():
    import wan_nb.models.presets  # noqa: F401  (what models.py imports on first use)
    from wan_nb.models import specs as models  # noqa: F401

    listed = wan_nb.presets()
    assert callable(wan_nb.presets)
    assert "wan2.1-t2v-1.3b" in [p.name for p in listed]
    # In a fresh process too, whichever is imported first.
    assert "wan_nb.generator" not in _loaded_after("import wan_nb.models.presets, wan_nb; wan_nb.presets()")


def _own_files() -> list[Path]:
    return sorted((ROOT / "wan_nb").rglob("*.py"))  # every module: the limits hold everywhere


def test_no_module_over_500_lines_and_no_class_over_300():
    for path in _own_files():
        text = path.read_text()
        where = path.relative_to(ROOT)
        assert len(text.splitlines()) <= 500, f"{where}: {len(text.splitlines())} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                size = node.end_lineno - node.lineno + 1
                assert size <= 300, f"{where}: class {node.name} is {size} lines"


def test_storyboards_use_only_the_generators_public_surface():
    for path in sorted((ROOT / "wan_nb" / "storyboard").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value
                name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                assert name not in ("gen", "generator"), f"{path.name}:{node.lineno} uses {name}.{node.attr}"


def test_the_terminal_rule_is_defined_once():
    """No module but events.py spells out the set of terminal event types."""
    terminal = {"generation_completed", "generation_failed", "generation_cancelled"}
    hits = []
    for path in (ROOT / "wan_nb").rglob("*.py"):
        if path.name in ("events.py", "gen_schema.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Set, ast.List, ast.Tuple, ast.Dict)):
                items = node.keys if isinstance(node, ast.Dict) else node.elts
                if terminal <= {n.value for n in items if isinstance(n, ast.Constant)}:
                    hits.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert hits == [], hits
