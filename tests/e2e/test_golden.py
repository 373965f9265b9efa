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
from pathlib import Path

import pytest

from tests.support import golden_run

EXPECTED = golden_run.EXPECTED
_masked, _files = golden_run.masked, golden_run.files


@pytest.mark.own_clock
def test_the_golden_run_produces_the_committed_files(tmp_path: Path) -> None:
    """Same file names, same bytes (durations aside), every file 0600 and folder 0700."""
    produced = golden_run.run_frozen(tmp_path)
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
