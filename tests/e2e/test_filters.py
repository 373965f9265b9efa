"""End to end with filters, templated per-recipient prefixes and the max_links guard."""

from __future__ import annotations

import json
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from sharebatch.cli import app
from tests.support.s3 import S3, write_manifest

FILES = {
    "reports/2026/Q3/summary.pdf": b"quarterly summary..",
    "reports/2026/Q3/draft-summary.pdf": b"draft",
    "reports/2026/Q3/data.csv": b"a,b\n1",
    "reports/2026/Q3/notes.txt": b"notes",
    "reports/2026/Q2/old.pdf": b"last quarter",
    "partners/globex/statement.csv": b"globex,1",
    "partners/globex/sub/deep.pdf": b"deep globex",
    "partners/initech/statement.csv": b"initech,2",
    "shared/x.pdf": b"xyz",
    "shared/big.pdf": b"b" * 100,
}

MANIFEST = """\
version: 1
defaults:
  bucket: filter-bucket
  region: eu-west-1
  expires_in: 1h
jobs:
  - name: q3
    prefixes: ["reports/{period.year}/Q{period.quarter}/", "partners/{recipient.id}/"]
    download_name: "{recipient.id}-{basename}"
    filters:
      include: ["**/*.pdf", "**/*.csv"]
      exclude: ["**/draft-*"]
    recipients:
      - id: globex
      - id: initech
        prefixes: [shared/]
        filters: {max_size: 10B}
        formats: [json]
      - id: nothing-new
        filters: {modified_before: 2020-01-01T00:00:00Z}
  - name: guarded
    prefixes: [reports/]
    filters: {max_links: 2}
    recipients: [{id: auditor}]
"""


def _fetch(url: str) -> tuple[bytes, str | None]:
    with urllib.request.urlopen(url, timeout=10) as response:
        message = EmailMessage()
        message["Content-Disposition"] = response.headers["Content-Disposition"]
        return response.read(), message.get_filename()


def _links(run_dir: Path, job: str, recipient: str) -> list[dict[str, Any]]:
    links: list[dict[str, Any]] = json.loads(
        (run_dir / job / recipient / "links.json").read_text()
    )["links"]
    return links


def test_filters_select_exactly_the_expected_keys(s3: S3, tmp_path: Path) -> None:
    """Each recipient gets exactly its filtered keys; links download under the templated name."""
    s3.bucket("filter-bucket", FILES)
    manifest = write_manifest(tmp_path / "m.yml", MANIFEST)
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(manifest),
            "--out",
            str(tmp_path / "out"),
            "--as-of",
            "2026-11-28",
            "--endpoint-url",
            s3.endpoint,
        ],
    )
    # The guarded job matches 5 objects under reports/ with max_links 2: it fails alone.
    assert result.exit_code == 1, result.stderr
    run_dir = Path(result.stdout.strip())
    expected = {
        "globex": [
            "reports/2026/Q3/data.csv",
            "reports/2026/Q3/summary.pdf",
            "partners/globex/statement.csv",
            "partners/globex/sub/deep.pdf",
        ],
        "initech": [
            "reports/2026/Q3/data.csv",
            "partners/initech/statement.csv",
            "shared/x.pdf",
        ],
        "nothing-new": [],
    }
    # initech asked for JSON only: no CSV bundle (nor CSV rows staged for it).
    assert sorted(p.name for p in (run_dir / "q3" / "initech").iterdir()) == ["links.json"]
    assert {"links.csv", "links.json"} <= {p.name for p in (run_dir / "q3" / "globex").iterdir()}
    for recipient, keys in expected.items():
        links = _links(run_dir, "q3", recipient)
        assert [link["key"] for link in links] == keys
        for link in links:
            body, filename = _fetch(link["url"])
            assert body == FILES[link["key"]]
            assert filename == f"{recipient}-{link['key'].rsplit('/', 1)[-1]}"
    assert not (run_dir / "guarded").exists()
    summary = json.loads((run_dir / "summary.json").read_text())
    [failure] = summary["failures"]
    assert (failure["kind"], failure["job"], failure["recipient"]) == (
        "max_links",
        "guarded",
        "auditor",
    )
    assert "matched 5 objects, more than max_links 2" in failure["message"]


def test_output_dir_and_content_type_from_the_manifest(s3: S3, tmp_path: Path) -> None:
    """Without --out the templated output.dir is used; content_type reaches the download."""
    s3.bucket("filter-bucket", {"reports/2026/Q3/data.csv": b"a,b\n1"})
    manifest = write_manifest(
        tmp_path / "m.yml",
        f'version: 1\noutput: {{dir: "{tmp_path}/out/{{period.label}}"}}\n'
        "jobs:\n  - name: j\n    bucket: filter-bucket\n    region: eu-west-1\n"
        "    expires_in: 1h\n    content_type: text/csv; charset=utf-8\n"
        '    prefixes: ["reports/{period.year}/Q{period.quarter}/"]\n'
        "    recipients: [{id: r}]\n",
    )
    result = CliRunner().invoke(
        app, ["run", str(manifest), "--as-of", "2026-10-01", "--endpoint-url", s3.endpoint]
    )
    assert result.exit_code == 0, result.stderr
    run_dir = Path(result.stdout.strip())
    assert run_dir.parent == tmp_path / "out" / "2026-Q3"
    [link] = _links(run_dir, "j", "r")
    with urllib.request.urlopen(link["url"], timeout=10) as response:
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert response.read() == b"a,b\n1"
