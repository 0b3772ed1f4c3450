"""The import structure docs/architecture.md draws: layers that import only downwards, and no cycles; and the tests
import the benchmark scripts as the benchmarks import each other, by name, without editing `sys.path`."""

import ast
import re
from pathlib import Path

import pytest


PACKAGE = Path(__file__).resolve().parents[1] / "score_trl"
# Lowest first. A module imports from its own layer or lower ones only (docs/architecture.md).
LAYERS = [
    {"sandbox"},
    {"prompts", "metrics", "rewards"},
    {"rollout", "data", "loading", "tiny_model", "embedded", "run_record", "vllm_cpu"},
    {"trainers", "evaluation"},
    {"tasks", "run_inputs", "stages", "baselines"},
    {"pipeline", "eval_cli"},
]


def component(module: str) -> str:
    """`score_trl.rewards.math` -> `rewards`."""
    return module.split(".")[1]


def imports() -> dict[str, set[str]]:
    """Module name -> the score_trl modules it imports (package `__init__` files left out: they re-export)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        name = ".".join(("score_trl", *path.relative_to(PACKAGE).with_suffix("").parts))
        package = name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    module = f"{base}.{node.module}" if node.module else base
                else:
                    module = node.module or ""
                targets |= {module} if module.startswith("score_trl.") else set()
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names if alias.name.startswith("score_trl.")}
        graph[name] = targets
    return graph


def layer(module: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if component(module) in names)


def test_every_module_has_a_layer():
    assert {component(m) for m in imports()} <= set().union(*LAYERS)


@pytest.mark.parametrize("module", sorted(imports()))
def test_imports_run_downwards(module):
    upward = [t for t in imports()[module] if component(t) != component(module) and layer(t) > layer(module)]
    assert not upward, f"{module} imports from a higher layer: {upward}"


def test_every_layer_names_only_modules_that_exist():
    assert set().union(*LAYERS) <= {component(m) for m in imports()}


def test_no_test_puts_the_benchmarks_on_the_path_itself():
    """pyproject.toml's pytest `pythonpath` does, once; a test that edits `sys.path` hides a missing entry there."""
    editing = re.compile(r"sys\.path\.(insert|append)\(.*benchmarks")
    tests = Path(__file__).resolve().parent
    assert not [p.name for p in tests.glob("*.py") if editing.search(p.read_text())]


def test_no_import_cycles():
    graph = {m: {t for t in targets if t in imports()} for m, targets in imports().items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py")))
def test_benchmarks_import_only_public_names(script):
    """A benchmark uses the library as a user would: names a module lists in `__all__` (a package's included)."""
    import importlib

    private = []
    for node in ast.walk(ast.parse((BENCHMARKS / script).read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("score_trl"):
            public = set(getattr(importlib.import_module(node.module), "__all__", ()))
            private += [f"{node.module}.{a.name}" for a in node.names if a.name not in public]
    assert not private, f"{script} imports names its modules do not make public: {private}"
