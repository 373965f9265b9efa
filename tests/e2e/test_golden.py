"""The golden run: every file a fixed manifest produces, byte for byte, under a frozen clock.

``tests/support/golden_run.py`` runs one manifest (two jobs, three recipients, CSV and JSON,
upload slots, filters, a download name, keys with hidden characters and dot segments) on an
embedded S3 with the wall clock stopped by libfaketime, so signatures and timestamps repeat.
The run folder must equal ``tests/golden/golden-run/`` except for measured durations (the
``seconds`` and ``duration_seconds`` fields, which the monotonic clock gives).

A change that alters any output on purpose regenerates the files, and the diff is reviewed::

    SHAREBATCH_GOLDEN_UPDATE=1 .venv/bin/pytest tests/test_golden.py
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import golden_run
from tests.support.paths import ROOT

EXPECTED = Path(__file__).parent / "golden" / golden_run.RUN_ID
FROZEN_AT = "2026-11-28 12:00:00"
_PYTHON_M = (sys.executable, "-m")
_DURATION = re.compile(r'("(?:duration_)?seconds": )[0-9.e+-]+')


def _masked(data: bytes) -> bytes:
    return _DURATION.sub(r"\g<1>0", data.decode("utf-8")).encode("utf-8")


def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def _golden_run(tmp_path: Path) -> Path:
    if shutil.which("faketime") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("faketime is required in CI (.ci/run installs it)")
        pytest.skip("the golden run needs libfaketime: apt-get install faketime")
    # Under `make test-clock` this process already runs in libfaketime: start clean of it.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FAKETIME") and not (k == "LD_PRELOAD" and "faketime" in v)
    }
    # Only the wall clock stops: asyncio schedules by the monotonic one.
    env["DONT_FAKE_MONOTONIC"] = "1"
    process = subprocess.run(
        # -m: the thread-safe libfaketime (the golden run serves moto from threads).
        ["faketime", "-m", "-f", FROZEN_AT, *_PYTHON_M, "tests.support.golden_run", tmp_path],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == 0, process.stderr[-2000:]
    return tmp_path / "bundles" / golden_run.RUN_ID


def test_the_golden_run_produces_the_committed_files(tmp_path: Path) -> None:
    """Same file names, same bytes (durations aside), every file 0600 and folder 0700."""
    produced = _golden_run(tmp_path)
    if os.environ.get("SHAREBATCH_GOLDEN_UPDATE") == "1":
        shutil.rmtree(EXPECTED, ignore_errors=True)
        for name, path in _files(produced).items():
            (EXPECTED / name).parent.mkdir(parents=True, exist_ok=True)
            (EXPECTED / name).write_bytes(_masked(path.read_bytes()))
    got, want = _files(produced), _files(EXPECTED)
    assert sorted(got) == sorted(want)
    for name, path in got.items():
        assert _masked(path.read_bytes()) == want[name].read_bytes(), name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    for folder in [produced, *(p for p in produced.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_the_golden_files_hold_working_signatures_not_placeholders() -> None:
    """The committed bundles are real output: SigV4 URLs signed at the frozen moment."""
    links = (EXPECTED / "q3-partners" / "globex" / "links.csv").read_text(encoding="utf-8")
    assert "X-Amz-Date=20261128T120000Z" in links
    assert re.search(r"X-Amz-Signature=[0-9a-f]{64}", links)
