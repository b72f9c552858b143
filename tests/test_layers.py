"""The package's shape: each layer imports only from the layers below it (or its own).

Bottom to top, as in the README's picture of the package. A function-level (lazy) import counts
the same as one at the top of a module: hiding an upward import inside a function keeps the
cycle, it only moves it to run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "automl"

# Bottom to top. A module belongs to the first entry its dotted name starts with.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("automl.errors", "automl.terminal", "automl.owner", "automl.faults", "automl.interrupts",
              "automl.atomic", "automl.yaml_file", "automl.registry", "automl.pruners", "automl.config",
              "automl.trial_config", "automl.plotting")),
    ("data", ("automl.data",)),
    ("space", ("automl.space",)),
    ("trial", ("automl.trial",)),
    ("bundle", ("automl.bundle",)),
    ("study", ("automl.study",)),
    ("final", ("automl.final",)),
    ("diagnostics and view", ("automl.diagnostics", "automl.view", "automl.plan")),
    ("run", ("automl.overnight",)),
    ("cli", ("automl.cli", "automl.__main__")),
]
# The package's own __init__ is its public face (``automl.load_bundle``): it sits above the
# bundle and is never imported by name inside the package.
FACADE = "automl"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise LookupError(module)


def imported(path: Path) -> list[tuple[int, str]]:
    return imports_in(path.read_text(), module_name(path), is_package=path.name == "__init__.py")


def imports_in(source: str, own: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every automl import in a module's source, relative ones resolved."""
    package = own if is_package else own.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from automl import registry`` imports the module automl.registry
            found += [(node.lineno, f"{base}.{a.name}" if base == FACADE else base) for a in node.names]
    return [(line, m) for line, m in found if m == FACADE or m.startswith(FACADE + ".")]


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if module_name(p) != FACADE)


def test_every_module_has_a_layer():
    unplaced = []
    for p in modules():
        try:
            layer_of(module_name(p))
        except LookupError:
            unplaced.append(module_name(p))
    assert not unplaced, f"modules in no layer (add them to LAYERS): {unplaced}"


def test_no_module_imports_from_a_layer_above_it():
    upward: list[str] = []
    for p in modules():
        own = layer_of(module_name(p))
        for line, target in imported(p):
            if target == FACADE:
                upward.append(f"{p.relative_to(PACKAGE.parent)}:{line} imports the package facade {FACADE}")
                continue
            theirs = layer_of(target)
            if theirs > own:
                upward.append(f"{p.relative_to(PACKAGE.parent)}:{line} ({LAYERS[own][0]}) imports {target} "
                              f"({LAYERS[theirs][0]})")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


@pytest.mark.parametrize("source, own", [
    ("from automl.study.runner import run_search\n", "automl.data.folder"),
    ("def f():\n    from automl.cli import main\n", "automl.final.pipeline"),
    ("from ..view import notes\n", "automl.study.runner"),
    ("from automl import overnight\n", "automl.trial.engine"),
])
def test_the_checker_sees_an_upward_import(source, own):
    targets = [layer_of(m) for _, m in imports_in(source, own)]
    assert targets and max(targets) > layer_of(own)
