"""The package's dependency shape: no import circles, no reaching into another module's privates.

Both checks read the source with ``ast`` (nothing is imported):

* **Import graph.** Every import of a wan_nb module by a wan_nb module is an edge, the ones
  inside functions too (a function-local import is a dependency all the same; lazy imports of
  torch, diffusers, Ray or PIL are not wan_nb's and do not count). Only ``if TYPE_CHECKING:``
  blocks are left out: they never run. ``from . import name`` is an edge to the submodule
  ``name`` if there is one, else to the package. The graph must have no cycle.
* **Private access.** ``obj._name`` where ``obj`` is not ``self``/``cls`` and ``_name`` is
  defined (assigned, a def, a class, an argument) only in *other* wan_nb modules, and
  ``from module import _name`` of a wan_nb module's private: each is one module reading
  another's internals. Dunders, private *modules* (``_queue``: private to their package) and
  names an outside protocol fixes (``_jupyter_*``, ``_ipython_*``, ``_repr_*``) are allowed;
  so are privates of third-party objects (diffusers' ``_execution_device``).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "wan_nb"
PROTOCOL_PREFIXES = ("_jupyter_", "_ipython_", "_repr_")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in MODULES.items()}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _nodes(node: ast.AST):
    """Every node below ``node`` except the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _nodes(other)
            continue
        yield child
        yield from _nodes(child)


