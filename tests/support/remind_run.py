"""A real run for ``remind``: a manifest with a ``notify:`` section run on moto, then notified.

Two recipients of one job: globex gets its files through a recipient page (the default),
initech through the links in the mail (``delivery: links``). Links live 72 hours; a test
chooses its ``--within`` from the links' real end (``earliest_end``), never from a date.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sharebatch import audit
from sharebatch.delivery.notify import notify
from sharebatch.delivery.smtp import Retry
from sharebatch.lifecycle.inspect import bundle_file
from tests.support.linkkit import invoke, run_dir_of
from tests.support.s3 import S3, write_manifest

BUCKET = "remind-me"
FILES = {
    "q3/summary.pdf": b"%PDF remind " * 40,
    "q3/data.csv": b"a,b\n1,2\n",
}
NO_WAIT = Retry(tries=2, backoff=lambda attempt: 0.0)

MANIFEST = """\
version: 1
defaults:
  bucket: {bucket}
  region: eu-west-1
  expires_in: 72h
  notify:
    smtp: {{host: 127.0.0.1, port: {port}, security: none, timeout: {timeout}}}
    from: "Acme Reports <reports@acme.example>"
    subject: "Q3 reports"
jobs:
  - name: q3
    prefixes: [q3/]
    recipients:
      - {{id: globex, name: Globex, email: finance@globex.example}}
      - id: initech
        email: it@initech.example
        notify: {{delivery: links}}
"""


@dataclass(frozen=True)
class RemindRun:
    """A notified run folder and where its bundles are."""

    run_dir: Path

    def folder(self, recipient: str) -> Path:
        return self.run_dir / "q3" / recipient

    def current(self, recipient: str) -> Path:
        """The recipient's newest bundle (JSON): its latest renewal, else links.json."""
        return bundle_file(self.folder(recipient))

    def renewals(self, recipient: str) -> list[Path]:
        return sorted(self.folder(recipient).glob("links.renewed-*.json"))

    def bundle(self, path: Path) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def earliest_end(self) -> datetime:
        """When the first link of any current bundle ends."""
        ends = [
            datetime.fromisoformat(row["expires_at"])
            for recipient in ("globex", "initech")
            for row in self.bundle(self.current(recipient))["links"]
        ]
        return min(ends)

    def window(self, margin: timedelta) -> timedelta:
        """A ``within`` reaching ``margin`` past the earliest end (negative: short of it)."""
        return self.earliest_end() - datetime.now(UTC) + margin


def remind_run(
    s3: S3, tmp_path: Path, port: int, *, notified: bool = True, timeout: str = "5s"
) -> RemindRun:
    """Run the manifest on moto with its mail going to ``port``; notify it unless told not.
    ``timeout``: the SMTP client's (longer than a test server's meeting wait, a client that
    must not give up and retry while the server holds its DATA)."""
    s3.bucket(BUCKET, FILES)
    manifest = write_manifest(
        tmp_path / "remind.yml", MANIFEST.format(bucket=BUCKET, port=port, timeout=timeout)
    )
    out = str(tmp_path / "out")
    run_dir = run_dir_of(invoke("run", str(manifest), "--out", out, "--endpoint-url", s3.endpoint))
    if notified:
        assert notify(run_dir, retry=NO_WAIT).exit_code == 0
        audit.reset()
    return RemindRun(run_dir)
