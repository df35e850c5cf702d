"""Layers import downward only, and no module imports another in a cycle.

A setting flows recipe/flags -> config -> library -> files; each layer may use the layers below it and none
above. Imports inside functions count too: a lazy import of a higher layer is still an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gleamx"

# Bottom to top. A unit is a subpackage or top-level module of gleamx; it may import its own modules and those
# of any strictly lower layer.
LAYERS: list[set[str]] = [
    {"gleamx", "errors", "choices"},   # what every layer shares: errors, choice lists
    # value checks; launch configs; the task's vocabulary (templates, verdict); local path or Hub id;
    # arrays on disk under a content key (the embedding caches of eval and retrieval); the output-folder rule
    {"checks", "accelerate_configs", "task", "sources", "keyed_store", "outputs"},
    {"console"},              # the terminal, and run_cli (one-line errors; a refused command's folders removed)
    {"parsing"},              # every command line and recipe: TrlParser over config dataclasses, one-line errors
    {"data"},                 # samples: schema, readers, writers, validation
    {"prompts"},              # samples -> chat messages; the ShareGPT writer
    {"models", "synth"},      # model loading and tiny models; the synthetic world (writes data with prompts' verdicts)
    {"hub"},                  # model cards, push, merge
    {"eval"},                 # evaluation: generation, verdict scoring, metrics, judge, reports
    {"train"},                # SFT and GRPO (SFT scores its checkpoints with eval's own generation and metrics)
    {"retrieval"},            # the retrieval encoder (GLEAM-C), and localize (retrieval + eval's verification)
    {"curate", "build"},      # GLEAM-X from real sources: pairs, MLLM annotation, human revision (build: old alias)
    {"demo"},                 # the whole pipeline on generated data
    {"recipes"},              # the recipe scripts (entry points)
    {"app"},                  # the Gradio app: verify and localize through eval's and localize's own calls
    {"cli"},                  # the gleamx command line: the command table (entry point)
]
LEVEL = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "gleamx"


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported gleamx module, at module level?) for every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names = [node.args[0].value]  # import_module("gleamx.x") is an import too
        found += [(node.lineno, n, id(node) in top) for n in names if n == "gleamx" or n.startswith("gleamx.")]
    return found


FILES = sorted(PACKAGE.rglob("*.py"))


def test_every_unit_has_a_layer() -> None:
    units = {_unit(_module(p)) for p in FILES}
    assert not units - set(LEVEL), f"new top-level modules need a layer in LAYERS: {sorted(units - set(LEVEL))}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_downward(path: Path) -> None:
    here = _unit(_module(path))
    upward = [f"{path.relative_to(ROOT)}:{line}: {here} imports {target}"
              for line, target, _ in _imports(path)
              if _unit(target) != here and target != "gleamx" and LEVEL[_unit(target)] >= LEVEL[here]]
    assert not upward, "\n".join(upward)


def test_no_import_cycles() -> None:
    """Module-level imports between gleamx modules form no cycle (a package imports its ``__init__`` first)."""
    graph: dict[str, set[str]] = {}
    for path in FILES:
        graph[_module(path)] = {t for _, t, top in _imports(path) if top}
    known = set(graph)
    for module, deps in graph.items():
        # "from gleamx.data.schema import X" also runs gleamx/data/__init__.py, unless the importer is inside
        # gleamx.data itself (its package is then already being imported)
        for t in list(deps):
            parts = t.split(".")
            deps.update(pkg for i in range(2, len(parts)) if (pkg := ".".join(parts[:i])) in known
                        and not module.startswith(pkg + "."))
        deps &= known
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if d == m:
                continue
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_old_package_name_gleamx_build_still_imports_with_a_notice() -> None:
    """gleamx/build/ became gleamx/curate/ (tools skip folders named build); the old imports work until 0.3."""
    import importlib
    import sys

    for name in [m for m in sys.modules if m == "gleamx.build" or m.startswith("gleamx.build.")]:
        del sys.modules[name]
    with pytest.warns(FutureWarning, match="gleamx.build is now gleamx.curate"):
        old = importlib.import_module("gleamx.build.annotate")
    import gleamx.curate.annotate as new

    assert old is new and old.annotate is new.annotate
    from gleamx.build import review  # noqa: F401  the from-import form too

    assert review is importlib.import_module("gleamx.curate.review")


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_another_modules_private_names(path: Path) -> None:
    """A name that starts with ``_`` is its module's own; another module that needs it wants a public name."""
    here = _module(path)
    private = [f"{path.relative_to(ROOT)}:{node.lineno}: {alias.name} from {node.module}"
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
               and node.module.startswith("gleamx") and node.module != here
               for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not private, "\n".join(private)