def _owning_module(target: str) -> str:
    while target not in MODULES and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def _from_base(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` in ``module`` names."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
    parts = package[:len(package) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def imports_of(module: str) -> dict[str, int]:
    """wan_nb modules ``module`` imports -> the line of the first such import."""
    found: dict[str, int] = {}
    for node in _nodes(TREES[module]):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names if alias.name.split(".")[0] == "wan_nb"]
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(module, node)
            if base.split(".")[0] != "wan_nb":
                continue
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for target in targets:
            owner = _owning_module(target)
            if owner != module and owner in MODULES:
                found.setdefault(owner, node.lineno)
    return found


def import_cycles() -> list[list[str]]:
    """The strongly connected parts of the import graph with more than one module (Tarjan)."""
    graph = {module: imports_of(module) for module in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            part = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                part.append(member)
                if member == module:
                    break
            if len(part) > 1:
                cycles.append(_one_cycle(sorted(part), graph))

    for module in graph:
        if module not in index:
            visit(module)
    return cycles


def _one_cycle(part: list[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """A concrete path ``a -> b -> ... -> a`` inside a strongly connected part, with lines."""
    start, members = part[0], set(part)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        module = frontier.pop(0)
        for target, line in graph[module].items():
            step = f"{target} (line {line} of {module})"
            if target == start:
                return paths[module] + [step]
            if target in members and target not in paths:
                paths[target] = paths[module] + [step]
                frontier.append(target)
    return part


# Which layer (a folder of wan_nb, or a top-level module) may import which. Read it from the
# bottom: the vocabulary first, then run folders, then what a model is, ..., the front ends last.
# A layer always may import itself and ``_version``. Function-local imports count: they run.
LAYERS: dict[str, set[str]] = {
    "protocol": set(),                                   # events, state, errors: standard library only
    "runs": {"protocol"},                                # run folders on disk
    "relay": {"protocol", "runs"},                       # process -> Jupyter servers
    "server": {"protocol", "runs", "relay"},             # the Jupyter extension: never torch, never the generator
    "models": {"protocol", "runs"},
    "weights": {"protocol", "runs", "models"},
    "fast": {"protocol", "runs", "models", "weights"},
    "previews": {"protocol", "runs", "models"},
    "post": {"protocol", "runs", "models", "previews"},  # after the decode: interpolation, upscaling
    "core": {"protocol", "runs", "relay", "models", "weights", "fast", "previews", "post"},
    "compose": {"protocol", "runs", "models", "weights", "fast", "post", "core"},
    "cluster": {"protocol", "runs", "models", "weights", "fast", "previews", "post", "core"},
    "generator": {"protocol", "runs", "relay", "models", "weights", "fast", "previews", "post", "core",
                  "compose", "cluster"},
    "storyboard": {"protocol", "runs", "models", "post", "core", "compose", "generator"},  # post: the film's interpolation
    # Outside Jupyter the widgets fall back to the terminal's text progress (cli/console.py).
    "widgets": {"protocol", "runs", "models", "core", "compose", "generator", "storyboard", "cli"},
    "cli": {"protocol", "runs", "models", "weights", "fast", "post", "core", "compose", "generator"},
    "__init__": {"protocol", "models", "fast", "core", "runs", "generator", "storyboard", "server"},
}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def layer_violations() -> list[str]:
    found = []
    for module in MODULES:
        mine = layer_of(module)
        allowed = LAYERS.get(mine)
        for target, line in imports_of(module).items():
            theirs = layer_of(target)
            if theirs in (mine, "_version"):
                continue
            if allowed is None or theirs not in allowed:
                where = MODULES[module].relative_to(ROOT)
                found.append(f"{where}:{line} imports {target} ({mine} may not import {theirs})")
    return found


def test_every_module_belongs_to_a_layer_of_the_table():
    """Only __init__, _version and the generator facade sit at the top; the rest is in a layer folder."""
    unknown = sorted({layer_of(m) for m in MODULES} - set(LAYERS) - {"_version"})
    assert unknown == [], f"add these to LAYERS (or move them into a layer's folder): {unknown}"


def test_each_layer_imports_only_the_layers_below_it():
    found = layer_violations()
    assert found == [], "imports against the layer table:\n  " + "\n  ".join(found)


HEAVY_LIBRARIES = ("torch", "diffusers", "transformers", "accelerate", "peft", "ray")


def closure(start: list[str]) -> set[str]:
    """Every wan_nb module ``start`` can end up importing, function-local imports included."""
    seen, todo = set(), list(start)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(imports_of(module))
    return seen


def heavy_imports(module: str) -> list[str]:
    found = []
    for node in _nodes(TREES[module]):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
        found += [f"{MODULES[module].relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                  if n.split(".")[0] in HEAVY_LIBRARIES]
    return found


def test_the_servers_import_closure_never_reaches_torch_or_the_generator():
    """Not only at import time (tests/test_package.py checks that): no code path of the server,
    however lazy, imports torch, diffusers or the generator."""
    reached = closure([m for m in MODULES if layer_of(m) == "server"])
    assert not any(layer_of(m) in ("generator", "core", "models", "weights", "fast") for m in reached), \
        sorted(m for m in reached if layer_of(m) not in ("server", "protocol", "runs", "relay"))
    found = [line for module in sorted(reached) for line in heavy_imports(module)]
    assert found == [], "the server can reach:\n  " + "\n  ".join(found)


def test_there_is_no_import_circle():
    cycles = import_cycles()
    assert cycles == [], "import circles:\n" + "\n".join("  " + "\n    -> ".join(c) for c in cycles)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) \
        and not name.startswith(PROTOCOL_PREFIXES)


def _defined_privates(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
    return {name for name in names if _private(name)}


def private_accesses() -> list[str]:
    defined = {module: _defined_privates(tree) for module, tree in TREES.items()}
    found = []
    for module, tree in TREES.items():
        where = MODULES[module].relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                    continue
                if node.attr in defined[module]:
                    continue  # this module's own private (on another instance of its class)
                homes = sorted(m for m, names in defined.items() if node.attr in names)
                if homes:
                    found.append(f"{where}:{node.lineno} reads .{node.attr} (a private of {', '.join(homes)})")
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if not _private(alias.name):
                        continue
                    base = _from_base(module, node)
                    if base.split(".")[0] != "wan_nb" or f"{base}.{alias.name}" in MODULES:
                        continue  # not ours, or a private module of that package
                    found.append(f"{where}:{node.lineno} imports {alias.name} from {base}")
    return found


def _class_privates(tree: ast.AST) -> dict[str, set[str]]:
    """Class name -> the private names it defines on itself (methods, class attributes, ``self._x = ``)."""
    out: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        names = out.setdefault(node.name, set())
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(item.name)
            elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
        for inner in ast.walk(node):
            if isinstance(inner, ast.Attribute) and isinstance(inner.ctx, ast.Store) \
                    and isinstance(inner.value, ast.Name) and inner.value.id in ("self", "cls"):
                names.add(inner.attr)
        out[node.name] = {name for name in names if _private(name)}
    return out


def _reads_with_their_class(tree: ast.AST):
    """Every ``obj._name`` read (obj not self/cls) with the class whose body it is in (None: none)."""
    def walk(node: ast.AST, enclosing: str | None):
        for child in ast.iter_child_nodes(node):
            inside = child.name if isinstance(child, ast.ClassDef) else enclosing
            if isinstance(child, ast.Attribute) and _private(child.attr) \
                    and not (isinstance(child.value, ast.Name) and child.value.id in ("self", "cls")):
                yield child, enclosing
            yield from walk(child, inside)
    yield from walk(tree, None)


def same_module_private_reads() -> list[str]:
    """A class's privates read from outside that class in its own module: a method exiled as a
    function (or into another class) that still reaches into the object it came from."""
    found = []
    for module, tree in TREES.items():
        owners = _class_privates(tree)
        where = MODULES[module].relative_to(ROOT)
        for node, enclosing in _reads_with_their_class(tree):
            classes = sorted(c for c, names in owners.items() if node.attr in names)
            if classes and enclosing not in classes:
                outside = f"class {enclosing}" if enclosing else "a module-level function"
                found.append(f"{where}:{node.lineno} reads .{node.attr} of {', '.join(classes)} from {outside}")
    return found


def test_no_class_reads_another_classes_privates_in_its_own_module():
    found = same_module_private_reads()
    assert found == [], "private access across classes of one module:\n  " + "\n  ".join(found)


def test_no_module_reads_another_modules_privates():
    found = private_accesses()
    assert found == [], "cross-module private access:\n  " + "\n  ".join(found)


def test_the_checks_see_what_they_look_for(tmp_path, monkeypatch):
    """Both checks catch a planted circle and a planted private read (they cannot pass vacuously)."""
    planted = {"wan_nb.a": "from . import b\n", "wan_nb.b": "def f():\n    from .a import x\n",
               "wan_nb.c": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n"
                           "import wan_nb.a\n",
               "wan_nb.d": "class D:\n    def __init__(self):\n        self._secret = 1\n",
               "wan_nb.e": "def peek(d):\n    return d._secret, d.__class__\n"}
    for name, code in planted.items():
        path = tmp_path / (name.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    modules = {module_name(p): p for p in tmp_path.rglob("*.py")}
    monkeypatch.setitem(globals(), "MODULES", modules)
    monkeypatch.setitem(globals(), "TREES", {n: ast.parse(p.read_text()) for n, p in modules.items()})
    cycles = import_cycles()
    assert len(cycles) == 1 and cycles[0][0] == "wan_nb.a" and len(cycles[0]) == 3, cycles
    assert imports_of("wan_nb.c") == {"wan_nb.a": 4}   # the TYPE_CHECKING import is left out
    assert private_accesses() == ["wan_nb/e.py:2 reads ._secret (a private of wan_nb.d)"]


def test_the_same_module_check_sees_an_exiled_method(tmp_path, monkeypatch):
    code = ("class Run:\n    def __init__(self):\n        self._lock = None\n"
            "    def same(self, other):\n        return other._lock\n"
            "def exiled(run):\n    return run._lock\n"
            "class Other:\n    def peek(self, run):\n        return run._lock\n")
    path = tmp_path / "wan_nb" / "m.py"
    path.parent.mkdir(parents=True)
    path.write_text(code)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "MODULES", {"wan_nb.m": path})
    monkeypatch.setitem(globals(), "TREES", {"wan_nb.m": ast.parse(code)})
    assert same_module_private_reads() == [
        "wan_nb/m.py:7 reads ._lock of Run from a module-level function",
        "wan_nb/m.py:10 reads ._lock of Run from class Other"]

