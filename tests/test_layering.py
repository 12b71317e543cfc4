"""Dependencies point one way (../shared/DESIGN.md, "Layout"): read off every import of every
module, function-level imports included, so that a shortcut across the layers fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("protocol", "crypto", "storage", "record", "app", "relay")

# What each package may import of the others. ``record`` (the hospital record's FHIR client)
# sits beside ``storage``: the app's engine and the relay's directory import both use it.
ALLOWED = {
    "protocol": set(),
    "crypto": set(),
    "storage": {"crypto"},
    "record": {"storage"},
    "app": {"protocol", "crypto", "storage", "record"},
    "relay": {"protocol", "crypto", "record"},
}
# Inside app/: the engine imports none of its clients, and only the entry point starts the UI.
APP_CLIENTS = ("app.ui", "app.cli", "app.bridge")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    modules = _modules(package)
    assert modules, f"no modules found in {package}/"
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules
        for name in _imports(path)
        if name.split(".")[0] in PACKAGES
        and name.split(".")[0] != package
        and name.split(".")[0] not in ALLOWED[package]
    }
    assert not wrong, sorted(wrong)


def test_the_engine_imports_none_of_its_clients() -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules("app/client")
        for name in _imports(path)
        if any(name == c or name.startswith(c + ".") for c in APP_CLIENTS)
    }
    assert not wrong, sorted(wrong)


def test_only_the_entry_point_and_the_ui_import_the_ui() -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for package in PACKAGES
        for path in _modules(package)
        if not path.is_relative_to(ROOT / "app" / "ui") and path != ROOT / "app" / "__main__.py"
        for name in _imports(path)
        if name == "app.ui" or name.startswith("app.ui.")
    }
    assert not wrong, sorted(wrong)
