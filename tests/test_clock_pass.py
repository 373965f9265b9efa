"""Tests for tools/clock_pass.py: the faked-clock pass reruns what libfaketime killed, only that;
and for tests/support/frozen.py, which does the same for one run on a frozen clock."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import sys
from datetime import datetime
from pathlib import Path
from types import ModuleType

import pytest

from tests.support import frozen
from tests.support.paths import ROOT

START = datetime(2027, 12, 31, 23, 57)
GOLDEN = ROOT / "tests" / "support" / "golden_run.py"
FROZEN = ROOT / "tests" / "support" / "frozen.py"

# Stands in for faketime: logs its clock and part, dies "by a signal" (as faketime reports
# it) the first N times a part named in CRASH runs, else runs the command it was given.
FAKE_FAKETIME = """#!/bin/sh
log="$LOG"; stamp="$2"; shift 2
part=$(eval echo \\${$#})
echo "$stamp|$part" >> "$log"
count=$(grep -c "|$part\\$" "$log")
case " $CRASH " in *" $part "*)
    if [ "$count" -le "$CRASHES" ]; then echo "Caught Segmentation fault" >&2; exit 1; fi;;
esac
exec "$@"
"""


def load_driver() -> ModuleType:
    spec = importlib.util.spec_from_file_location("clock_pass", ROOT / "tools" / "clock_pass.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def faketime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "faketime"
    script.write_text(FAKE_FAKETIME)
    script.chmod(0o700)
    monkeypatch.setenv("LOG", str(tmp_path / "log"))
    return script


def runs(tmp_path: Path) -> list[tuple[str, str]]:
    lines = (tmp_path / "log").read_text().splitlines()
    return [(line.split("|")[0], line.split("|")[1]) for line in lines]


def test_a_part_libfaketime_killed_runs_again_and_the_pass_goes_on(
    faketime: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part that died by a signal runs again; the parts after it run; the pass passes."""
    monkeypatch.setenv("CRASH", "b")
    monkeypatch.setenv("CRASHES", "1")
    ok = [sys.executable, "-c", "import sys; sys.exit(0)"]
    code = load_driver().run_pass(START, ok, ["a", "b", "c"], faketime=str(faketime))
    assert code == 0
    assert [part for _, part in runs(tmp_path)] == ["a", "b", "b", "c"]


def test_a_part_killed_every_time_fails_the_pass_after_two_reruns(
    faketime: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three deaths in a row are not luck: the pass fails, and the parts after it never run."""
    monkeypatch.setenv("CRASH", "a")
    monkeypatch.setenv("CRASHES", "99")
    ok = [sys.executable, "-c", "import sys; sys.exit(0)"]
    code = load_driver().run_pass(START, ok, ["a", "b"], faketime=str(faketime))
    assert code == 1
    assert [part for _, part in runs(tmp_path)] == ["a", "a", "a"]


def test_failing_tests_are_never_run_again(
    faketime: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part whose tests fail (pytest's own exit code) fails the pass at once, with that code."""
    monkeypatch.setenv("CRASH", "none")
    monkeypatch.setenv("CRASHES", "0")
    failing = [sys.executable, "-c", "import sys; sys.exit(1)"]
    code = load_driver().run_pass(START, failing, ["a", "b"], faketime=str(faketime))
    assert code == 1
    assert [part for _, part in runs(tmp_path)] == ["a"]


def test_each_part_starts_where_the_clock_of_the_pass_has_got_to(
    faketime: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parts see one continuous clock from the start, never the start again."""
    monkeypatch.setenv("CRASH", "none")
    monkeypatch.setenv("CRASHES", "0")
    ticks = iter([0.0, 0.0, 95.0, 200.4])  # the pass's real clock as each part starts
    ok = [sys.executable, "-c", "import sys; sys.exit(0)"]
    load_driver().run_pass(
        START, ok, ["a", "b", "c"], faketime=str(faketime), clock=lambda: next(ticks)
    )
    assert runs(tmp_path) == [
        ("2027-12-31 23:57:00", "a"),
        ("2027-12-31 23:58:35", "b"),
        ("2028-01-01 00:00:20", "c"),
    ]


def test_the_parts_cover_every_test_module() -> None:
    """Every test file of the suite is in exactly one part: the pass leaves nothing out."""
    parts = load_driver().parts()
    named = [Path(ROOT / path) for part in parts for path in part.split()]
    covered = set()
    for path in named:
        covered |= {path} if path.is_file() else set(path.rglob("test_*.py"))
    assert covered == set((ROOT / "tests").rglob("test_*.py")) - set(
        (ROOT / "tests" / "support").rglob("test_*.py")
    )


def test_only_tests_that_freeze_their_own_clock_leave_the_pass() -> None:
    """The clock pass deselects ``own_clock`` tests, and each of them runs sharebatch through a
    helper that starts it under ``faketime -f`` (a frozen clock the outer shift cannot reach):
    a test marked so by mistake would silently lose its run on the shifted clock."""
    assert "-m 'not own_clock'" in (ROOT / "Makefile").read_text()
    frozen = {"_frozen_run", "run_frozen"}
    marked = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and any(
                ast.unparse(d) == "pytest.mark.own_clock" for d in node.decorator_list
            ):
                called = {
                    ast.unparse(c.func).rpartition(".")[2]
                    for c in ast.walk(node)
                    if isinstance(c, ast.Call)
                }
                assert called & frozen, f"{path.name}::{node.name} calls none of {frozen}"
                marked.append(node.name)
    assert len(marked) >= 2
    for helper in (ROOT / "tests" / "run" / "test_workers.py", GOLDEN):
        assert "frozen.run(" in helper.read_text(encoding="utf-8"), helper
    assert 'faketime, "-m", "-f", FROZEN_AT' in FROZEN.read_text(encoding="utf-8")


def test_every_frozen_run_goes_through_the_helper_that_survives_libfaketime() -> None:
    """No test starts faketime itself: a run started elsewhere would not be run again when
    libfaketime crashes it (as it did in stop 30's CI), and would fail CI for a library's bug."""
    starting = re.compile(r"""["'](?:/usr/bin/)?faketime["']\s*,""")
    found = [
        path.relative_to(ROOT)
        for folder in ("tests", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path not in (FROZEN, ROOT / "tests" / "test_clock_pass.py")
        and starting.search(path.read_text(encoding="utf-8"))
    ]
    assert found == []
    assert starting.search('["faketime", "-m", "-f", FROZEN_AT, ...]')


@pytest.mark.skipif(
    "faketime" in os.environ.get("LD_PRELOAD", ""),
    reason="under libfaketime a timed wait never ends, the watchdog's too; the driver itself"
    " never runs under libfaketime, only the parts it starts do",
)
def test_a_part_that_hangs_is_stopped_and_fails_the_pass(
    faketime: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part past its real-time limit is killed with its children and fails, never rerun."""
    monkeypatch.setenv("CRASH", "none")
    monkeypatch.setenv("CRASHES", "0")
    hangs = [sys.executable, "-c", "import threading; threading.Event().wait()"]
    driver = load_driver()
    code = driver.run_pass(START, hangs, ["a", "b"], faketime=str(faketime), limit=1.0)
    assert code == driver.OVERDUE
    assert [part for _, part in runs(tmp_path)] == ["a"]


def test_a_part_killed_from_outside_is_not_run_again(
    faketime: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a crash's signal is libfaketime's: a part killed from outside fails the pass."""
    script = faketime.read_text().replace("Caught Segmentation fault", "Caught Killed")
    faketime.write_text(script)
    monkeypatch.setenv("CRASH", "a")
    monkeypatch.setenv("CRASHES", "1")
    ok = [sys.executable, "-c", "import sys; sys.exit(0)"]
    code = load_driver().run_pass(START, ok, ["a", "b"], faketime=str(faketime))
    assert code == 1
    assert [part for _, part in runs(tmp_path)] == ["a"]


def test_two_lanes_run_every_part_once_each_printed_whole(
    faketime: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Two parts at a time: each part runs once, and its output comes out in one piece,
    never interleaved with the other lane's."""
    monkeypatch.setenv("CRASH", "none")
    monkeypatch.setenv("CRASHES", "0")
    speaks = [sys.executable, "-c", "import sys; [print(sys.argv[1], i) for i in range(200)]"]
    parts = ["a", "b", "c", "d"]
    code = load_driver().run_pass(START, speaks, parts, faketime=str(faketime), lanes=2)
    assert code == 0
    assert sorted(part for _, part in runs(tmp_path)) == parts
    out = capfd.readouterr().out.splitlines()
    said = [line.split()[0] for line in out if re.fullmatch(r"[abcd] \d+", line)]
    assert len(said) == 4 * 200
    runs_of_lines = [p for i, p in enumerate(said) if i == 0 or said[i - 1] != p]
    assert sorted(runs_of_lines) == parts


def test_a_failing_part_fails_a_two_lane_pass_with_its_code(
    faketime: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With two lanes a part whose tests fail still fails the pass, with its exit code."""
    monkeypatch.setenv("CRASH", "none")
    monkeypatch.setenv("CRASHES", "0")
    fails_b = [sys.executable, "-c", "import sys; sys.exit(3 if sys.argv[1] == 'b' else 0)"]
    code = load_driver().run_pass(START, fails_b, ["a", "b"], faketime=str(faketime), lanes=2)
    assert code == 3
    assert sorted(part for _, part in runs(tmp_path)) == ["a", "b"]


# Stands in for `faketime -m -f STAMP python -m MODULE OUT ...`: logs each start, and the first
# CRASHES times leaves a file in OUT and dies "by a signal" as faketime reports it.
FAKE_FROZEN_FAKETIME = """#!/bin/sh
shift 3
echo started >> "$LOG"
if [ "$(grep -c started "$LOG")" -le "$CRASHES" ]; then
    mkdir -p "$4" && echo half > "$4/half-written"
    echo "Caught Segmentation fault" >&2; exit 1
fi
exec "$@"
"""
# The module the frozen run starts: what it found in OUT, then its own file; exits $EXIT.
LEFTOVERS = """import os, sys
out = sys.argv[1]
print(sorted(os.listdir(out)))
open(os.path.join(out, "mine"), "w").close()
sys.exit(int(os.environ.get("EXIT", "0")))
"""


@pytest.fixture
def frozen_faketime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    script = tmp_path / "faketime"
    script.write_text(FAKE_FROZEN_FAKETIME)
    script.chmod(0o700)
    (tmp_path / "leftovers.py").write_text(LEFTOVERS)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("LOG", str(tmp_path / "log"))
    return str(script)


def _starts(tmp_path: Path) -> int:
    return len((tmp_path / "log").read_text().splitlines())


@pytest.mark.parametrize("crashes", [1, frozen.RERUNS])
def test_a_frozen_run_libfaketime_killed_runs_again_in_an_emptied_folder(
    frozen_faketime: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    crashes: int,
) -> None:
    """A run faketime reports dead by a segmentation fault runs again, its half-written files
    gone, and says so; the run that ends is the one returned."""
    monkeypatch.setenv("CRASHES", str(crashes))
    out = tmp_path / "out"
    out.mkdir()
    done = frozen.run("leftovers", out, timeout=60, faketime=frozen_faketime)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"
    assert sorted(p.name for p in out.iterdir()) == ["mine"]
    assert _starts(tmp_path) == crashes + 1
    said = capsys.readouterr().err
    assert said.count("libfaketime killed leftovers (Segmentation fault)") == crashes


def test_a_frozen_run_killed_every_time_is_returned_killed(
    frozen_faketime: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After ``RERUNS`` runs again the crash is the caller's to fail on: never a loop."""
    monkeypatch.setenv("CRASHES", "99")
    done = frozen.run("leftovers", tmp_path / "out", timeout=60, faketime=frozen_faketime)
    assert done.returncode != 0
    assert frozen.CRASHED.search(done.stderr)
    assert _starts(tmp_path) == frozen.RERUNS + 1


def test_a_frozen_run_that_fails_is_never_run_again(
    frozen_faketime: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-zero exit that is no crash is the run's own verdict: returned from the one run."""
    monkeypatch.setenv("CRASHES", "0")
    monkeypatch.setenv("EXIT", "1")
    out = tmp_path / "out"
    out.mkdir()
    done = frozen.run("leftovers", out, timeout=60, faketime=frozen_faketime)
    assert done.returncode == 1
    assert _starts(tmp_path) == 1


def test_a_frozen_run_starts_clean_of_an_outer_libfaketime(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `make test-clock` the frozen run must not inherit the shifted clock's library."""
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
    monkeypatch.setenv("FAKETIME", "2027-12-31 23:57:00")
    env = frozen.environment()
    assert "LD_PRELOAD" not in env and "FAKETIME" not in env
    assert env["DONT_FAKE_MONOTONIC"] == "1"
