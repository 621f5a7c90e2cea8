"""Dependencies point one way — app.py → server → handlers → bot → clients — and the stand-ins stay independent:
`sandbox/` never imports the bot or its clients (a fake that shares the client's models agrees with
its mistakes), and production code never imports `sandbox/`."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
RULES = {  # package → top-level packages it must not import
    "clients": {"bot", "handlers", "server", "sandbox", "app", "slack_bolt", "slack_sdk"},
    "bot": {"handlers", "server", "sandbox", "app"},
    "handlers": {"clients", "server", "sandbox", "app"},
    "server": {"sandbox", "app"},
    "sandbox": {"bot", "handlers", "clients", "server", "app"},
}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_imports_point_one_way(package):
    offences = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & RULES[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offences.items() if v} == {}


def test_app_does_not_import_the_stand_ins():
    assert "sandbox" not in imported_packages(ROOT / "app.py")


# --- the rooms of bot/ and the modules' import graph ------------------------------------------------

# Low to high: a module imports modules of its own layer or of those below, never above. Every
# module of bot/ and handlers/ has a layer (a new one must be placed here). Imports under
# `if TYPE_CHECKING:` are annotations only and do not count; imports inside functions do.
LAYERS: list[tuple[str, list[str]]] = [
    ("foundations: settings, the database URL, logging", ["bot", "bot.settings", "bot.background", "bot.journal.url", "bot.ops", "bot.ops.logs", "bot.ops.heap"]),
    ("the journal", ["bot.journal", "bot.journal.*"]),
    ("Slack's building blocks, routes, back ends, metrics",
     ["bot.slack", "bot.slack.text", "bot.slack.views", "bot.slack.drafts", "bot.slack.people", "bot.routing", "bot.backends",
      "bot.ops.metrics", "bot.slack.cards", "bot.cards", "bot.installations"]),
    ("the pipeline: worker, intake, ticket steps; following tickets", ["bot.pipeline", "bot.pipeline.*", "bot.follow", "bot.follow.*"]),
    ("assembly", ["bot.core"]),
    ("what handlers ask of the bot; operations", ["bot.slack.forms", "bot.slack.suggestions", "bot.slack.edits", "bot.slack.adding",
                                                 "bot.ops.health", "bot.ops.checks"]),
    ("Slack listeners", ["handlers", "handlers.*"]),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in ("bot", "handlers", "clients", "server") for p in (ROOT / pkg).rglob("*.py")
            if "migrations" not in p.parts}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ours that `name` imports (relative imports resolved; `from a import b` is the
    module a.b when there is one), leaving out `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):  # drop annotation-only imports
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            node.body = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name}


def layer_of(name: str) -> int | None:
    for i, (_, members) in enumerate(LAYERS):
        if any(name == m or (m.endswith(".*") and name.startswith(m[:-1])) for m in members):
            return i
    return None


def test_every_module_has_a_layer_and_imports_only_downwards():
    modules = our_modules()
    known = set(modules)
    placed = {n: layer_of(n) for n in known if n.split(".")[0] in ("bot", "handlers")}
    assert [n for n, layer in placed.items() if layer is None] == []
    upwards = []
    for name, layer in sorted(placed.items()):
        for target in sorted(imports_of(name, modules[name], known)):
            if target in placed and placed[target] > layer:
                upwards.append(f"{name} ({LAYERS[layer][0]}) imports {target} ({LAYERS[placed[target]][0]})")
    assert upwards == []


def test_no_import_cycles():
    modules = our_modules()
    known = set(modules)
    graph = {n: imports_of(n, p, known) for n, p in modules.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycles.append(path[path.index(m):] + [m])
            elif m not in state:
                visit(m)
        path.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert cycles == []


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    """The check above can fail: two modules that import each other (one inside a function)."""
    (tmp_path / "bot").mkdir()
    (tmp_path / "bot" / "__init__.py").write_text("")
    (tmp_path / "bot" / "a.py").write_text("from . import b\n")
    (tmp_path / "bot" / "b.py").write_text("def f():\n    from .a import x\n")
    for pkg in ("handlers", "clients", "server"):
        (tmp_path / pkg).mkdir()
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(AssertionError):
        test_no_import_cycles()
