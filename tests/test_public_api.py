"""The public API is ``sharebatch.__all__``, as httpx's test_exported_members holds its own."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from types import ModuleType

import pytest

import sharebatch
from sharebatch import errors

# One drawn line of the tree: "    │   ├── ManifestError      exit 2    one or more problems..."
_DRAWN = re.compile(r"^    (?P<branch>[│├└─ ]*)(?P<name>\w+) +exit (?P<code>\d+) +(?P<meaning>.+)$")


def _drawn() -> list[tuple[int, str, int, str]]:
    """(depth, class name, exit code, meaning) for each line of the tree in errors.py."""
    lines = []
    for line in (errors.__doc__ or "").splitlines():
        found = _DRAWN.match(line)
        if found:
            depth = len(found["branch"]) // 4
            lines.append((depth, found["name"], int(found["code"]), found["meaning"]))
    return lines


def test_every_exported_name_exists_and_is_documented() -> None:
    """Each name in __all__ is there, once, and every class or function has its own docstring."""
    assert len(set(sharebatch.__all__)) == len(sharebatch.__all__)
    for name in sharebatch.__all__:
        member = getattr(sharebatch, name)
        if inspect.isclass(member) or inspect.isfunction(member):
            doc = member.__dict__.get("__doc__") if inspect.isclass(member) else member.__doc__
            assert doc and doc.strip(), f"{name} has no docstring"
            assert not doc.startswith(f"{name}("), f"{name}'s docstring is dataclass's"
    assert isinstance(sharebatch.__version__, str) and sharebatch.__version__


def test_every_public_name_of_the_package_is_exported() -> None:
    """Whatever sharebatch/__init__.py defines, imports or imports on first use (``_LAZY``)
    without an underscore is in __all__ (submodules aside: they are reachable, not
    exported), and ``dir`` lists it."""
    public = {
        name
        for name, value in vars(sharebatch).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    } | set(sharebatch._LAZY)
    assert public == set(sharebatch.__all__) - {"__version__"}
    assert set(sharebatch.__all__) <= set(dir(sharebatch))


def test_the_heavy_exports_are_imported_on_first_use() -> None:
    """``import sharebatch`` brings in neither the runner, the manifest loader, the mailer nor
    the AWS SDK (a merge or ``--help`` needs none of them); each lazy name is, on first use,
    the object its module defines; an unknown name is an AttributeError."""
    program = (
        "import sys, sharebatch\n"
        "heavy = ['sharebatch.run.runner', 'sharebatch.manifest.load',"
        " 'sharebatch.delivery.notify', 'boto3', 'aioboto3', 'pydantic']\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
        "from sharebatch.run import runner\n"
        "print(sharebatch.run_manifest is runner.run_manifest)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "True"]
    for name, module in sharebatch._LAZY.items():
        assert getattr(sharebatch, name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sharebatch.nope  # noqa: B018


def test_the_tree_drawn_in_errors_is_the_tree() -> None:
    """errors.py's docstring draws every SharebatchError class once, under its base class, with
    its exit code and a line of meaning."""
    drawn = _drawn()
    parents: list[type[BaseException]] = []
    for depth, name, code, meaning in drawn:
        cls = getattr(errors, name)
        del parents[depth:]
        assert cls.__bases__ == ((parents[-1],) if parents else (Exception,)), name
        assert cls.exit_code == code, name
        assert meaning.strip(), name
        parents.append(cls)
    tree = {
        value
        for value in vars(errors).values()
        if inspect.isclass(value) and issubclass(value, errors.SharebatchError)
    }
    assert sorted(c.__name__ for c in tree) == sorted(name for _, name, _, _ in drawn)


def test_the_exported_exceptions_are_the_trees_public_ones() -> None:
    """sharebatch exports each class of the tree not marked internal, and no other exception."""
    exported = {
        name
        for name in sharebatch.__all__
        if inspect.isclass(getattr(sharebatch, name))
        and issubclass(getattr(sharebatch, name), BaseException)
    }
    public = {name for _, name, _, meaning in _drawn() if not meaning.startswith("internal:")}
    assert exported == public
    assert all(getattr(sharebatch, name) is getattr(errors, name) for name in exported)


def test_notify_is_public_with_its_async_twin() -> None:
    """Ops script delivery as the CLI does: notify and notify_async are exported with one
    signature, their report type too, and LinkError (a run folder notify cannot read)."""
    assert inspect.signature(sharebatch.notify) == inspect.signature(sharebatch.notify_async)
    assert inspect.iscoroutinefunction(sharebatch.notify_async)
    assert "run_dir" in inspect.signature(sharebatch.notify).parameters
    assert sharebatch.NotifyReport.__name__ == "NotifyReport"
    assert issubclass(sharebatch.LinkError, sharebatch.UsageError)
    assert "DeliveryError" not in sharebatch.__all__
