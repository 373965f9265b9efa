"""Runs with recipient pages: a manifest on moto whose recipients get ``notify:`` settings.

The settings are chosen as ``NotifySettings`` values per recipient and written into the
manifest's YAML (``with_notify``), so the manifest loader reads them as it reads any file and
the run is ``sharebatch run``'s own (``run_manifest``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from sharebatch.models import Connection, NotifySettings, SmtpServer
from sharebatch.run.runner import run_manifest
from tests.support.delivery_run import notify_yaml
from tests.support.s3 import S3, write_manifest

BUCKET = "acme-reports"
PAGES = "_sharebatch/pages/"

MANIFEST = f"""\
version: 1
defaults:
  bucket: {BUCKET}
  region: eu-west-1
  expires_in: 72h
jobs:
  - name: q3
    prefixes: [reports/q3/]
    recipients:
      - id: globex
        name: "Globex <b>Corporation</b> & Sons"
        email: finance@globex.example
        prefixes: [partners/globex/]
        upload:
          prefix: inbox/globex/
          max_size: 1MB
          expires_in: 2h
      - id: initech
        prefixes: [partners/initech/]
        upload:
          prefix: inbox/initech/
          keys: [signed.pdf]
          max_size: 1MB
          content_types: [application/pdf]
          expires_in: 96h
"""

FILES = {
    "reports/q3/summary.pdf": b"%PDF" + b"s" * 5000,
    "reports/q3/data.csv": b"a,b\n1,2\n",
    "partners/globex/\u202egnp.exe.pdf": b"bidi" * 300,
    "partners/globex/<img src=x onerror=alert(1)>.txt": b"markup",
    "partners/globex/bell\x07.txt": b"\x07" * 1536,
    "partners/initech/statement.csv": b"initech,2\n" * 3,
}


def settings(pages_prefix: str = PAGES, **more: Any) -> NotifySettings:
    """Notify settings of the kind the manifest will give (``delivery: page``)."""
    return NotifySettings(
        smtp=SmtpServer(host="127.0.0.1", port=2525, security="none"),
        sender="Acme Reports <reports@acme.example>",
        subject="Q3 reports",
        pages_prefix=pages_prefix,
        **more,
    )


def with_notify(text: str, chosen: Mapping[str, NotifySettings | None]) -> str:
    """The manifest ``text`` with each recipient named in ``chosen`` given those settings as
    its ``notify:`` mapping (None: no settings)."""
    data = yaml.safe_load(text)
    for job in data["jobs"]:
        for recipient in job["recipients"]:
            given = chosen.get(recipient["id"])
            if given is not None:
                recipient["notify"] = notify_yaml(given)
    dumped: str = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return dumped


@dataclass(frozen=True)
class PageRun:
    """A finished run with pages: its folder and status."""

    run_dir: Path
    status: str

    def bundle(self, recipient: str, job: str = "q3") -> dict[str, Any]:
        """The recipient's ``links.json``, parsed."""
        data: dict[str, Any] = json.loads(
            (self.run_dir / job / recipient / "links.json").read_text(encoding="utf-8")
        )
        return data

    def audit(self, event: str) -> list[dict[str, Any]]:
        """Every ``event`` of the run's audit log, in order."""
        lines = (self.run_dir / "audit.jsonl").read_text(encoding="utf-8").splitlines()
        return [e for e in map(json.loads, lines) if e["event"] == event]


def run_with_pages(
    s3: S3,
    folder: Path,
    chosen: Mapping[str, NotifySettings | None],
    *,
    text: str = MANIFEST,
    files: Mapping[str, bytes] = FILES,
    endpoint: str | None = None,
) -> PageRun:
    """Seed ``files``, write ``text`` with ``chosen`` settings and run it (through
    ``endpoint``, default moto itself)."""
    s3.bucket(BUCKET, dict(files))
    manifest = write_manifest(folder / "pages.yml", with_notify(text, chosen))
    summary = run_manifest(
        manifest, out=folder / "out", connection=Connection(endpoint_url=endpoint or s3.endpoint)
    )
    assert summary.run_dir is not None
    return PageRun(Path(summary.run_dir), summary.status)


def url_key(url: str) -> str:
    """The key a path-style moto URL names (after the bucket)."""
    path = urlsplit(url).path
    return path.split("/", 2)[2]
