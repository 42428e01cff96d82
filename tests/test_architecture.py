"""The layers import one way only (docs/architecture.md): a test keeps the arrows true."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"bot", "handlers", "imaging", "glossary", "store", "share"}
# Which project packages each package may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "imaging": set(),
    "glossary": {"imaging"},
    "store": {"imaging"},
    "share": {"store", "imaging", "glossary"},
    "handlers": {"store", "imaging", "glossary", "share"},
    "bot": {"handlers", "store", "imaging", "glossary", "share"},
}
# imaging, glossary and store are pure of the chat and the web.
FORBIDDEN_THIRD_PARTY: dict[str, set[str]] = {
    "imaging": {"telegram", "sqlalchemy", "httpx", "starlette", "uvicorn"},
    "glossary": {"telegram", "sqlalchemy", "httpx", "starlette", "uvicorn"},
    "store": {"telegram", "starlette", "uvicorn"},
    "share": {"telegram"},
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_packages_import_only_downwards() -> None:
    violations = []
    for package in sorted(PACKAGES):
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in imported_top_levels(path):
                if name in PACKAGES and name != package and name not in ALLOWED[package]:
                    violations.append(f"{path.relative_to(ROOT)} imports {name}")
                if name in FORBIDDEN_THIRD_PARTY.get(package, set()):
                    violations.append(f"{path.relative_to(ROOT)} imports {name} (this layer stays pure)")
    assert violations == []


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from handlers.x import y\nimport telegram\n")
    assert imported_top_levels(probe) == {"handlers", "telegram"}
