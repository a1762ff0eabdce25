"""The package structure stays as docs/architecture.md draws it: imports run one way and never in a circle.

Every `import ftjax...` in ftjax/ (module-level and inside functions alike) is read with `ast`. A part of the
package (a top-level module or sub-package) may import only parts of a lower layer, or modules of its own
sub-package; no chain of imports may lead back to where it started.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "ftjax"
# Lowest first; a part imports only parts of lower layers (never its neighbours in the same layer).
LAYERS = [
    {"io", "loss", "config"},  # shared leaves
    {"sharding", "workdir", "objective", "memory", "hardware"},  # shared: mesh and rules, run folder layout,
    # objective, peak memory, the host's name
    {"distributed", "card", "hub"},  # shared: multi-process runs (uses the mesh); an export's model card; Hub push
    {"models", "metrics"},  # model ports, tokenizers and generation; metric functions
    {"data", "peft"},  # data sources and encoders (they tokenize); PEFT methods (on the models' hooks)
    {"tasks"},  # named tasks (data, head and metrics blocks) and mixture rates
    {"train", "eval"},  # the trainer; evaluation. Neither imports the other.
    {"review", "sweep", "monitor", "registry"},  # human review sheets (built from eval results); sweeps over train runs;
    # drift and quality monitoring (eval's predictions over time); the MLflow model registry and refresh
    {"augment", "audit"},  # synthetic data: generation (a loaded run), rules, validation (a run's head via
    # monitor's view); bias audits (eval's predictions per group, monitor's report tables)
    {"commands"},  # one thin module per subcommand: the only place train and eval meet
    {"cli"},
    {"__main__"},
]
RANK = {part: i for i, layer in enumerate(LAYERS) for part in layer}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path) -> set[str]:
    """The ftjax modules `path` imports (`from pkg import mod` counts as pkg.mod when mod is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "ftjax"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ftjax":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if is_module(sub) else node.module)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) - {module_name(p)} for p in sorted(PACKAGE.rglob("*.py"))}


def part(module: str) -> str:
    """The top-level part of the package a module belongs to (`ftjax.train.loop` -> `train`)."""
    return module.split(".")[1] if module != "ftjax" else ""


def test_every_part_has_a_layer():
    parts = {part(m) for m in graph()} - {""}
    assert parts <= RANK.keys(), f"add {sorted(parts - RANK.keys())} to LAYERS (and to docs/architecture.md)"


def test_imports_run_downward():
    wrong = []
    for module, targets in graph().items():
        for target in targets:
            a, b = part(module), part(target)
            if a and b and a != b and RANK[b] >= RANK[a]:
                wrong.append(f"{module} imports {target} ({a} is in layer {RANK[a]}, {b} in layer {RANK[b]})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                return path[path.index(t):] + [t]
            if t not in state and (cycle := visit(t)):
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (cycle := visit(m)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_the_checks_catch_what_they_are_for(tmp_path, monkeypatch):
    """The walker sees function-level imports, and an upward import or a circle fails."""
    fake = tmp_path / "ftjax"
    (fake / "train").mkdir(parents=True)
    (fake / "eval").mkdir()
    for f in ("__init__.py", "train/__init__.py", "eval/__init__.py"):
        (fake / f).write_text("")
    (fake / "train" / "loop.py").write_text("def f():\n    from ftjax.eval import runner\n")
    (fake / "eval" / "runner.py").write_text("from ftjax.train.loop import f\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert graph()["ftjax.train.loop"] == {"ftjax.eval.runner"}
    for check in (test_imports_run_downward, test_no_import_cycles):
        try:
            check()
        except AssertionError:
            continue
        raise AssertionError(f"{check.__name__} missed a violation")
