"""A manifest with scanned upload slots, for the tests of ``inbox --scan`` and ``doctor``."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from tests.support.s3 import write_manifest

BUCKET = "scan-inbox"
AS_OF = date(2026, 11, 28)
AWKWARD = "inbox/globex/ü 50% & <x> +=?#\\ 'q' \"d\" \u202e.pdf"


def manifest(tmp_path: Path, clamd: str, quarantine: str | None = "quarantine/") -> Path:
    """globex: clamd at ``clamd``; initech: GuardDuty's tags; hooli: a slot never scanned."""
    moved = f', quarantine_prefix: "{quarantine}"' if quarantine else ""
    return write_manifest(
        tmp_path / "scan.yml",
        f"""\
version: 1
defaults: {{bucket: {BUCKET}, region: eu-west-1, expires_in: 1h}}
jobs:
  - name: q3
    prefixes: [q3/]
    upload: {{prefix: "inbox/{{recipient.id}}/", max_size: 5GB}}
    recipients:
      - id: globex
        upload: {{scan: {{engine: clamd, clamd: "{clamd}"{moved}}}}}
      - id: initech
        upload: {{scan: {{engine: guardduty{moved}}}}}
      - id: hooli
""",
    )
