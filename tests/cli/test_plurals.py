"""A count of one takes the singular, everywhere a count is printed with its noun."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from rich.console import Console
from typer.testing import CliRunner

from sharebatch import Connection, run_manifest
from sharebatch.cli import app
from sharebatch.cli.view import summary_table
from sharebatch.units import counted
from tests.support.s3 import S3, write_manifest

MANIFEST = """\
version: 1
defaults: {bucket: acme-reports, region: eu-west-1, expires_in: 2h}
jobs:
  - name: single
    prefixes: [docs/]
    filters: {min_size: 1}
    upload: {prefix: "inbox/{recipient.id}/", max_size: 1KB, keys: [signed.pdf]}
    recipients: [{id: alice}]
"""


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_counted_is_singular_for_one_only() -> None:
    """1 link, 0 links, 2 links; an irregular plural is given."""
    assert [counted(n, "link") for n in (0, 1, 2)] == ["0 links", "1 link", "2 links"]
    assert counted(1, "prefix", "prefixes") == "1 prefix"
    assert counted(3, "prefix", "prefixes") == "3 prefixes"
    assert counted(1, "expected file") == "1 expected file"


def test_one_of_each_is_singular_in_every_command(s3: S3, tmp_path: Path) -> None:
    """validate, the run's summary table, inspect, verify and inbox on a run of one job, one
    recipient, one prefix, one link and one expected upload: no "1 links", "1 jobs"."""
    s3.bucket("acme-reports", {"docs/a.pdf": b"a"})
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)

    plan = invoke("validate", str(manifest)).stdout
    assert "; 1 prefix listing; " in plan
    assert re.search(r"min_size +1 byte$", plan, re.MULTILINE)

    summary = run_manifest(
        manifest, out=tmp_path / "out", connection=Connection(endpoint_url=s3.endpoint)
    )
    table = io.StringIO()
    Console(file=table, width=120).print(summary_table(dict(summary.report)))
    assert re.search(r"│ 1 job +│", table.getvalue())

    bundle = Path(str(summary.run_dir)) / "single" / "alice" / "links.json"
    shown = invoke("inspect", str(bundle)).stdout.splitlines()
    assert shown[1].startswith("  recipient alice: 1 link, 1 valid,")
    assert "  upload slots of alice: 1 slot, 1 valid, 0 expiring, 0 expired" in shown
    assert shown[-1] == (
        "inspect: 1 link: 1 valid, 0 expiring, 0 expired;"
        " 1 upload slot: 1 valid, 0 expiring, 0 expired"
    )

    checked = invoke("verify", str(bundle)).stdout.splitlines()
    assert checked[-1] == "verify: 1 of 1 link checked: 1 ok"

    inbox = invoke("inbox", str(manifest), "--endpoint-url", s3.endpoint).stdout
    assert "single/alice  acme-reports/inbox/alice/  0 of 1 expected file\n" in inbox
