"""Dependencies point one way — app.py → server → handlers → bot → clients — and the stand-ins stay independent:
`sandbox/` never imports the bot or its clients (a fake that shares the client's models agrees with
its mistakes), and production code never imports `sandbox/`."""

from __future__ import annotations

import ast
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
