"""The golden run published to S3 and fetched back: the committed golden files, byte for byte.

``tests/support/golden_run.py --s3`` runs the golden manifest through ``sharebatch run --out
s3://golden-runs/out/`` under the same frozen clock and link ids, on the same embedded S3,
then fetches the folder back. Every file must equal ``tests/e2e/golden/golden-run/`` (the
durations masked, as the golden test does, and the private work folder's random name, which
the audit log and summary record as the run's OUT, read as the golden run's ``bundles/``).
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

EXPECTED = ROOT / "tests" / "e2e" / "golden" / golden_run.RUN_ID
FROZEN_AT = "2026-11-28 12:00:00"
_DURATION = re.compile(r'("(?:duration_)?seconds": )[0-9.e+-]+')
# mkdtemp's name under --work-dir work: "work/sharebatch-" and 8 characters.
_WORK = re.compile(r"work/sharebatch-[a-z0-9_]{8}/")


def _masked(data: bytes) -> bytes:
    text = _DURATION.sub(r"\g<1>0", data.decode("utf-8"))
    return _WORK.sub("bundles/", text).encode("utf-8")


def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_golden_run_through_s3_is_the_golden_run(tmp_path: Path) -> None:
    """Same file names, same bytes; fetched files 0600 and folders 0700; no work folder
    left behind (the script exits 99 when one is)."""
    if shutil.which("faketime") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("faketime is required in CI (.ci/run installs it)")
        pytest.skip("the golden run needs libfaketime: apt-get install faketime")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FAKETIME") and not (k == "LD_PRELOAD" and "faketime" in v)
    }
    env["DONT_FAKE_MONOTONIC"] = "1"
    process = subprocess.run(
        ["faketime", "-m", "-f", FROZEN_AT, sys.executable, "-m", "tests.support.golden_run",
         tmp_path, "--s3"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-2000:]
    produced = tmp_path / "bundles" / golden_run.RUN_ID
    got, want = _files(produced), _files(EXPECTED)
    assert sorted(got) == sorted(want)
    for name, path in got.items():
        assert _masked(path.read_bytes()) == want[name].read_bytes(), name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    for folder in [produced, *(p for p in produced.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
