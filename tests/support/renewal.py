"""Renewal test helpers: the renew-me bucket, a two-recipient run, bundle digests and JSON."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tests.support.linkkit import invoke, run_dir_of
from tests.support.s3 import write_manifest

BUCKET = "renew-me"
FILES = {"q3/a.pdf": b"%PDF a", "q3/b.csv": b"x,y\n1,2\n", "q3/c d+e.txt": "caf\u00e9".encode()}


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def json_bundle(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


TWO = """\
version: 1
defaults:
  bucket: {bucket}
  region: eu-west-1
  expires_in: 1h
jobs:
  - name: q3
    prefixes: [q3/]
    recipients:
      - {{id: globex}}
      - {{id: initech, prefixes: [initech/]}}
"""


def run_two(endpoint: str, tmp_path: Path) -> Path:
    """A run giving globex q3/ and initech q3/ plus its own initech/ folder; its run folder."""
    path = write_manifest(tmp_path / "two.yml", TWO.format(bucket=BUCKET))
    return run_dir_of(
        invoke("run", str(path), "--out", str(tmp_path / "out"), "--endpoint-url", endpoint)
    )


INITECH_ONLY = {"initech/private.pdf": b"initech's own"}
