"""The golden run published to S3 and fetched back: the committed golden files, byte for byte.

``tests/support/golden_run.py --s3`` runs the golden manifest through ``sharebatch run --out
s3://golden-runs/out/`` under the same frozen clock and link ids, on the same embedded S3,
then fetches the folder back. Every file must equal ``tests/e2e/golden/golden-run/`` (the
durations masked, as the golden test does, and the private work folder's random name, which
the audit log and summary record as the run's OUT, read as the golden run's ``bundles/``).
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

from tests.support import golden_run

EXPECTED = golden_run.EXPECTED
# mkdtemp's name under --work-dir work: "work/sharebatch-" and 8 characters.
_WORK = re.compile(rb"work/sharebatch-[a-z0-9_]{8}/")


def _masked(data: bytes) -> bytes:
    return _WORK.sub(b"bundles/", golden_run.masked(data))


def test_the_golden_run_through_s3_is_the_golden_run(tmp_path: Path) -> None:
    """Same file names, same bytes; fetched files 0600 and folders 0700; no work folder
    left behind (the script exits 99 when one is)."""
    produced = golden_run.run_frozen(tmp_path, "--s3")
    got, want = golden_run.files(produced), golden_run.files(EXPECTED)
    assert sorted(got) == sorted(want)
    for name, path in got.items():
        assert _masked(path.read_bytes()) == want[name].read_bytes(), name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    for folder in [produced, *(p for p in produced.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
