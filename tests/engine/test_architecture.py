"""The package's shape, checked: no import circle, stages import only downwards, views stay views.

The graph is read from the source (every ``import`` statement, at any depth, including those inside
functions), so a circle hidden in a function-level import fails here too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "gemini_core"

# Bottom to top: a module may import modules of its own layer or of layers below, never above.
LAYERS = [
    ("errors", "settings", "paths", "version", "progress", "fsio", "native_noise", "results.units", "settings_flags", "limits", "techniques.methods",
     "techniques.grid", "runtimes.registry", "device", "kinds", "kinds.registry", "kinds.api", "kinds.classifier",
     "kinds.classifier.info", "kinds.llm.info", "kinds.recommend.info"),  # torch-free kind descriptions and the quantization grid
    ("config",),
    ("scenarios",),
    ("training", "results"),
    ("techniques", "kinds.llm", "kinds.recommend"),  # kinds/llm/: the causal LM's source, text, metrics, one-shot
    # methods, runtimes; kinds/recommend/: the recommender's data, models, training and ranking metrics
    ("runtimes",),
    ("compress", "runtimes.torch_rt", "runtimes.catalog", "runtimes.converted"),  # the torch runtime sizes with compress's codec
    ("adaptive", "measure", "kinds.recommend.measure"),  # a recommender point's figures, with the product's memory reading
    ("checkpoint", "charts", "report"),
    ("workflows", "kinds.classifier.engine", "kinds.classifier.spec", "kinds.classifier.units", "kinds.classifier.flags", "kinds.classifier.export", "kinds.classifier.retime", "kinds.classifier.sensitivity", "kinds.llm.engine", "kinds.llm.flags", "kinds.llm.sweep", "kinds.llm.export",
     "kinds.llm.retime", "kinds.llm.sensitivity", "kinds.llm.ray", "kinds.recommend.engine", "kinds.recommend.flags",
     "kinds.recommend.sweep", "kinds.recommend.points", "kinds.recommend.peer_points", "kinds.recommend.ray", "kinds.recommend.export", "kinds.recommend.retime", "kinds.recommend.sensitivity"),  # each kind's engine, called by the workflows
    ("cli", "__main__"),
]
# Function-level imports of the project's own modules, each with the reason it must stay lazy.
ALLOWED_LAZY: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in (ROOT / PACKAGE).rglob("*.py")}


def _imports(path: Path, name: str, known: set[str]) -> list[tuple[str, bool]]:
    """(imported project module, imported inside a function?) for every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, inner) for a in child.names if a.name.split(".")[0] == PACKAGE)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + ([base] if base else []))
                if base.split(".")[0] != PACKAGE:
                    continue
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    found.append((full if full in known else base, inner))
            visit(child, inner)

    visit(tree, False)
    return found


def _graph() -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
    modules = _modules()
    known = set(modules)
    graph, lazy = {}, []
    for name, path in modules.items():
        edges = set()
        for target, nested in _imports(path, name, known):
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target == name or target not in known:
                continue
            edges.add(target)
            if nested:
                lazy.append((name, target))
        graph[name] = edges
    return graph, lazy


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _layer_of(module: str) -> int:
    rel = module[len(PACKAGE) + 1:] if module != PACKAGE else ""
    best, best_len = None, -1
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (rel == prefix or rel.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = level, len(prefix)
    return best


def test_no_import_circle():
    graph, _ = _graph()
    assert _cycles(graph) == [], "import circles (break them by moving code down a layer)"


def test_cycle_finder_finds_a_planted_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_has_a_layer():
    missing = [m for m in _modules() if m != PACKAGE and _layer_of(m) is None]
    assert missing == [], "add these modules to LAYERS"


def test_stages_import_only_downwards():
    graph, _ = _graph()
    upward = [f"{a} -> {b}" for a, targets in graph.items() for b in targets
              if a != PACKAGE and b != PACKAGE and _layer_of(b) > _layer_of(a)]
    assert upward == []


def test_project_imports_are_at_the_top():
    _, lazy = _graph()
    hidden = [f"{a} -> {b}" for a, b in lazy if (a, b) not in ALLOWED_LAZY and a != PACKAGE]
    assert hidden == [], "import these at the top of the module (a circle is fixed by moving code, not by hiding it)"


@pytest.mark.parametrize("folder", ["gemini_core", "bench"])
def test_engine_and_bench_never_import_the_dashboard(folder):
    bad = []
    for path in (ROOT / folder).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in ("streamlit", "ui", "pages")]
    assert bad == []


def test_pages_hold_no_torch():
    bad = []
    for path in [ROOT / "app.py", *(ROOT / "pages").glob("*.py"), *(ROOT / "ui").glob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "torch"]
    assert bad == []
