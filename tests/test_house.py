"""The house's import rules (docs/architecture.md), checked on the code as it is.

Every module of the package is parsed (not imported) and each of its imports classified; a
rule broken anywhere fails with the module and the import that broke it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGE = ROOT / "sharebatch"
GROUND = {
    "errors",
    "models",
    "audit",
    "times",
    "files",
    "visible",
    "units",
    "blocking",
    "version",
    "child",
}
# What each floor may import of ours, besides the ground floor and its own folder.
ALLOWED = {
    "cloudfront": set(),
    "manifest": {"cloudfront"},
    "s3": set(),
    "inventory": {"manifest", "s3"},
    "run": {"manifest", "s3", "cloudfront", "inventory"},
    "scanning": {"manifest", "s3"},
    "lifecycle": {"manifest", "s3", "run", "cloudfront", "guardrails", "scanning"},
    "guardrails": {"manifest"},
    "shards": {"manifest", "s3", "run", "cloudfront", "inventory"},
    "remote": {"manifest", "s3"},
    "receipts": {"manifest", "s3", "run", "lifecycle"},
    "delivery": {"manifest", "s3", "run", "lifecycle", "receipts"},
    "cli": {
        "manifest",
        "s3",
        "run",
        "lifecycle",
        "receipts",
        "delivery",
        "cloudfront",
        "guardrails",
        "scanning",
        "inventory",
        "shards",
        "remote",
        "demo",
        "__init__",
    },
    "demo": {"run", "delivery", "__init__"},
    "__main__": {"cli"},
    "__init__": {"manifest", "run", "delivery"},
}
ROOMS = {k for k in ALLOWED if not k.startswith("__") and k != "demo"} | {"cli"}
S3_LIBRARIES = {"boto3", "botocore", "aioboto3", "aiobotocore", "aiohttp"}


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found.append((".".join(parts), path))
    return found


def _room(module: str) -> str:
    """The folder a module lives in, or its own name on the ground floor."""
    return module.split(".")[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every import, ``from x import y`` counted as ``x.y``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: a relative import"
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _ours(name: str) -> str | None:
    """The room of ours an import reaches, or None for other libraries."""
    parts = name.split(".")
    if parts[0] != "sharebatch":
        return None
    if len(parts) == 2 and parts[1] not in ROOMS:
        # `from sharebatch import __version__` reaches the package's __init__.
        return parts[1] if parts[1] in GROUND else "__init__"
    return parts[1]


@pytest.mark.parametrize(("module", "path"), _modules(), ids=lambda v: str(v))
def test_each_module_imports_only_what_its_floor_may(module: str, path: Path) -> None:
    """Ground floor: only itself; manifest and s3: the ground floor; run: those; lifecycle:
    those and run; cli: anything. Nothing below cli imports cli."""
    room = _room(module)
    allowed = GROUND | {room} | (set() if room in GROUND else ALLOWED[room])
    broken = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for line, name in _imports(path)
        if (target := _ours(name)) is not None and target not in allowed
    ]
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize(("module", "path"), _modules(), ids=lambda v: str(v))
def test_only_the_s3_package_uses_s3_libraries(module: str, path: Path) -> None:
    """boto3, botocore, aioboto3, aiobotocore and aiohttp are imported in sharebatch/s3 only
    (and boto3 in demo.py, which seeds its own embedded S3 as a data owner would)."""
    if module.startswith("s3."):
        return
    allowed = {"boto3"} if module == "demo" else set()
    used = {name.split(".")[0] for _, name in _imports(path)} & S3_LIBRARIES
    assert used <= allowed, f"{path.relative_to(ROOT)} imports {sorted(used - allowed)}"


def test_every_module_is_in_a_room_the_map_names() -> None:
    """A new module lands on the ground floor list or in one of the folders, never loose."""
    rooms = {_room(module) for module, _ in _modules()}
    assert rooms <= GROUND | set(ALLOWED) | {"manifest", "s3", "run", "lifecycle", "cli"}, rooms


def _test_modules() -> list[Path]:
    return sorted((ROOT / "tests").rglob("*.py"))


@pytest.mark.parametrize("path", _test_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_test_imports_another_test_module_or_conftest(path: Path) -> None:
    """Helpers live in tests/support; fixtures come through pytest, not through imports."""
    broken = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for line, name in _imports(path)
        if name.startswith("tests.")
        and (name.split(".")[-2].startswith("test_") or ".conftest" in name)
    ]
    assert not broken, "\n".join(broken)
