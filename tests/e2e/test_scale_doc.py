"""docs/scale.md's bytes a link are what a real run writes, and its arithmetic adds up.

A run of the document's shape (2,000 keys like ``reports/2026-Q3/shared/region-3/
statement-0001234.pdf``, one recipient, CSV and JSON) on moto; each file's size over the link
count is held to the table's figure within 10% (the endpoint's port and the clock's digits
move a URL by a character or two). The table's derived rows are recomputed from its inputs.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from typer.testing import CliRunner

from sharebatch import audit
from sharebatch.cli import app
from tests.support.paths import ROOT
from tests.support.s3 import S3, write_manifest

DOC = ROOT / "docs" / "scale.md"
LINKS = 2_000
MANIFEST = """\
version: 1
defaults:
  bucket: acme-reports
  region: eu-west-1
  expires_in: 72h
jobs:
  - name: q3
    prefixes: [reports/2026-Q3/shared/]
    recipients:
      - id: globex
        name: Globex Corporation
"""


def documented() -> dict[str, int]:
    """The "bytes a link" table: file name to bytes."""
    text = DOC.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([\w.]+)`[^|]* \| ([\d,]+) \|$", text, flags=re.MULTILINE)
    return {name: int(value.replace(",", "")) for name, value in rows}


def test_bytes_a_link_match_a_real_run(s3: S3, tmp_path: Path) -> None:
    """links.csv, links.json, audit.jsonl and index.html, each within 10% of the table."""
    keys = (f"reports/2026-Q3/shared/region-{i % 7}/statement-{i:07d}.pdf" for i in range(LINKS))
    s3.bucket("acme-reports", dict.fromkeys(keys, b"x"), over_http=False)
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    result = CliRunner().invoke(
        app,
        ["run", str(manifest), "--out", str(tmp_path / "out"), "--run-id", "m1",
         "--endpoint-url", s3.endpoint, "-q"],
        catch_exceptions=False,
    )  # fmt: skip
    audit.reset()
    assert result.exit_code == 0, result.stderr
    run = tmp_path / "out" / "m1"
    table = documented()
    files = {
        "links.csv": run / "q3" / "globex" / "links.csv",
        "links.json": run / "q3" / "globex" / "links.json",
        "audit.jsonl": run / "audit.jsonl",
        "index.html": run / "index.html",
    }
    assert set(files) <= set(table), table
    for name, path in files.items():
        measured = path.stat().st_size / LINKS
        assert abs(measured - table[name]) <= 0.1 * table[name], (name, measured, table[name])
    total = sum(table[name] for name in files)
    assert f"| all | {total:,} |" in DOC.read_text(encoding="utf-8")


def test_the_derived_rows_follow_from_their_inputs() -> None:
    """LIST requests and cost, bundle bytes and shards are the stated inputs multiplied out."""
    text = DOC.read_text(encoding="utf-8")
    for objects, requests, cost, shards in (
        (10**7, "10,000", "$0.05", 1),
        (10**8, "100,000", "$0.50", 2),
        (10**9, "1,000,000", "$5.00", 18),
    ):
        assert f"{objects // 1000:,}" == requests
        assert f"${objects / 1000 / 1000 * 0.005:.2f}" == cost
        assert math.ceil(objects / (20_000 * 48 * 60)) == shards
    assert "| LIST requests (1,000 keys each) | 10,000 | 100,000 | 1,000,000 |" in text
    assert "| LIST cost at $0.005 per 1,000 | $0.05 | $0.50 | $5.00 |" in text
    assert "| shards for a one-hour window | 1 | 2 | 18 |" in text
